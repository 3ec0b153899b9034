"""Fuzzing the FHIR terminology operations through the real app (tests/support/fuzz.py): Parameters
bodies built from the operations' own parameter names with values of every JSON type, and mutated
valid bodies, posted to $lookup, $validate-code and $expand. Every answer is below 500 and every
refusal is an OperationOutcome."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from plugins.coding.tests.test_fhir import FHIR, ORPHA, hp  # noqa: F401  (fixture)
from tests.conftest import csrf_of
from tests.support.fuzz import FUZZ, mutations

OPS = ("/fhir/CodeSystem/$lookup", "/fhir/CodeSystem/$validate-code", "/fhir/ValueSet/$expand")
NAMES = ["system", "code", "version", "url", "filter", "count", "offset", "coding", "display", "property",
         "activeOnly", "includeDesignations", "displayLanguage", "x"]
VALUE_KEYS = ["valueUri", "valueCode", "valueString", "valueInteger", "valueBoolean", "valueCoding", "valueDecimal", "value"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=30)
    | st.sampled_from(["95", ORPHA, "ORPHA:95", "http://hl7.org/fhir/sid/icd-10", "G11.1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["system", "code", "display", "x"]), inner, max_size=4),
    max_leaves=20,
)
PARAMETER = st.fixed_dictionaries({"name": st.sampled_from(NAMES)}).flatmap(
    lambda p: st.dictionaries(st.sampled_from(VALUE_KEYS), JSON_VALUES, min_size=0, max_size=2).map(lambda v: {**p, **v}))
BODIES = st.fixed_dictionaries({
    "resourceType": st.sampled_from(["Parameters", "Bundle", 7]),
    "parameter": st.lists(PARAMETER, max_size=6) | JSON_VALUES,
}).map(lambda d: json.dumps(d, allow_nan=True).encode())
VALID = json.dumps({"resourceType": "Parameters", "parameter": [
    {"name": "url", "valueUri": ORPHA}, {"name": "filter", "valueString": "ataxia"}, {"name": "count", "valueInteger": 3},
]}).encode()


@FUZZ
@given(body=BODIES | mutations(VALID, max_edits=6), op=st.sampled_from(OPS))
async def test_fhir_operations_answer_every_body_without_a_server_error(hp, body, op):  # noqa: F811
    r = await hp.post(op, content=body, headers={"content-type": FHIR, "x-csrftoken": csrf_of(hp)})
    assert r.status_code < 500, (op, body[:200], r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"
