"""Who sees a panel, and what they may do in it.

A panel one may not see looks exactly like a missing one (404). Those who see it:
- its lead and creator, and members who accepted (the full pseudonymous view);
- invited members, who see only the invitation (question, ERN, urgency) until they accept;
- coordinators and dispatchers of the panel's current ERN, once it left the draft state;
- the enrolling hospital's clinicians (who alone also see the patient's identity).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from litestar import Request
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException

from core.permissions import allowed

STATUSES = {
    "draft": "Draft",
    "submitted": "Submitted",
    "assembling": "Assembling",
    "open": "Open for discussion",
    "outcome_review": "Outcome in review",
    "closed": "Closed",
    "archived": "Archived",
    "cancelled": "Cancelled",
}
KINDS = {
    "diagnostic": "Diagnostic",
    "therapeutic": "Therapeutic",
    "follow_up": "Follow-up",
    "second_opinion": "Second opinion",
    "genetic": "Genetic counselling",
}
URGENCIES = {"routine": "Routine", "soon": "Within two weeks", "urgent": "Urgent"}
#: States in which nothing but archiving may change.
READ_ONLY = frozenset({"closed", "archived", "cancelled"})
#: States in which members discuss (messages, requests, meetings).
DISCUSSING = frozenset({"open", "outcome_review"})


@dataclass
class PanelCtx:
    panel: dict
    patient: dict
    actor: object
    member: dict | None = None
    #: Any of: lead, creator, member (accepted), invited, assembler, home.
    roles: set[str] = field(default_factory=set)
    #: The patient's current consent does not allow sharing (``core.patients.consent_rules``):
    #: only the enrolling hospital sees the panel, and it may only be cancelled or closed.
    suspended: bool = False

    @property
    def id(self) -> int:
        return self.panel["id"]

    @property
    def full(self) -> bool:
        """Sees the shared clinical data (everyone except a not-yet-accepted invitee)."""
        return bool(self.roles - {"invited"})

    @property
    def participant(self) -> bool:
        """Takes part in the discussion: lead, creator, accepted members."""
        return bool(self.roles & {"lead", "creator", "member"})

    @property
    def sees_identity(self) -> bool:
        return "home" in self.roles

    @property
    def read_only(self) -> bool:
        return self.panel["status"] in READ_ONLY

    def has(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))


async def panel_roles(actor, panel: dict, patient_hcp: int) -> tuple[set[str], dict | None]:
    from core.panels.tables import PanelMember

    roles: set[str] = set()
    if actor is None or not allowed(actor, "panels.view"):
        return roles, None
    if panel["lead"] == actor.user_id:
        roles.add("lead")
    if panel["created_by"] == actor.user_id:
        roles.add("creator")
    member = await PanelMember.select().where(
        (PanelMember.panel == panel["id"]) & (PanelMember.user == actor.user_id)
    ).first()
    if member is not None:
        if member["status"] == "accepted":
            roles.add("member")
        elif member["status"] == "invited" and panel["status"] not in READ_ONLY:
            roles.add("invited")
    if panel["status"] != "draft" and allowed(actor, "panels.assemble", panel["ern"]):
        roles.add("assembler")
    if actor.hcp_id is not None and actor.hcp_id == patient_hcp and allowed(actor, "patients.view"):
        roles.add("home")
    return roles, member


async def load_panel(request: Request, panel_id: int, *, full: bool = True, while_suspended: bool = False) -> PanelCtx:
    """The panel for a page or action, or 404 for anyone who may not see it. With ``full``
    an invitee who has not accepted yet is refused too (403: they know the panel exists).

    Consent governs every panel route here, once: while the patient's consent does not allow
    sharing, everyone outside the enrolling hospital is refused (403, saying why), unless the
    route passes ``while_suspended`` (the lifecycle route, so a lead may cancel or close)."""
    from core.panels.tables import Panel
    from core.patients.consent_rules import SUSPENDED, patient_shareable
    from core.patients.tables import Patient

    actor = request.scope.get("user")
    panel = await Panel.select().where(Panel.id == panel_id).first()
    if panel is None:
        raise NotFoundException("No such panel, or you may not see it.")
    patient = await Patient.select(Patient.id, Patient.pseudonym, Patient.nickname, Patient.hcp, Patient.erased_at, Patient.sex).where(
        Patient.id == panel["patient"]
    ).first()
    roles, member = await panel_roles(actor, panel, patient["hcp"])
    if not roles or patient["erased_at"] is not None:
        raise NotFoundException("No such panel, or you may not see it.")
    ctx = PanelCtx(panel, patient, actor, member, roles, suspended=not await patient_shareable(patient["id"]))
    if ctx.suspended and not ctx.sees_identity and not while_suspended:
        raise PermissionDeniedException(SUSPENDED)
    if full and not ctx.full:
        raise PermissionDeniedException("Accept the invitation to see this panel's clinical data.")
    return ctx


def require(ctx: PanelCtx, *roles: str, states: frozenset | set | tuple | None = None, what: str = "do this") -> None:
    """Refuse (403) unless the actor holds one of ``roles`` here; (409) unless the panel is in ``states``."""
    if roles and not ctx.has(*roles):
        raise PermissionDeniedException(f"You may not {what} in this panel.")
    if states is not None and ctx.panel["status"] not in states:
        raise HTTPException(
            status_code=409,
            detail=f"This panel is {STATUSES[ctx.panel['status']].lower()}: you cannot {what} now.",
        )


def check_revision(ctx: PanelCtx, form) -> None:
    """A form carries the panel revision it was built from; an older one is stale (409)."""
    raw = str(form.get("revision", "") or "")
    if not raw.isdecimal() or int(raw) != ctx.panel["revision"]:
        raise HTTPException(
            status_code=409,
            detail="This panel changed since you opened the page (someone else acted on it). Reload the page and try again.",
        )


async def audit(request: Request, ctx: PanelCtx, action: str, detail: dict | None = None) -> None:
    """Reads and changes of a panel's patient data go to the hash-chained audit trail."""
    from core.audit.chain import record
    from core.identity.login import client_address

    await record(
        action, patient_pseudonym=ctx.patient["pseudonym"], patient_hcp=ctx.patient["hcp"],
        actor=request.scope.get("user"), address=client_address(request), detail={"panel": ctx.id, **(detail or {})},
    )


