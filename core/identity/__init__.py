"""Identity: users, roles per ERN, the grant table, sessions, login and profile."""

from __future__ import annotations

from core.events import EventType
from core.hookspecs import hookimpl
from core.identity.roles import ROLES
from core.permissions import Permission
from core.web import MenuLink


@hookimpl
def register_piccolo_apps():
    return ["core.identity.piccolo_app"]


@hookimpl
def register_permissions():
    return [
        Permission("identity.users.manage", "Create, edit and deactivate user accounts", ("admin",)),
        Permission("identity.roles.manage", "Edit which permissions each role grants", ("admin",)),
        Permission("identity.access.review", "Decide access requests and two-step login resets for the ERN", ("coordinator",), ern_scoped=True),
        Permission("identity.members.manage", "Revoke ERN roles and extend guest accounts", ("coordinator",), ern_scoped=True),
    ]


@hookimpl
def register_event_types():
    return [
        EventType("user.logged_in", "A user logged in"),
        EventType("user.login_failed", "A login attempt failed"),
        EventType("user.logged_out", "A user logged out"),
        EventType("user.created", "A user account was created"),
        EventType("user.login_throttled", "A login was refused: too many failures"),
        EventType("user.mfa_failed", "A wrong second-factor code was given"),
        EventType("user.mfa_enabled", "A user enrolled an authenticator app"),
        EventType("user.passkey_added", "A user added a passkey or security key as a second factor"),
        EventType("user.passkey_removed", "A user removed a passkey"),
        EventType("user.mfa_reset", "A user's second factor was reset"),
        EventType("user.recovery_codes_created", "New recovery codes were made"),
        EventType("user.sessions_revoked", "A user logged out their other sessions"),
        EventType("user.email_verified", "A user verified their e-mail address"),
        EventType("user.password_reset_requested", "A password reset link was asked for"),
        EventType("user.password_changed", "A user's password was changed"),
        EventType("user.deactivated", "An account was deactivated"),
        EventType("user.oidc_linked", "An OpenID Connect identity was linked to an account"),
        EventType("user.oidc_failed", "An OpenID Connect login was refused"),
        EventType("access.requested", "Someone requested roles in an ERN"),
        EventType("access.approved", "A coordinator approved an access request"),
        EventType("access.rejected", "A coordinator rejected an access request"),
        EventType("role.granted", "A role was granted"),
        EventType("role.revoked", "A role was revoked"),
        EventType("role.extended", "A guest role was extended"),
        EventType("grant.changed", "The permissions of a role were changed"),
        EventType("mfa_reset.requested", "A user asked for their second factor to be reset"),
        EventType("mfa_reset.decided", "A coordinator decided a second-factor reset"),
        EventType("security.refused", "A request was refused as forged or invalid (CSRF token, one-time link)"),
        EventType("assistant.named", "An HP named an assistant who acts for them"),
        EventType("assistant.removed", "An HP removed an assistant"),
    ]


@hookimpl
def menu_links(actor):
    return [
        MenuLink("Access requests", "/access/queue", "identity.access.review", order=60),
        MenuLink("Members", "/access/members", "identity.members.manage", order=61),
        MenuLink("Users", "/admin/users", "identity.users.manage", order=85),
        MenuLink("Role grants", "/admin/grants", "identity.roles.manage", order=86),
        MenuLink("Profile", "/profile", None, order=95),
    ]


@hookimpl
def extra_template_vars(request):
    # The login page offers OpenID Connect (EU Login) only when an issuer is configured.
    settings = request.app.state.settings
    return {"oidc_label": settings.oidc_label if settings.oidc_issuer else ""}


@hookimpl
def register_routes():
    from core.identity import access, accounts, admin, login, mfa, oidc, passkeys, profile

    return [*login.ROUTES, *mfa.ROUTES, *passkeys.ROUTES, *access.ROUTES, *accounts.ROUTES, *oidc.ROUTES, *profile.ROUTES,
            *admin.ROUTES]


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
        "dpo": ("Greta Datenschutz", hcp, [("dpo", None)]),
    }
    for role, (name, hcp_id, roles) in people.items():
        ctx.users[role] = await create_user(f"{role}@demo.cpms.eu", name, DEMO_PASSWORD.format(role=role), hcp_id, roles)
