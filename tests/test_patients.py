"""Patients: enrolment with consent, encryption at rest, pseudonyms, duplicates, the clinical
record with its history, consent changes, and that no other hospital sees anything."""

import re
import sqlite3
import subprocess

from core import db
from core.patients.tables import ChangeLog, Consent, Diagnosis, GeneticFinding, Patient
from tests.conftest import csrf_of, login, make_user, post_form

SECRET_NAME = "Zebulon"
SECRET_FAMILY = "Quatermain-Oyelaran"


async def _ern(acronym="ERN RND"):
    from core.orgs.tables import Ern

    return (await Ern.select(Ern.id).where(Ern.acronym == acronym).first())["id"]


async def enrol(client, **over):
    data = {
        "given_name": SECRET_NAME, "family_name": SECRET_FAMILY, "date_of_birth": "2011-04-02", "sex": "female",
        "local_record_number": "MRN-99812", "national_id": "BE-11.04.02-123.45", "email": "parent@example.org",
        "phone": "+32 470 11 22 33", "address": "Rue des Secrets 7, Gent", "ern": str(await _ern()),
        "care_status": "given", "care_date": "2026-10-01", "care_form_version": "ERN-RND v3.1", "sharing_status": "given",
    }
    data.update(over)
    await client.get("/patients/new")
    return await post_form(client, "/patients/new", data)


async def _events(action):
    from core.activity.tables import Activity

    return await Activity.select().where(Activity.action == action)


async def test_enrol_with_consent_then_see_the_record(client):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    r = await enrol(client)
    assert r.status_code == 303 or r.status_code == 302, r.text
    pseudonym = r.headers["location"].rsplit("/", 1)[1]
    assert re.fullmatch(r"P[A-HJ-NP-Z2-9]{11}", pseudonym)
    patient = await Patient.select().where(Patient.pseudonym == pseudonym).first()
    assert SECRET_NAME not in patient["identity"] and patient["identity"].startswith("enc1:")
    assert SECRET_NAME not in patient["nickname"]
    page = await client.get(f"/patients/{pseudonym}")
    assert page.status_code == 200
    assert SECRET_NAME in page.text and SECRET_FAMILY.upper() in page.text and patient["nickname"] in page.text
    assert "care: given" in page.text and "sharing: given" in page.text
    consents = await Consent.select().where(Consent.patient == patient["id"])
    assert {(c["kind"], c["status"]) for c in consents} == {("care", "given"), ("sharing", "given")}
    assert len(await _events("patient.enrolled")) == 1
    listing = await client.get("/patients")
    assert patient["nickname"] in listing.text and SECRET_NAME in listing.text


