"""Server-side sessions and the actor behind each request.

The cookie carries a random token; the database keeps only its SHA-256, so a copy of the
database cannot be replayed as cookies. Sessions end when revoked, idle too long, or past
their absolute lifetime; roles are read on every request so a revocation takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie

from core.permissions import Actor, grants_for
from core.settings import Settings

COOKIE_NAME = "cpms_session"
# Writing last_seen on every request would make every page view a database write.
TOUCH_INTERVAL = timedelta(seconds=60)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(timezone.utc)


async def create_session(
    settings: Settings, user_id: int, address: str = "", user_agent: str = "", stage: str = "full", method: str = "password"
) -> str:
    from core.identity.tables import Session

    token = secrets.token_urlsafe(32)
    await Session.insert(
        Session(
            token_hash=_hash(token), user=user_id, created_at=now(), last_seen_at=now(),
            expires_at=now() + timedelta(seconds=settings.session_absolute_timeout),
            address=address[:64], user_agent=user_agent[:300], stage=stage, method=method,
        )
    )
    return token


async def complete_session(token: str) -> None:
    """The second factor was given: the session becomes a full one."""
    from core.identity.tables import Session

    await Session.update({Session.stage: "full", Session.last_seen_at: now()}).where(Session.token_hash == _hash(token))


async def pending_user_id(settings: Settings, token: str | None) -> int | None:
    """The user of a live session still waiting for its second factor."""
    from core.identity.tables import Session

    if not token:
        return None
    row = await Session.select(Session.user, Session.stage, Session.expires_at, Session.revoked_at, Session.created_at).where(
        Session.token_hash == _hash(token)
    ).first()
    # Ten minutes to give the second factor.
    if row is None or row["stage"] != "mfa" or row["revoked_at"] is not None or row["created_at"] + timedelta(minutes=10) <= now():
        return None
    return row["user"]


async def revoke_session(token: str) -> None:
    from core.identity.tables import Session

    await Session.update({Session.revoked_at: now()}).where(Session.token_hash == _hash(token))


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


async def actor_for_user(user_id: int, session_id: str = "", user: dict | None = None) -> Actor | None:
    from core.identity.roles import MFA_ROLES
    from core.identity.tables import RoleAssignment, User

    if user is None:
        user = await User.select(
            User.id, User.email, User.name, User.hcp, User.is_active, User.totp_enabled_at
        ).where(User.id == user_id).first()
    if user is None or not user["is_active"]:
        return None
    current = now()
    roles = tuple(
        (r["role"], r["ern"])
        for r in await RoleAssignment.select(RoleAssignment.role, RoleAssignment.ern, RoleAssignment.expires_at).where(
            RoleAssignment.user == user_id
        )
        if r["expires_at"] is None or r["expires_at"] > current
    )
    grants = grants_for(roles, await role_permissions.get())
    return Actor(
        user["id"], user["email"], user["name"], user["hcp"], roles, grants, session_id,
        mfa_enabled=user["totp_enabled_at"] is not None,
        mfa_required=any(role in MFA_ROLES for role, _ in roles),
    )


async def actor_from_token(settings: Settings, token: str) -> Actor | None:
    from core.identity.tables import Session

    # One query for the session and its user; roles are read fresh on every request.
    row = await Session.select(
        Session.id, Session.user, Session.last_seen_at, Session.expires_at, Session.revoked_at, Session.stage,
        Session.user.email.as_alias("email"), Session.user.name.as_alias("name"),
        Session.user.hcp.as_alias("hcp"), Session.user.is_active.as_alias("is_active"),
        Session.user.totp_enabled_at.as_alias("totp_enabled_at"),
    ).where(Session.token_hash == _hash(token)).first()
    if row is None or row["revoked_at"] is not None or row["stage"] != "full":
        return None
    current = now()
    if row["expires_at"] <= current or row["last_seen_at"] + timedelta(seconds=settings.session_idle_timeout) <= current:
        return None
    if current - row["last_seen_at"] > TOUCH_INTERVAL:
        await Session.update({Session.last_seen_at: current}).where(Session.id == row["id"])
    user = {k: row[k] for k in ("email", "name", "hcp", "is_active", "totp_enabled_at")} | {"id": row["user"]}
    return await actor_for_user(row["user"], session_id=str(row["id"]), user=user)


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
