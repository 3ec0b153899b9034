"""Server-side sessions and the actor behind each request.

The cookie carries a random token; the database keeps only its SHA-256, so a copy of the
database cannot be replayed as cookies. Sessions end when revoked, idle too long, or past
their absolute lifetime; roles are read on every request so a revocation takes effect at once.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie

from core.identity.session_store import store_for, token_hash
from core.permissions import Actor, grants_for
from core.settings import Settings

COOKIE_NAME = "cpms_session"
# Writing last_seen on every request would make every page view a database write.
TOUCH_INTERVAL = timedelta(seconds=60)


def _hash(token: str) -> str:
    return token_hash(token)


def now() -> datetime:
    return datetime.now(timezone.utc)


async def create_session(
    settings: Settings, user_id: int, address: str = "", user_agent: str = "", stage: str = "full", method: str = "password"
) -> str:
    token = secrets.token_urlsafe(32)
    await store_for(settings).create(
        _hash(token), user_id, now() + timedelta(seconds=settings.session_absolute_timeout),
        address[:64], user_agent[:300], stage, method,
    )
    return token


async def complete_session(settings: Settings, token: str) -> None:
    """The second factor was given: the session becomes a full one."""
    await store_for(settings).update(_hash(token), stage="full", last_seen_at=now())


async def pending_user_id(settings: Settings, token: str | None) -> int | None:
    """The user of a live session still waiting for its second factor."""
    if not token:
        return None
    record = await store_for(settings).get(_hash(token))
    # Ten minutes to give the second factor.
    if record is None or record.stage != "mfa" or record.revoked or record.created_at + timedelta(minutes=10) <= now():
        return None
    return record.user_id


async def revoke_session(settings: Settings, token: str) -> None:
    await store_for(settings).revoke(_hash(token))


async def live_sessions(settings: Settings, user_id: int):
    """The user's sessions that are logged in (for the profile page)."""
    return [r for r in await store_for(settings).live_for_user(user_id) if r.stage == "full" and not r.revoked]


async def revoke_user_sessions(settings: Settings, user_id: int, *, only: list[str] | None = None, keep: str | None = None) -> int:
    """End a user's sessions (all, only some ids, or all but ``keep``); returns how many."""
    return await store_for(settings).revoke_for_user(user_id, only, keep)


def token_from_scope(scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            cookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:
                return None
            if COOKIE_NAME in cookie:
                return cookie[COOKIE_NAME].value
    return None


class RolePermissionCache:
    """The grant table changes rarely; re-read it every few seconds (and at once after an edit)."""

    ttl = 5.0

    def __init__(self) -> None:
        self._loaded_at = 0.0
        self._value: dict[str, set[str]] = {}

    def invalidate(self) -> None:
        self._loaded_at = 0.0

    async def get(self) -> dict[str, set[str]]:
        if time.monotonic() - self._loaded_at > self.ttl:
            from core.identity.tables import RolePermission

            value: dict[str, set[str]] = {}
            for row in await RolePermission.select(RolePermission.role, RolePermission.permission):
                value.setdefault(row["role"], set()).add(row["permission"])
            self._value, self._loaded_at = value, time.monotonic()
        return self._value


role_permissions = RolePermissionCache()


#: The session method of an OpenID Connect login whose provider asserted a trusted second factor.
OIDC_MFA = "oidc-mfa"


async def actor_for_user(user_id: int, session_id: str = "", user: dict | None = None, method: str = "") -> Actor | None:
    from core.identity.roles import MFA_ROLES
    from core.identity.tables import RoleAssignment, User

    if user is None:
        user = await User.select(
            User.id, User.email, User.name, User.hcp, User.is_active, User.totp_enabled_at
        ).where(User.id == user_id).first()
    if user is None or not user["is_active"]:
        return None
    current = now()
    # Read on every request (so a revoked role stops at once); raw SQL for the same reason
    # as the session lookup: the ORM's query building costs more than the query.
    rows = await RoleAssignment.raw(
        'SELECT role, ern, expires_at FROM identity_role_assignment WHERE "user" = {}', user_id
    )
    roles = tuple((r["role"], r["ern"]) for r in rows if r["expires_at"] is None or r["expires_at"] > current)
    grants = grants_for(roles, await role_permissions.get())
    return Actor(
        user["id"], user["email"], user["name"], user["hcp"], roles, grants, session_id,
        mfa_enabled=user["totp_enabled_at"] is not None,
        mfa_required=any(role in MFA_ROLES for role, _ in roles),
        mfa_by_provider=method == OIDC_MFA,
    )


async def actor_from_token(settings: Settings, token: str) -> Actor | None:
    store = store_for(settings)
    record = await store.get(_hash(token))
    if record is None or record.revoked or record.stage != "full":
        return None
    current = now()
    if record.expires_at <= current or record.last_seen_at + timedelta(seconds=settings.session_idle_timeout) <= current:
        return None
    if current - record.last_seen_at > TOUCH_INTERVAL:
        await store.update(_hash(token), last_seen_at=current)
    return await actor_for_user(record.user_id, session_id=record.id, user=record.user, method=record.method)


def auth_middleware_factory(settings: Settings):
    """ASGI middleware putting the request's ``Actor`` (or ``None``) in ``scope['user']``."""

    def factory(app):
        async def middleware(scope, receive, send):
            if scope["type"] in ("http", "websocket"):
                token = None if scope["path"].startswith("/static/") else token_from_scope(scope)
                scope["user"] = await actor_from_token(settings, token) if token else None
            await app(scope, receive, send)

        return middleware

    return factory
