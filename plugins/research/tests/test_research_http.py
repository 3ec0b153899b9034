"""The research section through the HTTP app, from the demo: who reaches it, that nothing identifying
leaves it, that consent decides inclusion at once, that k holds on real exports, projects' life."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from datetime import date, timedelta

import pandas as pd
import pytest
from pycanon import anonymity

from core.identity import DEMO_PASSWORD
from tests.conftest import csrf_of, enrol_totp, login, post_form

ATAXIA = {"combine": "or", "f0": "diagnosis", "v0": "ORPHA:98756", "d0": "on", "f1": "diagnosis", "v1": "ORPHA:95", "d1": "on"}
QI_COLUMNS = ["sex", "age_band_enrolment", "age_band_onset", "age_band_diagnosis", "enrolment_period", "country", "diagnoses"]


async def _as(client, demo, role: str) -> None:
    client.cookies.clear()
    await enrol_totp(demo.users[role])
    r = await login(client, f"{role}@demo.cpms.eu", DEMO_PASSWORD.format(role=role))
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.headers.get("location")


async def _project_id() -> int:
    from plugins.research.tables import ResearchProject

    row = await ResearchProject.select(ResearchProject.id).where(ResearchProject.title == "Natural history of hereditary ataxias").first()
    return row["id"]


async def _true_count(project_id: int, params: dict) -> int:
    from plugins.research import builder, projects, query

    project = await projects.load(project_id)
    definition, _, _ = builder.definition_from(params)
    return (await query.count(definition, query.Scope(project.approved_erns)))[0]


async def _forbidden_texts() -> list[str]:
    """Everything that must never appear on a research page: identities, pseudonyms, nicknames,
    hospitals, free text, exact dates."""
    from core.orgs.tables import Hcp
    from core.patients.tables import Diagnosis, GeneticFinding, Patient
    from plugins.research.demo import DEMO_FAMILY_NAME

    texts = [DEMO_FAMILY_NAME, "Hoffmann", "Becker", "Yıldız", "Progressive gait ataxia since age 7"]
    for p in await Patient.select(Patient.pseudonym, Patient.nickname):
        texts += [p["pseudonym"], p["nickname"]]
    texts += [h["name"] for h in await Hcp.select(Hcp.name)]
    texts += [f["variant"] for f in await GeneticFinding.select(GeneticFinding.variant)]
    texts += [d["label"] for d in await Diagnosis.select(Diagnosis.label).where(Diagnosis.code == "")]
    return texts


def _zip(response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as z:
        return {name: z.read(name) for name in z.namelist()}


async def _export(client, project_id: int, params: dict, kind: str) -> dict[str, bytes]:
    from plugins.research import builder

    definition, _, _ = builder.definition_from(params)
    r = await post_form(client, f"/research/projects/{project_id}/export", {"kind": kind, "definition": json.dumps(definition)})
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"] == "application/zip"
    return _zip(r)


async def test_only_researchers_and_admin_reach_the_research_data(client, demo):
    project = await _project_id()
    for role in ("hp", "coordinator", "dpo", "guest", "assistant", "dispatcher"):
        await _as(client, demo, role)
        r = await client.get("/research")
        assert r.status_code == 403, (role, r.status_code)
        r = await client.get(f"/research/projects/{project}/views")
        assert r.status_code == 403, role
    await _as(client, demo, "researcher")
    r = await client.get("/")
    assert 'href="/research"' in r.text
    r = await client.get("/research")
    assert r.status_code == 200 and "Natural history of hereditary ataxias" in r.text
    await _as(client, demo, "admin")
    r = await client.get("/research")
    assert r.status_code == 200 and "All projects (oversight)" in r.text


async def test_no_research_page_or_export_holds_identity_pseudonym_hospital_free_text_or_date(client, demo):
    project = await _project_id()
    forbidden = await _forbidden_texts()
    birth_dates = set()
    from core.patients import identity as ident
    from core.patients.tables import Patient

    await _as(client, demo, "researcher")
    settings = client._transport.app.state.settings  # type: ignore[attr-defined]
    for p in await Patient.select(Patient.pseudonym, Patient.identity):
        value = ident.decrypt_identity(settings, p["pseudonym"], p["identity"]).get("date_of_birth")
        if value:
            birth_dates.add(value)
    qs = "&".join(f"{k}={v}" for k, v in ATAXIA.items())
    pages = ["/research", f"/research/projects/{project}", f"/research/projects/{project}?{qs}",
             f"/research/projects/{project}/views?{qs}", f"/research/projects/{project}/views",
             f"/research/projects/{project}/export?{qs}", "/research/projects/new",
             "/api/beacon", "/api/beacon/info", "/api/beacon/individuals?filters=HP:0002066",
             "/api/beacon/filtering_terms", "/api/beacon/map", "/api/beacon/configuration", "/api/beacon/entry_types"]
    bodies = {}
    for url in pages:
        r = await client.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
        bodies[url] = r.text
    for kind in ("cde", "phenopackets", "rows"):
        for name, content in (await _export(client, project, ATAXIA, kind)).items():
            bodies[f"{kind}:{name}"] = content.decode()
    for where, body in bodies.items():
        for text in forbidden:
            assert text not in body, (where, text)
        for value in birth_dates:
            assert value not in body, (where, "a date of birth")
        # No exact date in the data at all (pages about the project show its own dates; the manifest and
        # phenopackets' metaData carry the export's time stamp).
        if "/views" in where or "beacon" in where or where.startswith(("cde:cde", "rows:")):
            assert not re.search(r"\b(19|20)\d\d-\d\d-\d\d\b", body.replace(date.today().isoformat(), "")), where


async def test_withdrawal_removes_the_patient_at_once_and_the_coordinator_sees_earlier_exports(client, demo):
    from core.patients.tables import Consent, Patient
    from plugins.research.tables import ResearchExport

    project = await _project_id()
    before = await _true_count(project, ATAXIA)
    await _as(client, demo, "researcher")
    files = await _export(client, project, ATAXIA, "rows")
    rows_before = list(csv.DictReader(io.StringIO(files["rows.csv"].decode())))
    # A patient that export held, and their record as the hospital sees it.
    held = json.loads((await ResearchExport.select(ResearchExport.subjects).order_by(ResearchExport.id, ascending=False).first())["subjects"])
    patient_id = held[0]
    patient = await Patient.select(Patient.pseudonym, Patient.hcp).where(Patient.id == patient_id).first()

    # The enrolling hospital withdraws the registry consent (its own HP, through the page's form).
    from core.identity.tables import User

    await User.update({User.hcp: patient["hcp"]}).where(User.id == demo.users["hp"])
    await _as(client, demo, "hp")
    r = await client.get(f"/research/patients/{patient['pseudonym']}")
    assert r.status_code == 200 and "Included" in r.text and "Not included" not in r.text
    r = await post_form(client, f"/patients/{patient['pseudonym']}/consents", {
        "kind": "registry", "status": "withdrawn", "date": date.today().isoformat(), "form_version": "ERN consent v3"})
    assert r.status_code == 303, r.text[:300]
    r = await client.get(f"/research/patients/{patient['pseudonym']}")
    assert "Not included" in r.text and "withdrawn" in r.text and "project" in r.text  # and the export that held them

    assert await _true_count(project, ATAXIA) == before - 1
    await _as(client, demo, "researcher")
    files = await _export(client, project, ATAXIA, "rows")
    rows_after = list(csv.DictReader(io.StringIO(files["rows.csv"].decode())))
    assert len(rows_after) < len(rows_before)
    last = await ResearchExport.select(ResearchExport.subjects).order_by(ResearchExport.id, ascending=False).first()
    assert patient_id not in json.loads(last["subjects"])

    await _as(client, demo, "coordinator")
    r = await client.get("/research/review")
    assert r.status_code == 200
    assert re.search(r"<strong>1</strong> <span class=\"muted\">\(this export holds data of patients who have since left", r.text)
    # Fail closed: a newer registry row that no event announced still excludes the patient.
    await Consent.insert(Consent(patient=patient_id, kind="registry", status="given", date=date.today(), form_version="v"))
    assert await _true_count(project, ATAXIA) == before - 1  # the row was built from the withdrawn consent
    await Consent.insert(Consent(patient=held[1], kind="registry", status="given", date=date.today(), form_version="v2"))
    assert await _true_count(project, ATAXIA) == before - 2  # stale until refreshed: excluded, never kept


async def test_exports_are_k_anonymous_by_an_independent_library_and_carry_a_manifest(client, demo):
    project = await _project_id()
    await _as(client, demo, "researcher")
    everyone = {"combine": "and"}
    files = await _export(client, project, everyone, "rows")
    manifest = json.loads(files["manifest.json"])
    assert manifest["k"] == 5 and manifest["kind"] == "rows" and manifest["project"]["id"] == project
    assert manifest["exported_by"]["name"] == "Dr. Sofia Rossi"
    rows = list(csv.DictReader(io.StringIO(files["rows.csv"].decode())))
    assert manifest["rows"] == len(rows) > 100
    frame = pd.DataFrame(rows)[QI_COLUMNS]
    assert anonymity.k_anonymity(frame, QI_COLUMNS) >= 5
    # The report shown before download is the one in the manifest.
    assert manifest["anonymisation"]["rows_out"] == len(rows)
    assert manifest["anonymisation"]["highest_risk"] <= 1 / 5
    r = await client.get(f"/research/projects/{project}/export")
    assert "Re-identification risk (prosecutor)" in r.text and f"highest {100 * manifest['anonymisation']['highest_risk']:.1f} %" in r.text
    cde = await _export(client, project, everyone, "cde")
    assert "cde.csv" in cde and "cde-data-dictionary.csv" in cde


async def test_small_counts_are_suppressed_and_bad_definitions_change_nothing(client, demo):
    from plugins.research.tables import ResearchLog

    project = await _project_id()
    await _as(client, demo, "researcher")
    # One sex and one rare phenotype: a handful of patients at most.
    tiny = {"combine": "and", "f0": "diagnosis", "v0": "ORPHA:256", "d0": "on", "f1": "sex", "v1": "unknown"}
    assert 0 < await _true_count(project, tiny) < 5
    r = await client.get(f"/research/projects/{project}", params=tiny)
    assert r.status_code == 200 and "&lt; 5" in r.text and "too few to show" in r.text
    # Patients without registry consent are visibly left out (a protected count of them).
    from plugins.research import query
    from plugins.research.anonymise import protect_sum

    left = protect_sum(*(await query.excluded(query.Scope(("ERN EURO-NMD", "ERN RND")))), 5)
    assert left.value and left.value > 20 and f"Not in the research data: {left.display} patients" in r.text
    assert "See charts and rows" not in r.text  # no button that would show nothing
    logged = await ResearchLog.count().where(ResearchLog.project == project)
    r = await client.get(f"/research/projects/{project}", params={"f0": "diagnosis", "v0": "G11.2"})
    assert r.status_code == 422 and "ORPHA:98756, ICD10:G11.2" in r.text
    r = await client.get(f"/research/projects/{project}", params={"f0": "age", "at0": "onset", "lo0": "abc"})
    assert r.status_code == 422
    r = await post_form(client, f"/research/projects/{project}/export", {"kind": "rows", "definition": "[" * 5000})
    assert r.status_code == 400
    assert await ResearchLog.count().where(ResearchLog.project == project) == logged


async def test_a_project_is_filed_decided_per_ern_and_ends(client, demo):
    from core.orgs.tables import Ern
    from plugins.research.tables import ResearchProject, ResearchProjectErn

    await _as(client, demo, "researcher")
    rnd = (await Ern.select(Ern.id).where(Ern.acronym == "ERN RND").first())["id"]
    nmd = (await Ern.select(Ern.id).where(Ern.acronym == "ERN EURO-NMD").first())["id"]
    projects_before = await ResearchProject.count()
    r = await post_form(client, "/research/projects", {"title": "X", "aims": "", "ethics_ref": "E1", "data_wanted": "d", "ends": "2020-01-01"})
    assert r.status_code == 422 and "Required." in r.text and "must be in the future" in r.text
    assert await ResearchProject.count() == projects_before
    ends = (date.today() + timedelta(days=90)).isoformat()
    r = await client.post("/research/projects", data={
        "title": "Onset of SCA2", "aims": "Age at onset", "ethics_ref": "E-42", "data_wanted": "SCA2 patients", "ends": ends,
        "erns": [str(rnd), str(nmd)], "_csrf_token": csrf_of(client)}, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    project = int(r.headers["location"].rsplit("/", 1)[1])
    r = await client.get(f"/research/projects/{project}")
    assert "Waiting for the coordinators" in r.text
    from core.notify.tables import Notification

    told = await Notification.select(Notification.user, Notification.link).where(Notification.kind == "research.project")
    assert {t["user"] for t in told} == {demo.users["coordinator"]} and told[0]["link"] == "/research/review"
    r = await client.get(f"/research/projects/{project}/views")
    assert r.status_code == 403

    await _as(client, demo, "coordinator")  # coordinator of ERN RND only
    page = (await client.get("/research/review")).text
    # Rejecting asks for the reason the route requires, so its button cannot answer 400.
    assert re.search(r'name="decision" value="reject">\s*<label>Reason for rejecting[^<]*<textarea name="reason"[^>]*required', page)
    decisions = {d["ern"]: d["id"] for d in await ResearchProjectErn.select().where(ResearchProjectErn.project == project)}
    r = await post_form(client, f"/research/review/{decisions[nmd]}", {"decision": "approve"})
    assert r.status_code == 404  # not theirs to decide
    r = await post_form(client, f"/research/review/{decisions[rnd]}", {"decision": "reject"})
    assert r.status_code == 400  # a rejection needs a reason
    r = await post_form(client, f"/research/review/{decisions[rnd]}", {"decision": "approve"})
    assert r.status_code == 303
    told = await Notification.select(Notification.user, Notification.title).where(Notification.kind == "research.decision")
    assert [t["user"] for t in told] == [demo.users["researcher"]] and "approved by ERN RND" in told[0]["title"]

    await _as(client, demo, "researcher")
    r = await client.get(f"/research/projects/{project}", params=ATAXIA)
    assert r.status_code == 200 and "consented patients match" in r.text and "Within ERN RND." in r.text
    await ResearchProject.update({ResearchProject.ends: date.today() - timedelta(days=1)}).where(ResearchProject.id == project)
    r = await client.get(f"/research/projects/{project}")
    assert "This project ended" in r.text
    r = await client.get(f"/research/projects/{project}/views", params=ATAXIA)
    assert r.status_code == 403


async def test_every_query_view_and_export_is_logged_and_ids_differ_between_projects(client, demo, settings):
    from plugins.research import projects
    from plugins.research.tables import ResearchLog, ResearchProject

    project = await _project_id()
    await _as(client, demo, "researcher")
    await client.get(f"/research/projects/{project}", params=ATAXIA)
    await client.get(f"/research/projects/{project}/views", params=ATAXIA)
    await _export(client, project, ATAXIA, "rows")
    actions = [r["action"] for r in await ResearchLog.select(ResearchLog.action).where(ResearchLog.project == project)]
    assert {"query", "view", "export"} <= set(actions)
    other = (await ResearchProject.select(ResearchProject.id).where(ResearchProject.id != project).first())["id"]
    first = await projects.id_function(settings, project)
    second = await projects.id_function(settings, other)
    assert first(1) == first(1) and first(1) != second(1) and re.match(r"^R[A-Z2-7]{16}$", first(1))


async def test_saved_cohorts_reopen_and_charts_have_tables(client, demo):
    project = await _project_id()
    await _as(client, demo, "researcher")
    r = await client.post(f"/research/projects/{project}/cohorts", data={**ATAXIA, "name": "SCA2 or FA", "_csrf_token": csrf_of(client)}, follow_redirects=False)
    assert r.status_code == 303
    r = await client.get(r.headers["location"])
    assert 'value="ORPHA:98756"' in r.text and "SCA2 or FA" in r.text
    r = await client.get(f"/research/projects/{project}/views", params=ATAXIA)
    assert r.status_code == 200
    for title in ("Sex", "Age at enrolment (years)", "Country of the enrolling hospital", "Top diagnoses", "Top phenotypes (HPO)", "Genes",
                  "Time from onset to diagnosis (years)"):
        assert f"<th scope=\"col\">{title}</th>" in r.text, title
    assert "HP:0002066 Gait ataxia" in r.text  # codes named by the coding plugin
    r = await client.get(f"/research/projects/{project}", params=ATAXIA, headers={"HX-Request": "true"})
    assert r.text.lstrip().startswith('<div id="cohort-count"')  # the live count is a fragment


async def test_plugins_add_their_research_fields_to_the_row_charts_and_filters(client, demo):
    from core.patients.tables import Patient
    from plugins.research.tables import ResearchSubject

    # The demo's first patient (SCA2, registry consent given) has a three-generation family tree.
    mila = await Patient.select(Patient.id).where(Patient.pseudonym == demo.patients[0]).first()
    row = await ResearchSubject.select(ResearchSubject.data).where(ResearchSubject.patient == mila["id"]).first()
    fields = json.loads(row["data"])["fields"]
    assert fields["pedigree.pattern"] == "vertical" and fields["pedigree.affected_relatives"] == "two or more"
    assert "Abnormality of the nervous system" in fields["coding.hpo_categories"]
    assert isinstance(fields["pathology.slides"], bool) and isinstance(fields["dicom.modalities"], list)
    project = await _project_id()
    await _as(client, demo, "researcher")
    r = await client.get(f"/research/projects/{project}/views", params={"combine": "and"})
    assert "Pattern the family tree shows" in r.text and "Organ systems of the observed phenotypes" in r.text
    r = await client.get(f"/research/projects/{project}", params={"f0": "field", "v0": "pedigree.pattern=vertical"})
    assert r.status_code == 200 and "consented patients match" in r.text
    assert await _true_count(project, {"f0": "field", "v0": "pedigree.pattern=vertical"}) == 1


async def test_the_beacon_over_http_answers_as_the_beacon_v2_schemas_say_and_never_a_small_count(client, demo):
    from plugins.research.tables import ResearchLog, ResearchSubject
    from plugins.research.tests.test_standards import validate

    r = await client.get("/api/beacon/individuals?filters=HP:0002066")
    assert r.status_code in (401, 403) or "/login" in r.headers.get("location", "")  # behind a login
    await _as(client, demo, "researcher")
    for url, schema in (("/api/beacon/info", "responses/beaconInfoResponse.json"),
                        ("/api/beacon/configuration", "responses/beaconConfigurationResponse.json"),
                        ("/api/beacon/map", "responses/beaconMapResponse.json"),
                        ("/api/beacon/entry_types", "responses/beaconEntryTypesResponse.json"),
                        ("/api/beacon/filtering_terms", "responses/beaconFilteringTermsResponse.json")):
        r = await client.get(url)
        assert r.status_code == 200, url
        validate(r.json(), schema)
    terms = {t["id"] for t in (await client.get("/api/beacon/filtering_terms")).json()["response"]["filteringTerms"]}
    assert "HP:0002066" in terms, sorted(terms)[:50]
    from plugins.research import query

    rare = await ResearchSubject.raw(
        f"SELECT t.value AS value FROM research_term t JOIN research_subject s ON s.id = t.subject JOIN patients_patient p ON p.id = s.patient "
        f"WHERE {query.INCLUDED} AND t.kind IN ('diagnosis', 'phenotype') GROUP BY t.value HAVING COUNT(*) = 1", *query.INCLUDED_ARGS)
    assert rare and not terms & {r["value"] for r in rare}  # a code only one patient has is not listed
    r = await client.get("/api/beacon/individuals", params={"filters": "HP:0002066"})
    body = r.json()
    validate(body, "responses/beaconCountResponse.json")
    assert body["responseSummary"]["exists"] is True and body["responseSummary"]["numTotalResults"] >= 5
    csrf = {"x-csrftoken": csrf_of(client)}  # a POST with the session cookie carries the CSRF token, as htmx does
    r = await client.post("/api/beacon/individuals", headers=csrf, json={"meta": {"apiVersion": "v2.0.0"}, "query": {
        "filters": [{"id": "ORPHA:256"}, {"id": "NCIT:C17998"}], "requestedGranularity": "count"}})
    body = r.json()
    assert r.status_code == 200 and body["responseSummary"]["exists"] is False and "numTotalResults" not in body["responseSummary"]
    validate(body, "responses/beaconBooleanResponse.json")
    r = await client.get("/api/beacon/individuals", params={"filters": "XYZ:1"})
    assert r.status_code == 400
    validate(r.json(), "responses/beaconErrorResponse.json")
    r = await client.post("/api/beacon/individuals", content=b"[" * 3000, headers={"content-type": "application/json", **csrf})
    assert r.status_code == 400
    assert await ResearchLog.count().where(ResearchLog.action == "beacon.query") >= 2


async def test_a_coordinator_sets_k_for_their_ern_only_and_it_applies_to_counts_and_exports(client, demo):
    from core.orgs.tables import Ern
    from plugins.research.tables import ResearchSetting

    project = await _project_id()
    rnd = (await Ern.select(Ern.id).where(Ern.acronym == "ERN RND").first())["id"]
    other = (await Ern.select(Ern.id).where(Ern.acronym == "ERN EYE").first())["id"]
    await _as(client, demo, "coordinator")
    r = await post_form(client, "/research/review/k", {"ern": str(other), "k": "7"})
    assert r.status_code == 403 and not await ResearchSetting.exists().where(ResearchSetting.ern == other)
    r = await post_form(client, "/research/review/k", {"ern": str(rnd), "k": "99"})
    assert r.status_code == 400 and not await ResearchSetting.exists()
    r = await post_form(client, "/research/review/k", {"ern": str(rnd), "k": "8"})
    assert r.status_code == 303
    await _as(client, demo, "researcher")
    r = await client.get(f"/research/projects/{project}", params={"combine": "and", "f0": "diagnosis", "v0": "ORPHA:256"})
    assert "under 8 hidden" in r.text
    files = await _export(client, project, {"combine": "and"}, "rows")
    manifest = json.loads(files["manifest.json"])
    assert manifest["k"] == 8
    rows = list(csv.DictReader(io.StringIO(files["rows.csv"].decode())))
    assert anonymity.k_anonymity(pd.DataFrame(rows)[QI_COLUMNS], QI_COLUMNS) >= 8
