"""One parser for JSON that arrives from outside (request bodies, uploaded files).

``json.loads`` alone turns hostile input into server errors: thousands of ``[`` raise
``RecursionError``, ``Infinity``/``NaN`` and ``1e999`` become floats that later overflow an
``int()``, and a 5,000-digit integer costs quadratic time. ``parse`` refuses all of these with
``JsonRejected`` (an HTTP status and a sentence), which callers turn into their own error format
(problem JSON, a FHIR OperationOutcome, a form error). Limits are per call; the defaults suit an
API body.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
#: Longest integer literal accepted (a 64-bit integer has 19 digits).
MAX_INT_DIGITS = 20


class JsonRejected(ValueError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _constant(name: str):
    raise JsonRejected(400, f"{name} is not a JSON number: send a finite number.")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRejected(400, f"The number {text[:30]} is too large.")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JsonRejected(400, f"An integer may have at most {MAX_INT_DIGITS} digits.")
    return int(text)


def parse(raw: bytes | str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH, what: str = "The body") -> Any:
    """The decoded value of ``raw``, or ``JsonRejected`` (413 too large; 400 not JSON, too deep,
    or a number that is not finite or too long). An empty body is ``None``."""
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise JsonRejected(413, f"{what} is larger than {max_bytes // 1024:,} KB.")
    if not raw or not raw.strip():
        return None
    try:
        value = json.loads(raw, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except JsonRejected:
        raise
    except RecursionError:
        raise JsonRejected(400, f"{what} is nested too deeply (at most {max_depth} levels).") from None
    except (ValueError, UnicodeDecodeError):
        raise JsonRejected(400, f"{what} is not valid JSON.") from None
    if _depth_exceeds(value, max_depth):
        raise JsonRejected(400, f"{what} is nested too deeply (at most {max_depth} levels).")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Iterative (no recursion of our own to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False
