"""Sign-up, access requests, and the coordinators' queue (requests, members, 2FA resets).

A person signs up (or arrives through OpenID Connect) with no roles, then asks for roles in
one ERN at one HCP with a justification. Only coordinators of that ERN see and decide the
request; every decision is audited and the requester is told by e-mail. Revoking a role
takes effect on the revoked user's next request, since roles are read on every request.
"""

from __future__ import annotations

from datetime import timedelta

from litestar import Request, get, post
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.events import Event
from core.identity.login import client_address
from core.identity.roles import GUEST_DAYS, NEEDS_HP, REQUESTABLE, ROLES
from core.identity.sessions import now
from core.web import page

REVIEW = "identity.access.review"
MEMBERS = "identity.members.manage"


class Conflict(Exception):
    pass


async def _choices() -> dict:
    from core.orgs.tables import Ern, Hcp

    return {
        "erns": await Ern.select(Ern.id, Ern.acronym, Ern.name).order_by(Ern.acronym),
        "hcps": await Hcp.select(Hcp.id, Hcp.name, Hcp.city, Hcp.country).where(Hcp.active == True).order_by(Hcp.country).order_by(Hcp.name),  # noqa: E712
        "requestable": [(r, ROLES[r]) for r in REQUESTABLE],
    }


async def validate_request(form, *, held_roles: set[tuple[str, int]] | None = None, need_hcp: bool = True) -> tuple[dict, dict]:
    """Check an access request form; returns (clean values, errors by field)."""
    from core.orgs.tables import Ern, Hcp, HcpErn

    errors: dict[str, str] = {}
    values: dict = {}
    try:
        values["ern"] = int(form.get("ern", ""))
    except ValueError:
        errors["ern"] = "Choose a network."
    else:
        if not await Ern.exists().where(Ern.id == values["ern"]):
            errors["ern"] = "Choose a network."
    # No role ticked: the form sends no "roles" at all (getall would raise).
    roles = [r for r in form.getall("roles") if r] if hasattr(form, "getall") and "roles" in form else []
    if not roles or any(r not in REQUESTABLE for r in roles):
        errors["roles"] = "Choose at least one role."
    values["roles"] = sorted(set(roles))
    hcp_raw = str(form.get("hcp", "") or "")
    values["hcp"] = None
    if hcp_raw:
        try:
            values["hcp"] = int(hcp_raw)
        except ValueError:
            errors["hcp"] = "Choose your hospital."
    if values["hcp"] is None and need_hcp and set(values["roles"]) - {"researcher"}:
        errors["hcp"] = "Healthcare roles need your hospital."
    if values["hcp"] is not None and "hcp" not in errors:
        if not await Hcp.exists().where(Hcp.id == values["hcp"]):
            errors["hcp"] = "Choose your hospital."
        elif "ern" not in errors and set(values["roles"]) - {"researcher"} and not await HcpErn.exists().where(
            (HcpErn.hcp == values["hcp"]) & (HcpErn.ern == values["ern"])
        ):
            errors["hcp"] = "This hospital is not a member of that network."
    held = held_roles or set()
    if "ern" not in errors and set(values["roles"]) & NEEDS_HP and "hp" not in values["roles"] and ("hp", values["ern"]) not in held:
        errors["roles"] = "Coordinator and dispatcher roles need the healthcare professional role too."
    justification = str(form.get("justification", "")).strip()
    if not 10 <= len(justification) <= 2000:
        errors["justification"] = "Explain in a sentence or two (10 to 2,000 characters) why you need access."
    values["justification"] = justification
    return values, errors


# --- sign-up -----------------------------------------------------------------------------------


@get("/signup", opt={"public": True}, include_in_schema=False)
async def signup_form(request: Request) -> Template | Redirect:
    if request.scope.get("user") is not None:
        return Redirect("/access/request")
    return page(request, "identity/signup.html", {**await _choices(), "errors": {}, "values": {}})


