"""Where server-side sessions live: the database (default) or Redis (``CPMS_REDIS_URL``).

Both stores keep only the SHA-256 of the cookie's token, know every live session of a user
(for the profile's session list and "log out other sessions"), and let any session be
revoked at once. Redis keys expire with the session's absolute lifetime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class SessionRecord:
    id: str
    user_id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    address: str
    user_agent: str
    stage: str
    method: str
    revoked: bool = False
    #: The user's row when the store could fetch it in the same query (database store).
    user: dict | None = None


class DatabaseSessionStore:
    async def create(self, thash: str, user_id: int, expires_at: datetime, address: str, user_agent: str, stage: str, method: str) -> None:
        from core.identity.tables import Session

        await Session.insert(Session(
            token_hash=thash, user=user_id, created_at=now(), last_seen_at=now(), expires_at=expires_at,
            address=address, user_agent=user_agent, stage=stage, method=method,
        ))

    # Every request runs this; written out because building the joined query with the ORM
    # cost more than running it (measured with benchmarks/http_bench.py).
    GET_SQL = (
        'SELECT s.id, s."user", s.created_at, s.last_seen_at, s.expires_at, s.revoked_at, s.stage, s.method, '
        "s.address, s.user_agent, u.email, u.name, u.hcp, u.is_active, u.totp_enabled_at "
        'FROM identity_session s JOIN identity_user u ON u.id = s."user" WHERE s.token_hash = {}'
    )

    async def get(self, thash: str) -> SessionRecord | None:
        from core.identity.tables import Session

        rows = await Session.raw(self.GET_SQL, thash)
        if not rows:
            return None
        row = rows[0]
        row["is_active"] = bool(row["is_active"])
        user = {k: row[k] for k in ("email", "name", "hcp", "is_active", "totp_enabled_at")} | {"id": row["user"]}
        return SessionRecord(
            str(row["id"]), row["user"], row["created_at"], row["last_seen_at"], row["expires_at"], row["address"],
            row["user_agent"], row["stage"], row["method"], row["revoked_at"] is not None, user,
        )

    async def update(self, thash: str, **values) -> None:
        from core.identity.tables import Session

        await Session.update({getattr(Session, k): v for k, v in values.items()}).where(Session.token_hash == thash)

    async def revoke(self, thash: str) -> None:
        await self.update(thash, revoked_at=now())

    async def live_for_user(self, user_id: int) -> list[SessionRecord]:
        from core.identity.tables import Session

        rows = await Session.select().where(
            (Session.user == user_id) & Session.revoked_at.is_null() & (Session.expires_at > now())
        ).order_by(Session.last_seen_at, ascending=False)
        return [
            SessionRecord(str(r["id"]), user_id, r["created_at"], r["last_seen_at"], r["expires_at"], r["address"],
                          r["user_agent"], r["stage"], r["method"])
            for r in rows
        ]

    async def revoke_for_user(self, user_id: int, session_ids: list[str] | None = None, keep: str | None = None) -> int:
        from core.identity.tables import Session

        where = (Session.user == user_id) & Session.revoked_at.is_null()
        if session_ids is not None:
            where &= Session.id.is_in([int(i) for i in session_ids if i.isdecimal()] or [0])
        if keep is not None and keep.isdecimal():
            where &= Session.id != int(keep)
        return len(await Session.update({Session.revoked_at: now()}).where(where).returning(Session.id))

    async def clear(self) -> None:
        """Tests only: the database is emptied with the other tables."""


class RedisSessionStore:
    """Sessions as Redis hashes ``cpms:session:<hash>`` plus a per-user set of hashes."""

    prefix = "cpms:session:"

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self.url = url
        self.redis = redis.from_url(url, decode_responses=True)

    def _key(self, thash: str) -> str:
        return self.prefix + thash

    def _user_key(self, user_id: int) -> str:
        return f"cpms:user-sessions:{user_id}"

    @staticmethod
    def _id(thash: str) -> str:
        # A public handle for the profile page: part of the hash, useless as a cookie.
        return thash[:16]

    async def create(self, thash, user_id, expires_at, address, user_agent, stage, method) -> None:
        created = now().isoformat()
        ttl = max(1, int((expires_at - now()).total_seconds()))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(thash), mapping={
                "user_id": user_id, "created_at": created, "last_seen_at": created, "expires_at": expires_at.isoformat(),
                "address": address, "user_agent": user_agent, "stage": stage, "method": method, "revoked": "0",
            })
            pipe.expire(self._key(thash), ttl)
            pipe.sadd(self._user_key(user_id), thash)
            await pipe.execute()

    def _record(self, thash: str, data: dict) -> SessionRecord:
        return SessionRecord(
            self._id(thash), int(data["user_id"]), datetime.fromisoformat(data["created_at"]),
            datetime.fromisoformat(data["last_seen_at"]), datetime.fromisoformat(data["expires_at"]),
            data.get("address", ""), data.get("user_agent", ""), data.get("stage", "full"), data.get("method", "password"),
            data.get("revoked") == "1",
        )

    async def get(self, thash: str) -> SessionRecord | None:
        data = await self.redis.hgetall(self._key(thash))
        return self._record(thash, data) if data else None

    async def update(self, thash: str, **values) -> None:
        if not await self.redis.exists(self._key(thash)):
            return
        mapping = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}
        await self.redis.hset(self._key(thash), mapping=mapping)

    async def revoke(self, thash: str) -> None:
        data = await self.redis.hgetall(self._key(thash))
        if data:
            await self.redis.delete(self._key(thash))
            await self.redis.srem(self._user_key(int(data["user_id"])), thash)

    async def _live(self, user_id: int) -> list[tuple[str, SessionRecord]]:
        out = []
        for thash in await self.redis.smembers(self._user_key(user_id)):
            data = await self.redis.hgetall(self._key(thash))
            if not data:  # expired in Redis: forget it from the index too
                await self.redis.srem(self._user_key(user_id), thash)
                continue
            out.append((thash, self._record(thash, data)))
        return sorted(out, key=lambda item: item[1].last_seen_at, reverse=True)

    async def live_for_user(self, user_id: int) -> list[SessionRecord]:
        return [record for _, record in await self._live(user_id)]

    async def revoke_for_user(self, user_id: int, session_ids: list[str] | None = None, keep: str | None = None) -> int:
        count = 0
        for thash, record in await self._live(user_id):
            if (session_ids is None or record.id in session_ids) and record.id != keep:
                await self.revoke(thash)
                count += 1
        return count

    async def clear(self) -> None:
        async for key in self.redis.scan_iter(match="cpms:*"):
            await self.redis.delete(key)


_stores: dict[str, object] = {}


def store_for(settings):
    key = settings.redis_url or "database"
    if key not in _stores:
        _stores[key] = RedisSessionStore(settings.redis_url) if settings.redis_url else DatabaseSessionStore()
    return _stores[key]
