"""Identity: users, roles per ERN, the grant table, sessions, login and profile."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from core.events import Event, EventType
from core.hookspecs import hookimpl
from core.identity.roles import ROLES
from core.permissions import Permission
from core.web import MenuLink, page


@hookimpl
def register_piccolo_apps():
    return ["core.identity.piccolo_app"]


@hookimpl
def register_permissions():
    return [
        Permission("identity.users.manage", "Create, edit and deactivate user accounts", ("admin",)),
        Permission("identity.roles.manage", "Edit which permissions each role grants", ("admin",)),
    ]


@hookimpl
def register_event_types():
    return [
        EventType("user.logged_in", "A user logged in"),
        EventType("user.login_failed", "A login attempt failed"),
        EventType("user.logged_out", "A user logged out"),
        EventType("user.created", "A user account was created"),
    ]


@hookimpl
def menu_links(actor):
    return [MenuLink("Profile", "/profile", None, order=95)]


def safe_next(value: str | None) -> str:
    """Only local paths: an open redirect would help phishing."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


@get("/login", opt={"public": True}, include_in_schema=False)
async def login_form(request: Request, next: FromQuery[str | None] = None) -> Template | Redirect:
    if request.scope.get("user") is not None:
        return Redirect(safe_next(next))
    return page(request, "identity/login.html", {"next": safe_next(next), "error": None, "email": ""})


@post("/login", opt={"public": True}, include_in_schema=False)
async def login_submit(request: Request) -> Template | Redirect:
    from core.identity.passwords import verify_password
    from core.identity.sessions import COOKIE_NAME, create_session
    from core.identity.tables import User

    host = request.app.state.host
    form = await request.form()
    email = str(form.get("email", "")).strip().lower()[:254]
    password = str(form.get("password", ""))[:1024]
    next_url = safe_next(str(form.get("next", "/")))
    user = await User.select(User.id, User.password_hash, User.is_active).where(User.email == email).first() if email else None
    ok = verify_password(user["password_hash"] if user else None, password) and bool(user and user["is_active"])
    if not ok:
        await host.events.emit(Event("user.login_failed", user["id"] if user else None, "user", str(user["id"]) if user else "", address=client_address(request)))
        return page(
            request, "identity/login.html",
            {"next": next_url, "error": "The e-mail address or password is not right.", "email": email},
            status_code=400,
        )
    token = await create_session(host.settings, user["id"], client_address(request), request.headers.get("user-agent", ""))
    await host.events.emit(Event("user.logged_in", user["id"], "user", str(user["id"]), address=client_address(request)))
    response = Redirect(next_url)
    response.set_cookie(
        COOKIE_NAME, token, httponly=True, samesite="lax", secure=host.secure_cookies, path="/",
        max_age=host.settings.session_absolute_timeout,
    )
    return response


@post("/logout", opt={"authenticated": True}, include_in_schema=False)
async def logout(request: Request) -> Redirect:
    from core.identity.sessions import COOKIE_NAME, revoke_session

    token = request.cookies.get(COOKIE_NAME)
    if token:
        await revoke_session(token)
    actor = request.scope.get("user")
    await request.app.state.host.events.emit(Event("user.logged_out", actor.user_id, "user", str(actor.user_id), address=client_address(request)))
    response = Redirect("/login")
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


@get("/profile", opt={"authenticated": True}, include_in_schema=False)
async def profile(request: Request) -> Template | Redirect:
    from core.orgs.tables import Ern, Hcp

    actor = request.scope["user"]
    hcp = await Hcp.objects().get(Hcp.id == actor.hcp_id) if actor.hcp_id else None
    erns = {e["id"]: e["acronym"] for e in await Ern.select(Ern.id, Ern.acronym)}
    roles = sorted((ROLES.get(r, r).split(":")[0], erns.get(e, "all networks") if e else "platform") for r, e in actor.roles)
    return page(request, "identity/profile.html", {"hcp": hcp, "roles": roles})


@hookimpl
def register_routes():
    return [login_form, login_submit, logout, profile]


async def sync_role_permissions(host) -> None:
    """Apply each permission's default grants the first time it is seen."""
    from core.identity.sessions import role_permissions
    from core.identity.tables import RolePermission, SeededPermission

    seen = {r["permission"] for r in await SeededPermission.select(SeededPermission.permission)}
    new = [p for p in host.permissions if p.name not in seen]
    if not new:
        return
    rows = [RolePermission(role=role, permission=p.name) for p in new for role in p.default_roles]
    if rows:
        await RolePermission.insert(*rows)
    await SeededPermission.insert(*[SeededPermission(permission=p.name) for p in new])
    role_permissions.invalidate()


async def create_user(email: str, name: str, password: str, hcp_id: int | None = None, roles=()) -> int:
    """Create an active account with ``roles`` given as (role, ern_id or None) pairs."""
    from core.identity.passwords import hash_password
    from core.identity.tables import RoleAssignment, User

    for role, _ in roles:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
    user = User(email=email.strip().lower(), name=name, password_hash=hash_password(password), hcp=hcp_id, email_verified=True)
    await user.save()
    if roles:
        await RoleAssignment.insert(*[RoleAssignment(user=user.id, role=r, ern=e) for r, e in roles])
    return user.id


DEMO_PASSWORD = "demo-{role}-2026"


@hookimpl
async def load_demo_data(ctx):
    """One user per role, at Charité (ERN RND / EURO-NMD) unless the role has no hospital."""
    hcp = ctx.hcps["Charité – Universitätsmedizin Berlin"]
    ern = ctx.erns["ERN RND"]
    people = {
        "admin": ("Hanna Helpdesk", None, [("admin", None)]),
        "hp": ("Dr. Lena Weber", hcp, [("hp", ern), ("hp", ctx.erns["ERN EURO-NMD"])]),
        "coordinator": ("Prof. Jan de Vries", hcp, [("hp", ern), ("coordinator", ern)]),
        "dispatcher": ("Marta Nowak", hcp, [("hp", ern), ("dispatcher", ern)]),
        "researcher": ("Dr. Sofia Rossi", None, [("researcher", ern)]),
        "guest": ("Dr. Olivier Martin", None, [("guest", ern)]),
        "assistant": ("Paul Schmidt", hcp, [("assistant", ern)]),
    }
    for role, (name, hcp_id, roles) in people.items():
        ctx.users[role] = await create_user(f"{role}@demo.cpms.eu", name, DEMO_PASSWORD.format(role=role), hcp_id, roles)