async def test_no_identifying_field_in_clear_text_in_the_database(client, settings):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    r = await enrol(client)
    pseudonym = r.headers["location"].rsplit("/", 1)[1]
    await post_form(client, f"/patients/{pseudonym}/identity", {
        "given_name": SECRET_NAME, "family_name": SECRET_FAMILY + "-Renamed", "date_of_birth": "2011-04-02",
    })
    secrets = (SECRET_NAME, SECRET_FAMILY, "MRN-99812", "BE-11.04.02", "parent@example.org", "Rue des Secrets", "2011-04-02")
    for table in db.all_tables():
        for row in await table.select():
            text = repr(row)
            for s in secrets:
                assert s not in text, (table._meta.tablename, s)
    if not settings.uses_postgres:
        conn = sqlite3.connect(settings.sqlite_path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        # Read by another process: open()+close() of the database file here would drop this
        # process's POSIX locks on it (SQLite's documented pitfall), and the next process to open
        # the database (a CLI test, a live server) would reset the WAL index under our connections.
        raw = subprocess.run(["cat", str(settings.sqlite_path)], capture_output=True, check=True).stdout
        for s in secrets:
            assert s.encode() not in raw


async def test_enrolment_needs_consent_for_care_and_valid_input(client):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    cases = [
        ({"care_status": ""}, "Consent for Care"),
        ({"date_of_birth": "2011-13-45"}, "YYYY-MM-DD"),
        ({"date_of_birth": "2099-01-01"}, "in the past"),
        ({"care_date": "yesterday"}, "YYYY-MM-DD"),
        ({"care_form_version": ""}, "version"),
        ({"given_name": ""}, "Required"),
        ({"ern": str(await _ern("ERN EYE"))}, "one of your networks"),
        ({"ern": "not-a-number"}, "one of your networks"),
        ({"email": "not an email"}, "valid e-mail"),
        ({"sex": "robot"}, "Choose one"),
        ({"research_status": "maybe"}, "not asked"),
    ]
    for over, message in cases:
        r = await enrol(client, **over)
        assert r.status_code == 422 and message in r.text, over
    assert await Patient.count() == 0 and await Consent.count() == 0


async def test_duplicates_are_flagged_before_a_second_record(client):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    await enrol(client)
    same_record = await enrol(client, given_name="Other", family_name="Person", date_of_birth="1990-01-01")
    assert same_record.status_code == 409 and "same local record number" in same_record.text
    same_person = await enrol(client, local_record_number="", given_name="zébulon", family_name=SECRET_FAMILY.lower())
    assert same_person.status_code == 409 and "same name and date of birth" in same_person.text
    assert await Patient.count() == 1
    forced = await enrol(client, local_record_number="", given_name="zébulon", family_name=SECRET_FAMILY.lower(), confirm_duplicate="yes")
    assert forced.status_code in (302, 303)
    assert await Patient.count() == 2


async def test_other_hospitals_and_other_roles_never_see_the_patient(client, settings):
    from core.app import create_app
    from tests.conftest import app_client

    await make_user("hp@example.org")
    await make_user("other@example.org", hcp="Other Hospital")
    await make_user("res@example.org", roles=[("researcher", "ERN RND")], hcp=None, mfa=False)
    await make_user("dpo@example.org", roles=[("dpo", None)])
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    app = create_app(settings)
    for email, listing_status in (("other@example.org", 200), ("res@example.org", 403), ("dpo@example.org", 403)):
        async with app_client(app) as other:
            await login(other, email)
            for path in (f"/patients/{pseudonym}", f"/patients/{pseudonym}/history"):
                r = await other.get(path)
                assert r.status_code in (403, 404), (email, path)
                assert SECRET_NAME not in r.text and SECRET_FAMILY not in r.text
            r = await other.get("/patients?q=zeb")
            assert r.status_code == listing_status
            assert SECRET_NAME not in r.text and pseudonym not in r.text
            r = await post_form(other, f"/patients/{pseudonym}/summary", {"summary": "overwritten"})
            assert r.status_code in (403, 404)
    assert (await Patient.select(Patient.summary).first())["summary"] == ""


async def test_clinical_record_changes_keep_history(client):
    await make_user("hp@example.org", name="Dr Keeper")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    base = f"/patients/{pseudonym}/record"
    r = await post_form(client, f"{base}/diagnoses", {"label": "Spinocerebellar ataxia type 2", "system": "ORPHA", "code": "98756", "status": "suspected", "onset": "2019"})
    assert r.status_code == 303
    [dx] = await Diagnosis.select()
    r = await post_form(client, f"{base}/diagnoses/{dx['id']}", {"label": "Spinocerebellar ataxia type 2", "system": "ORPHA", "code": "98756", "status": "confirmed", "onset": "2019"})
    assert r.status_code == 303
    assert (await Diagnosis.select(Diagnosis.status).first())["status"] == "confirmed"
    bad = await post_form(client, f"{base}/genetics", {"gene": "ATXN2", "variant": "not hgvs", "zygosity": "heterozygous", "classification": "pathogenic"})
    assert bad.status_code == 422 and "HGVS" in bad.text
    assert await GeneticFinding.count() == 0
    ok = await post_form(client, f"{base}/genetics", {"gene": "ATXN2", "variant": "NM_002973.4:c.496C>T", "zygosity": "heterozygous", "classification": "pathogenic"})
    assert ok.status_code == 303
    bad_dates = await post_form(client, f"{base}/medications", {"name": "Riluzole", "dose": "50 mg", "started": "2024-05-01", "stopped": "2023-01-01"})
    assert bad_dates.status_code == 422
    assert (await client.get(f"{base}/nonsense", follow_redirects=False)).status_code in (404, 405)
    r = await post_form(client, f"{base}/diagnoses/{dx['id']}/delete")
    assert r.status_code == 303 and await Diagnosis.count() == 0
    history = await client.get(f"/patients/{pseudonym}/history")
    assert "suspected" in history.text and "confirmed" in history.text and "Dr Keeper" in history.text
    changes = await ChangeLog.select()
    assert all("suspected" not in c["old_value"] + c["new_value"] for c in changes)  # encrypted
    assert {c["entity"] for c in changes} >= {"diagnoses", "genetics"}


async def test_consent_withdrawal_is_appended_and_announced(client):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    r = await post_form(client, f"/patients/{pseudonym}/consents", {"kind": "sharing", "status": "withdrawn", "date": "2026-11-01", "form_version": "ERN-RND v3.1"})
    assert r.status_code == 303
    rows = await Consent.select().where(Consent.kind == "sharing").order_by(Consent.id)
    assert [c["status"] for c in rows] == ["given", "withdrawn"]
    page = await client.get(f"/patients/{pseudonym}")
    assert "sharing: withdrawn" in page.text
    events = await _events("consent.changed")
    assert len(events) == 1 and pseudonym == events[0]["subject_id"]
    bad = await post_form(client, f"/patients/{pseudonym}/consents", {"kind": "sharing", "status": "perhaps", "date": "2026-11-01", "form_version": "v"})
    assert bad.status_code == 422
    assert await Consent.count().where(Consent.kind == "sharing") == 2


async def test_views_and_changes_are_audited(client):
    from core.audit.tables import AuditEntry

    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    await client.get(f"/patients/{pseudonym}")
    await client.get("/patients?q=zeb")
    await post_form(client, f"/patients/{pseudonym}/summary", {"summary": "Progressive gait ataxia since 2019."})
    actions = [r["action"] for r in await AuditEntry.select(AuditEntry.action).where(AuditEntry.patient_pseudonym == pseudonym).order_by(AuditEntry.seq)]
    assert actions == ["patient.enrol", "patient.view", "patient.search_hit", "patient.update"]
    for row in await AuditEntry.select():
        assert SECRET_NAME not in repr(row)


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


async def test_document_upload_and_download(client, settings):
    from core.patients.tables import Document

    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    from tests.conftest import csrf_of

    url = f"/patients/{pseudonym}/documents"
    files = {"file": (f"{SECRET_FAMILY}_lab.pdf", PDF, "application/pdf")}
    r = await client.post(url, data={"kind": "lab_report", "title": f"Lab report {SECRET_NAME}", "_csrf_token": csrf_of(client)}, files=files)
    assert r.status_code == 303, r.text
    [doc] = await Document.select()
    assert doc["content_type"] == "application/pdf" and doc["size"] == len(PDF)
    assert SECRET_NAME not in doc["title"] and SECRET_FAMILY not in doc["filename"]  # encrypted
    page = await client.get(f"/patients/{pseudonym}")
    assert f"Lab report {SECRET_NAME}" in page.text
    dl = await client.get(f"{url}/{doc['id']}")
    assert dl.status_code == 200 and dl.content == PDF
    assert SECRET_FAMILY not in dl.headers["content-disposition"] and pseudonym in dl.headers["content-disposition"]
    # wrong type (an executable renamed .pdf) and empty files are refused; nothing is stored
    before = sorted(p for p in (settings.data_dir / "files").rglob("*") if p.is_file())
    for name, content, status in (("x.pdf", b"MZ\x90\x00 not a pdf", 415), ("empty.pdf", b"", 400)):
        r = await client.post(url, data={"kind": "lab_report", "title": "bad", "_csrf_token": csrf_of(client)}, files={"file": (name, content, "application/pdf")})
        assert r.status_code == status, (name, r.status_code)
    assert await Document.count() == 1
    assert sorted(p for p in (settings.data_dir / "files").rglob("*") if p.is_file()) == before
    assert (await client.get(f"{url}/999999")).status_code == 404


async def test_restriction_and_erasure_carried_out_by_the_dpo(client, settings):
    from core.app import create_app
    from core.audit.tables import AuditEntry
    from core.patients.tables import GdprRequest
    from tests.conftest import app_client

    await make_user("hp@example.org")
    await make_user("dpo@example.org", roles=[("dpo", None)])
    await make_user("otherdpo@example.org", roles=[("dpo", None)], hcp="Other Hospital")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    bad = await post_form(client, f"/patients/{pseudonym}/gdpr", {"kind": "deletion-please", "reason": "x"})
    assert bad.status_code == 422 and await GdprRequest.count() == 0
    await post_form(client, f"/patients/{pseudonym}/gdpr", {"kind": "restriction", "reason": "Letter from the patient, 2026-11-20"})
    await post_form(client, f"/patients/{pseudonym}/gdpr", {"kind": "erasure", "reason": "Asked in clinic on 2026-11-21"})
    restriction, erasure = await GdprRequest.select().order_by(GdprRequest.id)
    app = create_app(settings)
    async with app_client(app) as other:
        await login(other, "otherdpo@example.org")
        assert pseudonym not in (await other.get("/gdpr")).text
        assert (await post_form(other, f"/gdpr/{restriction['id']}/carry-out")).status_code == 404
    async with app_client(app) as dpo:
        await login(dpo, "dpo@example.org")
        queue = await dpo.get("/gdpr")
        assert pseudonym in queue.text and SECRET_NAME not in queue.text  # the DPO sees no identity
        assert (await post_form(dpo, f"/gdpr/{restriction['id']}/carry-out")).status_code == 303
        # restricted: readable, but no change is accepted
        assert (await client.get(f"/patients/{pseudonym}")).status_code == 200
        r = await post_form(client, f"/patients/{pseudonym}/summary", {"summary": "changed"})
        assert r.status_code == 409
        assert (await post_form(dpo, f"/gdpr/{erasure['id']}/refuse", {"note": ""})).status_code == 422
        assert (await post_form(dpo, f"/gdpr/{erasure['id']}/carry-out")).status_code == 303
        assert (await post_form(dpo, f"/gdpr/{erasure['id']}/carry-out")).status_code == 409
    assert (await client.get(f"/patients/{pseudonym}")).status_code == 404
    row = await Patient.select().where(Patient.pseudonym == pseudonym).first()
    assert row["identity"] == "" and row["erased_at"] is not None
    assert await Consent.count() == 0
    actions = [a["action"] for a in await AuditEntry.select(AuditEntry.action).where(AuditEntry.patient_pseudonym == pseudonym)]
    assert "patient.enrol" in actions and "patient.gdpr_carried_out" in actions  # the audit survives erasure
    assert len(await _events("patient.erased")) == 1


async def test_rectification_is_recorded_corrected_and_told_to_the_panel(client, settings):
    """GDPR Art. 16: the HP records what the patient holds inaccurate; the DPO records what was
    corrected (a note is required); panel members the data was disclosed to are told (Art. 19)."""
    from core.app import create_app
    from core.audit.tables import AuditEntry
    from core.notify.tables import Notification
    from core.patients.tables import GdprRequest
    from tests.conftest import app_client
    from tests.panels_support import make_panel

    hp = await make_user("hp@example.org")
    await make_user("dpo@example.org", roles=[("dpo", None)])
    expert = await make_user("expert@example.org", hcp="Far Hospital")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    patient = await Patient.select().where(Patient.pseudonym == pseudonym).first()
    await make_panel({"id": patient["id"]}, hp, members=[expert])
    short = await post_form(client, f"/patients/{pseudonym}/gdpr", {"kind": "rectify", "reason": "x"})
    assert short.status_code == 422 and "what the patient holds to be inaccurate" in short.text
    r = await post_form(client, f"/patients/{pseudonym}/gdpr", {"kind": "rectify", "reason": "Date of birth is 2001-03-04, not 2001-04-03"})
    assert r.status_code == 303
    [req] = await GdprRequest.select()
    assert req["kind"] == "rectify" and req["status"] == "recorded"
    async with app_client(create_app(settings)) as dpo:
        await login(dpo, "dpo@example.org")
        queue = await dpo.get("/gdpr")
        assert "Rectification of inaccurate data" in queue.text and "Record as rectified" in queue.text
        assert (await post_form(dpo, f"/gdpr/{req['id']}/carry-out", {"note": ""})).status_code == 422
        assert (await GdprRequest.select().first())["status"] == "recorded"
        assert (await post_form(dpo, f"/gdpr/{req['id']}/carry-out", {"note": "Date of birth corrected"})).status_code == 303
    done = await GdprRequest.select().first()
    assert done["status"] == "carried_out" and done["note"] == "Date of birth corrected"
    assert (await Patient.select().where(Patient.id == patient["id"]).first())["restricted"] is False
    actions = [a["action"] for a in await AuditEntry.select(AuditEntry.action).where(AuditEntry.patient_pseudonym == pseudonym)]
    assert "patient.gdpr_request" in actions and "patient.gdpr_carried_out" in actions
    assert len(await _events("patient.rectified")) == 1
    told = await Notification.select().where(Notification.user == expert)
    assert len(told) == 1 and "rectified" in told[0]["title"] and "Zebulon" not in told[0]["title"] + told[0]["body"]
    assert "Ataxia" not in told[0]["title"] + told[0]["body"]  # nor the panel's clinical title


async def test_consent_with_its_signed_form(client):
    from core.patients.tables import Document
    from tests.conftest import csrf_of

    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    url = f"/patients/{pseudonym}/consents"
    data = {"kind": "research", "status": "given", "date": "2026-11-02", "form_version": "ERN-RND research v1", "_csrf_token": csrf_of(client)}
    bad = await client.post(url, data=data, files={"form_file": ("form.pdf", b"GIF89a not a form", "application/pdf")})
    assert bad.status_code == 415
    assert await Consent.count().where(Consent.kind == "research") == 0
    r = await client.post(url, data=data, files={"form_file": ("signed.pdf", PDF, "application/pdf")})
    assert r.status_code == 303
    [consent] = await Consent.select().where(Consent.kind == "research")
    [doc] = await Document.select().where(Document.kind == "consent_form")
    assert consent["document"] == doc["id"]
    page = await client.get(f"/patients/{pseudonym}")
    assert f"/patients/{pseudonym}/documents/{doc['id']}" in page.text


async def test_plugin_sections_appear_on_the_patient_page(client, settings):
    from core.app import create_app
    from tests.conftest import app_client

    await make_user("hp@example.org")
    await make_user("other@example.org", hcp="Other Hospital")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    page = await client.get(f"/patients/{pseudonym}")
    assert f'hx-get="/example/patients/{pseudonym}"' in page.text
    section = await client.get(f"/example/patients/{pseudonym}", headers={"HX-Request": "true"})
    assert section.status_code == 200 and "Example plugin data for" in section.text
    async with app_client(create_app(settings)) as other:
        await login(other, "other@example.org")
        assert (await other.get(f"/example/patients/{pseudonym}")).status_code == 404


async def test_coded_entries_through_a_code_search_plugin(clean_db):
    """The simple hook (code_search_url: a datalist of suggestions), as when no plugin offers a
    code picker: the coding plugin, which does, is disabled here."""
    from core.app import create_app
    from tests.conftest import app_client, make_settings

    async with app_client(create_app(make_settings(disabled_plugins=("coding",)))) as client:
        await _coded_entries_through_a_code_search_plugin(client)
    rows = await Diagnosis.select(Diagnosis.label, Diagnosis.system, Diagnosis.code).order_by(Diagnosis.id)
    assert rows == [
        {"label": "Spinocerebellar ataxia type 2", "system": "ORPHA", "code": "98756"},
        {"label": "Unexplained ataxia", "system": "", "code": ""},
    ]


async def _coded_entries_through_a_code_search_plugin(client):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    page = await client.get(f"/patients/{pseudonym}")
    assert 'hx-get="/example/codes"' in page.text and 'list="diagnoses-codes"' in page.text
    assert 'list="phenotype-codes"' not in page.text  # the example offers diagnoses only
    suggestions = await client.get("/example/codes?label=ataxia type", headers={"HX-Request": "true"})
    assert '<option value="ORPHA:98756 Spinocerebellar ataxia type 2">' in suggestions.text
    r = await post_form(client, f"/patients/{pseudonym}/record/diagnoses", {"label": "ORPHA:98756 Spinocerebellar ataxia type 2", "system": "", "code": "", "status": "suspected"})
    assert r.status_code == 303
    free = await post_form(client, f"/patients/{pseudonym}/record/diagnoses", {"label": "Unexplained ataxia", "system": "", "code": "", "status": "suspected"})
    assert free.status_code == 303


async def test_printable_consent_form_per_ern(client):
    """A blank PDF per ERN naming the network and every consent kind with its effect, linked
    from the enrolment form and the patient's consent section; 404 for an unknown network."""
    from core.orgs.tables import Ern
    from core.patients.access import CONSENT_KINDS
    from core.patients.consent_form import version_for

    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    rnd = await Ern.select().where(Ern.acronym == "ERN RND").first()
    new = await client.get("/patients/new")
    assert f'href="/patients/consent-form/{rnd["id"]}"' in new.text
    r = await client.get(f"/patients/consent-form/{rnd['id']}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == 'attachment; filename="consent-form-ERN-RND.pdf"'
    assert r.content.startswith(b"%PDF-")
    text = _pdf_text(r.content)
    assert rnd["name"] in text and version_for("ERN RND") in text
    for label in CONSENT_KINDS.values():
        assert label in text, label
    assert "withdrawal takes effect at once" in text and "I do not agree" in text
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    page = await client.get(f"/patients/{pseudonym}")
    assert f'href="/patients/consent-form/{rnd["id"]}"' in page.text
    assert (await client.get("/patients/consent-form/999999")).status_code == 404
    client.cookies.clear()
    assert (await client.get(f"/patients/consent-form/{rnd['id']}", follow_redirects=False)).status_code in (302, 303, 401)


def _pdf_text(data: bytes) -> str:
    """The text of a PDF made by fpdf2 (its content streams are zlib-compressed), joined."""
    import re
    import zlib

    out = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            raw = zlib.decompress(stream)
        except zlib.error:
            raw = stream
        out.extend(t.decode("latin-1") for t in re.findall(rb"\((.*?)(?<!\\)\)\s*Tj", raw))
    return re.sub(r"\s+", " ", " ".join(out)).replace("\\(", "(").replace("\\)", ")")


async def _snapshot_of_patient_data() -> dict:
    from core.patients.tables import ClinicalNote, Document, GdprRequest

    return {
        "patients": [(p["pseudonym"], p["summary"]) for p in await Patient.select(Patient.pseudonym, Patient.summary)],
        "changes": await ChangeLog.count(), "consents": await Consent.count(), "diagnoses": await Diagnosis.count(),
        "notes": await ClinicalNote.count(), "documents": await Document.count(), "gdpr": await GdprRequest.count(),
    }


async def test_no_change_of_patient_data_commits_without_its_audit_entry(client, monkeypatch):
    """Each kind of write with the audit trail failing (as a crash between the two would): nothing of
    the write stays. The enrolment, the summary, a coded entry, a note, a consent, a document, a
    GDPR request."""
    from tests.support.failing import break_audit_trail

    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    base = f"/patients/{pseudonym}"
    writes = [
        ("/patients/new", None),
        (f"{base}/summary", {"summary": "Changed while the audit trail is down"}),
        (f"{base}/record/diagnoses", {"label": "Friedreich ataxia", "system": "ORPHA", "code": "95", "status": "confirmed"}),
        (f"{base}/notes", {"text": "A note"}),
        (f"{base}/consents", {"kind": "research", "status": "given", "date": "2026-11-02", "form_version": "v1"}),
        (f"{base}/gdpr", {"kind": "restriction", "reason": "Letter from the patient"}),
    ]
    before = await _snapshot_of_patient_data()
    break_audit_trail(monkeypatch)
    for url, data in writes:
        r = await (enrol(client, local_record_number="MRN-OTHER", given_name="Other") if data is None else post_form(client, url, data))
        assert r.status_code >= 500, (url, r.status_code)
        assert await _snapshot_of_patient_data() == before, url
    r = await client.post(f"{base}/documents", data={"kind": "lab_report", "title": "t", "_csrf_token": csrf_of(client)},
                          files={"file": ("r.pdf", PDF, "application/pdf")})
    assert r.status_code >= 500 and await _snapshot_of_patient_data() == before
    monkeypatch.undo()
    r = await post_form(client, f"{base}/summary", {"summary": "Changed with the trail up"})
    assert r.status_code == 303 and (await _snapshot_of_patient_data())["changes"] == before["changes"] + 1