@post("/signup", opt={"public": True}, include_in_schema=False)
async def signup_submit(request: Request) -> Template | Redirect:
    from core.identity import accounts
    from core.identity.passwords import hash_password
    from core.identity.password_policy import check_password
    from core.identity.tables import AccessRequest, User

    host = request.app.state.host
    form = await request.form()
    name = str(form.get("name", "")).strip()[:200]
    email = str(form.get("email", "")).strip().lower()[:254]
    password = str(form.get("password", ""))[:1024]
    values, errors = await validate_request(form)
    if len(name) < 2:
        errors["name"] = "Enter your full name."
    if "@" not in email or "." not in email.rsplit("@", 1)[-1]:
        errors["email"] = "Enter a valid e-mail address."
    problems = check_password(password, email=email, name=name)
    if problems:
        errors["password"] = " ".join(problems)
    if password != str(form.get("password2", "")):
        errors["password2"] = "The two passwords differ."
    if not errors and await User.exists().where(User.email == email):
        # Same answer as success would leak nothing, but a real person needs to know: point to login/reset.
        errors["email"] = "An account with this address exists. Log in, or reset your password."
    if errors:
        return page(
            request, "identity/signup.html",
            {**await _choices(), "errors": errors, "values": {**values, "name": name, "email": email}},
            status_code=422,
        )
    async with User._meta.db.transaction():
        user = User(email=email, name=name, password_hash=hash_password(password), hcp=values["hcp"], email_verified=False)
        await user.save()
        access = AccessRequest(
            user=user.id, ern=values["ern"], hcp=values["hcp"], roles=",".join(values["roles"]),
            justification=values["justification"],
        )
        await access.save()
    address = client_address(request)
    await host.events.emit(Event("user.created", user.id, "user", str(user.id), {"method": "signup"}, address))
    await host.events.emit(Event("access.requested", user.id, "access_request", str(access.id), {"ern": values["ern"], "roles": values["roles"]}, address))
    await accounts.send_verification(host.settings, user.id)
    return page(request, "identity/signup_done.html", {"email": email})


# --- requests by logged-in users -----------------------------------------------------------------


async def _my_requests(user_id: int) -> list[dict]:
    from core.identity.tables import AccessRequest

    return await AccessRequest.select(
        AccessRequest.id, AccessRequest.roles, AccessRequest.status, AccessRequest.created_at, AccessRequest.reason,
        AccessRequest.ern.acronym.as_alias("ern_acronym"),
    ).where(AccessRequest.user == user_id).order_by(AccessRequest.id, ascending=False)


@get("/access/request", opt={"authenticated": True, "mfa_setup": True}, include_in_schema=False)
async def request_form(request: Request) -> Template:
    actor = request.scope["user"]
    return page(
        request, "identity/access_request.html",
        {**await _choices(), "errors": {}, "values": {"hcp": actor.hcp_id}, "mine": await _my_requests(actor.user_id), "sent": False},
    )


@post("/access/request", opt={"authenticated": True, "mfa_setup": True}, include_in_schema=False)
async def request_submit(request: Request) -> Template:
    from core.identity.tables import AccessRequest

    actor = request.scope["user"]
    host = request.app.state.host
    form = await request.form()
    held = {(r, e) for r, e in actor.roles if e is not None}
    values, errors = await validate_request(form, held_roles=held)
    if not errors and actor.hcp_id and values["hcp"] and values["hcp"] != actor.hcp_id:
        errors["hcp"] = "Your account belongs to another hospital; ask the helpdesk to move it."
    if not errors and await AccessRequest.exists().where(
        (AccessRequest.user == actor.user_id) & (AccessRequest.ern == values["ern"]) & (AccessRequest.status == "pending")
    ):
        errors["ern"] = "You already have a pending request for this network."
    if errors:
        return page(
            request, "identity/access_request.html",
            {**await _choices(), "errors": errors, "values": values, "mine": await _my_requests(actor.user_id), "sent": False},
            status_code=422,
        )
    access = AccessRequest(
        user=actor.user_id, ern=values["ern"], hcp=values["hcp"] or actor.hcp_id, roles=",".join(values["roles"]),
        justification=values["justification"],
    )
    await access.save()
    await host.events.emit(
        Event("access.requested", actor.user_id, "access_request", str(access.id), {"ern": values["ern"], "roles": values["roles"]}, client_address(request))
    )
    return page(
        request, "identity/access_request.html",
        {**await _choices(), "errors": {}, "values": {"hcp": actor.hcp_id}, "mine": await _my_requests(actor.user_id), "sent": True},
    )


# --- the coordinators' queue -----------------------------------------------------------------------


