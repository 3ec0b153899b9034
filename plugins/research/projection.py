"""From the core's patient record to the research tables: reduced, coded, consent-stamped.

``refresh(host, patient_ids)`` rebuilds the ``ResearchSubject`` and ``ResearchTerm`` rows of
some patients; events call it for one patient (``handle_event``), ``cpms research refresh`` for
all. What is kept: sex; ages in whole years at enrolment, onset and diagnosis (the date of birth
is decrypted here, used, and dropped); the enrolment year; the hospital's country (never the
hospital); the ERNs; coded diagnoses, observed and excluded phenotypes, genes with the ACMG
class of their variants; the latest panel outcome's kind; the plugins' research fields. Free
text (labels typed without a code, summaries, notes, HGVS strings, onset text) is not kept.

Ages: onset from a diagnosis's onset (a year, "age N", or a congenital/neonatal/infantile
onset counted as 0); diagnosis from when the first confirmed diagnosis, or a signed panel outcome
naming a coded diagnosis, was recorded (CPMS holds no separate date of diagnosis).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import date, datetime, timezone
from typing import Any

from core.contributions import ResearchField
from core.events import await_me_maybe
from core.patients.consent_rules import allowed

#: Code systems whose codes research filters on, and their prefix in ``ResearchTerm.value``.
PREFIX = {"ORPHA": "ORPHA:", "ICD-10": "ICD10:", "ICD-10-CM": "ICD10CM:", "OMIM": "OMIM:", "ICD-11": "ICD11:",
          "HPO": ""}
_YEAR = re.compile(r"\b(19|20)\d{2}\b")
_AGE = re.compile(r"\bage[d]?\s*(\d{1,3})\b|\b(\d{1,3})\s*(?:y|yr|yrs|years?)\b", re.I)
_AT_BIRTH = re.compile(r"congenital|antenatal|prenatal|neonatal|birth|infan", re.I)
BATCH = 500
log = logging.getLogger("cpms.research")


def term_value(system: str, code: str) -> str:
    """How a code is stored and filtered: ``ORPHA:98756``, ``HP:0001250``, ``ICD10:G11.2``."""
    prefix = PREFIX.get(system, f"{system}:")
    return code if system == "HPO" or code.startswith(prefix) else f"{prefix}{code}"


def age_between(birth: date | None, when: date | None) -> int | None:
    if birth is None or when is None or when < birth:
        return None
    return when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))


def onset_age(text: str, birth: date | None) -> int | None:
    """An age in years from the free-text onset of a diagnosis; None when it says nothing usable."""
    text = text or ""
    if m := _AGE.search(text):
        return int(m.group(1) or m.group(2))
    if _AT_BIRTH.search(text):
        return 0
    if birth and (m := _YEAR.search(text)):
        year = int(m.group(0))
        return year - birth.year if year >= birth.year else None
    return None


def _birth_date(settings, row: dict) -> date | None:
    from core.patients import identity as ident

    try:
        value = ident.decrypt_identity(settings, row["pseudonym"], row["identity"]).get("date_of_birth", "")
        return date.fromisoformat(value) if value else None
    except (ValueError, TypeError):
        return None


def _day(value) -> date | None:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).date()
    return value if isinstance(value, date) else None


async def research_fields(host) -> list[tuple[str, ResearchField]]:
    return [(plugin, f) for plugin, fields in host.results_by_plugin("register_research_fields") for f in fields]


def _category(value) -> bool:
    return isinstance(value, (bool, int, str)) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


async def _field_values(host, fields, patient_refs) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {ref.id: {} for ref in patient_refs}
    for plugin, f in fields:
        try:
            if f.extract_many is not None:
                found = await await_me_maybe(f.extract_many(patient_refs)) or {}
            else:
                found = {ref.id: await await_me_maybe(f.extract(ref)) for ref in patient_refs}
        except Exception:  # a plugin's failure leaves its field empty, never the records out
            log.exception("research field %s of %s failed", f.name, plugin)
            found = {}
        for pid, value in found.items():
            if pid in out and _category(value):
                out[pid][f.name] = value
    return out


async def _ancestors(host, system: str, codes: set[str]) -> dict[str, list[str]]:
    if not codes:
        return {}
    found = await await_me_maybe(host.hook.code_ancestors(system=system, codes=sorted(codes)))
    return found or {}


async def _paths(host, system: str, every: dict[str, list[str]], limit: int = 30) -> dict[str, list[str]]:
    """One path to the root per code (its first parent, that parent's first parent...), one hook call per
    level: ``code_ancestors`` lists every ancestor of a polyhierarchy, whose order mixes the branches."""
    path: dict[str, list[str]] = {c: [] for c in every}
    frontier = {c: chain[0] for c, chain in every.items() if chain}
    while frontier:
        ups = await _ancestors(host, system, set(frontier.values()))
        following = {}
        for code, parent in frontier.items():
            if parent in path[code] or len(path[code]) >= limit:
                continue
            path[code].append(parent)
            if ups.get(parent):
                following[code] = ups[parent][0]
        frontier = following
    return path


async def refresh(host, patient_ids: list[int]) -> int:
    """Rebuild the research rows of these patients (erased or unknown ones lose theirs)."""
    total = 0
    for start in range(0, len(patient_ids), BATCH):
        total += await _refresh_batch(host, patient_ids[start:start + BATCH])
    return total


async def _refresh_batch(host, patient_ids: list[int]) -> int:
    from core.orgs.tables import Hcp
    from core.panels.tables import Outcome, Panel
    from core.patients.access import PatientRef, current_consents
    from core.patients.tables import Diagnosis, GeneticFinding, Patient, PatientErn, Phenotype
    from plugins.research.tables import ResearchSubject, ResearchTerm

    settings = host.settings
    patients = await Patient.select(
        Patient.id, Patient.pseudonym, Patient.nickname, Patient.identity, Patient.sex, Patient.hcp,
        Patient.created_at, Patient.restricted, Patient.erased_at,
    ).where(Patient.id.is_in(patient_ids))
    patients = [p for p in patients if p["erased_at"] is None]
    ids = [p["id"] for p in patients]
    countries = {h["id"]: h["country"] for h in await Hcp.select(Hcp.id, Hcp.country)}
    consents = await current_consents(ids)
    erns: dict[int, list[tuple[str, date | None]]] = {}
    diagnoses: dict[int, list[dict]] = {}
    phenotypes: dict[int, list[dict]] = {}
    findings: dict[int, list[dict]] = {}
    panels: dict[int, list[dict]] = {}
    if ids:
        for r in await PatientErn.select(PatientErn.patient, PatientErn.ern.acronym.as_alias("acronym"), PatientErn.enrolled_at).where(PatientErn.patient.is_in(ids)):
            erns.setdefault(r["patient"], []).append((r["acronym"], _day(r["enrolled_at"])))
        for r in await Diagnosis.select().where(Diagnosis.patient.is_in(ids)):
            diagnoses.setdefault(r["patient"], []).append(r)
        for r in await Phenotype.select().where(Phenotype.patient.is_in(ids)):
            phenotypes.setdefault(r["patient"], []).append(r)
        for r in await GeneticFinding.select().where(GeneticFinding.patient.is_in(ids)):
            findings.setdefault(r["patient"], []).append(r)
        for r in await Panel.select(Panel.id, Panel.patient, Panel.status, Panel.created_at).where(Panel.patient.is_in(ids)).order_by(Panel.id):
            panels.setdefault(r["patient"], []).append(r)
    panel_ids = [p["id"] for rows in panels.values() for p in rows]
    outcomes = {}
    if panel_ids:
        for r in await Outcome.select(Outcome.panel, Outcome.diagnosis_system, Outcome.diagnosis_code, Outcome.signed_at).where(Outcome.panel.is_in(panel_ids)):
            outcomes[r["panel"]] = r
    # Codes of every system, then their ancestors in one call per system.
    by_system: dict[str, set[str]] = {}
    for rows in list(diagnoses.values()) + list(phenotypes.values()):
        for r in rows:
            for system, code in _codes(r):
                by_system.setdefault(system, set()).add(code)
    ancestors = {system: await _ancestors(host, system, codes) for system, codes in by_system.items()}
    paths = {system: await _paths(host, system, ancestors[system]) for system in by_system}
    fields = await research_fields(host)
    refs = [PatientRef(p["id"], p["pseudonym"], p["nickname"], p["hcp"]) for p in patients]
    field_values = await _field_values(host, fields, refs) if fields else {}

    subjects, terms = [], {}
    existing = {r["patient"]: r for r in await ResearchSubject.select(ResearchSubject.id, ResearchSubject.patient, ResearchSubject.record_key).where(ResearchSubject.patient.is_in(patient_ids))}
    for p in patients:
        pid = p["id"]
        current = consents.get(pid, {})
        registry = current.get("registry")
        birth = _birth_date(settings, p)
        enrolled = min([d for _, d in erns.get(pid, []) if d] or [_day(p["created_at"])])
        diag_rows = diagnoses.get(pid, [])
        onsets = [a for a in (onset_age(d["onset"], birth) for d in diag_rows) if a is not None]
        confirmed_days = [_day(d["updated_at"]) for d in diag_rows if d["status"] == "confirmed"]
        outcome_kind, outcome_day = _outcome(panels.get(pid, []), outcomes)
        if outcome_kind == "diagnosed" and outcome_day:
            confirmed_days.append(outcome_day)
        diag_day = min([d for d in confirmed_days if d] or [None]) if confirmed_days else None
        codes = sorted({(s, c) for d in diag_rows for s, c in _codes(d)})
        pheno_obs = sorted({(s, c) for r in phenotypes.get(pid, []) if r["observed"] for s, c in _codes(r) if s == "HPO"})
        pheno_exc = sorted({(s, c) for r in phenotypes.get(pid, []) if not r["observed"] for s, c in _codes(r) if s == "HPO"})
        variants = sorted({(f["gene"].strip().upper(), (f["classification"] or "").strip().lower()) for f in findings.get(pid, []) if f["gene"].strip()})
        data = {
            "diagnoses": [{"system": s, "code": c} for s, c in codes],
            "phenotypes": [c for _, c in pheno_obs], "excluded_phenotypes": [c for _, c in pheno_exc],
            "variants": [list(v) for v in variants], "fields": field_values.get(pid, {}),
            # One path up the classification per diagnosis (anonymise generalises along it; the term rows
            # below hold every ancestor, for "with descendants" filters in a polyhierarchy).
            "ancestors": {term_value(s, c): [term_value(s, a) for a in paths.get(s, {}).get(c, [])] for s, c in codes},
        }
        old = existing.get(pid)
        subjects.append(ResearchSubject(
            patient=pid, included=allowed(current, "registry") and not p["restricted"],
            consent_id=registry["id"] if registry else None,
            record_key=old["record_key"] if old else secrets.randbelow(2**32),
            sex=p["sex"] if p["sex"] in ("female", "male", "other") else "unknown",
            age_enrolment=age_between(birth, enrolled), age_onset=min(onsets) if onsets else None,
            age_diagnosis=age_between(birth, diag_day), enrolment_year=enrolled.year if enrolled else 0,
            country=countries.get(p["hcp"], "")[:2], outcome=outcome_kind,
            confirmed=any(d["status"] == "confirmed" for d in diag_rows) or outcome_kind == "diagnosed",
            research_contact=allowed(current, "research_contact"), data=json.dumps(data, sort_keys=True),
            refreshed_at=datetime.now(timezone.utc),
        ))
        rows = [("ern", acronym, True) for acronym in sorted({a for a, _ in erns.get(pid, [])})]
        for kind, pairs in (("diagnosis", codes), ("phenotype", pheno_obs)):
            seen = set()
            for s, c in pairs:
                for value, direct in [(term_value(s, c), True)] + [(term_value(s, a), False) for a in ancestors.get(s, {}).get(c, [])]:
                    if value not in seen:
                        seen.add(value)
                        rows.append((kind, value, direct))
        rows += [("gene", g, True) for g in sorted({g for g, _ in variants})]
        rows += [("variant_class", c, True) for c in sorted({c for _, c in variants if c})]
        for name, value in field_values.get(pid, {}).items():
            for v in (value if isinstance(value, list) else [value]):
                rows.append(("field", f"{name}={str(v).lower() if isinstance(v, bool) else v}"[:80], True))
        terms[pid] = rows
    async with ResearchSubject._meta.db.transaction():
        await ResearchSubject.delete().where(ResearchSubject.patient.is_in(patient_ids))
        if subjects:
            await ResearchSubject.insert(*subjects)
            saved = {r["patient"]: r["id"] for r in await ResearchSubject.select(ResearchSubject.id, ResearchSubject.patient).where(ResearchSubject.patient.is_in(ids))}
            term_rows = [ResearchTerm(subject=saved[pid], kind=k, value=v[:80], direct=d) for pid, rows in terms.items() for k, v, d in rows]
            for start in range(0, len(term_rows), 1000):
                await ResearchTerm.insert(*term_rows[start:start + 1000])
    return len(subjects)


def _codes(row: dict) -> list[tuple[str, str]]:
    """The (system, code) pairs of a coded row: its main code and its further codings."""
    from core.patients import coded

    out = []
    if row.get("system") and row.get("code"):
        out.append((row["system"], row["code"]))
    for c in coded.load(row.get("codings", "[]")):
        if c.get("system") and c.get("code"):
            out.append((c["system"], c["code"]))
    return out


def _outcome(panels: list[dict], outcomes: dict) -> tuple[str, date | None]:
    if not panels:
        return "none", None
    signed = [(p, outcomes[p["id"]]) for p in panels if p["id"] in outcomes and outcomes[p["id"]]["signed_at"]]
    if signed:
        _, outcome = signed[-1]
        kind = "diagnosed" if outcome["diagnosis_code"] else "no_diagnosis"
        return kind, _day(outcome["signed_at"])
    live = [p for p in panels if p["status"] not in ("cancelled",)]
    return ("in_progress" if live else "none"), None


async def refresh_pseudonym(host, pseudonym: str) -> None:
    from core.patients.tables import Patient

    row = await Patient.select(Patient.id).where(Patient.pseudonym == pseudonym).first()
    if row is not None:
        await refresh(host, [row["id"]])


async def refresh_panel(host, panel_id: str) -> None:
    from core.panels.tables import Panel

    if not str(panel_id).isdigit():
        return
    row = await Panel.select(Panel.patient).where(Panel.id == int(panel_id)).first()
    if row is not None:
        await refresh(host, [row["patient"]])


async def refresh_all(host) -> int:
    from core.patients.tables import Patient

    ids = [r["id"] for r in await Patient.select(Patient.id).order_by(Patient.id)]
    return await refresh(host, ids)


async def export_for_gdpr(patient_id: int) -> dict:
    """What research holds of the patient, and which exports included them."""
    from plugins.research.tables import ResearchExport, ResearchSubject

    row = await ResearchSubject.select().where(ResearchSubject.patient == patient_id).first()
    exports = []
    for e in await ResearchExport.select(ResearchExport.id, ResearchExport.project, ResearchExport.kind, ResearchExport.created_at, ResearchExport.subjects):
        if patient_id in json.loads(e["subjects"] or "[]"):
            exports.append({"export": e["id"], "project": e["project"], "kind": e["kind"], "at": e["created_at"].isoformat()})
    if row is None:
        return {"research": {"included": False, "exports": exports}}
    return {"research": {
        "included": row["included"], "sex": row["sex"], "age_at_enrolment": row["age_enrolment"],
        "age_at_onset": row["age_onset"], "age_at_diagnosis": row["age_diagnosis"], "enrolment_year": row["enrolment_year"],
        "country": row["country"], "outcome": row["outcome"], "data": json.loads(row["data"]), "exports": exports,
    }}
