"""GDPR right of access: the whole record as JSON, as a FHIR R4 bundle and as a PDF, for the
enrolling hospital only, each export audited."""

import json
from collections import Counter
from datetime import datetime

from core.audit.tables import AuditEntry
from core.patients.gdpr_export import pdf_text, to_pdf
from tests.conftest import csrf_of, login, make_user, post_form
from tests.test_patients import PDF, SECRET_FAMILY, SECRET_NAME, enrol

HP = "hp@example.org"
DIAGNOSIS = {"label": "Spinocerebellar ataxia type 2", "system": "ORPHA", "code": "98756", "status": "confirmed", "onset": "2019"}
PHENOTYPE = {"label": "Gait ataxia", "system": "HPO", "code": "HP:0002066", "observed": "present", "onset": "childhood"}
GENETICS = {"gene": "ATXN2", "variant": "NM_002973.4:c.496C>T", "zygosity": "heterozygous", "classification": "pathogenic"}
MEDICATION = {"name": "Riluzole", "dose": "50 mg twice daily", "started": "2024-05-01", "stopped": ""}
NOTE = "Discussed the walking aid with the family."
DOCUMENT_TITLE = f"Lab report {SECRET_NAME}"


async def _full_record(client) -> str:
    """Enrol through the app and fill every part of the record through its routes."""
    await make_user(HP, name="Dr Keeper")
    await login(client, HP)
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    base = f"/patients/{pseudonym}"
    for kind, form in (("diagnoses", DIAGNOSIS), ("phenotype", PHENOTYPE), ("genetics", GENETICS), ("medications", MEDICATION)):
        r = await post_form(client, f"{base}/record/{kind}", form)
        assert r.status_code == 303, (kind, r.text)
    r = await post_form(client, f"{base}/consents", {"kind": "sharing", "status": "withdrawn", "date": "2026-11-01", "form_version": "ERN-RND v3.1"})
    assert r.status_code == 303
    assert (await post_form(client, f"{base}/notes", {"text": NOTE})).status_code == 303
    r = await client.post(
        f"{base}/documents", data={"kind": "lab_report", "title": DOCUMENT_TITLE, "_csrf_token": csrf_of(client)},
        files={"file": (f"{SECRET_FAMILY}_lab.pdf", PDF, "application/pdf")},
    )
    assert r.status_code == 303
    assert (await post_form(client, f"{base}/gdpr", {"kind": "erasure", "reason": "Asked in clinic on 2026-11-21"})).status_code == 303
    assert (await client.get(base)).status_code == 200
    return pseudonym


async def _export(client, pseudonym: str, fmt: str):
    return await client.get(f"/patients/{pseudonym}/export", params={"format": fmt})


