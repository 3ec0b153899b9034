"""The panel lifecycle: which action moves a panel from which state to which, and who may.

    draft → submitted → assembling → open → outcome_review → closed → archived
    (return: back to draft; forward: to another ERN's queue; cancel: from any live state)

Every transition is checked here on the server, is a conditional update (status and revision
must still be what the actor saw, so a double submit or a stale form changes nothing), and
leaves a timeline entry with who, when and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from litestar import Request
from litestar.exceptions import HTTPException

from core.panels.access import STATUSES, PanelCtx, check_revision, require


@dataclass(frozen=True)
class Transition:
    name: str
    label: str
    sources: frozenset[str]
    #: New status; None keeps the status (forward re-queues as submitted).
    target: str
    who: tuple[str, ...]
    needs_note: bool = False
    #: Shown next to the button.
    hint: str = ""
    danger: bool = False


TRANSITIONS: dict[str, Transition] = {t.name: t for t in (
    Transition("submit", "Submit to the ERN", frozenset({"draft"}), "submitted", ("creator", "lead"),
               hint="The ERN's coordinators will assemble the panel."),
    Transition("take", "Assemble this panel", frozenset({"submitted"}), "assembling", ("assembler",),
               hint="You become responsible for inviting the experts."),
    Transition("return", "Return for more information", frozenset({"submitted", "assembling"}), "draft", ("assembler",),
               needs_note=True, hint="The creator gets the panel back with your question."),
    Transition("forward", "Forward to another ERN", frozenset({"submitted", "assembling"}), "submitted", ("assembler",),
               needs_note=True, hint="The other ERN's queue receives it; the history stays."),
    Transition("open", "Open the discussion", frozenset({"submitted", "assembling"}), "open", ("assembler", "lead"),
               hint="Needs at least one member who accepted."),
    Transition("propose", "Put the outcome up for review", frozenset({"open"}), "outcome_review", ("lead",),
               hint="Members comment on the drafted outcome."),
    Transition("reopen", "Reopen the discussion", frozenset({"outcome_review"}), "open", ("lead",)),
    Transition("close", "Close the panel", frozenset({"outcome_review"}), "closed", ("lead",),
               hint="Needs the signed outcome; the panel becomes read-only."),
    Transition("archive", "Archive", frozenset({"closed"}), "archived", ("lead", "assembler")),
    Transition("cancel", "Cancel the panel", frozenset({"draft", "submitted", "assembling", "open"}), "cancelled",
               ("creator", "lead", "assembler"), needs_note=True, danger=True),
)}

#: What may still happen to a panel suspended by the patient's consent (none shares data).
WHILE_SUSPENDED = frozenset({"cancel", "close", "archive"})

#: Notification kind and wording per action (who is told is decided in ``_audience``).
MESSAGES = {
    "submit": "a new panel is waiting in the ERN queue",
    "take": "a coordinator is assembling the panel",
    "return": "the panel was returned to you for more information",
    "forward": "the panel was forwarded to another ERN",
    "open": "the discussion is open",
    "propose": "the outcome is ready for review",
    "reopen": "the discussion was reopened",
    "close": "the panel was closed",
    "archive": "the panel was archived",
    "cancel": "the panel was cancelled",
}


def available(ctx: PanelCtx) -> list[Transition]:
    """The actions this actor may take on this panel now (buttons on the page)."""
    return [
        t for t in TRANSITIONS.values()
        if ctx.panel["status"] in t.sources and ctx.has(*t.who) and (not ctx.suspended or t.name in WHILE_SUSPENDED)
    ]


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def _ern_assemblers(ern_id: int) -> set[int]:
    from core.identity.tables import RoleAssignment

    rows = await RoleAssignment.select(RoleAssignment.user, RoleAssignment.expires_at).where(
        (RoleAssignment.ern == ern_id) & RoleAssignment.role.is_in(["coordinator", "dispatcher"])
    )
    now = _now()
    return {r["user"] for r in rows if r["expires_at"] is None or r["expires_at"] > now}


async def _precheck(request: Request, ctx: PanelCtx, t: Transition, form) -> dict:
    """Action-specific rules; returns extra column values for the update."""
    import json

    from core.panels.tables import PanelMember

    panel = ctx.panel
    extra: dict = {}
    if t.name == "submit":
        from core.panels.forms import missing_required

        from core.panels.templates_store import definition_of

        definition = await definition_of(panel["form_template"])
        missing = missing_required(definition, json.loads(panel["form_answers"] or "{}")) if definition else []
        if missing:
            raise HTTPException(status_code=422, detail="Complete the consultation form first: " + ", ".join(missing) + ".")
        if not panel["question"].strip():
            raise HTTPException(status_code=422, detail="State the clinical question first.")
        extra["submitted_at"] = _now()
    elif t.name == "forward":
        from core.orgs.tables import Ern

        raw = str(form.get("ern", "") or "")
        target = await Ern.select(Ern.id, Ern.acronym).where(Ern.id == int(raw)).first() if raw.isdecimal() else None
        if target is None or target["id"] == panel["ern"]:
            raise HTTPException(status_code=422, detail="Choose the ERN to forward the panel to (another one than now).")
        extra["ern"] = target["id"]
        extra["assembler"] = None
    elif t.name == "take":
        extra["assembler"] = ctx.actor.user_id
    elif t.name == "open":
        accepted = await PanelMember.count().where(
            (PanelMember.panel == panel["id"]) & (PanelMember.status == "accepted") & (PanelMember.user != panel["lead"])
        )
        if not accepted:
            raise HTTPException(status_code=409, detail="Invite experts first: at least one member must have accepted before the discussion opens.")
    elif t.name == "propose":
        from core.panels.tables import Outcome

        outcome = await Outcome.select(Outcome.findings).where(Outcome.panel == panel["id"]).first()
        if outcome is None or not outcome["findings"].strip():
            raise HTTPException(status_code=409, detail="Draft the outcome (at least the findings) before putting it up for review.")
    elif t.name == "close":
        from core.panels.outcome import contributors, is_final

        if not await is_final(panel["id"]):
            raise HTTPException(status_code=409, detail="The outcome must be signed by the lead and every co-signer before the panel closes.")
        few = len(await contributors(panel["id"])) < 2
        if few and str(form.get("confirm", "")) != "yes":
            raise ConfirmationNeeded(
                "Fewer than two members contributed to this panel. Closed like this it will not count in the ERN's monitoring. Close anyway?"
            )
        extra["closed_at"] = _now()
        extra["counts_in_monitoring"] = not few
    return extra


class ConfirmationNeeded(HTTPException):
    """The action is allowed but needs an explicit second click (``confirm=yes``)."""

    status_code = 409


async def apply(request: Request, ctx: PanelCtx, name: str, form) -> Transition:
    from core.panels import notices
    from core.panels.tables import Panel, PanelForward, PanelTransition

    t = TRANSITIONS.get(name)
    if t is None:
        raise HTTPException(status_code=404, detail="No such action.")
    require(ctx, *t.who, states=t.sources, what=t.label[0].lower() + t.label[1:])
    if ctx.suspended and t.name not in WHILE_SUSPENDED:
        from core.patients.consent_rules import SUSPENDED

        raise HTTPException(status_code=409, detail=SUSPENDED.split(":")[0] + ": it may only be cancelled or closed until consent is given again.")
    check_revision(ctx, form)
    note = str(form.get("note", "") or "").strip()
    if t.needs_note and not note:
        raise HTTPException(status_code=422, detail="Give a reason: it is kept in the panel's history.")
    if len(note) > 2000:
        raise HTTPException(status_code=422, detail="The reason may be at most 2,000 characters.")
    extra = await _precheck(request, ctx, t, form)
    panel = ctx.panel
    before = panel["status"]
    values = {Panel.status: t.target, Panel.revision: panel["revision"] + 1, Panel.updated_at: _now()}
    values.update({getattr(Panel, k): v for k, v in extra.items()})
    async with Panel._meta.db.transaction():
        done = await Panel.update(values).where(
            (Panel.id == panel["id"]) & (Panel.status == before) & (Panel.revision == panel["revision"])
        ).returning(Panel.id)
        if not done:
            raise HTTPException(status_code=409, detail="Someone else acted on this panel at the same moment. Reload the page and try again.")
        await PanelTransition.insert(PanelTransition(
            panel=panel["id"], action=t.name, from_status=before, to_status=t.target, actor=ctx.actor.user_id, note=note,
        ))
        if t.name == "forward":
            await PanelForward.insert(PanelForward(panel=panel["id"], from_ern=panel["ern"], to_ern=extra["ern"], reason=note, actor=ctx.actor.user_id))
    updated = {**panel, "status": t.target, **extra}
    if t.name in ("close", "cancel"):
        from core.panels.members import expire_guests

        await expire_guests(panel["id"])
    await notices.emit(request, "panel.transition", updated, {"action": t.name, "from": before, "to": t.target})
    await _tell(request, ctx, t, updated, note)
    await notices.live(request, panel["id"], {"type": "status", "status": t.target})
    return t


async def _tell(request: Request, ctx: PanelCtx, t: Transition, panel: dict, note: str) -> None:
    from core.panels import notices
    from core.panels.access import member_ids

    what = MESSAGES[t.name]
    if t.name in ("return", "forward", "cancel") and note:
        what = f"{what}: {note[:200]}"
    if t.name == "submit":
        kind = "panel.urgent" if panel["urgency"] == "urgent" else "panel.status"
        await notices.tell(request, panel, await _ern_assemblers(panel["ern"]), kind, what)
    elif t.name == "forward":
        await notices.tell(request, panel, await _ern_assemblers(panel["ern"]) | {panel["created_by"]}, "panel.status", what)
    elif t.name in ("take", "return"):
        await notices.tell(request, panel, {panel["created_by"], panel["lead"]}, "panel.status", what)
    elif t.name == "cancel":
        await notices.tell(request, panel, await member_ids(panel["id"], include_invited=True), "panel.status", what)
    elif t.name != "archive":
        await notices.tell(request, panel, await member_ids(panel["id"]), "panel.status", what)


#: Timeline wording of the steps that are not status changes.
STEPS = {
    "created": "Panel drafted",
    "edited": "Request edited",
    "shared": "More of the record shared",
    "urgency": "Urgency changed",
    "invited": "Experts invited",
    "accepted": "Invitation accepted",
    "declined": "Invitation declined",
    "member_removed": "Member removed",
    "data_requested": "Further data requested",
    "data_answered": "Request for data answered",
    "data_request_withdrawn": "Request for data withdrawn",
    "meeting_scheduled": "Meeting scheduled",
    "meeting_rescheduled": "Meeting moved",
    "meeting_cancelled": "Meeting cancelled",
    "attendance_recorded": "Meeting attendance recorded",
    "outcome_drafted": "Outcome drafted",
    "cosigners_chosen": "Co-signers chosen",
    "outcome_signed": "Outcome signed",
    "outcome_final": "Outcome final: report filed in the patient's record",
    "consent_suspended": "Suspended: the patient's consent no longer allows sharing",
    "consent_resumed": "Resumed: consent allows sharing again",
}


def describe(action: str, from_status: str, to_status: str) -> str:
    """Timeline wording."""
    t = TRANSITIONS.get(action)
    if t is not None:
        return f"{t.label} ({STATUSES.get(from_status, from_status)} → {STATUSES.get(to_status, to_status)})"
    return STEPS.get(action) or action.replace("_", " ").capitalize()
