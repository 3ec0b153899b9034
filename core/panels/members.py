"""Who takes part in a panel: finding the ERN's experts, invitations and answers, removals,
guests from outside the ERNs, and the end of a guest's access when the panel ends.

- The lead, the creator and the ERN's assemblers invite while the panel is submitted,
  assembling or open: healthcare professionals and coordinators of the panel's current ERN
  (from any of its hospitals), a whole expert group, or a guest by e-mail.
- A guest gets the ERN's guest role (``grant_guest``); it ends when the panel closes or is
  cancelled (``expire_guests``), unless the guest still takes part in another live panel
  of that ERN, and at the latest after ``GUEST_DAYS``.
- An invitee sees only the invitation until they accept (``access.load_panel``).

Membership changes do not bump the panel's revision: they only add or end one person's
part, and are guarded by the member row's status. Forms still carry the revision, so an
action taken on a page older than the last status change (opened, forwarded...) is refused.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import datetime, timedelta, timezone
from typing import Annotated
from urllib.parse import urlencode

from litestar import Request, get, post
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from core.panels import notices
from core.panels.access import READ_ONLY, STATUSES, PanelCtx, audit, check_revision, load_panel, require
from core.web import is_fragment_request, page

#: Roles in the panel's ERN that make someone an expert one may invite.
EXPERT_ROLES = ("hp", "coordinator")
#: Roles that take part in panels without needing a guest role (``core.panels.PARTICIPANTS``).
PANEL_ROLES = ("hp", "coordinator", "dispatcher", "guest", "assistant")
#: Panel states in which people are invited and answer.
INVITING = frozenset({"submitted", "assembling", "open"})
#: Who invites, and who removes members.
INVITERS = ("lead", "creator", "assembler")
REMOVERS = ("lead", "assembler")
#: Member states that hold a place in the panel.
ACTIVE = ("invited", "accepted")
ROLE_LABELS = {"lead": "Lead", "creator": "Requesting clinician", "member": "Member", "guest": "Guest expert"}
STATUS_LABELS = {"invited": "Invited", "accepted": "Accepted", "declined": "Declined", "removed": "Removed"}

MAX_CANDIDATES = 25
MAX_PER_INVITE = 50
QUERY_MAX = 100
NAME_MAX = 200
EMAIL_MAX = 254
REASON_MAX = 1000
#: How long a new guest's set-your-password link works.
GUEST_LINK_DAYS = 7

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r")*\.[A-Za-z]{2,63}$")

#: Country names (English first, then others people type) searched besides the stored ISO code.
COUNTRIES = {
    "AT": ("Austria", "Österreich"), "BE": ("Belgium", "Belgique België"), "BG": ("Bulgaria", "България"),
    "HR": ("Croatia", "Hrvatska"), "CY": ("Cyprus", "Κύπρος"), "CZ": ("Czechia", "Czech Republic Česko"),
    "DK": ("Denmark", "Danmark"), "EE": ("Estonia", "Eesti"), "FI": ("Finland", "Suomi"), "FR": ("France", ""),
    "DE": ("Germany", "Deutschland"), "GR": ("Greece", "Ελλάδα Hellas"), "EL": ("Greece", "Ελλάδα Hellas"),
    "HU": ("Hungary", "Magyarország"), "IE": ("Ireland", "Éire"), "IT": ("Italy", "Italia"), "LV": ("Latvia", "Latvija"),
    "LT": ("Lithuania", "Lietuva"), "LU": ("Luxembourg", "Lëtzebuerg"), "MT": ("Malta", ""),
    "NL": ("Netherlands", "Nederland Holland"), "PL": ("Poland", "Polska"), "PT": ("Portugal", ""),
    "RO": ("Romania", "România"), "SK": ("Slovakia", "Slovensko"), "SI": ("Slovenia", "Slovenija"),
    "ES": ("Spain", "España"), "SE": ("Sweden", "Sverige"), "NO": ("Norway", "Norge"), "IS": ("Iceland", "Ísland"),
    "LI": ("Liechtenstein", ""), "CH": ("Switzerland", "Schweiz Suisse Svizzera"), "GB": ("United Kingdom", "UK Britain"),
    "UK": ("United Kingdom", "Britain"), "UA": ("Ukraine", "Україна"),
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def fold(text: str) -> str:
    """Lower case without accents, so "Muller" finds "Müller" and "sao" finds "São"."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def country_name(code: str) -> str:
    return COUNTRIES.get((code or "").upper(), (code or "",))[0]


