"""GDPR erasure, restriction and rectification: requests are recorded on the record, and the
hospital's data-protection officer carries them out where the law allows (or refuses with the
legal reason, e.g. a retention duty, or data found accurate). The audit trail is kept in every
case; it names the patient by pseudonym only.

Rectification (Art. 16): the request says what the patient holds to be inaccurate; the clinicians
correct the record through its ordinary, audited editing; the DPO then carries the request out
with a note of what was corrected. Art. 19: everyone the data was disclosed to through a panel
(its lead, creator and accepted members) is told that the record was rectified, by pseudonym.
"""

from __future__ import annotations

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.events import Event
from core.identity.login import client_address
from core.identity.sessions import now
from core.patients.access import load_patient
from core.web import page

KINDS = {
    "erasure": "Erasure (right to be forgotten)",
    "restriction": "Restriction of processing",
    # (the key is short: GdprRequest.kind is 12 characters)
    "rectify": "Rectification of inaccurate data",
}
DECIDE = "patients.gdpr.decide"


@post("/patients/{pseudonym:str}/gdpr", opt={"permission": "patients.edit"}, include_in_schema=False)
async def record_request(request: Request, pseudonym: FromPath[str]) -> Template | Redirect:
    from core.patients.clinical import _rerender
    from core.patients.records import audit
    from core.patients.tables import GdprRequest

    patient = await load_patient(request, pseudonym, "patients.edit", allow_restricted=True)
    form = await request.form()
    kind = str(form.get("kind", ""))
    reason = str(form.get("reason", "")).strip()
    errors = {}
    if kind not in KINDS:
        errors["kind"] = "Choose erasure, restriction or rectification."
    if not 5 <= len(reason) <= 2000:
        errors["reason"] = (
            "Say what the patient holds to be inaccurate, and how they asked (5 to 2,000 characters)."
            if kind == "rectify" else "Say how the patient asked (5 to 2,000 characters)."
        )
    if errors:
        return await _rerender(request, patient, errors, "gdpr")
    async with GdprRequest._meta.db.transaction():
        row = GdprRequest(patient=patient["id"], kind=kind, reason=reason, requested_by=request.scope["user"].user_id)
        await row.save()
        await audit(request, "patient.gdpr_request", patient, {"kind": kind, "request": row.id})
    await request.app.state.host.events.emit(
        Event("patient.gdpr_requested", request.scope["user"].user_id, "patient", pseudonym, {"kind": kind}, client_address(request))
    )
    return Redirect(f"/patients/{pseudonym}#gdpr", status_code=303)


async def _queue(actor) -> list[dict]:
    from core.patients.tables import GdprRequest

    return await GdprRequest.select(
        GdprRequest.id, GdprRequest.kind, GdprRequest.status, GdprRequest.reason, GdprRequest.requested_at, GdprRequest.note,
        GdprRequest.patient.pseudonym.as_alias("pseudonym"), GdprRequest.patient.nickname.as_alias("nickname"),
    ).where(GdprRequest.patient.hcp == (actor.hcp_id or 0)).order_by(GdprRequest.id, ascending=False)


@get("/gdpr", opt={"permission": DECIDE}, include_in_schema=False)
async def queue(request: Request) -> Template:
    return page(request, "patients/gdpr_queue.html", {"requests": await _queue(request.scope["user"]), "kinds": KINDS})


async def erase_rows(patient_id: int) -> list[str]:
    """Delete identity, clinical record and documents' rows, keeping the pseudonymous shell for the
    audit; returns the storage keys that lost their row. Call inside the decision's transaction."""
    from core.patients.tables import (
        ChangeLog, ClinicalNote, Consent, Diagnosis, Document, GeneticFinding, Medication, Patient, Phenotype,
    )

    docs = await Document.select(Document.storage_key).where(Document.patient == patient_id)
    async with Patient._meta.db.transaction():
        for table in (Diagnosis, Phenotype, GeneticFinding, Medication, ClinicalNote, ChangeLog, Consent, Document):
            await table.delete().where(table.patient == patient_id)
        await Patient.update({
            Patient.identity: "", Patient.summary: "", Patient.dup_record: "", Patient.dup_name_dob: "", Patient.erased_at: now(),
        }).where(Patient.id == patient_id)
    return [d["storage_key"] for d in docs]


