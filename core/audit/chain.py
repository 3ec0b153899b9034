"""Appending to the patient-data audit chain, and checking that nobody rewrote it.

Each entry's hash is SHA-256 over a canonical JSON of its fields and the previous entry's
hash, so changing, deleting or reordering an entry breaks every link after it. Appends are
serialized (one transaction that reads the last entry and inserts the next ``seq``; ``seq``
is unique), so two concurrent requests can never fork the chain.

Callers pass pseudonyms and ids only: ``detail`` is a small dict that must never hold a
name, date of birth or any other identifying value.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterable, NamedTuple

from piccolo.engine.sqlite import TransactionType

from core.audit.tables import AuditEntry

#: The ``prev_hash`` of entry 1.
GENESIS = "0" * 64
#: Longest JSON text accepted as ``detail``: ids and counts, never documents.
MAX_DETAIL_CHARS = 1000
#: Attempts when a concurrent writer took the same ``seq`` (another process, say).
APPEND_ATTEMPTS = 5
#: Rows per INSERT statement (SQLite caps the parameters of one statement).
INSERT_CHUNK = 200
#: Rows read per query by ``verify`` and the exports.
READ_BATCH = 1000
#: Key of the PostgreSQL advisory lock that serializes appends ("CPMSAUD" in ASCII).
PG_LOCK_KEY = 0x43504D53415544

#: The fields a hash covers, in the order they are documented.
HASHED_FIELDS = (
    "seq", "at", "actor_id", "actor_hcp", "action", "patient_pseudonym", "patient_hcp",
    "detail", "address", "prev_hash",
)


class Verification(NamedTuple):
    ok: bool
    #: Entries found intact, in order from the first (all of them when ``ok``).
    checked: int
    #: The first entry whose hash, ``prev_hash`` or position is wrong.
    first_bad_seq: int | None


# --- hashing ------------------------------------------------------------------------------


def encode_detail(detail: dict[str, Any] | None) -> str:
    """The stored (and hashed) text of ``detail``: canonical JSON, so a hash is reproducible."""
    if detail is None:
        detail = {}
    if not isinstance(detail, dict):
        raise TypeError("audit detail must be a dict")
    text = json.dumps(detail, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_DETAIL_CHARS:
        raise ValueError(f"audit detail is longer than {MAX_DETAIL_CHARS} characters: pass ids and counts only")
    return text


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 (hex) of an entry's hashed fields; ``detail`` is its stored JSON text."""
    payload = {name: entry[name] for name in HASHED_FIELDS}
    payload["at"] = _iso(entry["at"])
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- appending ----------------------------------------------------------------------------


