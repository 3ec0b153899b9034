"""The clinical record (summary, diagnoses, phenotype, genetic findings, medications, notes)
and identity edits, each change kept with who, when, old and new value (rectification)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.crypto import keyring
from core.events import Event
from core.identity.login import client_address
from core.patients import coded
from core.patients import identity as ident
from core.patients.access import load_patient
from core.web import page

GENE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,29}$")
HGVS = re.compile(r"^\S+:[cgmnrp]\.\S+$")
ZYGOSITY = ("heterozygous", "homozygous", "hemizygous", "compound heterozygous", "mosaic", "unknown")
CLASSIFICATION = ("pathogenic", "likely pathogenic", "uncertain significance", "likely benign", "benign")


def _text(limit: int, required: bool = False) -> Callable[[str], tuple[object, str | None]]:
    def check(value: str):
        value = value.strip()
        if required and not value:
            return value, "Required."
        if len(value) > limit:
            return value, f"At most {limit} characters."
        return value, None

    return check


def _choice(options: tuple[str, ...]):
    def check(value: str):
        return (value, None) if value in options else (value, f"Choose one of: {', '.join(options)}.")

    return check


def _date_or_empty(value: str):
    value = value.strip()
    if not value:
        return None, None
    parsed = ident.parse_date(value)
    return (parsed, None) if parsed else (value, "Enter the date as YYYY-MM-DD.")


def _pattern(regex, message, limit):
    def check(value: str):
        value = value.strip()
        if not value or len(value) > limit or not regex.match(value):
            return value, message
        return value, None

    return check


@dataclass(frozen=True)
class Kind:
    table_name: str
    title: str
    fields: dict[str, Callable]
    #: Coded entries also keep more codes for the same entry (``codings``, core.patients.coded).
    coded: bool = False

    @property
    def table(self):
        from core.patients import tables

        return getattr(tables, self.table_name)


KINDS: dict[str, Kind] = {
    "diagnoses": Kind("Diagnosis", "Diagnoses", {
        "label": _text(300, True), "system": _text(30), "code": _text(40),
        "status": _choice(("confirmed", "suspected")), "onset": _text(60),
    }, coded=True),
    "phenotype": Kind("Phenotype", "Phenotype features", {
        "label": _text(300, True), "system": _text(30), "code": _text(40),
        "observed": lambda v: ({"present": True, "absent": False}.get(v, v), None if v in ("present", "absent") else "Choose present or absent."),
        "onset": _text(60),
    }, coded=True),
    "genetics": Kind("GeneticFinding", "Genetic findings", {
        "gene": _pattern(GENE, "Enter the gene symbol (e.g. ATXN2).", 30),
        "variant": _pattern(HGVS, "Enter the variant in HGVS, e.g. NM_002973.4:c.100C>T.", 200),
        "zygosity": _choice(ZYGOSITY), "classification": _choice(CLASSIFICATION),
    }),
    "medications": Kind("Medication", "Medications", {
        "name": _text(200, True), "dose": _text(100), "started": _date_or_empty, "stopped": _date_or_empty,
    }),
}


CODED_LABEL = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,29}):(\S{1,40})\s+(.+)$")


def split_coded_label(values: dict) -> None:
    """A suggestion picked from a code search arrives as "SYSTEM:CODE label"."""
    if "system" in values and not values.get("system") and not values.get("code"):
        match = CODED_LABEL.match(values.get("label") or "")
        if match:
            values["system"], values["code"], values["label"] = match.group(1).upper(), match.group(2), match.group(3).strip()


def validate(kind: Kind, form) -> tuple[dict, dict]:
    values, errors = {}, {}
    for name, check in kind.fields.items():
        value, error = check(str(form.get(name, "") or ""))
        values[name] = value
        if error:
            errors[name] = error
    split_coded_label(values)
    if kind.coded:
        codings, error = coded.parse_codings(form)
        if error:
            errors["codings"] = error
        # The main code is not repeated among the additional ones.
        values["codings"] = coded.dump([c for c in codings if (c["system"], c["code"]) != (values.get("system"), values.get("code"))])
    if kind.table_name == "Medication" and not errors and values["started"] and values["stopped"] and values["stopped"] < values["started"]:
        errors["stopped"] = "The stop date is before the start date."
    return values, errors


def _shown(value) -> str:
    # An empty list of additional codes is no value, as an empty text is.
    return "" if value is None or value == "[]" else str(value)


def _seal(settings, pseudonym: str, value) -> str:
    return keyring(settings).encrypt("" if value is None else str(value), f"patient:{pseudonym}:history")


async def log_changes(request: Request, patient: dict, entity: str, entity_id: int | None, old: dict, new: dict) -> int:
    """Keep one history row per changed field, and the change's audit entry; returns how many fields
    changed. Call it inside the transaction of the change itself: the change, its history and its
    audit entry then commit together or not at all."""
    from core.patients.tables import ChangeLog

    settings = request.app.state.settings
    actor = request.scope["user"]
    rows = [
        ChangeLog(
            patient=patient["id"], entity=entity, entity_id=entity_id, field=field,
            old_value=_seal(settings, patient["pseudonym"], old.get(field)), new_value=_seal(settings, patient["pseudonym"], new.get(field)),
            actor=actor.user_id,
        )
        for field in new
        if _shown(old.get(field)) != _shown(new[field])
    ]
    if rows:
        from core.patients.records import audit

        await ChangeLog.insert(*rows)
        await audit(request, "patient.update", patient, {"what": entity, "fields": len(rows)})
    return len(rows)


async def _changed(request: Request, patient: dict, what: str, count: int) -> None:
    """After the commit: tell plugins (the audit entry was written with the change)."""
    if not count:
        return
    await request.app.state.host.events.emit(
        Event("patient.updated", request.scope["user"].user_id, "patient", patient["pseudonym"], {"what": what}, client_address(request))
    )


async def clinical_context(patient: dict) -> dict:
    from core.patients.tables import ClinicalNote

    entries = {}
    for key, kind in KINDS.items():
        entries[key] = await kind.table.select().where(kind.table.patient == patient["id"]).order_by(kind.table.id)
    notes = await ClinicalNote.select().where(ClinicalNote.patient == patient["id"]).order_by(ClinicalNote.id, ascending=False)
    return {"entries": entries, "kinds_clinical": KINDS, "notes": notes, "zygosity": ZYGOSITY, "classification": CLASSIFICATION, "form_errors": {}}


def code_search_urls(host) -> dict[str, str]:
    """Which record parts a plugin (the coding plugin) offers code suggestions for."""
    urls = {}
    for kind in ("diagnoses", "phenotype"):
        for _, url in host.results_by_plugin("code_search_url", kind=kind):
            urls.setdefault(kind, url)
    return urls


async def _rerender(request: Request, patient: dict, errors: dict, target: str) -> Template:
    from core.patients.records import patient_context

    ctx = await patient_context(request, patient)
    ctx.update(await clinical_context(patient))
    ctx["form_errors"] = {target: errors}
    return page(request, "patients/page.html", ctx, status_code=422)


@post("/patients/{pseudonym:str}/summary", opt={"permission": "patients.edit"}, include_in_schema=False)
async def edit_summary(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    from core.patients.tables import Patient

    patient = await load_patient(request, pseudonym, "patients.edit")
    summary = str((await request.form()).get("summary", "")).strip()
    if len(summary) > 10000:
        return await _rerender(request, patient, {"summary": "At most 10,000 characters."}, "summary")
    async with Patient._meta.db.transaction():
        await Patient.update({Patient.summary: summary}).where(Patient.id == patient["id"])
        count = await log_changes(request, patient, "summary", None, {"summary": patient["summary"]}, {"summary": summary})
    await _changed(request, patient, "summary", count)
    return Redirect(f"/patients/{pseudonym}#summary", status_code=303)


@post("/patients/{pseudonym:str}/identity", opt={"permission": "patients.edit"}, include_in_schema=False)
async def edit_identity(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    from core.patients.records import validate_identity
    from core.patients.tables import Patient

    patient = await load_patient(request, pseudonym, "patients.edit")
    settings = request.app.state.settings
    values, errors = validate_identity(await request.form())
    if errors:
        return await _rerender(request, patient, errors, "identity")
    old = ident.decrypt_identity(settings, pseudonym, patient["identity"])
    dup_record, dup_name = ident.duplicate_keys(settings, patient["hcp"], values)
    async with Patient._meta.db.transaction():
        await Patient.update({
            Patient.identity: ident.encrypt_identity(settings, pseudonym, values),
            Patient.dup_record: dup_record, Patient.dup_name_dob: dup_name,
        }).where(Patient.id == patient["id"])
        count = await log_changes(request, patient, "identity", None, old, values)
    await _changed(request, patient, "identity", count)
    return Redirect(f"/patients/{pseudonym}#identity", status_code=303)


def _kind(name: str) -> Kind:
    if name not in KINDS:
        raise NotFoundException("No such part of the record.")
    return KINDS[name]


@post("/patients/{pseudonym:str}/record/{kind_name:str}", opt={"permission": "patients.edit"}, include_in_schema=False)
async def add_entry(request: Request, pseudonym: FromPath[str], kind_name: FromPath[str]) -> Template | Redirect:
    kind = _kind(kind_name)
    patient = await load_patient(request, pseudonym, "patients.edit")
    values, errors = validate(kind, await request.form())
    if errors:
        return await _rerender(request, patient, errors, kind_name)
    table = kind.table
    async with table._meta.db.transaction():
        row = table(patient=patient["id"], updated_by=request.scope["user"].user_id, **values)
        await row.save()
        count = await log_changes(request, patient, kind_name, row.id, {}, values)
    await _changed(request, patient, kind_name, count)
    return Redirect(f"/patients/{pseudonym}#{kind_name}", status_code=303)


async def _entry(kind: Kind, patient: dict, entry_id: int) -> dict:
    table = kind.table
    row = await table.select().where((table.id == entry_id) & (table.patient == patient["id"])).first()
    if row is None:
        raise NotFoundException("No such entry.")
    return row


@post("/patients/{pseudonym:str}/record/{kind_name:str}/{entry_id:int}", opt={"permission": "patients.edit"}, include_in_schema=False)
async def edit_entry(request: Request, pseudonym: FromPath[str], kind_name: FromPath[str], entry_id: FromPath[int]) -> Template | Redirect:
    kind = _kind(kind_name)
    patient = await load_patient(request, pseudonym, "patients.edit")
    old = await _entry(kind, patient, entry_id)
    values, errors = validate(kind, await request.form())
    if errors:
        return await _rerender(request, patient, errors, f"{kind_name}-{entry_id}")
    table = kind.table
    from core.identity.sessions import now

    async with table._meta.db.transaction():
        await table.update({**{getattr(table, k): v for k, v in values.items()}, table.updated_by: request.scope["user"].user_id, table.updated_at: now()}).where(table.id == entry_id)
        count = await log_changes(request, patient, kind_name, entry_id, old, values)
    await _changed(request, patient, kind_name, count)
    return Redirect(f"/patients/{pseudonym}#{kind_name}", status_code=303)


@post("/patients/{pseudonym:str}/record/{kind_name:str}/{entry_id:int}/delete", opt={"permission": "patients.edit"}, include_in_schema=False)
async def delete_entry(request: Request, pseudonym: FromPath[str], kind_name: FromPath[str], entry_id: FromPath[int]) -> Redirect:
    kind = _kind(kind_name)
    patient = await load_patient(request, pseudonym, "patients.edit")
    old = await _entry(kind, patient, entry_id)
    table = kind.table
    async with table._meta.db.transaction():
        await table.delete().where(table.id == entry_id)
        count = await log_changes(request, patient, kind_name, entry_id, old, {k: None for k in [*kind.fields, *(["codings"] if kind.coded else [])]})
    await _changed(request, patient, kind_name, count)
    return Redirect(f"/patients/{pseudonym}#{kind_name}", status_code=303)


@post("/patients/{pseudonym:str}/notes", opt={"permission": "patients.edit"}, include_in_schema=False)
async def add_note(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    from core.patients.tables import ClinicalNote

    patient = await load_patient(request, pseudonym, "patients.edit")
    text = str((await request.form()).get("text", "")).strip()
    if not 1 <= len(text) <= 10000:
        return await _rerender(request, patient, {"text": "Write a note (at most 10,000 characters)."}, "notes")
    from core.patients.records import audit

    async with ClinicalNote._meta.db.transaction():
        note = ClinicalNote(patient=patient["id"], text=text, author=request.scope["user"].user_id)
        await note.save()
        await audit(request, "patient.update", patient, {"what": "notes", "fields": 1})
    await _changed(request, patient, "notes", 1)
    return Redirect(f"/patients/{pseudonym}#notes", status_code=303)


@get("/patients/{pseudonym:str}/history", opt={"permission": "patients.view"}, include_in_schema=False)
async def history(request: Request, pseudonym: FromPath[str]) -> Template:
    from core.identity.tables import User
    from core.patients.records import audit
    from core.patients.tables import ChangeLog

    patient = await load_patient(request, pseudonym)
    ring = keyring(request.app.state.settings)
    context = f"patient:{pseudonym}:history"
    rows = await ChangeLog.select().where(ChangeLog.patient == patient["id"]).order_by(ChangeLog.id, ascending=False)
    names = {u["id"]: u["name"] for u in await User.select(User.id, User.name).where(User.id.is_in([r["actor"] for r in rows] or [0]))}
    changes = [
        {**r, "old": ring.decrypt(r["old_value"], context), "new": ring.decrypt(r["new_value"], context), "who": names.get(r["actor"], "?")}
        for r in rows
    ]
    await audit(request, "patient.history_view", patient)
    return page(request, "patients/history.html", {"patient": patient, "changes": changes})


ROUTES = [edit_summary, edit_identity, add_entry, edit_entry, delete_entry, add_note, history]
