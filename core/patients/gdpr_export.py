"""GDPR right of access (Art. 15, portability Art. 20): everything held about one patient.

One collection step (``collect``) gathers the record, decrypted, into plain JSON-ready data;
three renderings are built from it: the JSON itself, an HL7 FHIR R4 ``Bundle`` (validated by
the ``fhir.resources`` models) and a PDF report for people (fpdf2).

fhir.resources 8.x ships R5 as its default package, R4B and STU3, but no plain R4 package; R4B
is used: it leaves Patient, Condition, Observation, MedicationStatement and Consent as in R4.

The PDF uses the PDF core fonts (fpdf2 ships no Unicode font and none can be assumed on the
server), which cover Windows-1252 only: other letters are transliterated (``pdf_text``), and
the report says so. The JSON and FHIR exports always hold the exact spelling.
"""

from __future__ import annotations

import json
import logging
import unicodedata
import uuid
from datetime import date, datetime, timezone
from typing import Annotated, Any

from anyio import to_thread
from litestar import Request, Response, get
from litestar.response import Stream
from litestar.exceptions import HTTPException
from litestar.params import FromPath, QueryParameter

from core.crypto import keyring
from core.openapi import operation, problems
from core.events import await_me_maybe
from core.patients import identity as ident
from core.patients.access import CONSENT_KINDS, PatientRef, load_patient

log = logging.getLogger("cpms.patients.export")
FORMAT_VERSION = "1"
#: format -> (media type, file name extension)
FORMATS = {
    "json": ("application/json", "json"),
    "fhir": ("application/fhir+json", "fhir.json"),
    "pdf": ("application/pdf", "pdf"),
    # Everything at once: the three renderings and the documents' files themselves.
    "zip": ("application/zip", "zip"),
}
PERMISSION = "patients.export"


# --- collecting ---------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Dates and datetimes as ISO strings, recursively; everything else unchanged."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


#: Columns that hold a user id; the export shows who that was, not only a number.
_USER_COLUMNS = ("created_by", "enrolled_by", "recorded_by", "updated_by", "uploaded_by", "author", "actor", "requested_by", "decided_by")


async def _rows(pid: int) -> dict[str, list[dict]]:
    from core.patients.tables import (
        ChangeLog, ClinicalNote, Consent, Diagnosis, Document, GdprRequest, GeneticFinding, Medication, PatientErn, Phenotype,
    )

    rows = {}
    for key, table in (
        ("consents", Consent), ("diagnoses", Diagnosis), ("phenotype", Phenotype), ("genetic_findings", GeneticFinding),
        ("medications", Medication), ("notes", ClinicalNote), ("documents", Document), ("change_history", ChangeLog),
        ("gdpr_requests", GdprRequest),
    ):
        rows[key] = await table.select().where(table.patient == pid).order_by(table.id)
    rows["erns"] = await PatientErn.select(
        PatientErn.ern.acronym.as_alias("acronym"), PatientErn.ern.name.as_alias("name"), PatientErn.enrolled_at, PatientErn.enrolled_by,
    ).where(PatientErn.patient == pid).order_by(PatientErn.id)
    return rows


async def _user_names(ids: set[int]) -> dict[int, str]:
    from core.identity.tables import User

    if not ids:
        return {}
    return {u["id"]: u["name"] for u in await User.select(User.id, User.name).where(User.id.is_in(sorted(ids)))}


async def _hospitals(ids: set[int]) -> dict[int, dict]:
    from core.orgs.tables import Hcp

    if not ids:
        return {}
    return {h["id"]: h for h in await Hcp.select(Hcp.id, Hcp.name, Hcp.city, Hcp.country).where(Hcp.id.is_in(sorted(ids)))}


def _coded(row: dict) -> dict:
    """Additional codes as a list, not the JSON text they are stored as."""
    from core.patients.coded import load

    return {**row, "codings": load(row.get("codings"))}


def _people(row: dict, names: dict[int, str]) -> dict:
    """The row without its patient key, each user id column as ``{"id", "name"}``."""
    out = {k: v for k, v in row.items() if k != "patient"}
    for column in _USER_COLUMNS:
        if column in out:
            uid = out[column]
            out[column] = None if uid is None else {"id": uid, "name": names.get(uid, "(account removed)")}
    return out


def _consents(rows: list[dict], names: dict[int, str]) -> list[dict]:
    newest = {r["kind"]: r["id"] for r in rows}  # rows are in id order: the last one per kind wins
    return [
        {**_people(r, names), "kind_label": CONSENT_KINDS.get(r["kind"], r["kind"]), "current": newest[r["kind"]] == r["id"]}
        for r in rows
    ]


