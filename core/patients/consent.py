"""Consent: append-only history per kind; the newest row is the current status.

A change (withdrawal above all) takes effect at once and is emitted as ``consent.changed``,
which plugins act on (research data stops including the patient, panels stop, ...)."""

from __future__ import annotations

from litestar import Request, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.events import Event
from core.identity.login import client_address
from core.panels.consent import consent_changed
from core.patients.access import CONSENT_KINDS, CONSENT_STATUSES, load_patient
from core.patients.consent_rules import patient_shareable
from core.patients.documents import MAX_BYTES, store_upload
from core.storage import UploadRejected


@post(
    "/patients/{pseudonym:str}/consents", opt={"permission": "patients.edit"}, include_in_schema=False,
    request_max_body_size=MAX_BYTES + 1024 * 1024,
)
async def record_consent(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    from core.patients.clinical import _rerender
    from core.patients.records import audit, validate_consent
    from core.patients.tables import Consent

    patient = await load_patient(request, pseudonym, "patients.edit")
    form = await request.form()
    kind = str(form.get("kind", ""))
    status = str(form.get("status", ""))
    values, errors = validate_consent(form, prefix="")
    if kind not in CONSENT_KINDS:
        errors["kind"] = "Choose the kind of consent."
    if status not in CONSENT_STATUSES:
        errors["status"] = "Choose given, refused or withdrawn."
    if errors:
        return await _rerender(request, patient, errors, "consents")
    actor = request.scope["user"]
    document_id = None
    signed = form.get("form_file")
    if isinstance(signed, UploadFile) and signed.filename:
        # The signed form is stored first; the consent row then points at it.
        try:
            document_id = await store_upload(request, patient, signed, "consent_form", f"{CONSENT_KINDS[kind]}: {status} ({values['form_version']})")
        except UploadRejected as exc:
            response = await _rerender(request, patient, {"form_file": exc.message}, "consents")
            response.status_code = exc.status
            return response
    shareable_before = await patient_shareable(patient["id"])
    # The consent and its audit entry commit together, or neither does.
    async with Consent._meta.db.transaction():
        await Consent.insert(Consent(
            patient=patient["id"], kind=kind, status=status, date=values["date"], form_version=values["form_version"],
            recorded_by=actor.user_id, document=document_id,
        ))
        await audit(request, "consent.record", patient, {"kind": kind, "status": status})
    # It takes effect at once (access asks the current consent); panels record and tell it.
    await consent_changed(request, patient, shareable_before)
    await request.app.state.host.events.emit(
        Event("consent.changed", actor.user_id, "patient", pseudonym, {"kind": kind, "status": status}, client_address(request))
    )
    return Redirect(f"/patients/{pseudonym}#consents", status_code=303)


ROUTES = [record_consent]
