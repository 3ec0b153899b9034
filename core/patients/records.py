"""Enrolment, the patient list and the patient page."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from litestar import Request, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from core.events import Event
from core.identity.login import client_address
from core.patients import identity as ident
from core.patients import consent_rules
from core.patients.access import CONSENT_KINDS, PatientRef, current_consents, load_patient
from core.patients.nicknames import unique_nickname
from core.web import page, visible

SEXES = ("female", "male", "other", "unknown")
ENROL_ROLES = ("hp", "coordinator", "dispatcher", "assistant")
PER_PAGE = 50


async def audit(request: Request, action: str, patient: dict, detail: dict | None = None) -> None:
    """Every read or change of patient data goes to the hash-chained audit trail."""
    from core.audit.chain import record

    await record(
        action, patient_pseudonym=patient["pseudonym"], patient_hcp=patient["hcp"],
        actor=request.scope.get("user"), address=client_address(request), detail=detail or {},
    )


def ref(patient: dict) -> PatientRef:
    return PatientRef(patient["id"], patient["pseudonym"], patient["nickname"], patient["hcp"])


# --- list ---------------------------------------------------------------------------------------


@get("/patients", opt={"permission": "patients.view"}, include_in_schema=False)
async def patient_list(
    request: Request,
    q: Annotated[str, QueryParameter(max_length=100)] = "",
    page_no: Annotated[int, QueryParameter(name="page", ge=1, le=100000)] = 1,
) -> Template:
    from core.patients.tables import Patient, PatientErn

    actor = request.scope["user"]
    settings = request.app.state.settings
    rows = await Patient.select(Patient.id, Patient.pseudonym, Patient.nickname, Patient.hcp, Patient.identity, Patient.sex, Patient.restricted).where(
        (Patient.hcp == (actor.hcp_id or 0)) & Patient.erased_at.is_null()
    ).order_by(Patient.id, ascending=False)
    needle = ident.normalise(q)
    items = []
    for row in rows:
        who = ident.decrypt_identity(settings, row["pseudonym"], row["identity"])
        haystack = " ".join(ident.normalise(who.get(k, "")) for k in ("given_name", "family_name", "local_record_number")) + " " + ident.normalise(row["nickname"])
        if needle and needle not in haystack:
            continue
        items.append({**row, "name": ident.display_name(who), "date_of_birth": who.get("date_of_birth", "")})
    shown = items[(page_no - 1) * PER_PAGE: page_no * PER_PAGE]
    ids = [r["id"] for r in shown]
    consents = await current_consents(ids)
    erns: dict[int, list[str]] = {}
    if ids:
        for m in await PatientErn.select(PatientErn.patient, PatientErn.ern.acronym.as_alias("acronym")).where(PatientErn.patient.is_in(ids)):
            erns.setdefault(m["patient"], []).append(m["acronym"])
    if needle:
        for row in shown:  # a search hit shows identity: audited like a view
            await audit(request, "patient.search_hit", row, {"query_length": len(q)})
    return page(
        request, "patients/list.html",
        {"rows": shown, "consents": consents, "erns": erns, "q": q, "page_no": page_no,
         "has_next": len(items) > page_no * PER_PAGE, "kinds": CONSENT_KINDS},
        fragment="patients/_rows.html",
    )


# --- enrolment ----------------------------------------------------------------------------------


async def _enrol_erns(actor) -> list[dict]:
    from core.orgs.tables import Ern

    ids = sorted({e for r, e in actor.roles if r in ENROL_ROLES and e is not None})
    return await Ern.select(Ern.id, Ern.acronym).where(Ern.id.is_in(ids or [0])).order_by(Ern.acronym)


def validate_identity(form) -> tuple[dict, dict]:
    values = {k: str(form.get(k, "") or "").strip() for k in ident.FIELDS}
    errors: dict[str, str] = {}
    for key in ("given_name", "family_name"):
        if not 1 <= len(values[key]) <= 100:
            errors[key] = "Required, at most 100 characters."
    born = ident.parse_date(values["date_of_birth"])
    if born is None:
        errors["date_of_birth"] = "Enter the date as YYYY-MM-DD."
    elif born > date.today() or born.year < 1900:
        errors["date_of_birth"] = "The date of birth must be in the past (after 1900)."
    for key, limit in (("local_record_number", 50), ("national_id", 50), ("email", 254), ("phone", 40), ("address", 300)):
        if len(values[key]) > limit:
            errors[key] = f"At most {limit} characters."
    if values["email"] and ("@" not in values["email"] or " " in values["email"]):
        errors["email"] = "Enter a valid e-mail address, or leave it empty."
    return values, errors


def validate_consent(form, prefix: str = "care_") -> tuple[dict, dict]:
    values = {
        "status": str(form.get(f"{prefix}status", "") or ""),
        "date": str(form.get(f"{prefix}date", "") or "").strip(),
        "form_version": str(form.get(f"{prefix}form_version", "") or "").strip(),
    }
    errors: dict[str, str] = {}
    signed = ident.parse_date(values["date"])
    if signed is None:
        errors[f"{prefix}date"] = "Enter the date the form was signed (YYYY-MM-DD)."
    elif signed > date.today():
        errors[f"{prefix}date"] = "The consent date cannot be in the future."
    if not 1 <= len(values["form_version"]) <= 40:
        errors[f"{prefix}form_version"] = "Enter the version of the consent form (e.g. ERN-RND v3.1)."
    values["date"] = signed
    return values, errors


async def _enrol_context(actor, values=None, errors=None, duplicates=None) -> dict:
    return {
        "erns": await _enrol_erns(actor), "values": values or {}, "errors": errors or {}, "duplicates": duplicates or [],
        "sexes": SEXES, "kinds": CONSENT_KINDS, "labels": ident.LABELS, "today": date.today().isoformat(),
    }


@get("/patients/new", opt={"permission": "patients.enrol"}, include_in_schema=False)
async def enrol_form(request: Request) -> Template:
    return page(request, "patients/enrol.html", await _enrol_context(request.scope["user"]))


@post("/patients/new", opt={"permission": "patients.enrol"}, include_in_schema=False)
async def enrol_submit(request: Request) -> Template | Redirect:
    from core.patients.tables import Consent, Patient, PatientErn

    actor = request.scope["user"]
    host = request.app.state.host
    settings = host.settings
    form = await request.form()
    values, errors = validate_identity(form)
    sex = str(form.get("sex", "unknown"))
    if sex not in SEXES:
        errors["sex"] = "Choose one."
    allowed_erns = {e["id"] for e in await _enrol_erns(actor)}
    try:
        ern_id = int(form.get("ern", ""))
    except ValueError:
        ern_id = None
    if ern_id not in allowed_erns:
        errors["ern"] = "Choose one of your networks."
    if actor.hcp_id is None:
        errors["ern"] = "Your account belongs to no hospital; ask the helpdesk."
    if str(form.get("care_status", "")) != "given":
        errors["care_status"] = "Without a recorded Consent for Care the patient cannot be enrolled."
    care, consent_errors = validate_consent(form)
    errors.update(consent_errors)
    extra_consents = []
    for kind in ("sharing", "registry", "research"):
        status = str(form.get(f"{kind}_status", "") or "")
        if status in ("given", "refused"):
            extra_consents.append((kind, status))
        elif status:
            errors[f"{kind}_status"] = "Choose given, refused, or not asked."
    shown = {**values, "sex": sex, "ern": ern_id, **{k: str(form.get(k, "") or "") for k in form.keys() if k.endswith(("_status", "_date", "_form_version"))}}
    if errors:
        return page(request, "patients/enrol.html", await _enrol_context(actor, shown, errors), status_code=422)
    dup_record, dup_name = ident.duplicate_keys(settings, actor.hcp_id, values)
    if str(form.get("confirm_duplicate", "")) != "yes":
        duplicates = await _possible_duplicates(settings, actor.hcp_id, dup_record, dup_name)
        if duplicates:
            return page(request, "patients/enrol.html", await _enrol_context(actor, shown, {}, duplicates), status_code=409)
    pseudonym = ident.new_pseudonym()
    nickname = await unique_nickname()
    async with Patient._meta.db.transaction():
        patient = Patient(
            pseudonym=pseudonym, nickname=nickname, hcp=actor.hcp_id, identity=ident.encrypt_identity(settings, pseudonym, values),
            dup_record=dup_record, dup_name_dob=dup_name, sex=sex, created_by=actor.user_id,
        )
        await patient.save()
        await PatientErn.insert(PatientErn(patient=patient.id, ern=ern_id, enrolled_by=actor.user_id))
        consents = [Consent(patient=patient.id, kind="care", status="given", date=care["date"], form_version=care["form_version"], recorded_by=actor.user_id)]
        consents += [
            Consent(patient=patient.id, kind=k, status=s, date=care["date"], form_version=care["form_version"], recorded_by=actor.user_id)
            for k, s in extra_consents
        ]
        await Consent.insert(*consents)
        row = {"id": patient.id, "pseudonym": pseudonym, "nickname": nickname, "hcp": actor.hcp_id}
        await audit(request, "patient.enrol", row, {"ern": ern_id})  # commits with the enrolment
    await host.events.emit(Event("patient.enrolled", actor.user_id, "patient", pseudonym, {"ern": ern_id}, client_address(request)))
    return Redirect(f"/patients/{pseudonym}")


async def _possible_duplicates(settings, hcp_id: int, dup_record: str, dup_name: str) -> list[dict]:
    from core.patients.tables import Patient

    keys = [k for k in (dup_record, dup_name) if k]
    if not keys:
        return []
    rows = await Patient.select(Patient.pseudonym, Patient.nickname, Patient.identity, Patient.dup_record, Patient.dup_name_dob).where(
        (Patient.hcp == hcp_id) & Patient.erased_at.is_null() & (Patient.dup_record.is_in(keys) | Patient.dup_name_dob.is_in(keys))
    )
    out = []
    for r in rows:
        who = ident.decrypt_identity(settings, r["pseudonym"], r["identity"])
        why = "same local record number" if dup_record and r["dup_record"] == dup_record else "same name and date of birth"
        out.append({"pseudonym": r["pseudonym"], "nickname": r["nickname"], "name": ident.display_name(who), "why": why})
    return out


# --- the patient page ------------------------------------------------------------------------------


async def patient_context(request: Request, patient: dict) -> dict:
    from core.patients.tables import PatientErn

    settings = request.app.state.settings
    host = request.app.state.host
    actor = request.scope["user"]
    who = ident.decrypt_identity(settings, patient["pseudonym"], patient["identity"])
    memberships = await PatientErn.select(
        PatientErn.ern.acronym.as_alias("acronym"), PatientErn.ern.as_alias("ern_id"), PatientErn.enrolled_at,
    ).where(PatientErn.patient == patient["id"])
    consents = (await current_consents([patient["id"]])).get(patient["id"], {})
    sections = [s for _, secs in host.results_by_plugin("patient_sections", patient=ref(patient), actor=actor) for s in secs]
    from core.patients.documents import KINDS as DOCUMENT_KINDS, documents_for

    from core.patients.clinical import code_search_urls

    return {
        "code_search": code_search_urls(host),
        "documents": await documents_for(settings, patient), "document_kinds": DOCUMENT_KINDS,
        "patient": patient, "who": who, "name": ident.display_name(who), "labels": ident.LABELS, "memberships": memberships,
        "consents": consents, "kinds": CONSENT_KINDS, "sections": visible(sections, actor),
        "shareable": consent_rules.allowed(consents, "panels"),
    }


@get("/patients/{pseudonym:str}", opt={"permission": "patients.view"}, include_in_schema=False)
async def patient_page(request: Request, pseudonym: FromPath[str]) -> Template:
    from core.patients.clinical import clinical_context

    patient = await load_patient(request, pseudonym)
    await audit(request, "patient.view", patient)
    ctx = await patient_context(request, patient)
    ctx.update(await clinical_context(patient))
    return page(request, "patients/page.html", ctx)


ROUTES = [patient_list, enrol_form, enrol_submit, patient_page]