def _review_erns(actor) -> list[int]:
    """ERNs whose queue the actor handles (the permission is held per ERN)."""
    scopes = actor.grants.get(REVIEW, frozenset())
    return sorted(e for e in scopes if e is not None) if None not in scopes else []


async def queue_context(actor) -> dict:
    from core.identity.tables import AccessRequest, MfaResetRequest, RoleAssignment

    erns = _review_erns(actor)
    if not erns:
        return {"requests": [], "resets": [], "erns": []}
    requests = await AccessRequest.select(
        AccessRequest.id, AccessRequest.roles, AccessRequest.justification, AccessRequest.created_at,
        AccessRequest.user.name.as_alias("user_name"), AccessRequest.user.email.as_alias("user_email"),
        AccessRequest.ern.acronym.as_alias("ern_acronym"), AccessRequest.hcp.name.as_alias("hcp_name"),
        AccessRequest.hcp.country.as_alias("hcp_country"),
    ).where(
        (AccessRequest.status == "pending") & AccessRequest.ern.is_in(erns) & (AccessRequest.user.email_verified == True)  # noqa: E712
    ).order_by(AccessRequest.id)
    members = {r["user"] for r in await RoleAssignment.select(RoleAssignment.user).where(RoleAssignment.ern.is_in(erns))}
    resets = await MfaResetRequest.select(
        MfaResetRequest.id, MfaResetRequest.created_at, MfaResetRequest.user,
        MfaResetRequest.user.name.as_alias("user_name"), MfaResetRequest.user.email.as_alias("user_email"),
    ).where((MfaResetRequest.status == "pending") & MfaResetRequest.user.is_in(list(members) or [0])).order_by(MfaResetRequest.id)
    return {"requests": requests, "resets": resets, "erns": erns}


@get("/access/queue", opt={"permission": REVIEW}, include_in_schema=False)
async def queue(request: Request) -> Template:
    return page(request, "identity/access_queue.html", await queue_context(request.scope["user"]), fragment="identity/_access_queue.html")


async def _pending_request_for(actor, request_id: int):
    from core.identity.tables import AccessRequest

    row = await AccessRequest.objects().get(AccessRequest.id == request_id)
    # Another ERN's request looks exactly like a missing one: nothing about it leaks.
    if row is None or not actor.can(REVIEW, row.ern):
        raise NotFoundException("No such access request.")
    return row


async def _notify(settings, user_id: int, subject: str, body: str) -> None:
    from core.identity.tables import User
    from core.mail.sender import send_mail

    user = await User.select(User.email).where(User.id == user_id).first()
    if user:
        await send_mail(settings, user["email"], subject, body)


@post("/access/requests/{request_id:int}/approve", opt={"permission": REVIEW}, include_in_schema=False)
async def approve(request: Request, request_id: FromPath[int]) -> Template:
    from core.identity.tables import AccessRequest, RoleAssignment, User
    from core.orgs.tables import Ern

    actor = request.scope["user"]
    host = request.app.state.host
    row = await _pending_request_for(actor, request_id)
    roles = [r for r in row.roles.split(",") if r in REQUESTABLE]
    async with AccessRequest._meta.db.transaction():
        # Conditional update: a second click, or a second coordinator, finds nothing pending.
        done = await AccessRequest.update(
            {AccessRequest.status: "approved", AccessRequest.decided_by: actor.user_id, AccessRequest.decided_at: now()}
        ).where((AccessRequest.id == row.id) & (AccessRequest.status == "pending")).returning(AccessRequest.id)
        if not done:
            return await _queue_with_message(request, "This request was already decided.", 409)
        held = {r["role"] for r in await RoleAssignment.select(RoleAssignment.role).where(
            (RoleAssignment.user == row.user) & (RoleAssignment.ern == row.ern)
        )}
        new = [r for r in roles if r not in held]
        if new:
            await RoleAssignment.insert(*[RoleAssignment(user=row.user, role=r, ern=row.ern, granted_by=actor.user_id) for r in new])
        if row.hcp:
            await User.update({User.hcp: row.hcp}).where((User.id == row.user) & User.hcp.is_null())
    address = client_address(request)
    await host.events.emit(Event("access.approved", actor.user_id, "access_request", str(row.id), {"ern": row.ern, "roles": roles}, address))
    for role in new:
        await host.events.emit(Event("role.granted", actor.user_id, "user", str(row.user), {"role": role, "ern": row.ern}, address))
    ern = await Ern.select(Ern.acronym).where(Ern.id == row.ern).first()
    await _notify(
        host.settings, row.user, f"CPMS: your access to {ern['acronym']} was approved",
        f"Your request for the role(s) {', '.join(roles)} in {ern['acronym']} was approved.\n\n"
        f"Log in at {host.settings.base_url}/login . Roles that give access to patient data require two-step login, "
        "which you will set up at your next login.\n",
    )
    return await _queue_with_message(request, "Request approved.", 200)