async def remove_files(settings, keys: list[str]) -> int:
    """After the commit: the erased documents' files, unless another row holds the same content."""
    from core.patients.tables import Document
    from core.storage import Storage

    storage = Storage(settings)
    removed = 0
    for key in keys:
        if not await Document.exists().where(Document.storage_key == key):
            removed += int(await storage.delete(key))
    return removed


async def erase(settings, patient_id: int) -> int:
    """Delete identity, clinical record and files; keep the pseudonymous shell for the audit."""
    return await remove_files(settings, await erase_rows(patient_id))


@post("/gdpr/{request_id:int}/{decision:str}", opt={"permission": DECIDE}, include_in_schema=False)
async def decide(request: Request, request_id: FromPath[int], decision: FromPath[str]) -> Template | Redirect:
    from core.audit.chain import record
    from core.patients.tables import GdprRequest, Patient

    actor = request.scope["user"]
    if decision not in ("carry-out", "refuse", "lift"):
        raise NotFoundException("No such decision.")
    mine = {r["id"]: r for r in await _queue(actor)}
    if request_id not in mine:
        raise NotFoundException("No such request.")
    item = mine[request_id]
    note = str((await request.form()).get("note", "")).strip()[:2000]
    wanted = {"carry-out": ("recorded", "carried_out"), "refuse": ("recorded", "refused"), "lift": ("carried_out", "lifted")}[decision]
    if decision == "lift" and item["kind"] != "restriction":
        raise NotFoundException("Only a restriction can be lifted.")
    if decision == "refuse" and len(note) < 5:
        return page(request, "patients/gdpr_queue.html", {"requests": list(mine.values()), "kinds": KINDS, "error": "Give the legal reason for refusing."}, status_code=422)
    if decision == "carry-out" and item["kind"] == "rectify" and len(note) < 5:
        return page(request, "patients/gdpr_queue.html", {"requests": list(mine.values()), "kinds": KINDS, "error": "Say what was corrected in the record."}, status_code=422)
    # The decision, its effect on the record and its audit entry commit together (an erasure's
    # files go after the commit: a file no row refers to is an orphan the storage check removes).
    erased_keys: list[str] = []
    async with GdprRequest._meta.db.transaction():
        done = await GdprRequest.update({
            GdprRequest.status: wanted[1], GdprRequest.decided_by: actor.user_id, GdprRequest.decided_at: now(), GdprRequest.note: note,
        }).where((GdprRequest.id == request_id) & (GdprRequest.status == wanted[0])).returning(GdprRequest.patient)
        if done:
            patient_id = done[0]["patient"]
            if wanted[1] == "carried_out" and item["kind"] == "restriction":
                await Patient.update({Patient.restricted: True}).where(Patient.id == patient_id)
            elif wanted[1] == "lifted":
                await Patient.update({Patient.restricted: False}).where(Patient.id == patient_id)
            elif wanted[1] == "carried_out" and item["kind"] == "erasure":
                erased_keys = await erase_rows(patient_id)
            await record(
                f"patient.gdpr_{wanted[1]}", patient_pseudonym=item["pseudonym"], patient_hcp=actor.hcp_id, actor=actor,
                address=client_address(request), detail={"kind": item["kind"], "request": request_id},
            )
    if not done:
        return page(request, "patients/gdpr_queue.html", {"requests": list(mine.values()), "kinds": KINDS, "error": "This request was already decided."}, status_code=409)
    if wanted[1] == "carried_out" and item["kind"] == "erasure":
        await remove_files(request.app.state.settings, erased_keys)
    if item["kind"] == "rectify":
        name = "patient.rectified" if wanted[1] == "carried_out" else "patient.gdpr_decided"
    elif item["kind"] == "erasure" and wanted[1] == "carried_out":
        name = "patient.erased"
    else:
        name = "patient.restriction_changed"
    await request.app.state.host.events.emit(Event(
        name, actor.user_id, "patient", item["pseudonym"], {"kind": item["kind"], "status": wanted[1]}, client_address(request),
    ))
    if item["kind"] == "rectify" and wanted[1] == "carried_out":
        from core.panels.consent import tell_recipients

        await tell_recipients(request, patient_id, "the patient's record was rectified at their request (GDPR Art. 16): check the shared data again")
    return Redirect("/gdpr", status_code=303)


ROUTES = [record_request, queue, decide]