def _documents(settings, pseudonym: str, rows: list[dict], names: dict[int, str]) -> list[dict]:
    from core.patients.documents import KINDS

    ring, context = keyring(settings), f"patient:{pseudonym}:document"
    out = []
    for r in rows:
        item = {k: v for k, v in _people(r, names).items() if k != "storage_key"}  # where the file lies is ours, not data about them
        item.update(title=ring.decrypt(r["title"], context), filename=ring.decrypt(r["filename"], context), kind_label=KINDS.get(r["kind"], r["kind"]))
        out.append(item)
    return out


def _history(settings, pseudonym: str, rows: list[dict], names: dict[int, str]) -> list[dict]:
    ring, context = keyring(settings), f"patient:{pseudonym}:history"
    return [
        {"at": r["at"], "entity": r["entity"], "entity_id": r["entity_id"], "field": r["field"],
         "old": ring.decrypt(r["old_value"], context), "new": ring.decrypt(r["new_value"], context),
         "by": _people({"actor": r["actor"]}, names)["actor"]}
        for r in rows
    ]


async def _access_audit(pseudonym: str) -> list[dict]:
    from core.audit.tables import AuditEntry

    return await AuditEntry.select(
        AuditEntry.seq, AuditEntry.at, AuditEntry.action, AuditEntry.actor_id, AuditEntry.actor_hcp, AuditEntry.address, AuditEntry.detail,
    ).where(AuditEntry.patient_pseudonym == pseudonym).order_by(AuditEntry.seq)


def _audit_items(rows: list[dict], names: dict[int, str], hospitals: dict[int, dict]) -> list[dict]:
    return [
        {"seq": r["seq"], "at": r["at"], "action": r["action"], "actor": _people({"actor": r["actor_id"]}, names)["actor"],
         "actor_hospital": hospitals[r["actor_hcp"]]["name"] if r["actor_hcp"] in hospitals else None,
         "address": r["address"], "detail": json.loads(r["detail"] or "{}")}
        for r in rows
    ]


async def _plugin_contributions(host, patient_row: dict) -> dict[str, Any]:
    ref = PatientRef(patient_row["id"], patient_row["pseudonym"], patient_row["nickname"], patient_row["hcp"])
    # A failing plugin must not look like "no data": its entry says plainly that it is missing.
    out = {}
    for name, result in host.results_by_plugin("gdpr_export", patient=ref):
        try:
            out[name] = jsonable(await await_me_maybe(result))
        except Exception:
            # The export still answers, and says plainly which part is missing.
            log.exception("plugin %s failed its GDPR export", name)
            out[name] = {"error": "This plugin could not export its data; the helpdesk was told."}
    return out


async def collect(settings, host, patient_row: dict, generated_by: int | None = None) -> dict:
    """Everything CPMS and its plugins hold about one patient, decrypted, JSON-ready."""
    pseudonym = patient_row["pseudonym"]
    rows = await _rows(patient_row["id"])
    audit_rows = await _access_audit(pseudonym)
    user_ids = {r[c] for group in rows.values() for r in group for c in _USER_COLUMNS if r.get(c) is not None}
    user_ids |= {r["actor_id"] for r in audit_rows if r["actor_id"] is not None}
    user_ids |= {patient_row["created_by"]} - {None}
    names = await _user_names(user_ids)
    hospitals = await _hospitals({patient_row["hcp"]} | {r["actor_hcp"] for r in audit_rows if r["actor_hcp"] is not None})
    hospital = hospitals.get(patient_row["hcp"], {})
    data = {
        "format_version": FORMAT_VERSION,
        "generated_at": datetime.now(timezone.utc),
        "generated_by": generated_by,
        "pseudonym": pseudonym,
        "nickname": patient_row["nickname"],
        "identity": ident.decrypt_identity(settings, pseudonym, patient_row["identity"]),
        "sex": patient_row["sex"],
        "summary": patient_row["summary"],
        "enrolled_at": patient_row["created_at"],
        "enrolled_by": _people({"created_by": patient_row["created_by"]}, names)["created_by"],
        "restricted": bool(patient_row["restricted"]),
        "hospital": {k: hospital.get(k) for k in ("name", "city", "country")},
        "erns": [_people(r, names) for r in rows["erns"]],
        "consents": _consents(rows["consents"], names),
        "diagnoses": [_coded(_people(r, names)) for r in rows["diagnoses"]],
        "phenotype": [_coded(_people(r, names)) for r in rows["phenotype"]],
        "genetic_findings": [_people(r, names) for r in rows["genetic_findings"]],
        "medications": [_people(r, names) for r in rows["medications"]],
        "notes": [_people(r, names) for r in rows["notes"]],
        "documents": _documents(settings, pseudonym, rows["documents"], names),
        "change_history": _history(settings, pseudonym, rows["change_history"], names),
        "gdpr_requests": [_people(r, names) for r in rows["gdpr_requests"]],
        "access_audit": _audit_items(audit_rows, names, hospitals),
        "plugins": await _plugin_contributions(host, patient_row),
    }
    return jsonable(data)


