"""Who sees a slide, and how much.

- The enrolling hospital (users of the patient's hospital holding ``patients.view``) sees every slide
  of its patients, with label and macro images; those holding ``pathology.edit`` also change them.
- Anyone else sees a slide only as an accepted participant of a panel (not cancelled) about the
  patient, and never a slide the hospital hid from panels; never label, macro or identifying fields.
- Anyone else gets 404, exactly like a missing slide, so ids do not leak.

A viewer asks for hundreds of tiles a minute: the decision is kept in memory per (session, slide) for
``TTL`` seconds. A change of the slide here (hiding, deletion) forgets it at once in this process;
another worker process may answer from its memory for up to ``TTL`` seconds (tiles only: pages and
changes re-check). Reads are audited when a viewer or descriptor opens (``pathology.view``), not per
tile: a tile request repeats the view the audit already holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from litestar import Request
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException

from core.permissions import allowed

VIEW = "pathology.view"
EDIT = "pathology.edit"
ANNOTATE = "pathology.annotate"
TTL = 30.0
MAX_CACHED = 4096

NOT_FOUND = "No such slide, or you may not see it."


@dataclass(frozen=True)
class SlideCtx:
    slide: dict
    patient: dict
    #: The actor is of the enrolling hospital with patients.view: may see label and macro.
    enrolling: bool
    #: Enrolling, holds pathology.edit, and the record is not restricted (GDPR).
    may_edit: bool
    #: The panel through which a non-enrolling actor sees the slide (for the audit trail).
    panel_id: int | None = None

    @property
    def id(self) -> int:
        return self.slide["id"]


_cache: dict[tuple, tuple[float, SlideCtx]] = {}


def forget(slide_id: int | None = None) -> None:
    """Drop cached decisions (for one slide, or all): after hiding, deletion, erasure."""
    if slide_id is None:
        _cache.clear()
        return
    for key in [k for k in _cache if k[-1] == slide_id]:
        _cache.pop(key, None)


async def decide(actor, slide_id: int) -> SlideCtx | None:
    """The access decision without the cache (None: may not see it)."""
    from core.patients.tables import Patient
    from plugins.pathology_viewer.tables import Slide

    if actor is None or not allowed(actor, VIEW):
        return None
    slide = await Slide.select().where(Slide.id == slide_id).first()
    if slide is None:
        return None
    patient = await Patient.select(
        Patient.id, Patient.pseudonym, Patient.nickname, Patient.hcp, Patient.erased_at, Patient.restricted,
    ).where(Patient.id == slide["patient"]).first()
    if patient is None or patient["erased_at"] is not None:
        return None
    if actor.hcp_id is not None and actor.hcp_id == patient["hcp"] and allowed(actor, "patients.view"):
        may_edit = allowed(actor, EDIT) and not patient["restricted"]
        return SlideCtx(slide, patient, True, may_edit, None)
    if slide["hidden_from_panels"]:
        return None
    panel_id = await _member_panel(actor, patient["id"])
    if panel_id is None:
        return None
    return SlideCtx(slide, patient, False, False, panel_id)


async def _member_panel(actor, patient_id: int) -> int | None:
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


async def load_slide(request: Request, slide_id: int, *, edit: bool = False) -> SlideCtx:
    """The slide for a route, or 404 for anyone who may not see it. With ``edit``: only the enrolling
    hospital's editors (403 for others who see it; 409 when the record's processing is restricted)."""
    actor = request.scope.get("user")
    if actor is None or not isinstance(slide_id, int) or slide_id <= 0:
        raise NotFoundException(NOT_FOUND)
    # The grants are part of the key: a role change yields a fresh decision.
    key = (actor.session_id or "", actor.user_id, actor.hcp_id, tuple(sorted(actor.grants)), slide_id)
    now = time.monotonic()
    hit = _cache.get(key)
    if not edit and hit is not None and hit[0] > now:
        ctx = hit[1]
    else:
        ctx = await decide(actor, slide_id)
        if ctx is None:
            _cache.pop(key, None)
            raise NotFoundException(NOT_FOUND)
        if len(_cache) >= MAX_CACHED:
            for k in [k for k, (t, _) in _cache.items() if t <= now] or list(_cache)[: MAX_CACHED // 4]:
                _cache.pop(k, None)
        _cache[key] = (now + TTL, ctx)
    if edit:
        if not ctx.enrolling or not allowed(actor, EDIT):
            raise PermissionDeniedException("Only the enrolling hospital changes this slide.")
        if ctx.patient["restricted"]:
            raise HTTPException(status_code=409, detail="Processing of this record is restricted at the patient's "
                                                        "request (GDPR); it cannot be changed.")
    return ctx


async def audit_read(request: Request, ctx: SlideCtx, action: str, detail: dict | None = None) -> None:
    """A read or change of a slide goes to the hash-chained audit trail, under the patient's pseudonym
    (with the panel it was seen through, for panel members)."""
    from core.audit.chain import record
    from core.identity.login import client_address

    extra = {"slide": ctx.id}
    if ctx.panel_id is not None:
        extra["panel"] = ctx.panel_id
    await record(
        action, patient_pseudonym=ctx.patient["pseudonym"], patient_hcp=ctx.patient["hcp"],
        actor=request.scope.get("user"), address=client_address(request), detail={**extra, **(detail or {})},
    )
