"""Who sees a DICOM series or instance, and how much.

- The enrolling hospital (users of the patient's hospital holding ``patients.view`` and
  ``dicom.view``) sees every study of its patients, including instances still waiting for the
  burned-in text review; those holding ``dicom.upload`` change them (``may_edit``).
- Anyone else sees an instance only as an accepted participant of a panel (not cancelled) about the
  patient, and only once it was reviewed (``needs_review`` false); a series only when at least one of
  its instances is visible to them.
- Anyone else gets 404, exactly like a missing object, so ids do not leak.

A viewer asks for many frames a second while scrolling: the decision is kept in memory per
(session, grants, object) for ``TTL`` seconds. A change here (review, masking, deletion, erasure)
calls ``forget`` so this process decides again at once; another worker may answer from memory for up
to ``TTL`` seconds (frames only: pages and changes re-check with ``edit=True``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from litestar import Request
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException

from core.permissions import allowed

VIEW = "dicom.view"
UPLOAD = "dicom.upload"
REVIEW = "dicom.review"
ANNOTATE = "dicom.annotate"
TTL = 30.0
MAX_CACHED = 8192

NOT_FOUND = "No such image, or you may not see it."


@dataclass(frozen=True)
class Ctx:
    study: dict
    series: dict
    #: None when the context is a series.
    instance: dict | None
    patient: dict
    #: The actor is of the enrolling hospital with patients.view: sees unreviewed instances too.
    enrolling: bool
    #: Enrolling, holds dicom.upload, and the record is not restricted (GDPR).
    may_edit: bool
    #: The panel through which a non-enrolling actor sees the images (for the audit trail).
    panel_id: int | None = None

    @property
    def id(self) -> int:
        return (self.instance or self.series)["id"]


_cache: dict[tuple, tuple[float, Ctx]] = {}


def forget(kind: str | None = None, object_id: int | None = None) -> None:
    """Drop cached decisions: all of them (no arguments), or those of one ``("instance"|"series", id)``.
    A review changes what the series shows too, so callers changing an instance simply forget all."""
    if kind is None:
        _cache.clear()
        return
    for key in [k for k in _cache if k[-2:] == (kind, object_id)]:
        _cache.pop(key, None)


async def _patient(patient_id: int) -> dict | None:
    from core.patients.tables import Patient

    return await Patient.select(
        Patient.id, Patient.pseudonym, Patient.nickname, Patient.hcp, Patient.erased_at, Patient.restricted,
    ).where(Patient.id == patient_id).first()


async def member_panel(actor, patient_id: int) -> int | None:
    """A panel about the patient the actor takes part in (``is_accepted_member``), newest first."""
    from core.panels.access import is_accepted_member
    from core.panels.tables import Panel, PanelMember

    if not await is_accepted_member(actor, patient_id):
        return None
    panels = await Panel.select(Panel.id, Panel.lead, Panel.created_by).where(
        (Panel.patient == patient_id) & (Panel.status != "cancelled")).order_by(Panel.id, ascending=False)
    for p in panels:
        if actor.user_id in (p["lead"], p["created_by"]):
            return p["id"]
    ids = [p["id"] for p in panels]
    row = await PanelMember.select(PanelMember.panel).where(
        PanelMember.panel.is_in(ids) & (PanelMember.user == actor.user_id) & (PanelMember.status == "accepted")
    ).order_by(PanelMember.panel, ascending=False).first() if ids else None
    return row["panel"] if row else None


async def patient_role(actor, patient: dict | None) -> tuple[bool, bool, int | None] | None:
    """(enrolling, may_edit, panel_id) for the actor and a patient row, None when they see nothing."""
    if actor is None or patient is None or patient["erased_at"] is not None or not allowed(actor, VIEW):
        return None
    if actor.hcp_id is not None and actor.hcp_id == patient["hcp"] and allowed(actor, "patients.view"):
        return True, allowed(actor, UPLOAD) and not patient["restricted"], None
    panel_id = await member_panel(actor, patient["id"])
    if panel_id is None:
        return None
    return False, False, panel_id


async def decide(actor, kind: str, object_id: int) -> Ctx | None:
    """The access decision without the cache (None: may not see it)."""
    from plugins.dicom_viewer.tables import Instance, Series, Study

    if actor is None or not allowed(actor, VIEW):
        return None
    instance = None
    if kind == "instance":
        instance = await Instance.select().where(Instance.id == object_id).first()
        if instance is None:
            return None
        series_id = instance["series"]
    else:
        series_id = object_id
    series = await Series.select().where(Series.id == series_id).first()
    if series is None:
        return None
    study = await Study.select().where(Study.id == series["study"]).first()
    if study is None:
        return None
    patient = await _patient(study["patient"])
    role = await patient_role(actor, patient)
    if role is None:
        return None
    enrolling, may_edit, panel_id = role
    if not enrolling:
        if instance is not None and instance["needs_review"]:
            return None
        if instance is None and not await Instance.exists().where(
                (Instance.series == series_id) & (Instance.needs_review == False)):  # noqa: E712
            return None
    return Ctx(study, series, instance, patient, enrolling, may_edit, panel_id)


async def _load(request: Request, kind: str, object_id, edit: bool) -> Ctx:
    actor = request.scope.get("user")
    if actor is None or not isinstance(object_id, int) or isinstance(object_id, bool) or object_id <= 0:
        raise NotFoundException(NOT_FOUND)
    # The grants are part of the key: a role change yields a fresh decision.
    key = (actor.session_id or "", actor.user_id, actor.hcp_id, tuple(sorted(actor.grants)), kind, object_id)
    now = time.monotonic()
    hit = _cache.get(key)
    if not edit and hit is not None and hit[0] > now:
        ctx = hit[1]
    else:
        ctx = await decide(actor, kind, object_id)
        if ctx is None:
            _cache.pop(key, None)
            raise NotFoundException(NOT_FOUND)
        if len(_cache) >= MAX_CACHED:
            for k in [k for k, (t, _) in _cache.items() if t <= now] or list(_cache)[: MAX_CACHED // 4]:
                _cache.pop(k, None)
        _cache[key] = (now + TTL, ctx)
    if edit:
        if not ctx.enrolling or not allowed(actor, UPLOAD):
            raise PermissionDeniedException("Only the enrolling hospital changes these images.")
        if ctx.patient["restricted"]:
            raise HTTPException(status_code=409, detail="Processing of this record is restricted at the patient's "
                                                        "request (GDPR); it cannot be changed.")
    return ctx


async def load_series(request: Request, series_id: int, *, edit: bool = False) -> Ctx:
    """The series for a route (``ctx.instance`` is None), or 404 for anyone who may not see it. With
    ``edit``: only the enrolling hospital's uploaders (403 for others who see it; 409 when restricted)."""
    return await _load(request, "series", series_id, edit)


