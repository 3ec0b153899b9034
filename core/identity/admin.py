"""Platform administration (helpdesk): user accounts, roles, and the grant table.

The administrator manages who may do what but holds no permission to patient data.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from core.events import Event
from core.identity.login import client_address
from core.identity.roles import GUEST_DAYS, NEEDS_HP, PLATFORM_ROLES, ROLES
from core.identity.sessions import now, role_permissions
from core.web import page

USERS = "identity.users.manage"
GRANTS = "identity.roles.manage"
PER_PAGE = 50
# The grant that lets administrators edit grants cannot be removed from the UI (no lock-out).
PROTECTED = {("admin", GRANTS)}


@get("/admin/users", opt={"permission": USERS}, include_in_schema=False)
async def users(
    request: Request,
    q: Annotated[str, QueryParameter(max_length=200)] = "",
    page_no: Annotated[int, QueryParameter(name="page", ge=1, le=100000)] = 1,
) -> Template:
    from core.identity.tables import User

    query = User.select(User.id, User.name, User.email, User.is_active, User.totp_enabled_at, User.hcp.name.as_alias("hcp_name"))
    if q.strip():
        like = f"%{q.strip()}%"
        query = query.where(User.name.ilike(like) | User.email.ilike(like))
    rows = await query.order_by(User.name).limit(PER_PAGE + 1).offset((page_no - 1) * PER_PAGE)
    return page(
        request, "identity/admin_users.html",
        {"rows": rows[:PER_PAGE], "q": q, "page_no": page_no, "has_next": len(rows) > PER_PAGE},
        fragment="identity/_admin_user_rows.html",
    )


async def _user_context(request: Request, user_id: int, message: str = "", error: str = "") -> dict:
    from core.identity.sessions import live_sessions
    from core.identity.tables import RoleAssignment, User
    from core.orgs.tables import Ern

    user = await User.select(
        User.id, User.name, User.email, User.is_active, User.email_verified, User.totp_enabled_at, User.created_at,
        User.hcp.name.as_alias("hcp_name"),
    ).where(User.id == user_id).first()
    if user is None:
        raise NotFoundException("No such user.")
    roles = await RoleAssignment.select(
        RoleAssignment.id, RoleAssignment.role, RoleAssignment.expires_at, RoleAssignment.ern.acronym.as_alias("ern_acronym")
    ).where(RoleAssignment.user == user_id).order_by(RoleAssignment.role)
    sessions = len(await live_sessions(request.app.state.settings, user_id))
    return {
        "user": user, "roles": roles, "live_sessions": sessions, "all_roles": ROLES,
        "erns": await Ern.select(Ern.id, Ern.acronym).order_by(Ern.acronym), "message": message, "error": error,
    }


@get("/admin/users/{user_id:int}", opt={"permission": USERS}, include_in_schema=False)
async def user_detail(request: Request, user_id: FromPath[int]) -> Template:
    return page(request, "identity/admin_user.html", await _user_context(request, user_id))


@post("/admin/users/{user_id:int}/active", opt={"permission": USERS}, include_in_schema=False)
async def set_active(request: Request, user_id: FromPath[int]) -> Template:
    from core.identity.sessions import revoke_user_sessions
    from core.identity.tables import User

    actor = request.scope["user"]
    form = await request.form()
    active = str(form.get("active", "")) == "1"
    if user_id == actor.user_id and not active:
        return page(request, "identity/admin_user.html", await _user_context(request, user_id, error="You cannot deactivate your own account."), status_code=409)
    if not await User.exists().where(User.id == user_id):
        raise NotFoundException("No such user.")
    await User.update({User.is_active: active}).where(User.id == user_id)
    if not active:
        await revoke_user_sessions(request.app.state.settings, user_id)
    if not active:
        await request.app.state.host.events.emit(Event("user.deactivated", actor.user_id, "user", str(user_id), address=client_address(request)))
    return page(request, "identity/admin_user.html", await _user_context(request, user_id, message="Account activated." if active else "Account deactivated; its sessions ended."))


@post("/admin/users/{user_id:int}/roles", opt={"permission": USERS}, include_in_schema=False)
async def grant_role(request: Request, user_id: FromPath[int]) -> Template:
    from datetime import timedelta

    from core.identity.tables import RoleAssignment, User
    from core.orgs.tables import Ern

    actor = request.scope["user"]
    form = await request.form()
    role = str(form.get("role", ""))
    ern_raw = str(form.get("ern", "") or "")
    if not await User.exists().where(User.id == user_id):
        raise NotFoundException("No such user.")
    error = ""
    ern_id = None
    if role not in ROLES:
        error = "Choose a role."
    elif role in PLATFORM_ROLES:
        if ern_raw:
            error = "This role is platform-wide: leave the network empty."
    else:
        try:
            ern_id = int(ern_raw)
        except ValueError:
            error = "This role is held in a network: choose one."
        else:
            if not await Ern.exists().where(Ern.id == ern_id):
                error = "This role is held in a network: choose one."
    if not error and role in NEEDS_HP and not await RoleAssignment.exists().where(
        (RoleAssignment.user == user_id) & (RoleAssignment.role == "hp") & (RoleAssignment.ern == ern_id)
    ):
        error = "Grant the healthcare professional role in that network first."
    if not error and await RoleAssignment.exists().where(
        (RoleAssignment.user == user_id) & (RoleAssignment.role == role)
        & (RoleAssignment.ern.is_null() if ern_id is None else RoleAssignment.ern == ern_id)
    ):
        error = "The user already holds this role there."
    if error:
        return page(request, "identity/admin_user.html", await _user_context(request, user_id, error=error), status_code=422)
    expires = now() + timedelta(days=GUEST_DAYS) if role == "guest" else None
    await RoleAssignment.insert(RoleAssignment(user=user_id, role=role, ern=ern_id, granted_by=actor.user_id, expires_at=expires))
    await request.app.state.host.events.emit(
        Event("role.granted", actor.user_id, "user", str(user_id), {"role": role, "ern": ern_id}, client_address(request))
    )
    return page(request, "identity/admin_user.html", await _user_context(request, user_id, message=f"Role {role} granted."))


@post("/admin/users/{user_id:int}/roles/{assignment_id:int}/revoke", opt={"permission": USERS}, include_in_schema=False)
async def revoke_role(request: Request, user_id: FromPath[int], assignment_id: FromPath[int]) -> Template:
    from core.identity.tables import RoleAssignment

    actor = request.scope["user"]
    row = await RoleAssignment.select().where((RoleAssignment.id == assignment_id) & (RoleAssignment.user == user_id)).first()
    if row is None:
        raise NotFoundException("No such role.")
    if user_id == actor.user_id and row["role"] == "admin":
        return page(request, "identity/admin_user.html", await _user_context(request, user_id, error="You cannot remove your own administrator role."), status_code=409)
    removed = [row["role"]]
    async with RoleAssignment._meta.db.transaction():
        await RoleAssignment.delete().where(RoleAssignment.id == assignment_id)
        if row["role"] == "hp":
            gone = await RoleAssignment.delete().where(
                (RoleAssignment.user == user_id) & (RoleAssignment.ern == row["ern"]) & RoleAssignment.role.is_in(list(NEEDS_HP))
            ).returning(RoleAssignment.role)
            removed += [g["role"] for g in gone]
    for role in removed:
        await request.app.state.host.events.emit(
            Event("role.revoked", actor.user_id, "user", str(user_id), {"role": role, "ern": row["ern"]}, client_address(request))
        )
    return page(request, "identity/admin_user.html", await _user_context(request, user_id, message=f"Revoked: {', '.join(removed)}."))


# --- the grant table ----------------------------------------------------------------------------


async def _grants_context(request: Request, message: str = "") -> dict:
    from core.identity.tables import RolePermission

    granted = {(r["role"], r["permission"]) for r in await RolePermission.select(RolePermission.role, RolePermission.permission)}
    return {
        "permissions": list(request.app.state.host.permissions), "roles": list(ROLES), "granted": granted,
        "protected": PROTECTED, "message": message,
    }


@get("/admin/grants", opt={"permission": GRANTS}, include_in_schema=False)
async def grants(request: Request) -> Template:
    return page(request, "identity/admin_grants.html", await _grants_context(request))


@post("/admin/grants", opt={"permission": GRANTS}, include_in_schema=False)
async def save_grants(request: Request) -> Template | Redirect:
    from core.identity.tables import RolePermission

    host = request.app.state.host
    form = await request.form()
    wanted: set[tuple[str, str]] = set()
    for value in form.getall("grant", []) if hasattr(form, "getall") else []:
        role, _, perm = str(value).partition(":")
        if role not in ROLES or perm not in host.permissions:
            return page(request, "identity/admin_grants.html", await _grants_context(request, "Unknown role or permission; nothing was changed."), status_code=422)
        wanted.add((role, perm))
    wanted |= PROTECTED
    current = {(r["role"], r["permission"]) for r in await RolePermission.select(RolePermission.role, RolePermission.permission)}
    added, removed = wanted - current, current - wanted
    async with RolePermission._meta.db.transaction():
        for role, perm in removed:
            await RolePermission.delete().where((RolePermission.role == role) & (RolePermission.permission == perm))
        if added:
            await RolePermission.insert(*[RolePermission(role=r, permission=p) for r, p in sorted(added)])
    role_permissions.invalidate()
    if added or removed:
        await host.events.emit(Event(
            "grant.changed", request.scope["user"].user_id, "grants", "roles",
            {"added": sorted(f"{r}:{p}" for r, p in added), "removed": sorted(f"{r}:{p}" for r, p in removed)},
            client_address(request),
        ))
    return page(request, "identity/admin_grants.html", await _grants_context(request, f"Saved: {len(added)} added, {len(removed)} removed."))


ROUTES = [users, user_detail, set_active, grant_role, revoke_role, grants, save_grants]