# --- FHIR R4 (R4B models) ---------------------------------------------------------------------

PSEUDONYM_SYSTEM = "urn:cpms:pseudonym"
LOINC = "http://loinc.org"
#: Coding systems as the record names them -> their canonical FHIR URIs.
CODE_SYSTEMS = {
    "ORPHA": "http://www.orpha.net", "ORPHANET": "http://www.orpha.net",
    "OMIM": "https://omim.org",
    "HPO": "http://human-phenotype-ontology.org", "HP": "http://human-phenotype-ontology.org",
    "ICD-10": "http://hl7.org/fhir/sid/icd-10", "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "ICD-10-CM": "http://hl7.org/fhir/sid/icd-10-cm", "LOINC": "http://loinc.org", "MEDDRA": "https://www.meddra.org",
    "ICD-11": "http://id.who.int/icd/release/11/mms", "ICD11": "http://id.who.int/icd/release/11/mms",
    "SNOMED": "http://snomed.info/sct", "SNOMED CT": "http://snomed.info/sct", "SNOMEDCT": "http://snomed.info/sct",
    "MONDO": "http://purl.obolibrary.org/obo/mondo.owl",
}
#: LOINC answers (list LL381-5) for allelic state; the other states are given as text only.
ZYGOSITY_ANSWERS = {"heterozygous": "LA6706-1", "homozygous": "LA6705-3", "hemizygous": "LA6707-9"}
#: LOINC answers (list LL4034-6) for clinical significance.
CLASSIFICATION_ANSWERS = {
    "pathogenic": "LA6668-3", "likely pathogenic": "LA26332-9", "uncertain significance": "LA26333-7",
    "likely benign": "LA26334-5", "benign": "LA6675-8",
}
CONSENT_STATUS = {"given": "active", "refused": "rejected", "withdrawn": "inactive"}
CONSENT_SCOPE = {"care": "treatment", "sharing": "patient-privacy", "registry": "patient-privacy", "research": "research"}


def _uuid(pseudonym: str, kind: str, key: Any) -> str:
    # Stable ids: exporting the same record twice yields the same resource ids.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:cpms:{pseudonym}:{kind}:{key}"))


def _system_uri(system: str) -> str:
    name = (system or "").strip()
    if name.upper() in CODE_SYSTEMS:
        return CODE_SYSTEMS[name.upper()]
    slug = "".join(c if c.isalnum() or c in "-." else "-" for c in name.lower())
    return f"urn:cpms:code-system:{slug}"


def _concept(label: str, system: str = "", code: str = "", codings: list[dict] | None = None) -> dict:
    """A CodeableConcept: the main code (picked by the user) and any equivalents kept with it."""
    concept: dict[str, Any] = {"text": label}
    out = []
    if code:
        coding = {"code": code, "display": label}
        if system:
            coding["system"] = _system_uri(system)
        out.append(coding)
    for extra in codings or []:
        coding = {"system": _system_uri(extra["system"]), "code": extra["code"]}
        if extra.get("display"):
            coding["display"] = extra["display"]
        out.append(coding)
    if out:
        concept["coding"] = out
    return concept


def _loinc(code: str, display: str) -> dict:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def _date_or_none(value: str | None) -> str | None:
    try:
        return date.fromisoformat(value or "").isoformat()
    except ValueError:
        return None


def _fhir_patient(data: dict, pid: str) -> dict:
    who = data["identity"]
    identifiers = [{"system": PSEUDONYM_SYSTEM, "value": data["pseudonym"]}]
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    hospital = data["hospital"].get("name") or "enrolling hospital"
    if who.get("local_record_number"):
        identifiers.append({"type": {"coding": [{"system": v2, "code": "MR"}], "text": f"Medical record number at {hospital}"},
                            "system": "urn:cpms:local-record-number", "value": who["local_record_number"], "assigner": {"display": hospital}})
    if who.get("national_id"):
        identifiers.append({"type": {"coding": [{"system": v2, "code": "NI"}], "text": "National identifier"},
                            "system": "urn:cpms:national-id", "value": who["national_id"]})
    resource: dict[str, Any] = {
        "id": pid, "identifier": identifiers,
        "name": [{"use": "anonymous", "text": data["nickname"]}],
        "gender": data["sex"] if data["sex"] in ("female", "male", "other", "unknown") else "unknown",
    }
    if who.get("family_name") or who.get("given_name"):
        official = {"use": "official", "family": who.get("family_name") or None, "given": [who["given_name"]] if who.get("given_name") else None}
        resource["name"].insert(0, {k: v for k, v in official.items() if v})
    if _date_or_none(who.get("date_of_birth")):
        resource["birthDate"] = _date_or_none(who["date_of_birth"])
    telecom = [{"system": s, "value": who[k]} for k, s in (("email", "email"), ("phone", "phone")) if who.get(k)]
    if telecom:
        resource["telecom"] = telecom
    if who.get("address"):
        resource["address"] = [{"text": who["address"]}]
    if data["hospital"].get("name"):
        resource["managingOrganization"] = {"display": data["hospital"]["name"]}
    return resource