def _bad(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


# --- who may be invited ------------------------------------------------------------------------


async def ern_experts(ern_id: int, user_ids=None) -> dict[int, dict]:
    """Active users holding hp or coordinator in ``ern_id`` now (roles expire), by user id,
    with their hospital; only ``user_ids`` among them when given."""
    from core.identity.tables import RoleAssignment

    where = (
        (RoleAssignment.ern == ern_id) & RoleAssignment.role.is_in(list(EXPERT_ROLES))
        & (RoleAssignment.user.is_active == True)  # noqa: E712
    )
    if user_ids is not None:
        where = where & RoleAssignment.user.is_in(list(user_ids) or [0])
    rows = await RoleAssignment.select(
        RoleAssignment.user, RoleAssignment.expires_at, RoleAssignment.user.name.as_alias("name"),
        RoleAssignment.user.hcp.name.as_alias("hcp_name"), RoleAssignment.user.hcp.city.as_alias("city"),
        RoleAssignment.user.hcp.country.as_alias("country"),
    ).where(where)
    now = _now()
    out: dict[int, dict] = {}
    for r in rows:
        if r["expires_at"] is not None and r["expires_at"] <= now:
            continue
        out[r["user"]] = {
            "id": r["user"], "name": r["name"], "hcp_name": r["hcp_name"] or "", "city": r["city"] or "",
            "country": r["country"] or "", "country_name": country_name(r["country"] or ""),
        }
    return out


async def _taken(panel: dict) -> set[int]:
    """People who already have a place: lead, creator, invited and accepted members."""
    from core.panels.tables import PanelMember

    rows = await PanelMember.select(PanelMember.user).where((PanelMember.panel == panel["id"]) & PanelMember.status.is_in(list(ACTIVE)))
    return {r["user"] for r in rows} | {panel["lead"], panel["created_by"]}


def _matches(expert: dict, words: list[str]) -> bool:
    hay = fold(" ".join((expert["name"], expert["hcp_name"], expert["city"], expert["country"], " ".join(COUNTRIES.get(expert["country"].upper(), ())))))
    return all(w in hay for w in words)


async def find_candidates(panel: dict, q: str, limit: int = MAX_CANDIDATES) -> tuple[list[dict], bool]:
    """Experts of the panel's current ERN matching every word of ``q`` (name, hospital, city,
    country), not yet in the panel; sorted by name. Returns (at most ``limit``, more exist)."""
    experts = await ern_experts(panel["ern"])
    taken = await _taken(panel)
    words = fold(q).split()[:8]
    found = sorted(
        (e for uid, e in experts.items() if uid not in taken and _matches(e, words)),
        key=lambda e: (fold(e["name"]), e["id"]),
    )
    return found[:limit], len(found) > limit


# --- storing invitations -----------------------------------------------------------------------


async def _names(user_ids) -> dict[int, str]:
    from core.identity.tables import User

    ids = sorted({u for u in user_ids if u})
    if not ids:
        return {}
    return {r["id"]: r["name"] for r in await User.select(User.id, User.name).where(User.id.is_in(ids))}


async def _lock_panel(ctx: PanelCtx, states) -> None:
    """Inside a transaction: touch the panel row if it is still in ``states`` at the revision
    the form was built from. Concurrent membership changes of one panel queue up here (row
    lock), so the duplicate checks that follow see each other's rows."""
    from core.panels.tables import Panel

    done = await Panel.update({Panel.updated_at: _now()}).where(
        (Panel.id == ctx.id) & (Panel.revision == ctx.panel["revision"]) & Panel.status.is_in(sorted(states))
    ).returning(Panel.id)
    if not done:
        raise _bad(409, "Someone else acted on this panel at the same moment. Reload the page and try again.")


async def _store_invitations(ctx: PanelCtx, entries: list[dict]) -> None:
    """Within the caller's transaction: an invited row per entry ({"user", "role",
    "guest_assignment"}), reusing the row of someone who declined or was removed before."""
    from core.panels.tables import PanelMember

    ids = [e["user"] for e in entries]
    existing = {
        r["user"]: r for r in await PanelMember.select().where((PanelMember.panel == ctx.id) & PanelMember.user.is_in(ids))
    }
    if any(r["status"] in ACTIVE for r in existing.values()):
        raise _bad(409, "Someone you chose was invited by someone else a moment ago. Reload the page and try again.")
    now = _now()
    new = []
    for e in entries:
        row = existing.get(e["user"])
        if row is None:
            new.append(PanelMember(
                panel=ctx.id, user=e["user"], role=e["role"], status="invited", invited_by=ctx.actor.user_id, invited_at=now,
                guest_assignment=e.get("guest_assignment"),
            ))
            continue
        await PanelMember.update({
            PanelMember.role: e["role"], PanelMember.status: "invited", PanelMember.invited_by: ctx.actor.user_id,
            PanelMember.invited_at: now, PanelMember.responded_at: None,
            PanelMember.guest_assignment: e.get("guest_assignment") or row["guest_assignment"],
        }).where(PanelMember.id == row["id"])
    if new:
        await PanelMember.insert(*new)


async def _after_invite(request: Request, ctx: PanelCtx, entries: list[dict], *, via: str, tell_ids, wording: str = "") -> None:
    """Timeline, notification, events and audit once the invitations are committed.
    ``via``: search, group, guest or email."""
    names = await _names(e["user"] for e in entries)
    listed = ", ".join(names.get(e["user"], "?") for e in entries)
    await notices.timeline(ctx.id, "invited", ctx.actor.user_id, note=f"Invited{wording}: {listed}")
    await notices.tell(request, ctx.panel, set(tell_ids), "panel.invited", "you are invited to take part in the panel", anchor="#members")
    for e in entries:
        await notices.emit(request, "panel.member_invited", ctx.panel, {"user": e["user"], "role": e["role"], "via": via})
    await audit(request, ctx, "panel.invite", {"users": [e["user"] for e in entries], "via": via})


def _done(panel_id: int) -> Redirect:
    return Redirect(f"/panels/{panel_id}#members", status_code=303)


async def _inviting(request: Request, panel_id: int) -> tuple[PanelCtx, object]:
    ctx = await load_panel(request, panel_id)
    require(ctx, *INVITERS, states=INVITING, what="invite members")
    form = await request.form()
    check_revision(ctx, form)
    return ctx, form


async def _ern_acronym(ern_id: int) -> str:
    from core.orgs.tables import Ern

    row = await Ern.select(Ern.acronym).where(Ern.id == ern_id).first()
    return row["acronym"] if row else "the ERN"


# --- routes: finding and inviting ERN experts --------------------------------------------------

VIEW = {"permission": "panels.view"}


@get("/panels/{panel_id:int}/candidates", opt=VIEW, include_in_schema=False)
async def candidates(
    request: Request, panel_id: FromPath[int], q: Annotated[str, QueryParameter(max_length=QUERY_MAX)] = "",
) -> Template | Redirect:
    """The active search's results (an htmx fragment); without htmx, the panel page shows them."""
    ctx = await load_panel(request, panel_id)
    require(ctx, *INVITERS, states=INVITING, what="invite members")
    if not is_fragment_request(request):
        return Redirect(f"/panels/{panel_id}?{urlencode({'member_q': q})}#members", status_code=303)
    rows, more = await find_candidates(ctx.panel, q)
    return page(request, "panels/_members.html", {
        "members_part": "candidates", "p": ctx, "panel": ctx.panel, "revision": str(ctx.panel["revision"]),
        "candidates": rows, "candidates_more": more, "candidate_q": q,
    })


def _user_ids(form) -> list[int]:
    raw = form.getall("user", []) if hasattr(form, "getall") else []
    ids: list[int] = []
    for value in raw:
        value = str(value).strip()
        if not value.isdecimal() or len(value) > 12:
            raise _bad(422, "Choose the experts to invite from the search results.")
        ids.append(int(value))
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise _bad(422, "Choose at least one expert to invite.")
    if len(ids) > MAX_PER_INVITE:
        raise _bad(422, f"Invite at most {MAX_PER_INVITE} people at a time.")
    return ids


@post("/panels/{panel_id:int}/invite", opt=VIEW, include_in_schema=False)
async def invite(request: Request, panel_id: FromPath[int]) -> Redirect:
    from core.panels.tables import Panel

    ctx, form = await _inviting(request, panel_id)
    ids = _user_ids(form)
    taken = await _taken(ctx.panel)
    if any(i in taken for i in ids):
        raise _bad(409, "Someone you chose is already invited or takes part in this panel.")
    experts = await ern_experts(ctx.panel["ern"], ids)
    if any(i not in experts for i in ids):
        acronym = await _ern_acronym(ctx.panel["ern"])
        raise _bad(422, f"Only healthcare professionals and coordinators of {acronym} can be invited from the search; "
                        "invite anyone else as a guest expert.")
    entries = [{"user": i, "role": "member"} for i in ids]
    async with Panel._meta.db.transaction():
        await _lock_panel(ctx, INVITING)
        await _store_invitations(ctx, entries)
    await _after_invite(request, ctx, entries, via="search", tell_ids=ids)
    return _done(panel_id)


@post("/panels/{panel_id:int}/invite-group", opt=VIEW, include_in_schema=False)
async def invite_group(request: Request, panel_id: FromPath[int]) -> Redirect:
    from core.panels.tables import ExpertGroup, ExpertGroupMember, Panel

    ctx, form = await _inviting(request, panel_id)
    raw = str(form.get("group", "") or "").strip()
    group = None
    if raw.isdecimal() and len(raw) <= 12:
        group = await ExpertGroup.select().where((ExpertGroup.id == int(raw)) & (ExpertGroup.ern == ctx.panel["ern"])).first()
    if group is None:
        raise _bad(422, "Choose one of the ERN's expert groups.")
    listed = [r["user"] for r in await ExpertGroupMember.select(ExpertGroupMember.user).where(ExpertGroupMember.group == group["id"])]
    experts = await ern_experts(ctx.panel["ern"], listed)
    taken = await _taken(ctx.panel)
    ids = [u for u in dict.fromkeys(listed) if u in experts and u not in taken]
    if not ids:
        raise _bad(409, f"Everyone in “{group['name']}” who is still an expert of the ERN is already in this panel.")
    entries = [{"user": i, "role": "member"} for i in ids]
    async with Panel._meta.db.transaction():
        await _lock_panel(ctx, INVITING)
        await _store_invitations(ctx, entries)
    await _after_invite(request, ctx, entries, via="group", tell_ids=ids, wording=f" with the group “{group['name']}”")
    return _done(panel_id)


# --- guests from outside the ERN ---------------------------------------------------------------


def guest_values(form) -> tuple[dict, dict]:
    """The guest form's name and e-mail, with errors by field."""
    name = " ".join(str(form.get("name", "") or "").split())
    email = str(form.get("email", "") or "").strip().lower()
    errors = {}
    if not 2 <= len(name) <= NAME_MAX:
        errors["name"] = f"Give the guest's full name (2 to {NAME_MAX} characters)."
    if len(email) > EMAIL_MAX or not EMAIL.match(email):
        errors["email"] = "Give a valid e-mail address (like name@hospital.org)."
    return {"name": name, "email": email}, errors


async def _held_roles(user_id: int, ern_id: int) -> list[dict]:
    """The user's roles in the ERN that have not expired."""
    from core.identity.tables import RoleAssignment

    now = _now()
    rows = await RoleAssignment.select(RoleAssignment.id, RoleAssignment.role, RoleAssignment.expires_at).where(
        (RoleAssignment.user == user_id) & (RoleAssignment.ern == ern_id)
    )
    return [r for r in rows if r["expires_at"] is None or r["expires_at"] > now]


async def _guest_role(user_id: int, ern_id: int, actor_id: int) -> tuple[str, int | None]:
    """Within a transaction: (panel role, guest RoleAssignment id) for someone invited by
    e-mail. An expert of the ERN joins as a member and gets nothing, as does someone with
    another lasting role that takes part in panels; someone who already has the ERN's
    (expiring) guest role shares it, extended to ``GUEST_DAYS`` from now if shorter, so that
    it ends with the last of their panels; anyone else is granted it."""
    from core.identity.access import grant_guest
    from core.identity.roles import GUEST_DAYS
    from core.identity.tables import RoleAssignment

    held = await _held_roles(user_id, ern_id)
    if any(r["role"] in EXPERT_ROLES for r in held):
        return "member", None
    if any(r["role"] in PANEL_ROLES and r["expires_at"] is None for r in held):
        return "guest", None  # a lasting role given otherwise: not this panel's to end
    guests = [r for r in held if r["role"] == "guest"]
    until = _now() + timedelta(days=GUEST_DAYS)
    if guests:
        current = max(guests, key=lambda r: r["expires_at"])
        if current["expires_at"] < until:
            await RoleAssignment.update({RoleAssignment.expires_at: until}).where(RoleAssignment.id == current["id"])
        return "guest", current["id"]
    if any(r["role"] in PANEL_ROLES for r in held):
        return "guest", None
    return "guest", await grant_guest(user_id, ern_id, actor_id, days=GUEST_DAYS)


async def _send_welcome(request: Request, ctx: PanelCtx, name: str, email: str, token: str) -> None:
    from core.identity.accounts import SIGNATURE, _link
    from core.identity.roles import GUEST_DAYS
    from core.mail.sender import send_mail

    settings = request.app.state.settings
    acronym = await _ern_acronym(ctx.panel["ern"])
    body = (
        f"Hello {name},\n\n"
        f"{ctx.actor.name} invites you as a guest expert to a case discussion ({notices.panel_ref(ctx.panel)}) "
        f"of the European Reference Network {acronym} in CPMS.\n\n"
        f"An account was opened for you with this e-mail address. Choose your password within {GUEST_LINK_DAYS} days here:\n\n"
        f"{_link(settings, '/account/password/reset/' + token)}\n\n"
        "Then log in: you will set up two-step login with an authenticator app, and find the invitation under Panels, "
        "where you accept or decline it.\n\n"
        f"Guest access lasts at most {GUEST_DAYS} days and ends when the panel closes. "
        "If you do not know why you got this message, ignore it.\n\n"
        f"{SIGNATURE}\n"
    )
    await send_mail(settings, email, "You are invited to a CPMS case discussion", body)


@post("/panels/{panel_id:int}/invite-guest", opt=VIEW, include_in_schema=False)
async def invite_guest(request: Request, panel_id: FromPath[int]) -> Redirect:
    from core.identity import create_user
    from core.identity.accounts import RESET_PASSWORD, issue_token
    from core.identity.tables import User
    from core.panels.tables import Panel

    ctx, form = await _inviting(request, panel_id)
    values, errors = guest_values(form)
    if errors:
        raise _bad(422, " ".join(errors.values()))
    user = await User.select(User.id, User.name, User.is_active).where(User.email == values["email"]).first()
    if user is not None and not user["is_active"]:
        raise _bad(409, "The account with this e-mail address is deactivated; the helpdesk can reactivate it.")
    if user is not None and user["id"] in await _taken(ctx.panel):
        raise _bad(409, "This person is already invited or takes part in this panel.")
    token = ""
    async with Panel._meta.db.transaction():
        await _lock_panel(ctx, INVITING)
        created = user is None
        if created:
            # Nobody knows this password: the guest chooses theirs through the mailed link.
            user_id = await create_user(values["email"], values["name"], secrets.token_urlsafe(32))
        else:
            user_id = user["id"]
        role, assignment = await _guest_role(user_id, ctx.panel["ern"], ctx.actor.user_id)
        entry = {"user": user_id, "role": role, "guest_assignment": assignment}
        await _store_invitations(ctx, [entry])
        if created:
            token = await issue_token(user_id, RESET_PASSWORD, timedelta(days=GUEST_LINK_DAYS))
    if created:
        await request.app.state.host.events.emit(_user_created(request, user_id))
        await _send_welcome(request, ctx, values["name"], values["email"], token)
    # A new guest hears from the set-password mail only; an existing account gets the usual notification.
    await _after_invite(
        request, ctx, [entry], via="guest" if role == "guest" else "email", tell_ids=[] if created else [user_id],
        wording=" as a guest" if role == "guest" else " by e-mail",
    )
    return _done(panel_id)


def _user_created(request: Request, user_id: int):
    from core.events import Event
    from core.identity.login import client_address

    actor = request.scope.get("user")
    return Event("user.created", actor.user_id if actor else None, "user", str(user_id), {"method": "panel_guest"}, client_address(request))


# --- answering an invitation -------------------------------------------------------------------


@post("/panels/{panel_id:int}/respond", opt=VIEW, include_in_schema=False)
async def respond(request: Request, panel_id: FromPath[int]) -> Redirect:
    from core.panels.tables import Panel, PanelMember

    ctx = await load_panel(request, panel_id, full=False)
    member = ctx.member
    if member is None or member["status"] == "removed":
        raise PermissionDeniedException("You are not invited to this panel.")
    if member["status"] != "invited":
        raise _bad(409, f"You already {'accepted' if member['status'] == 'accepted' else 'declined'} this invitation.")
    require(ctx, "invited", states=INVITING, what="answer the invitation")
    form = await request.form()
    check_revision(ctx, form)
    answer = str(form.get("answer", "") or "")
    if answer not in ("accept", "decline"):
        raise _bad(422, "Accept or decline the invitation.")
    reason = str(form.get("reason", "") or "").strip() if answer == "decline" else ""
    if len(reason) > REASON_MAX:
        raise _bad(422, f"The reason may be at most {REASON_MAX:,} characters.")
    status = "accepted" if answer == "accept" else "declined"
    async with Panel._meta.db.transaction():
        done = await PanelMember.update({PanelMember.status: status, PanelMember.responded_at: _now()}).where(
            (PanelMember.id == member["id"]) & (PanelMember.status == "invited")
        ).returning(PanelMember.id)
        if not done:
            raise _bad(409, "You already answered this invitation.")
        name = ctx.actor.name
        await notices.timeline(panel_id, status, ctx.actor.user_id, note=f"{name}{': ' + reason if reason else ''}")
    panel = ctx.panel
    await notices.tell(
        request, panel, {panel["lead"], panel["assembler"]}, "panel.status",
        f"{name} {status} the invitation", anchor="#members",
    )
    await notices.emit(request, "panel.member_responded", panel, {"user": ctx.actor.user_id, "answer": status})
    await audit(request, ctx, "panel.respond", {"answer": status})
    if status == "declined":
        return Redirect("/panels", status_code=303)
    return _done(panel_id)


# --- removing a member -------------------------------------------------------------------------


@post("/panels/{panel_id:int}/members/{member_id:int}/remove", opt=VIEW, include_in_schema=False)
async def remove(request: Request, panel_id: FromPath[int], member_id: FromPath[int]) -> Redirect:
    from core.panels.tables import Panel, PanelMember

    ctx = await load_panel(request, panel_id)
    require(ctx, *REMOVERS, what="remove members")
    if ctx.read_only:
        raise _bad(409, f"This panel is {STATUSES[ctx.panel['status']].lower()}: its members no longer change.")
    form = await request.form()
    check_revision(ctx, form)
    row = await PanelMember.select().where((PanelMember.id == member_id) & (PanelMember.panel == panel_id)).first()
    if row is None or row["status"] == "removed":
        raise _bad(404, "No such member in this panel.")
    if row["user"] == ctx.panel["lead"] or row["role"] == "lead":
        raise _bad(409, "The lead cannot be removed.")
    from core.panels.tables import OutcomeSigner

    if await OutcomeSigner.exists().where(
        (OutcomeSigner.panel == panel_id) & (OutcomeSigner.user == row["user"]) & OutcomeSigner.signed_at.is_null()
    ):
        raise _bad(409, "This member is still to co-sign the outcome; the lead must choose the co-signers again first.")
    async with Panel._meta.db.transaction():
        await _lock_panel(ctx, set(STATUSES) - READ_ONLY)
        done = await PanelMember.update({PanelMember.status: "removed"}).where(
            (PanelMember.id == member_id) & (PanelMember.status != "removed")
        ).returning(PanelMember.id)
        if not done:
            raise _bad(409, "This member was removed a moment ago.")
        name = (await _names([row["user"]])).get(row["user"], "?")
        await notices.timeline(panel_id, "member_removed", ctx.actor.user_id, note=f"{name} ({STATUS_LABELS[row['status']].lower()} before)")
    if row["guest_assignment"]:
        await _expire_assignments([{"user": row["user"], "guest_assignment": row["guest_assignment"]}])
    await audit(request, ctx, "panel.member_remove", {"user": row["user"]})
    return _done(panel_id)


# --- the end of guests' access -----------------------------------------------------------------


async def _expire_assignments(rows: list[dict]) -> int:
    """Expire the guest roles in ``rows`` ({"user", "guest_assignment"}) of guests who take part
    (invited or accepted) in no live panel of the role's ERN any more."""
    from core.identity.tables import RoleAssignment
    from core.panels.tables import PanelMember

    now = _now()
    expired = 0
    for row in rows:
        assignment = await RoleAssignment.select(RoleAssignment.id, RoleAssignment.ern, RoleAssignment.role, RoleAssignment.expires_at).where(
            (RoleAssignment.id == row["guest_assignment"]) & (RoleAssignment.user == row["user"])
        ).first()
        if assignment is None or assignment["role"] != "guest" or (assignment["expires_at"] is not None and assignment["expires_at"] <= now):
            continue
        elsewhere = await PanelMember.count().where(
            (PanelMember.user == row["user"]) & PanelMember.status.is_in(list(ACTIVE))
            & (PanelMember.panel.ern == assignment["ern"]) & PanelMember.panel.status.not_in(sorted(READ_ONLY))
        )
        if elsewhere:
            continue
        await RoleAssignment.update({RoleAssignment.expires_at: now}).where(RoleAssignment.id == assignment["id"])
        expired += 1
    return expired


async def expire_guests(panel_id: int) -> int:
    """Called when a panel closes or is cancelled: expire the guest roles granted for it,
    except for guests still invited to or taking part in another live panel of the same ERN.
    Returns how many roles were expired."""
    from core.panels.tables import PanelMember

    rows = await PanelMember.select(PanelMember.user, PanelMember.guest_assignment).where(
        (PanelMember.panel == panel_id) & PanelMember.guest_assignment.is_not_null()
    )
    return await _expire_assignments(rows)


# --- the panel page's section ------------------------------------------------------------------


async def member_rows(panel: dict) -> list[dict]:
    """Lead, requesting clinician and members (not the removed), with hospital and status."""
    from core.identity.tables import User
    from core.panels.tables import PanelMember

    rows = await PanelMember.select(
        PanelMember.id, PanelMember.user, PanelMember.role, PanelMember.status, PanelMember.invited_at, PanelMember.responded_at,
        PanelMember.user.name.as_alias("name"), PanelMember.user.hcp.name.as_alias("hcp_name"),
        PanelMember.user.hcp.country.as_alias("country"),
    ).where((PanelMember.panel == panel["id"]) & (PanelMember.status != "removed")).order_by(PanelMember.id)
    listed = {r["user"] for r in rows}
    firsts = []
    for user_id, role in ((panel["lead"], "lead"), (panel["created_by"], "creator")):
        if user_id in listed or any(f["user"] == user_id for f in firsts):
            continue
        person = await User.select(User.name, User.hcp.name.as_alias("hcp_name"), User.hcp.country.as_alias("country")).where(User.id == user_id).first()
        if person:
            firsts.append({"id": None, "user": user_id, "role": role, "status": "", **person, "invited_at": None, "responded_at": None})
    order = {"accepted": 0, "invited": 1, "declined": 2}
    members = sorted(rows, key=lambda r: (order.get(r["status"], 3), fold(r["name"])))
    out = []
    for r in firsts + members:
        role = "lead" if r["user"] == panel["lead"] else r["role"]
        out.append({
            **r, "role": role, "role_label": ROLE_LABELS.get(role, role), "status_label": STATUS_LABELS.get(r["status"], ""),
            "hcp_name": r["hcp_name"] or "", "country_name": country_name(r["country"] or ""),
            "removable": r["id"] is not None and role != "lead",
        })
    return out


async def section(request: Request, ctx: PanelCtx) -> dict:
    """What ``panels/_members.html`` needs on the panel page (or the invitation page)."""
    from core.identity.roles import GUEST_DAYS
    from core.panels.tables import ExpertGroup, ExpertGroupMember

    panel = ctx.panel
    may_invite = ctx.has(*INVITERS) and panel["status"] in INVITING
    mine = ctx.member if ctx.member is not None and ctx.member["status"] == "invited" and "invited" in ctx.roles else None
    out = {
        "members_part": "section",
        "my_invitation": None,
        "may_invite": may_invite and ctx.full,
        "may_remove_members": ctx.has(*REMOVERS) and not ctx.read_only,
        "panel_members": [],
        "expert_groups": [],
        "candidates": None, "candidates_more": False, "candidate_q": "",
        "member_form": {
            "name": "", "email": "", "name_max": NAME_MAX, "email_max": EMAIL_MAX, "query_max": QUERY_MAX,
            "reason_max": REASON_MAX, "guest_days": GUEST_DAYS, "link_days": GUEST_LINK_DAYS,
        },
        "may_manage_groups": ctx.actor is not None and ctx.actor.can("panels.templates.manage", panel["ern"]),
    }
    if mine is not None:
        inviter = (await _names([mine["invited_by"]])).get(mine["invited_by"], "")
        out["my_invitation"] = {**mine, "inviter": inviter, "can_answer": panel["status"] in INVITING, "status_label": STATUSES[panel["status"]]}
    if not ctx.full:
        return out
    out["panel_members"] = await member_rows(panel)
    if out["may_invite"]:
        groups = await ExpertGroup.select().where(ExpertGroup.ern == panel["ern"]).order_by(ExpertGroup.name)
        if groups:
            links = await ExpertGroupMember.select(ExpertGroupMember.group).where(ExpertGroupMember.group.is_in([g["id"] for g in groups]))
            counts: dict[int, int] = {}
            for link in links:
                counts[link["group"]] = counts.get(link["group"], 0) + 1
            out["expert_groups"] = [{**g, "count": counts.get(g["id"], 0)} for g in groups]
        q = str(request.query_params.get("member_q", "") or "")[:QUERY_MAX]
        if q.strip():
            out["candidates"], out["candidates_more"] = await find_candidates(panel, q)
            out["candidate_q"] = q
    return out


ROUTES = [candidates, invite, invite_group, invite_guest, respond, remove]