async def load_instance(request: Request, instance_id: int, *, edit: bool = False) -> Ctx:
    """The instance for a route, or 404 (unreviewed instances are 404 outside the enrolling hospital)."""
    return await _load(request, "instance", instance_id, edit)


async def visible_instances(ctx: Ctx) -> list[dict]:
    """The series' instances the context's actor may see, in instance-number order."""
    from plugins.dicom_viewer.tables import Instance

    query = Instance.select().where(Instance.series == ctx.series["id"])
    if not ctx.enrolling:
        query = query.where(Instance.needs_review == False)  # noqa: E712
    rows = await query.order_by(Instance.number).order_by(Instance.id)
    return rows


async def audit_read(request: Request, ctx: Ctx, action: str, detail: dict | None = None) -> None:
    """A read or change goes to the hash-chained audit trail, under the patient's pseudonym (with the
    panel it was seen through, for panel members)."""
    from core.audit.chain import record
    from core.identity.login import client_address

    extra: dict = {"study": ctx.study["id"], "series": ctx.series["id"]}
    if ctx.instance is not None:
        extra["instance"] = ctx.instance["id"]
    if ctx.panel_id is not None:
        extra["panel"] = ctx.panel_id
    await record(
        action, patient_pseudonym=ctx.patient["pseudonym"], patient_hcp=ctx.patient["hcp"],
        actor=request.scope.get("user"), address=client_address(request), detail={**extra, **(detail or {})},
    )