def _fhir_condition(dx: dict, subject: dict, rid: str) -> dict:
    status = "confirmed" if dx["status"] == "confirmed" else "provisional"
    resource = {
        "id": rid, "subject": subject, "code": _concept(dx["label"], dx["system"], dx["code"], dx.get("codings")),
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": status}]},
    }
    if dx.get("onset"):
        resource["onsetString"] = dx["onset"]
    return resource


def _fhir_phenotype(feature: dict, subject: dict, rid: str) -> dict:
    observed = bool(feature["observed"])
    resource = {
        "id": rid, "status": "final", "subject": subject, "code": _concept(feature["label"], feature["system"], feature["code"], feature.get("codings")),
        "valueBoolean": observed,
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                        "code": "POS" if observed else "NEG", "display": "Positive" if observed else "Negative"}],
                            "text": "present" if observed else "absent"}],
    }
    if feature.get("onset"):
        # Observation has no free-text effective time; the onset as recorded goes into a note.
        resource["note"] = [{"text": f"Onset: {feature['onset']}"}]
    return resource


def _hgvs_loinc(variant: str) -> tuple[str, str]:
    kind = variant.split(":", 1)[-1][:1]
    if kind == "p":
        return "48005-3", "Amino acid change (pHGVS)"
    if kind == "g":
        return "81290-9", "Genomic DNA change (gHGVS)"
    return "48004-6", "DNA change (c.HGVS)"


def _answer(text: str, answers: dict[str, str]) -> dict:
    concept: dict[str, Any] = {"text": text}
    if text in answers:
        concept["coding"] = [{"system": LOINC, "code": answers[text], "display": text}]
    return concept


def _fhir_variant(finding: dict, subject: dict, rid: str) -> dict:
    hgvs_code, hgvs_display = _hgvs_loinc(finding["variant"])
    components = [
        {"code": _loinc("48018-6", "Gene studied [ID]"), "valueCodeableConcept": {"text": finding["gene"]}},
        {"code": _loinc(hgvs_code, hgvs_display),
         "valueCodeableConcept": {"coding": [{"system": "http://varnomen.hgvs.org", "code": finding["variant"]}], "text": finding["variant"]}},
    ]
    if finding.get("zygosity"):
        components.append({"code": _loinc("53034-5", "Allelic state"), "valueCodeableConcept": _answer(finding["zygosity"], ZYGOSITY_ANSWERS)})
    if finding.get("classification"):
        components.append({"code": _loinc("53037-8", "Genetic variation clinical significance [Imp]"),
                           "valueCodeableConcept": _answer(finding["classification"], CLASSIFICATION_ANSWERS)})
    return {
        "id": rid, "status": "final", "subject": subject,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": _loinc("69548-6", "Genetic variant assessment"),
        "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9633-4", "display": "Present"}], "text": "Present"},
        "component": components,
    }


def _fhir_medication(med: dict, subject: dict, rid: str, today: date) -> dict:
    stopped = _date_or_none(med.get("stopped"))
    resource: dict[str, Any] = {
        "id": rid, "subject": subject, "medicationCodeableConcept": {"text": med["name"]},
        "status": "completed" if stopped and date.fromisoformat(stopped) <= today else "active",
    }
    period = {k: v for k, v in (("start", _date_or_none(med.get("started"))), ("end", stopped)) if v}
    if period:
        resource["effectivePeriod"] = period
    if med.get("dose"):
        resource["dosage"] = [{"text": med["dose"]}]
    return resource


def _fhir_consent(row: dict, subject: dict, rid: str) -> dict:
    # Consent history is append-only: only the newest row of a kind is in force, so an older
    # row is "inactive" whatever it said; provision.type keeps what the patient decided then.
    label = row.get("kind_label") or CONSENT_KINDS.get(row["kind"], row["kind"])
    return {
        "id": rid, "status": CONSENT_STATUS.get(row["status"], "inactive") if row.get("current") else "inactive",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": CONSENT_SCOPE.get(row["kind"], "patient-privacy")}],
                  "text": label},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}], "text": label}],
        "patient": subject, "dateTime": row["date"],
        "policyRule": {"text": f"Consent form {row['form_version']}"},
        "provision": {"type": "permit" if row["status"] == "given" else "deny"},
    }


