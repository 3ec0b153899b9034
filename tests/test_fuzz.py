"""Fuzzing the core's parsers of outside input (tests/support/fuzz.py): JSON bodies, consultation
form templates (the JSON a coordinator pastes) and the answers posted to them. Each input is parsed
or refused with the parser's own error, within bounds of time and memory."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from core.jsonbody import JsonRejected, parse
from core.panels.forms import parse_answers, validate_definition
from core.panels.templates_store import DATA_DIR
from tests.support.fuzz import FUZZ, bounded, mutations

DEFAULT = (DATA_DIR / "default_template.json").read_bytes()
RND = (DATA_DIR / "ern_rnd_template.json").read_bytes()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=60,
)


@FUZZ
@given(st.binary(max_size=4096) | mutations(DEFAULT) | mutations(b"[" * 40 + b"1" + b"]" * 40))
def test_json_bodies_parse_or_are_refused(raw):
    with bounded("jsonbody.parse"):
        try:
            parse(raw)
        except JsonRejected as exc:
            assert exc.status in (400, 413) and exc.detail


@FUZZ
@given(mutations(DEFAULT, max_edits=4) | mutations(RND, max_edits=4))
def test_consultation_templates_are_validated_not_crashed_on(raw):
    with bounded("validate_definition"):
        try:
            obj = parse(raw)
        except JsonRejected:
            return
        problems = validate_definition(obj)
        assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)


@FUZZ
@given(JSON_VALUES)
def test_any_json_value_as_a_template_gets_problems_not_an_exception(value):
    with bounded("validate_definition"):
        problems = validate_definition(value)
    assert isinstance(problems, list)


def _field_names(definition: dict) -> list[str]:
    from core.panels.forms import iter_fields

    return [f["key"] for f in iter_fields(definition) if isinstance(f, dict) and "key" in f]


@FUZZ
@given(st.data())
def test_answers_posted_to_a_form_are_parsed_or_refused_per_field(data):
    definition = json.loads(RND)
    names = _field_names(definition)
    assert len(names) >= 5  # the walk reaches the form's fields
    values = st.text(max_size=60) | st.sampled_from(["", "1e999", "NaN", "-0", "2026-02-30", "0001-01-01", "9" * 400,
                                                     "ORPHA|95|x", "|||", "\x00", "1,5", " 12 "])
    form = data.draw(st.dictionaries(st.sampled_from(names + [n + "__system" for n in names] + ["junk"]),
                                     st.lists(values, max_size=3) | values, max_size=len(names) + 3))
    with bounded("parse_answers"):
        answers, errors = parse_answers(definition, form, require=data.draw(st.booleans()))
    assert isinstance(answers, dict) and isinstance(errors, dict)
    assert all(isinstance(v, str) and v for v in errors.values())
    json.dumps(answers)  # what is kept can be stored as JSON
