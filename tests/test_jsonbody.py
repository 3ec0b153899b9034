"""core.jsonbody: the one parser for outside JSON refuses what would crash or stall the server."""

import pytest

from core.jsonbody import JsonRejected, parse


def test_ordinary_json_is_decoded():
    assert parse(b'{"a": [1, 2.5, "x", null, true], "b": {"c": -3}}') == {"a": [1, 2.5, "x", None, True], "b": {"c": -3}}
    assert parse(b"") is None and parse("  ") is None
    assert parse('"é"') == "é"
    assert parse(b"[" * 32 + b"]" * 32) is not None  # exactly the limit


@pytest.mark.parametrize("raw,status,words", [
    (b"[" * 33 + b"]" * 33, 400, "nested too deeply"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),  # RecursionError inside json
    (b'{"a":' * 50 + b"1" + b"}" * 50, 400, "nested too deeply"),
    (b"[NaN]", 400, "not a JSON number"),
    (b"[Infinity]", 400, "not a JSON number"),
    (b"[-Infinity]", 400, "not a JSON number"),
    (b"[1e999]", 400, "too large"),
    (b"[-1e999]", 400, "too large"),
    (b"[" + b"9" * 21 + b"]", 400, "at most 20 digits"),
    (b"[" + b"9" * 100_000 + b"]", 400, "at most 20 digits"),
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (b"[1]" + b" " * (1024 * 1024), 413, "larger than"),
])
def test_hostile_input_is_refused_with_a_status_and_a_sentence(raw, status, words):
    with pytest.raises(JsonRejected) as caught:
        parse(raw)
    assert caught.value.status == status and words in caught.value.detail


def test_limits_are_per_call():
    with pytest.raises(JsonRejected, match="An annotation is larger than 1 KB"):
        parse(b"[" + b"1," * 600 + b"1]", max_bytes=1024, what="An annotation")
    assert parse(b"[" * 40 + b"]" * 40, max_depth=40)