async def record(
    action: str, *, patient_pseudonym: str, patient_hcp: int, actor=None, address: str = "",
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one entry; returns its ``seq``. ``actor`` is a ``core.permissions.Actor`` or None."""
    seqs = await record_many(action, [(patient_pseudonym, patient_hcp)], actor=actor, address=address, detail=detail)
    return seqs[0]


async def record_many(
    action: str, patients: Iterable[tuple[str, int]], *, actor=None, address: str = "",
    detail: dict[str, Any] | None = None,
) -> list[int]:
    """Append one entry per (pseudonym, enrolling HCP id) pair, in one transaction (search
    results: one entry per patient shown); returns their ``seq`` values in order."""
    fields = _common_fields(action, actor, address, detail)
    targets = [_checked_patient(pseudonym, hcp) for pseudonym, hcp in patients]
    if not targets:
        return []
    engine = AuditEntry._meta.db
    # Inside a caller's transaction the append commits or rolls back with the caller's change;
    # a failed statement has then spoiled that transaction, so retrying is not possible.
    attempts = 1 if engine.current_transaction.get() is not None else APPEND_ATTEMPTS
    for attempt in range(1, attempts):
        try:
            return await _append(engine, fields, targets)
        except Exception as exc:
            if not _is_duplicate_seq(exc):
                raise
            # A writer outside our serialization (e.g. a hand-made insert) took that seq.
            await asyncio.sleep(random.uniform(0.005, 0.02) * attempt)
    return await _append(engine, fields, targets)


def _common_fields(action: str, actor, address: str, detail: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(action, str) or not 0 < len(action) <= 50:
        raise ValueError("audit action must be 1 to 50 characters")
    return {
        "actor_id": actor.user_id if actor is not None else None,
        "actor_hcp": actor.hcp_id if actor is not None else None,
        "action": action,
        "detail": encode_detail(detail),
        # Addresses are at most 45 characters (IPv6); cut anything odd rather than lose the entry.
        "address": (address or "")[:64],
    }


def _checked_patient(pseudonym: str, hcp: int) -> tuple[str, int]:
    if not isinstance(pseudonym, str) or not 0 < len(pseudonym) <= 40:
        raise ValueError("audit patient pseudonym must be 1 to 40 characters")
    if isinstance(hcp, bool) or not isinstance(hcp, int):
        raise ValueError("audit patient_hcp must be the enrolling hospital's id")
    return pseudonym, hcp


def _transaction(engine):
    if engine.engine_type == "sqlite":
        # IMMEDIATE takes SQLite's write lock at BEGIN, so concurrent appenders queue up
        # (busy timeout) instead of both reading the same last entry.
        return engine.transaction(transaction_type=TransactionType.immediate)
    return engine.transaction()


async def _append(engine, fields: dict[str, Any], targets: list[tuple[str, int]]) -> list[int]:
    async with _transaction(engine):
        if engine.engine_type == "postgres":
            # Held until commit: appenders wait here rather than failing on the unique seq.
            await AuditEntry.raw("SELECT pg_advisory_xact_lock({})", PG_LOCK_KEY)
        last = await AuditEntry.select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq, ascending=False).first()
        seq, prev_hash = (last["seq"], last["hash"]) if last else (0, GENESIS)
        at = datetime.now(timezone.utc)
        rows = []
        for pseudonym, hcp in targets:
            seq += 1
            entry = {**fields, "seq": seq, "at": at, "patient_pseudonym": pseudonym, "patient_hcp": hcp, "prev_hash": prev_hash}
            entry["hash"] = prev_hash = entry_hash(entry)
            rows.append(AuditEntry(**entry))
        for start in range(0, len(rows), INSERT_CHUNK):
            await AuditEntry.insert(*rows[start:start + INSERT_CHUNK])
    return [row.seq for row in rows]


def _is_duplicate_seq(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    try:
        from asyncpg.exceptions import UniqueViolationError
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    return isinstance(exc, UniqueViolationError)


# --- verifying ----------------------------------------------------------------------------


async def entries_in_order(where=None, batch_size: int = READ_BATCH) -> AsyncIterator[list[dict]]:
    """All entries (matching ``where``) by ascending seq, one batch at a time: never the whole
    table in memory. The first batch has no lower bound, so a row moved below 1 is seen too."""
    last_seq = None
    while True:
        query = AuditEntry.select().order_by(AuditEntry.seq).limit(batch_size)
        if where is not None:
            query = query.where(where)
        if last_seq is not None:
            query = query.where(AuditEntry.seq > last_seq)
        rows = await query
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        last_seq = rows[-1]["seq"]


async def verify(batch_size: int = READ_BATCH) -> Verification:
    """Recompute the chain from entry 1: ``(ok, checked, first_bad_seq)``."""
    expected_seq, prev_hash, checked = 1, GENESIS, 0
    async for rows in entries_in_order(batch_size=batch_size):
        for row in rows:
            if row["seq"] != expected_seq or row["prev_hash"] != prev_hash or row["hash"] != entry_hash(row):
                return Verification(False, checked, row["seq"])
            checked, expected_seq, prev_hash = checked + 1, expected_seq + 1, row["hash"]
    return Verification(True, checked, None)


async def head() -> tuple[int, str] | None:
    """The last entry's (seq, hash): noted outside the database, it also reveals a chain cut
    short or rewritten from some entry onwards, which the chain alone cannot show."""
    last = await AuditEntry.select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq, ascending=False).first()
    return (last["seq"], last["hash"]) if last else None