def to_fhir_bundle(data: dict) -> dict:
    """The export as a FHIR R4 ``Bundle`` of type collection, validated, as JSON-ready data."""
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.consent import Consent
    from fhir.resources.R4B.medicationstatement import MedicationStatement
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient

    pseudonym = data["pseudonym"]
    pid = _uuid(pseudonym, "patient", pseudonym)
    subject = {"reference": f"urn:uuid:{pid}"}
    today = date.fromisoformat(data["generated_at"][:10])
    resources = [Patient(**_fhir_patient(data, pid))]
    resources += [Condition(**_fhir_condition(d, subject, _uuid(pseudonym, "diagnosis", d["id"]))) for d in data["diagnoses"]]
    resources += [Observation(**_fhir_phenotype(p, subject, _uuid(pseudonym, "phenotype", p["id"]))) for p in data["phenotype"]]
    resources += [Observation(**_fhir_variant(g, subject, _uuid(pseudonym, "genetic", g["id"]))) for g in data["genetic_findings"]]
    resources += [MedicationStatement(**_fhir_medication(m, subject, _uuid(pseudonym, "medication", m["id"]), today)) for m in data["medications"]]
    resources += [Consent(**_fhir_consent(c, subject, _uuid(pseudonym, "consent", c["id"]))) for c in data["consents"]]
    bundle = Bundle(
        id=_uuid(pseudonym, "bundle", data["generated_at"]), type="collection", timestamp=data["generated_at"],
        identifier={"system": PSEUDONYM_SYSTEM, "value": f"{pseudonym}-export"},
        entry=[{"fullUrl": f"urn:uuid:{r.id}", "resource": r} for r in resources],
    )
    return bundle.model_dump(mode="json")


# --- PDF ------------------------------------------------------------------------------------

