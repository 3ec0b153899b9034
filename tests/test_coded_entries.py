"""Coded record entries and outcomes: one label, its code, and more codes for the same condition
(``codings``: e.g. an ORPHAcode with its ICD-10 and OMIM equivalents), checked by the core
whichever input a plugin draws, kept in the history and exported as FHIR codings."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from core.patients.tables import ChangeLog, Diagnosis, Phenotype
from tests.conftest import app_client, csrf_of, login, make_settings, make_user, post_form
from tests.test_patients import enrol

HP = "hp@example.org"
FRDA = {"label": "Friedreich ataxia", "system": "ORPHA", "code": "95", "status": "confirmed", "onset": "2012"}


async def _patient(client) -> str:
    await make_user(HP)
    await login(client, HP)
    return (await enrol(client)).headers["location"].rsplit("/", 1)[1]


async def _post(client, url: str, data: dict, codings=(), name: str = "codings"):
    """A form post with repeated ``codings`` values, as a browser sends ticked checkboxes."""
    pairs = list(data.items()) + [(name, c) for c in codings] + [("_csrf_token", csrf_of(client))]
    return await client.post(url, content=urlencode(pairs), headers={"Content-Type": "application/x-www-form-urlencoded"}, follow_redirects=False)


async def test_a_diagnosis_keeps_several_codes_and_exports_them(client):
    pseudonym = await _patient(client)
    r = await _post(
        client, f"/patients/{pseudonym}/record/diagnoses", FRDA,
        ["ICD-10|G11.1|Early-onset cerebellar ataxia", "OMIM|229300|Friedreich ataxia 1", "ORPHA|95|Friedreich ataxia",
         "ICD-10|G11.1|Early-onset cerebellar ataxia"],
    )
    assert r.status_code == 303, r.text
    row = await Diagnosis.select().first()
    # The main code is not repeated, and a code ticked twice is kept once.
    assert json.loads(row["codings"]) == [
        {"system": "ICD-10", "code": "G11.1", "display": "Early-onset cerebellar ataxia"},
        {"system": "OMIM", "code": "229300", "display": "Friedreich ataxia 1"},
    ]
    page = await client.get(f"/patients/{pseudonym}")
    assert "ICD-10:G11.1" in page.text and "OMIM:229300" in page.text

    bundle = (await client.get(f"/patients/{pseudonym}/export", params={"format": "fhir"})).json()
    condition = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition")
    assert [(c["system"], c["code"]) for c in condition["code"]["coding"]] == [
        ("http://www.orpha.net", "95"), ("http://hl7.org/fhir/sid/icd-10", "G11.1"), ("https://omim.org", "229300"),
    ]
    exported = (await client.get(f"/patients/{pseudonym}/export", params={"format": "json"})).json()
    assert exported["diagnoses"][0]["codings"][0]["code"] == "G11.1"

    # Unticking an equivalent on edit is a change kept in the history.
    r = await _post(client, f"/patients/{pseudonym}/record/diagnoses/{row['id']}", FRDA, ["OMIM|229300|Friedreich ataxia 1"])
    assert r.status_code == 303
    assert [c["code"] for c in json.loads((await Diagnosis.select().first())["codings"])] == ["229300"]
    assert await ChangeLog.count().where((ChangeLog.entity == "diagnoses") & (ChangeLog.field == "codings")) == 2


async def test_bad_additional_codes_are_refused_and_store_nothing(client):
    pseudonym = await _patient(client)
    url = f"/patients/{pseudonym}/record/diagnoses"
    for bad in (["ICD-10"], ["ICD-10|G11 1|spaced code"], ["9X|G11.1|system must start with a letter"], ["ICD-10||no code"],
                [f"ICD-10|G{i}|x" for i in range(11)], ["ICD-10|G11.1|" + "x" * 301]):
        r = await _post(client, url, FRDA, bad)
        assert r.status_code == 422, bad
        assert "additional code" in r.text.lower() or "at most" in r.text.lower()
    assert await Diagnosis.count() == 0
    r = await _post(client, f"/patients/{pseudonym}/record/phenotype",
                    {"label": "Seizure", "system": "HPO", "code": "HP:0001250", "observed": "present", "onset": ""}, ["HPO|HP 1|bad"])
    assert r.status_code == 422 and await Phenotype.count() == 0


async def test_without_a_picker_plugin_the_record_keeps_plain_inputs(clean_db):
    """The core's fallback: with no ``code_picker`` (the coding plugin disabled), the record shows
    label, system and code inputs, and the example plugin's suggestion list."""
    from core.app import create_app

    app = create_app(make_settings(disabled_plugins=("coding",)))
    async with app_client(app) as client:
        pseudonym = await _patient(client)
        page = (await client.get(f"/patients/{pseudonym}")).text
        assert 'list="diagnoses-codes"' in page and 'name="system"' in page and 'name="code"' in page
        r = await post_form(client, f"/patients/{pseudonym}/record/diagnoses", {**FRDA})
        assert r.status_code == 303
    assert (await Diagnosis.select(Diagnosis.codings).first())["codings"] == "[]"


async def test_an_outcome_diagnosis_keeps_its_equivalents_in_the_report(client):
    from core.panels.report import diagnosis_text
    from core.panels.tables import Outcome
    from tests.panels_support import hcp_of, make_patient, make_panel, revision

    lead = await make_user("lead@example.org", name="Dr Lead")
    patient = await make_patient(await hcp_of(lead))
    pid = await make_panel(patient, lead, status="open")
    await login(client, "lead@example.org")
    data = {
        "findings": "Ataxia, areflexia, GAA expansion on both alleles.", "recommendations": "Cardiology review.",
        "treatment_plan": "Omaveloxolone.", "f_diagnosis_label": "Friedreich ataxia", "f_diagnosis_system": "ORPHA",
        "f_diagnosis_code": "95",
    }
    r = await _post(client, f"/panels/{pid}/outcome", {**data, "revision": await revision(pid)},
                    ["ICD-10|G11.1|Early-onset cerebellar ataxia"], name="f_diagnosis_codings")
    assert r.status_code in (302, 303), r.text
    outcome = await Outcome.select().where(Outcome.panel == pid).first()
    assert json.loads(outcome["diagnosis_codings"]) == [{"system": "ICD-10", "code": "G11.1", "display": "Early-onset cerebellar ataxia"}]
    assert diagnosis_text(outcome) == "Friedreich ataxia (ORPHA:95, ICD-10:G11.1)"
    page = await client.get(f"/panels/{pid}")
    assert "G11.1" in page.text  # in the lead's draft form, with the picker or the plain inputs
    r = await _post(client, f"/panels/{pid}/outcome", {**data, "revision": await revision(pid)}, ["nonsense"], name="f_diagnosis_codings")
    assert r.status_code == 422
    assert json.loads((await Outcome.select().where(Outcome.panel == pid).first())["diagnosis_codings"])[0]["code"] == "G11.1"