@post("/access/requests/{request_id:int}/reject", opt={"permission": REVIEW}, include_in_schema=False)
async def reject(request: Request, request_id: FromPath[int]) -> Template:
    from core.identity.tables import AccessRequest
    from core.orgs.tables import Ern

    actor = request.scope["user"]
    host = request.app.state.host
    row = await _pending_request_for(actor, request_id)
    form = await request.form()
    reason = str(form.get("reason", "")).strip()[:2000]
    if len(reason) < 5:
        return await _queue_with_message(request, "Give the requester a reason (at least 5 characters).", 422)
    done = await AccessRequest.update(
        {AccessRequest.status: "rejected", AccessRequest.decided_by: actor.user_id, AccessRequest.decided_at: now(), AccessRequest.reason: reason}
    ).where((AccessRequest.id == row.id) & (AccessRequest.status == "pending")).returning(AccessRequest.id)
    if not done:
        return await _queue_with_message(request, "This request was already decided.", 409)
    await host.events.emit(Event("access.rejected", actor.user_id, "access_request", str(row.id), {"ern": row.ern}, client_address(request)))
    ern = await Ern.select(Ern.acronym).where(Ern.id == row.ern).first()
    await _notify(
        host.settings, row.user, f"CPMS: your access request for {ern['acronym']}",
        f"Your request for access to {ern['acronym']} was not approved.\n\nReason given by the coordinator:\n{reason}\n",
    )
    return await _queue_with_message(request, "Request rejected; the requester was told why.", 200)


async def _queue_with_message(request: Request, message: str, status: int) -> Template:
    ctx = await queue_context(request.scope["user"])
    ctx["message"] = message
    return page(request, "identity/access_queue.html", ctx, fragment="identity/_access_queue.html", status_code=status)


# --- second-factor resets ------------------------------------------------------------------------


@post("/access/mfa-resets/{reset_id:int}/{decision:str}", opt={"permission": REVIEW}, include_in_schema=False)
async def decide_mfa_reset(request: Request, reset_id: FromPath[int], decision: FromPath[str]) -> Template:
    from core.identity.mfa import reset_second_factor
    from core.identity.tables import MfaResetRequest

    actor = request.scope["user"]
    host = request.app.state.host
    if decision not in ("approve", "reject"):
        raise NotFoundException("No such decision.")
    visible = {r["id"] for r in (await queue_context(actor))["resets"]}
    if reset_id not in visible:
        raise NotFoundException("No such reset request.")
    row = await MfaResetRequest.objects().get(MfaResetRequest.id == reset_id)
    status = "approved" if decision == "approve" else "rejected"
    done = await MfaResetRequest.update(
        {MfaResetRequest.status: status, MfaResetRequest.decided_by: actor.user_id, MfaResetRequest.decided_at: now()}
    ).where((MfaResetRequest.id == reset_id) & (MfaResetRequest.status == "pending")).returning(MfaResetRequest.id)
    if not done:
        return await _queue_with_message(request, "This reset was already decided.", 409)
    if status == "approved":
        await reset_second_factor(host.settings, row.user)
        await host.events.emit(Event("user.mfa_reset", actor.user_id, "user", str(row.user), {"reset_request": reset_id}, client_address(request)))
    await host.events.emit(Event("mfa_reset.decided", actor.user_id, "mfa_reset", str(reset_id), {"decision": status}, client_address(request)))
    await _notify(
        host.settings, row.user, "CPMS: your two-step login reset",
        "Your two-step login was reset. Log in with your password and set up your authenticator again.\n"
        if status == "approved" else "Your request to reset your two-step login was not approved. Contact your ERN coordinator.\n",
    )
    return await _queue_with_message(request, f"Reset {status}.", 200)


# --- members: revoke roles, extend guests ----------------------------------------------------------


