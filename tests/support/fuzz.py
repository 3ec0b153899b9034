"""Shared by the fuzz tests: how many examples, mutations of real seed files, and bounds per input.

Every parser of outside input is fuzzed with hypothesis: random and mutated inputs must be parsed or
refused with the parser's own error, never with another exception, and within a time and memory
bound per input. CI runs ``CPMS_FUZZ_EXAMPLES`` examples per target (default 40, a bounded smoke
run); ``scripts/fuzz.sh`` runs thousands. hypothesis is deterministic per test (derandomize) in CI,
so a failure there reproduces; the long run explores.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from contextlib import contextmanager

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CPMS_FUZZ_EXAMPLES", "40"))
#: Per input: seconds and bytes of Python memory at the peak.
MAX_SECONDS = float(os.environ.get("CPMS_FUZZ_MAX_SECONDS", "5"))
MAX_PYTHON_BYTES = 256 * 1024 * 1024

FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("CPMS_FUZZ_EXPLORE"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    database=None,
)


@st.composite
def mutations(draw, seed: bytes, max_edits: int = 8):
    """``seed`` with a few random edits: byte flips, insertions, deletions, truncation, duplication."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, max_edits))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat", "int"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and data:
            del data[at:at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "repeat" and data:
            chunk = bytes(data[at:at + draw(st.integers(1, 64))])
            data[at:at] = chunk * draw(st.integers(1, 8))
        elif kind == "int" and len(data) >= at + 4:
            data[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80"]))
    return bytes(data)


@contextmanager
def bounded(what: str):
    """Fail if the body takes longer than MAX_SECONDS or its Python allocations peak above the bound."""
    tracemalloc.start(12)
    started = time.perf_counter()
    top = ""
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        if peak >= MAX_PYTHON_BYTES:
            # Where the memory went: the largest allocation still held, with its call stack.
            stats = tracemalloc.take_snapshot().statistics("traceback")
            top = "\n".join(stats[0].traceback.format()[-12:]) if stats else ""
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS, f"{what}: {elapsed:.1f} s for one input"
    assert peak < MAX_PYTHON_BYTES, f"{what}: {peak / 2**20:.0f} MiB of Python memory for one input\n{top}"