#: What the PDF core fonts can show (fpdf2 writes them with WinAnsi encoding).
PDF_ENCODING = "cp1252"
#: Letters that Unicode does not decompose into a base letter and a mark.
_LETTERS = str.maketrans({
    "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i", "Ŀ": "L", "ŀ": "l", "ĸ": "k", "Ŋ": "N", "ŋ": "n",
    "Ŧ": "T", "ŧ": "t", "ſ": "s", "Ə": "E", "ə": "e", "Ș": "S", "ș": "s", "Ț": "T", "ț": "t",
    "‐": "-", "‑": "-", "‒": "-", "−": "-", "≥": ">=", "≤": "<=", "→": "->", "←": "<-",
})
#: Greek (ELOT 743) and Cyrillic (Bulgarian/Russian/Serbian/Ukrainian) letters, for EU names.
_SCRIPTS = {
    **dict(zip("αβγδεζηθικλμνξοπρστυφχψωάέήίόύώϊϋΐΰς", ["a", "v", "g", "d", "e", "z", "i", "th", "i", "k", "l", "m", "n", "x", "o", "p", "r", "s", "t", "y", "f", "ch", "ps", "o", "a", "e", "i", "i", "o", "y", "o", "i", "y", "i", "y", "s"], strict=True)),
    **dict(zip("ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩΆΈΉΊΌΎΏΪΫ", ["A", "V", "G", "D", "E", "Z", "I", "Th", "I", "K", "L", "M", "N", "X", "O", "P", "R", "S", "T", "Y", "F", "Ch", "Ps", "O", "A", "E", "I", "I", "O", "Y", "O", "I", "Y"], strict=True)),
    **dict(zip("абвгдежзийклмнопрстуфхцчшщъьюяыэёєіїґђјљњћџ", ["a", "b", "v", "g", "d", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s", "t", "u", "f", "h", "ts", "ch", "sh", "sht", "a", "", "yu", "ya", "y", "e", "yo", "ye", "i", "yi", "g", "dj", "j", "lj", "nj", "c", "dz"], strict=True)),
    **dict(zip("АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЬЮЯЫЭЁЄІЇҐЂЈЉЊЋЏ", ["A", "B", "V", "G", "D", "E", "Zh", "Z", "I", "Y", "K", "L", "M", "N", "O", "P", "R", "S", "T", "U", "F", "H", "Ts", "Ch", "Sh", "Sht", "A", "", "Yu", "Ya", "Y", "E", "Yo", "Ye", "I", "Yi", "G", "Dj", "J", "Lj", "Nj", "C", "Dz"], strict=True)),
}


#: Greek digraphs that ELOT 743 writes as one Latin pair.
_DIGRAPHS = {"ου": "ou", "ού": "ou", "Ου": "Ou", "Ού": "Ou", "ΟΥ": "OU"}


def _showable(char: str) -> bool:
    try:
        char.encode(PDF_ENCODING)
    except UnicodeEncodeError:
        return False
    return char in "\n" or unicodedata.category(char)[0] != "C"


def pdf_text(value: Any) -> str:
    """Text the PDF core fonts can show: kept where possible, else transliterated, else "?"."""
    text = unicodedata.normalize("NFC", "" if value is None else str(value)).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    for digraph, latin in _DIGRAPHS.items():
        text = text.replace(digraph, latin)
    out = []
    for char in text.translate(_LETTERS):
        if unicodedata.category(char) == "Cc" and char != "\n":
            continue  # control characters have no glyph; "?" would only add noise
        if _showable(char):
            out.append(char)
        elif char in _SCRIPTS:
            out.append(_SCRIPTS[char])
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            out.append(base if base and all(_showable(c) for c in base) else "?")
    return "".join(out)


def _needs_transliteration(data: dict) -> bool:
    text = json.dumps(data, ensure_ascii=False)
    return any(not _showable(c) for c in unicodedata.normalize("NFC", text) if c not in "\r\t")


def _who(person: dict | None) -> str:
    return person["name"] if person else "-"


def _when(value: str | None) -> str:
    # "2026-10-01T09:30:12.123456+00:00" -> "2026-10-01 09:30 UTC": minutes are enough to read.
    if not value:
        return "-"
    if "T" not in value:
        return value
    try:
        moment = datetime.fromisoformat(value).astimezone(timezone.utc)
    except ValueError:
        return value
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _report_class():
    from fpdf import FPDF

    class Report(FPDF):
        pseudonym = ""

        def footer_text(self) -> str:
            return f"CPMS export {self.pseudonym}"

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("Helvetica", size=8)
            self.set_text_color(90)
            self.cell(0, 8, pdf_text(f"{self.footer_text()} - page {self.page_no()}/{{nb}}"), align="C")
            self.set_text_color(0)

    return Report


class _Writer:
    """Section, key/value and table helpers over one fpdf2 document."""

    def __init__(self, pdf) -> None:
        self.pdf = pdf

    def heading(self, title: str) -> None:
        pdf = self.pdf
        if pdf.will_page_break(30):
            pdf.add_page()  # a heading alone at the foot of a page reads as a missing section
        else:
            pdf.ln(3)
        pdf.set_font("Helvetica", "B", 13)
        pdf.multi_cell(0, 7, pdf_text(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=9)

    def paragraph(self, text: str, style: str = "", family: str = "Helvetica", size: int = 9) -> None:
        self.pdf.set_font(family, style, size)
        self.pdf.multi_cell(0, 4.5, pdf_text(text), new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_font("Helvetica", size=9)

    def facts(self, pairs: list[tuple[str, Any]]) -> None:
        self.table(("Item", "Value"), [(k, "-" if v in (None, "") else v) for k, v in pairs], widths=(2, 3))

    def table(self, headings: tuple[str, ...], rows: list[tuple], widths: tuple[int, ...] | None = None) -> None:
        if not rows:
            self.paragraph("None recorded.", style="I")
            return
        pdf = self.pdf
        pdf.set_font("Helvetica", size=8)
        with pdf.table(col_widths=widths, text_align="LEFT", line_height=4.2, padding=1) as table:
            for row in (headings, *rows):
                cells = table.row()
                for value in row:
                    cells.cell(pdf_text("" if value is None else value))
        pdf.set_font("Helvetica", size=9)


def _identity_section(w: _Writer, data: dict) -> None:
    w.heading("Identity")
    who = data["identity"]
    w.facts([(label, who.get(key)) for key, label in ident.LABELS.items()] + [
        ("Sex", data["sex"]), ("Nickname (used outside the hospital)", data["nickname"]), ("Pseudonym", data["pseudonym"]),
        ("Hospital", ", ".join(v for v in data["hospital"].values() if v)), ("Enrolled", _when(data["enrolled_at"])),
        ("Enrolled by", _who(data["enrolled_by"])), ("Processing restricted", "yes" if data["restricted"] else "no"),
    ])
    w.heading("European Reference Networks")
    w.table(("Network", "Name", "Enrolled", "By"), [(e["acronym"], e["name"], _when(e["enrolled_at"]), _who(e["enrolled_by"])) for e in data["erns"]], widths=(2, 5, 2, 2))


def _consent_section(w: _Writer, data: dict) -> None:
    w.heading("Consents (full history)")
    w.table(
        ("Consent", "Status", "Date", "Form version", "Recorded", "By", "In force"),
        [(c["kind_label"], c["status"], c["date"], c["form_version"], _when(c["recorded_at"]), _who(c["recorded_by"]), "yes" if c["current"] else "no")
         for c in data["consents"]],
        widths=(4, 2, 2, 3, 3, 3, 2),
    )


def _codes(entry: dict) -> str:
    extra = ", ".join(f"{c['system']}:{c['code']}" for c in entry.get("codings") or [])
    return f"{entry['code']} ({extra})" if extra else entry["code"]


def _clinical_section(w: _Writer, data: dict) -> None:
    w.heading("Clinical summary")
    w.paragraph(data["summary"] or "None recorded.", style="" if data["summary"] else "I")
    w.heading("Diagnoses")
    w.table(("Diagnosis", "System", "Code", "Status", "Onset"), [(d["label"], d["system"], _codes(d), d["status"], d["onset"]) for d in data["diagnoses"]], widths=(5, 2, 2, 2, 2))
    w.heading("Phenotype features")
    w.table(("Feature", "System", "Code", "Observed", "Onset"),
            [(p["label"], p["system"], _codes(p), "present" if p["observed"] else "absent", p["onset"]) for p in data["phenotype"]], widths=(5, 2, 2, 2, 2))
    w.heading("Genetic findings")
    w.table(("Gene", "Variant (HGVS)", "Zygosity", "Classification"),
            [(g["gene"], g["variant"], g["zygosity"], g["classification"]) for g in data["genetic_findings"]], widths=(2, 5, 3, 3))
    w.heading("Medications")
    w.table(("Medication", "Dose", "Started", "Stopped"), [(m["name"], m["dose"], m["started"], m["stopped"]) for m in data["medications"]], widths=(4, 3, 2, 2))
    w.heading("Clinical notes")
    if not data["notes"]:
        w.paragraph("None recorded.", style="I")
    for note in data["notes"]:
        w.paragraph(f"{_when(note['created_at'])} - {_who(note['author'])}", style="B")
        w.paragraph(note["text"])


def _documents_section(w: _Writer, data: dict) -> None:
    w.heading("Documents")
    w.table(
        ("Title", "Kind", "File name", "Type", "Bytes", "Uploaded", "Deleted"),
        [(d["title"], d["kind_label"], d["filename"], d["content_type"], d["size"], _when(d["uploaded_at"]), _when(d["deleted_at"]) if d["deleted_at"] else "")
         for d in data["documents"]],
        widths=(4, 3, 4, 3, 2, 3, 3),
    )


def _history_section(w: _Writer, data: dict) -> None:
    w.heading("GDPR requests")
    w.table(("Request", "Status", "Reason", "Recorded", "Decided", "Note"),
            [(g["kind"], g["status"], g["reason"], _when(g["requested_at"]), _when(g["decided_at"]), g["note"]) for g in data["gdpr_requests"]],
            widths=(2, 2, 4, 3, 3, 4))
    w.heading("Change history")
    w.table(("When", "By", "Part", "Field", "Old value", "New value"),
            [(_when(c["at"]), _who(c["by"]), c["entity"], c["field"], c["old"], c["new"]) for c in data["change_history"]],
            widths=(3, 3, 2, 2, 4, 4))
    w.heading("Who accessed the record")
    w.table(("When", "Action", "Who", "Hospital", "Address"),
            [(_when(a["at"]), a["action"], _who(a["actor"]), a["actor_hospital"], a["address"]) for a in data["access_audit"]],
            widths=(3, 3, 3, 4, 3))


def _plugins_section(w: _Writer, data: dict) -> None:
    w.heading("Data held by other CPMS modules")
    if not data["plugins"]:
        w.paragraph("None.", style="I")
    for name, contribution in data["plugins"].items():
        w.paragraph(name, style="B")
        w.paragraph(json.dumps(contribution, ensure_ascii=False, indent=2), family="Courier", size=8)


def to_pdf(data: dict, compress: bool = True) -> bytes:
    """A readable report of the export (``compress=False`` leaves the text searchable in the bytes)."""
    pdf = _report_class()(format="A4")
    pdf.pseudonym = data["pseudonym"]
    pdf.compress = compress
    pdf.core_fonts_encoding = PDF_ENCODING
    pdf.set_auto_page_break(auto=True, margin=15)
    # Metadata is indexed by file managers and mail filters: the pseudonym only, never the name.
    pdf.set_title(f"CPMS export {data['pseudonym']}")
    pdf.set_creator("CPMS")
    pdf.add_page()
    w = _Writer(pdf)
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 8, "Personal data held in CPMS (GDPR right of access)", new_x="LMARGIN", new_y="NEXT")
    w.paragraph(f"Patient: {data['nickname']} ({data['pseudonym']}). Generated {_when(data['generated_at'])} by user {data['generated_by']}. Format version {data['format_version']}.")
    w.paragraph("The same data is available as JSON and as an HL7 FHIR R4 bundle.")
    if _needs_transliteration(data):
        w.paragraph("Some letters could not be shown in this PDF and are written in Latin letters; the JSON and FHIR exports keep the exact spelling.", style="I")
    for section in (_identity_section, _consent_section, _clinical_section, _documents_section, _history_section, _plugins_section):
        section(w, data)
    return bytes(pdf.output())


# --- route ----------------------------------------------------------------------------------


def render(data: dict, fmt: str) -> bytes:
    if fmt == "pdf":
        return to_pdf(data)
    body = to_fhir_bundle(data) if fmt == "fhir" else data
    return json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8")


DOCUMENT_EXT = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg", "image/tiff": "tif"}


async def build_zip(settings, patient: dict, data: dict):
    """The JSON, FHIR and PDF renderings plus every document file, in a temporary file (so
    large documents are never held in memory at once)."""
    import tempfile
    import zipfile

    from core.patients.tables import Document
    from core.storage import Storage

    spool = tempfile.TemporaryFile()
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for fmt in ("json", "fhir", "pdf"):
            zf.writestr(f"export.{FORMATS[fmt][1]}", await to_thread.run_sync(render, data, fmt))
        storage = Storage(settings)
        for doc in await Document.select().where(Document.patient == patient["id"]).order_by(Document.id):
            name = f"documents/{doc['id']}-{doc['kind']}.{DOCUMENT_EXT.get(doc['content_type'], 'bin')}"
            with zf.open(name, "w") as out:
                async for chunk in await storage.open_stream(doc["storage_key"]):
                    out.write(chunk)
    spool.seek(0)
    return spool


async def _stream_and_close(spool, chunk_size: int = 256 * 1024):
    try:
        while chunk := await to_thread.run_sync(spool.read, chunk_size):
            yield chunk
    finally:
        spool.close()


EXPORT_DOC = operation(
    parameter_schemas={"format": {"enum": list(FORMATS), "default": "json"}},
    content={200: {
        "application/json": {"type": "object", "description": "json: everything held, decrypted"},
        "application/fhir+json": {"type": "object", "description": "fhir: an HL7 FHIR R4B Bundle",
                                  "properties": {"resourceType": {"const": "Bundle"}}, "required": ["resourceType"]},
        "application/pdf": None, "application/zip": None,
    }},
)


@get("/patients/{pseudonym:str}/export", opt={"permission": PERMISSION}, operation_id="exportPatient", tags=["patients"],
     operation_class=EXPORT_DOC, responses=problems(s400="Unknown format: json, fhir, pdf or zip."))
async def export(
    request: Request, pseudonym: FromPath[str], fmt: Annotated[str, QueryParameter(name="format", max_length=10)] = "json",
) -> Response:
    """The GDPR access export (Art. 15) of one patient: everything held, as JSON, an HL7 FHIR R4B Bundle, a
    PDF or all of them with the documents' files in a ZIP; downloaded under the pseudonym's name, audited."""
    if fmt not in FORMATS:
        # Checked before the patient is looked up, so the answer reveals nothing about it.
        raise HTTPException(status_code=400, detail=f"Unknown export format; choose one of: {', '.join(FORMATS)}.")
    from core.patients.records import audit

    # Restriction of processing (GDPR Art. 18) does not suspend the right of access.
    patient = await load_patient(request, pseudonym, PERMISSION, allow_restricted=True)
    actor = request.scope["user"]
    data = await collect(request.app.state.settings, request.app.state.host, patient, generated_by=actor.user_id)
    # Rendering is CPU work (a long audit trail makes a long PDF): a worker thread keeps the
    # event loop serving other requests meanwhile.
    media_type, ext = FORMATS[fmt]
    if fmt == "zip":
        archive = await build_zip(request.app.state.settings, patient, data)
        await audit(request, "patient.export", patient, {"format": fmt})
        return Stream(
            _stream_and_close(archive), media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="{patient["pseudonym"]}-export.zip"'},
        )
    body = await to_thread.run_sync(render, data, fmt)
    await audit(request, "patient.export", patient, {"format": fmt})
    return Response(
        body, media_type=media_type,
        # The pseudonym, never the name: downloads end up in shared folders and mail.
        headers={"Content-Disposition": f'attachment; filename="{patient["pseudonym"]}-export.{ext}"'},
    )


ROUTES = [export]