async def members_context(actor) -> dict:
    from core.identity.tables import RoleAssignment

    scopes = actor.grants.get(MEMBERS, frozenset())
    erns = sorted(e for e in scopes if e is not None)
    rows = await RoleAssignment.select(
        RoleAssignment.id, RoleAssignment.role, RoleAssignment.expires_at, RoleAssignment.user,
        RoleAssignment.user.name.as_alias("user_name"), RoleAssignment.user.email.as_alias("user_email"),
        RoleAssignment.ern.acronym.as_alias("ern_acronym"),
    ).where(RoleAssignment.ern.is_in(erns or [0])).order_by(RoleAssignment.user).order_by(RoleAssignment.role)
    return {"members": rows, "me": actor.user_id}


@get("/access/members", opt={"permission": MEMBERS}, include_in_schema=False)
async def members(request: Request) -> Template:
    return page(request, "identity/access_members.html", await members_context(request.scope["user"]))


async def _assignment_for(actor, assignment_id: int):
    from core.identity.tables import RoleAssignment

    row = await RoleAssignment.objects().get(RoleAssignment.id == assignment_id)
    if row is None or row.ern is None or not actor.can(MEMBERS, row.ern):
        raise NotFoundException("No such role.")
    return row


@post("/access/roles/{assignment_id:int}/revoke", opt={"permission": MEMBERS}, include_in_schema=False)
async def revoke_role(request: Request, assignment_id: FromPath[int]) -> Template:
    from core.identity.tables import RoleAssignment

    actor = request.scope["user"]
    row = await _assignment_for(actor, assignment_id)
    if row.user == actor.user_id and row.role == "coordinator":
        raise PermissionDeniedException("Coordinators cannot revoke their own coordinator role; ask another coordinator.")
    removed = [row.role]
    async with RoleAssignment._meta.db.transaction():
        await RoleAssignment.delete().where(RoleAssignment.id == row.id)
        if row.role == "hp":
            # HP is a prerequisite: without it, coordinator and dispatcher roles in that ERN go too.
            dependants = await RoleAssignment.delete().where(
                (RoleAssignment.user == row.user) & (RoleAssignment.ern == row.ern) & RoleAssignment.role.is_in(list(NEEDS_HP))
            ).returning(RoleAssignment.role)
            removed += [d["role"] for d in dependants]
    for role in removed:
        await request.app.state.host.events.emit(
            Event("role.revoked", actor.user_id, "user", str(row.user), {"role": role, "ern": row.ern}, client_address(request))
        )
    ctx = await members_context(actor)
    ctx["message"] = f"Revoked: {', '.join(removed)}."
    return page(request, "identity/access_members.html", ctx)


@post("/access/roles/{assignment_id:int}/extend", opt={"permission": MEMBERS}, include_in_schema=False)
async def extend_guest(request: Request, assignment_id: FromPath[int]) -> Template:
    from core.identity.tables import RoleAssignment

    actor = request.scope["user"]
    row = await _assignment_for(actor, assignment_id)
    if row.role != "guest":
        return page(request, "identity/access_members.html", {**await members_context(actor), "message": "Only guest roles expire."}, status_code=409)
    base = max(row.expires_at or now(), now())
    until = base + timedelta(days=GUEST_DAYS)
    await RoleAssignment.update({RoleAssignment.expires_at: until}).where(RoleAssignment.id == row.id)
    await request.app.state.host.events.emit(
        Event("role.extended", actor.user_id, "user", str(row.user), {"role": "guest", "ern": row.ern, "until": until.isoformat()}, client_address(request))
    )
    return page(request, "identity/access_members.html", {**await members_context(actor), "message": f"Guest access extended to {until:%Y-%m-%d}."})


async def grant_guest(user_id: int, ern_id: int, granted_by: int | None, days: int = GUEST_DAYS) -> int:
    """Give a guest role that expires (used when a panel invites an outside expert)."""
    from core.identity.tables import RoleAssignment

    row = RoleAssignment(user=user_id, role="guest", ern=ern_id, granted_by=granted_by, expires_at=now() + timedelta(days=days))
    await row.save()
    return row.id


ROUTES = [
    signup_form, signup_submit, request_form, request_submit, queue, approve, reject, decide_mfa_reset,
    members, revoke_role, extend_guest,
]