def _shown(text: str, pdf: bytes) -> bool:
    """Whether an uncompressed PDF writes ``text`` (PDF strings escape parentheses and backslashes)."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return escaped.encode("cp1252") in pdf


async def _exports_audited(pseudonym: str) -> list[dict]:
    rows = await AuditEntry.select(AuditEntry.detail).where(
        (AuditEntry.patient_pseudonym == pseudonym) & (AuditEntry.action == "patient.export")
    ).order_by(AuditEntry.seq)
    return [json.loads(r["detail"]) for r in rows]


async def test_json_export_holds_the_whole_record(client):
    from core.identity.tables import User
    from core.patients.tables import Patient

    pseudonym = await _full_record(client)
    r = await _export(client, pseudonym, "json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["content-disposition"] == f'attachment; filename="{pseudonym}-export.json"'
    assert r.headers["cache-control"] == "no-store"
    data = r.json()
    hp = await User.select(User.id).where(User.email == HP).first()
    assert data["format_version"] == "1" and data["generated_by"] == hp["id"]
    assert datetime.fromisoformat(data["generated_at"]).tzinfo is not None
    nickname = (await Patient.select(Patient.nickname).first())["nickname"]
    assert (data["pseudonym"], data["nickname"], data["sex"]) == (pseudonym, nickname, "female")
    assert data["identity"] == {
        "given_name": SECRET_NAME, "family_name": SECRET_FAMILY, "date_of_birth": "2011-04-02", "local_record_number": "MRN-99812",
        "national_id": "BE-11.04.02-123.45", "email": "parent@example.org", "phone": "+32 470 11 22 33", "address": "Rue des Secrets 7, Gent",
    }
    assert data["hospital"] == {"name": "Test Hospital", "city": "Testville", "country": "BE"}
    assert [e["acronym"] for e in data["erns"]] == ["ERN RND"] and data["erns"][0]["enrolled_by"]["name"] == "Dr Keeper"
    # the full, append-only consent history, the newest row of each kind in force
    assert [(c["kind"], c["status"], c["current"]) for c in data["consents"]] == [
        ("care", "given", True), ("sharing", "given", False), ("sharing", "withdrawn", True),
    ]
    assert data["consents"][2]["date"] == "2026-11-01" and data["consents"][2]["recorded_by"]["name"] == "Dr Keeper"
    assert [(d["label"], d["code"], d["status"], d["onset"]) for d in data["diagnoses"]] == [("Spinocerebellar ataxia type 2", "98756", "confirmed", "2019")]
    assert [(p["code"], p["observed"]) for p in data["phenotype"]] == [("HP:0002066", True)]
    assert [(g["gene"], g["variant"], g["zygosity"]) for g in data["genetic_findings"]] == [("ATXN2", GENETICS["variant"], "heterozygous")]
    assert [(m["name"], m["started"], m["stopped"]) for m in data["medications"]] == [("Riluzole", "2024-05-01", None)]
    assert [(n["text"], n["author"]["name"]) for n in data["notes"]] == [(NOTE, "Dr Keeper")]
    # document metadata decrypted; where the file is stored is not the patient's data
    [doc] = data["documents"]
    assert (doc["title"], doc["filename"], doc["size"]) == (DOCUMENT_TITLE, f"{SECRET_FAMILY}_lab.pdf", len(PDF)) and "storage_key" not in doc
    # change history decrypted
    changes = {(c["entity"], c["field"]): c for c in data["change_history"]}
    assert changes[("diagnoses", "label")]["new"] == "Spinocerebellar ataxia type 2" and changes[("genetics", "variant")]["new"] == GENETICS["variant"]
    assert changes[("diagnoses", "label")]["by"]["name"] == "Dr Keeper"
    assert [(g["kind"], g["status"], g["reason"]) for g in data["gdpr_requests"]] == [("erasure", "recorded", "Asked in clinic on 2026-11-21")]
    # who accessed the record, where from
    actions = [a["action"] for a in data["access_audit"]]
    assert actions[0] == "patient.enrol" and {"consent.record", "document.upload", "patient.update", "patient.gdpr_request", "patient.view"} <= set(actions)
    assert all(a["actor"]["name"] == "Dr Keeper" and a["actor_hospital"] == "Test Hospital" and a["address"] == "127.0.0.1" for a in data["access_audit"])
    research = data["plugins"].pop("research")["research"]
    assert research["exports"] == [] and research["included"] is False  # no registry consent recorded
    assert data["plugins"] == {
        "example_plugin": {"example": {"patient": pseudonym, "notes": []}}, "panels": {"panels": []},
        "pedigree": {"pedigree": None, "versions": []},  # no family tree drawn for this patient
        "pathology_viewer": {"slides": []}, "dicom_viewer": {"studies": [], "uploads": []},  # no images
    }


async def test_fhir_export_is_a_valid_r4_bundle(client):
    from fhir.resources.R4B.bundle import Bundle

    pseudonym = await _full_record(client)
    r = await _export(client, pseudonym, "fhir")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    assert r.headers["content-disposition"] == f'attachment; filename="{pseudonym}-export.fhir.json"'
    raw = json.loads(r.content)
    bundle = Bundle.model_validate(raw)
    assert bundle.type == "collection"
    resources = [e.resource for e in bundle.entry]
    assert Counter(res.get_resource_type() for res in resources) == {"Patient": 1, "Condition": 1, "Observation": 2, "MedicationStatement": 1, "Consent": 3}
    by_type = {}
    for entry in raw["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    [patient] = by_type["Patient"]
    assert {"system": "urn:cpms:pseudonym", "value": pseudonym} in patient["identifier"]
    assert "MRN-99812" in [i["value"] for i in patient["identifier"]]
    assert patient["name"][0] == {"use": "official", "family": SECRET_FAMILY, "given": [SECRET_NAME]}
    assert (patient["birthDate"], patient["gender"]) == ("2011-04-02", "female")
    assert {t["value"] for t in patient["telecom"]} == {"parent@example.org", "+32 470 11 22 33"}
    # every resource points at the patient entry of the bundle
    patient_url = next(e["fullUrl"] for e in raw["entry"] if e["resource"]["resourceType"] == "Patient")
    assert all((res.get("subject") or res.get("patient"))["reference"] == patient_url for t, rs in by_type.items() if t != "Patient" for res in rs)
    [condition] = by_type["Condition"]
    assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed" and condition["onsetString"] == "2019"
    assert condition["code"]["coding"][0] == {"system": "http://www.orpha.net", "code": "98756", "display": "Spinocerebellar ataxia type 2"}
    feature = next(o for o in by_type["Observation"] if "valueBoolean" in o)
    assert feature["valueBoolean"] is True and feature["code"]["coding"][0]["system"] == "http://human-phenotype-ontology.org"
    variant = next(o for o in by_type["Observation"] if "component" in o)
    components = {c["code"]["coding"][0]["code"]: c["valueCodeableConcept"] for c in variant["component"]}
    assert components["48018-6"]["text"] == "ATXN2" and components["48004-6"]["coding"][0]["code"] == GENETICS["variant"]
    assert components["53034-5"]["coding"][0]["code"] == "LA6706-1" and components["53037-8"]["coding"][0]["code"] == "LA6668-3"
    [medication] = by_type["MedicationStatement"]
    assert medication["status"] == "active" and medication["effectivePeriod"] == {"start": "2024-05-01"} and medication["dosage"][0]["text"] == MEDICATION["dose"]
    consents = [(c["scope"]["coding"][0]["code"], c["status"], c["provision"]["type"], c["dateTime"]) for c in by_type["Consent"]]
    assert consents == [
        ("treatment", "active", "permit", "2026-10-01"),
        ("patient-privacy", "inactive", "permit", "2026-10-01"),  # superseded by the withdrawal
        ("patient-privacy", "inactive", "deny", "2026-11-01"),
    ]


async def test_pdf_export_is_a_readable_report(client):
    pseudonym = await _full_record(client)
    r = await _export(client, pseudonym, "pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"] == f'attachment; filename="{pseudonym}-export.pdf"'
    assert r.content.startswith(b"%PDF-") and r.content.rstrip().endswith(b"%%EOF")
    data = (await _export(client, pseudonym, "json")).json()
    plain = to_pdf(data, compress=False)
    assert plain.startswith(b"%PDF-") and len(plain) > len(r.content)  # the served one is compressed
    for text in (
        data["nickname"], pseudonym, SECRET_NAME, "Identity", "Consents (full history)", "Diagnoses", "Phenotype features",
        "Genetic findings", "Medications", "Clinical notes", "Documents", "Change history", "Who accessed the record",
        "Spinocerebellar ataxia type 2", "Riluzole", "example_plugin",
    ):
        assert _shown(text, plain), text
    assert b"Some letters could not be shown" not in plain  # nothing needed transliterating
    title = plain.split(b"/Title", 1)[1].split(b"\n", 1)[0]
    assert pseudonym.encode() in title and SECRET_NAME.encode() not in title  # metadata names the pseudonym only


async def test_non_latin_names_export_to_pdf(client):
    await make_user(HP)
    await login(client, HP)
    r = await enrol(client, given_name="Łukasz", family_name="Øyelaran-Đorđević", local_record_number="MRN-1", address="Οδός Ερμού 1, Αθήνα")
    pseudonym = r.headers["location"].rsplit("/", 1)[1]
    assert (await post_form(client, f"/patients/{pseudonym}/notes", {"text": "Семья — 家族 \u0007 ok"})).status_code == 303
    pdf = await _export(client, pseudonym, "pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    data = (await _export(client, pseudonym, "json")).json()
    assert data["identity"]["given_name"] == "Łukasz" and data["identity"]["family_name"] == "Øyelaran-Đorđević"  # exact in JSON
    plain = to_pdf(data, compress=False)
    for text in ("Lukasz", "Øyelaran-Dordevic", "Odos Ermou 1, Athina", "Semya", "Some letters could not be shown"):
        assert _shown(text, plain), text
    fhir = (await _export(client, pseudonym, "fhir")).json()
    [patient] = [e["resource"] for e in fhir["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient["name"][0]["given"] == ["Łukasz"]
    assert Counter(e["resource"]["resourceType"] for e in fhir["entry"]) == {"Patient": 1, "Consent": 2}


def test_pdf_text_transliterates_what_the_core_fonts_lack():
    assert pdf_text("Zébulon Øre Straße") == "Zébulon Øre Straße"  # Windows-1252 letters kept
    assert pdf_text("Łukasz Đorđević Ștefan") == "Lukasz Dordevic Stefan"
    assert pdf_text("Παπαδόπουλος Иванов") == "Papadopoulos Ivanov"
    assert pdf_text("a\u0007b\r\nc 中") == "ab\nc ?"


async def test_only_the_enrolling_hospital_may_export(client, settings):
    from core.app import create_app
    from tests.conftest import app_client

    pseudonym = await _full_record(client)
    await make_user("other@example.org", hcp="Other Hospital")
    await make_user("res@example.org", roles=[("researcher", "ERN RND")], hcp=None, mfa=False)
    await make_user("assistant@example.org", roles=[("assistant", "ERN RND")])
    before = len(await _exports_audited(pseudonym))
    app = create_app(settings)
    for email, status in (("other@example.org", 404), ("res@example.org", 403), ("assistant@example.org", 403)):
        async with app_client(app) as other:
            await login(other, email)
            for fmt in ("json", "fhir", "pdf", "zip"):
                r = await _export(other, pseudonym, fmt)
                assert r.status_code == status, (email, fmt)
                assert "content-disposition" not in r.headers
                assert SECRET_NAME not in r.text and SECRET_FAMILY not in r.text and "MRN-99812" not in r.text
    assert (await _export(client, "PNOSUCHPATIENT", "json")).status_code == 404
    assert len(await _exports_audited(pseudonym)) == before


async def test_unknown_format_is_refused(client):
    pseudonym = await _full_record(client)
    for fmt in ("xml", "PDF", ""):
        r = await _export(client, pseudonym, fmt)
        assert r.status_code == 400, fmt
        assert "json, fhir, pdf" in r.text and SECRET_NAME not in r.text
    assert await _exports_audited(pseudonym) == []


async def test_each_export_is_audited_and_nothing_else_happens(client):
    from core.activity.tables import Activity

    pseudonym = await _full_record(client)
    events = await Activity.count()
    for fmt in ("json", "fhir", "pdf", "json"):
        assert (await _export(client, pseudonym, fmt)).status_code == 200
    assert await _exports_audited(pseudonym) == [{"format": "json"}, {"format": "fhir"}, {"format": "pdf"}, {"format": "json"}]
    assert await Activity.count() == events
    # the second JSON export lists the first exports among the accesses
    data = (await _export(client, pseudonym, "json")).json()
    assert [a["detail"] for a in data["access_audit"] if a["action"] == "patient.export"] == [
        {"format": "json"}, {"format": "fhir"}, {"format": "pdf"}, {"format": "json"},
    ]


async def test_a_restricted_record_can_still_be_exported(client, settings):
    from core.app import create_app
    from core.patients.tables import GdprRequest
    from tests.conftest import app_client

    pseudonym = await _full_record(client)
    await make_user("dpo@example.org", roles=[("dpo", None)])
    assert (await post_form(client, f"/patients/{pseudonym}/gdpr", {"kind": "restriction", "reason": "Letter from the patient"})).status_code == 303
    restriction = await GdprRequest.select().where(GdprRequest.kind == "restriction").first()
    async with app_client(create_app(settings)) as dpo:
        await login(dpo, "dpo@example.org")
        assert (await post_form(dpo, f"/gdpr/{restriction['id']}/carry-out")).status_code == 303
        assert (await _export(dpo, pseudonym, "json")).status_code == 403  # the DPO sees no identity
    assert (await post_form(client, f"/patients/{pseudonym}/summary", {"summary": "changed"})).status_code == 409
    r = await _export(client, pseudonym, "json")
    assert r.status_code == 200 and r.json()["restricted"] is True
    assert [(g["kind"], g["status"]) for g in r.json()["gdpr_requests"]] == [("erasure", "recorded"), ("restriction", "carried_out")]


async def test_zip_export_holds_the_renderings_and_the_files(client):
    import io
    import zipfile

    pseudonym = await _full_record(client)
    r = await _export(client, pseudonym, "zip")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/zip")
    assert f'filename="{pseudonym}-export.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = sorted(zf.namelist())
        assert {"export.json", "export.fhir.json", "export.pdf"} <= set(names)
        docs = [n for n in names if n.startswith("documents/")]
        assert len(docs) == 1 and docs[0].endswith("-lab_report.pdf")
        assert zf.read(docs[0]) == PDF  # the decrypted file itself
        assert SECRET_NAME in zf.read("export.json").decode()
        assert zf.read("export.pdf").startswith(b"%PDF")
        assert all(SECRET_FAMILY not in n for n in names)
    assert [d["format"] for d in await _exports_audited(pseudonym)] == ["zip"]