async def member_ids(panel_id: int, *, include_invited: bool = False) -> set[int]:
    """Lead and accepted members (everyone who should hear about the discussion)."""
    from core.panels.tables import Panel, PanelMember

    states = ["accepted", "invited"] if include_invited else ["accepted"]
    rows = await PanelMember.select(PanelMember.user).where((PanelMember.panel == panel_id) & PanelMember.status.is_in(states))
    panel = await Panel.select(Panel.lead, Panel.created_by).where(Panel.id == panel_id).first()
    return {r["user"] for r in rows} | {panel["lead"], panel["created_by"]}


async def is_accepted_member(actor, patient_id: int) -> bool:
    """Whether ``actor`` takes part in a panel (not cancelled) about this patient, and the
    patient's consent allows sharing: what plugins ask before showing a panel member
    pseudonymous data (images, slides, pedigree)."""
    from core.panels.tables import Panel, PanelMember
    from core.patients.consent_rules import patient_shareable

    if actor is None or not allowed(actor, "panels.view"):
        return False
    # Consent first: while it does not allow sharing, no panel gives anyone the patient's data.
    if not await patient_shareable(patient_id):
        return False
    panels = await Panel.select(Panel.id, Panel.lead, Panel.created_by).where(
        (Panel.patient == patient_id) & (Panel.status != "cancelled")
    )
    if any(actor.user_id in (p["lead"], p["created_by"]) for p in panels):
        return True
    ids = [p["id"] for p in panels]
    if not ids:
        return False
    row = await PanelMember.select(PanelMember.id).where(
        PanelMember.panel.is_in(ids) & (PanelMember.user == actor.user_id) & (PanelMember.status == "accepted")
    ).first()
    return row is not None
