"""Coded entries: a label with a code, and more codes for the same condition (``codings``).

A plugin (the coding plugin) draws the input through the ``code_picker`` hook; without one the
forms keep plain label/system/code inputs. Either way the server checks what is posted here.
"""

from __future__ import annotations

import json
import re

from markupsafe import Markup

SYSTEM = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,29}$")
MAX_CODINGS = 10
LIMITS = {"system": 30, "code": 40, "display": 300}


def parse_codings(form, prefix: str = "") -> tuple[list[dict], str | None]:
    """The repeated ``<prefix>codings`` values ("SYSTEM|CODE|display") as a list, or an error."""
    raw = form.getall(f"{prefix}codings", []) if hasattr(form, "getall") else form.get(f"{prefix}codings") or []
    if isinstance(raw, str):
        raw = [raw]
    codings, seen = [], set()
    for item in raw:
        parts = str(item).split("|", 2)
        if len(parts) != 3:
            return [], "An additional code must be SYSTEM|CODE|label."
        system, code, display = (p.strip() for p in parts)
        if not SYSTEM.match(system) or not code or len(code) > LIMITS["code"] or any(c.isspace() for c in code):
            return [], f"Not a valid additional code: {system}:{code}."
        if len(display) > LIMITS["display"]:
            return [], f"The label of the additional code {system}:{code} is longer than {LIMITS['display']} characters."
        if (system.upper(), code) in seen:
            continue
        seen.add((system.upper(), code))
        codings.append({"system": system.upper() if system.isascii() else system, "code": code, "display": display})
    if len(codings) > MAX_CODINGS:
        return [], f"At most {MAX_CODINGS} additional codes."
    return codings, None


def dump(codings: list[dict]) -> str:
    return json.dumps(codings, ensure_ascii=False, separators=(",", ":")) if codings else "[]"


def load(text) -> list[dict]:
    if isinstance(text, list):
        return text
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [c for c in value if isinstance(c, dict) and c.get("code")] if isinstance(value, list) else []


def picker(host, actor, kind: str, prefix: str = "", value: dict | None = None) -> Markup | None:
    """The plugin's coded input for ``kind`` (``diagnoses``, ``phenotype``), or None for plain inputs."""
    value = dict(value or {})
    value["codings"] = load(value.get("codings"))
    html = host.hook.code_picker(kind=kind, prefix=prefix, value=value, actor=actor)
    return Markup(html) if html else None
