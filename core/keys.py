"""Key rotation for encryption at rest: ``cpms keys status``, ``rotate`` and ``retire``.

Every encrypted database value starts with ``enc1:<key id>:`` (``core.crypto``), so which key
a value uses is known without decrypting it. Rotating adds a new key to the key file, makes it
current and re-encrypts every registered value with it, batch by batch; a run that stops half
way is finished by ``cpms keys rotate --resume`` (values already on the current key are
skipped). Retiring removes a key nothing uses any more.

What rotation does not do:

- Files in storage keep the key they were written with (``core.storage`` reads them with any
  key in the ring), so old keys stay in the ring until the files are re-encrypted.
- The first (oldest) key derives the duplicate-detection index (``core.patients.identity``):
  new keys are appended, and the oldest key cannot be retired.
- Running processes notice the changed keys file (``core.crypto.keyring`` reloads it when its
  modification time changes), so the web application needs no restart. Keys set through the
  environment are read once per process: there, restart the processes.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from piccolo.table import Table

from core import crypto
from core.crypto import DecryptionError, Keyring
from core.identity.mfa import SECRET_CONTEXT
from core.identity.tables import User
from core.patients.tables import ChangeLog, Document, Patient

BATCH_SIZE = 500
# Status only reads the key ids, so it can page through bigger batches.
STATUS_PAGE = 5000
ENV_NAME = "CPMS_ENCRYPTION_KEYS"


class EncryptedColumn(NamedTuple):
    """A column whose values are ``core.crypto`` ciphertexts."""

    table: type[Table]
    column: str
    #: The associated data the value was encrypted with, from a row holding ``needs``.
    context: Callable[[dict], str]
    #: Further values ``context`` reads, selected with each row (joins allowed, aliased to
    #: the name ``context`` uses), e.g. ``Document.patient.pseudonym.as_alias("pseudonym")``.
    needs: tuple = ()

    @property
    def label(self) -> str:
        return f"{self.table._meta.tablename}.{self.column}"


#: Every column holding encrypted values; status, rotation and retirement cover these only.
#: Empty values are never ciphertexts and are skipped (no TOTP enrolled, an erased identity).
#:
#: A plugin that stores ``core.crypto`` ciphertexts in its own tables appends its columns when
#: its package is imported (the plugin host imports every enabled plugin before any command
#: runs), so its values are rotated too and keep old keys from being retired::
#:
#:     from core.keys import ENCRYPTED_COLUMNS, EncryptedColumn
#:     from my_plugin.tables import Report
#:
#:     ENCRYPTED_COLUMNS.append(EncryptedColumn(
#:         Report, "body", lambda row: f"patient:{row['pseudonym']}:report",
#:         (Report.patient.pseudonym.as_alias("pseudonym"),),
#:     ))
#:
#: The context must be exactly the one the value was encrypted with, or it cannot be read.
ENCRYPTED_COLUMNS: list[EncryptedColumn] = [
    EncryptedColumn(Patient, "identity", lambda row: f"patient:{row['pseudonym']}", (Patient.pseudonym,)),
    EncryptedColumn(
        Document, "title", lambda row: f"patient:{row['pseudonym']}:document",
        (Document.patient.pseudonym.as_alias("pseudonym"),),
    ),
    EncryptedColumn(
        Document, "filename", lambda row: f"patient:{row['pseudonym']}:document",
        (Document.patient.pseudonym.as_alias("pseudonym"),),
    ),
    EncryptedColumn(
        ChangeLog, "old_value", lambda row: f"patient:{row['pseudonym']}:history",
        (ChangeLog.patient.pseudonym.as_alias("pseudonym"),),
    ),
    EncryptedColumn(
        ChangeLog, "new_value", lambda row: f"patient:{row['pseudonym']}:history",
        (ChangeLog.patient.pseudonym.as_alias("pseudonym"),),
    ),
    EncryptedColumn(User, "totp_secret", lambda row: SECRET_CONTEXT),
]


class KeysRefused(Exception):
    """The operation would lose data or cannot be done here; the message says why and what to do."""


# --- the key file ------------------------------------------------------------------------------


def keys_path(settings) -> Path:
    return settings.data_dir / "keys" / "cpms.keys"


def _from_environment(settings) -> bool:
    return bool(settings.extra.get("encryption_keys", ""))


def load_ring(settings) -> Keyring:
    """The keyring as stored now, read afresh (the process cache may predate a rotation)."""
    return Keyring.load(keys_path(settings), settings.extra.get("encryption_keys", ""))


def _refuse_environment(settings, what: str) -> None:
    if _from_environment(settings):
        raise KeysRefused(
            f"The keys come from {ENV_NAME}, which cpms cannot change: {what} there. "
            "Keep the existing keys in their order (the first one derives the duplicate-detection "
            "index), restart every CPMS process, then run `cpms keys rotate --resume` to "
            "re-encrypt the stored values with the current key."
        )


@contextmanager
def _locked(path: Path):
    """Serialise changes to the key file: two concurrent rotations must not drop a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # also releases the lock


def _backup(path: Path) -> Path:
    """A copy of the key file next to it (mode 0600), so a bad change can be undone by hand."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    # O_EXCL: never write through a file (or link) someone placed there.
    fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(path.read_bytes())
        fh.flush()
        os.fsync(fh.fileno())
    return backup


def _change_ring(settings, change: Callable[[Keyring], Keyring]) -> tuple[Keyring, Path]:
    """Apply ``change`` to the stored ring (backed up first); returns the new ring and the backup."""
    path = keys_path(settings)
    with _locked(path):
        ring = change(load_ring(settings))
        backup = _backup(path)
        ring.save(path)
    # This process must encrypt with the new ring from now on.
    crypto._cache.clear()
    return ring, backup


def add_key(settings) -> tuple[Keyring, Path]:
    """Append a new 256-bit key to the key file and make it current; returns (ring, backup)."""
    _refuse_environment(settings, "add a new key")
    return _change_ring(settings, lambda ring: ring.with_new_key())


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnStatus:
    label: str
    #: How many values use each key id; None counts values that are not ``enc1`` ciphertexts.
    counts: dict[str | None, int]


@dataclass(frozen=True)
class KeyStatus:
    source: str
    current: str
    #: Oldest first, as in the key file.
    key_ids: list[str]
    columns: list[ColumnStatus]

    def uses(self, kid: str) -> int:
        return sum(c.counts.get(kid, 0) for c in self.columns)

    @property
    def not_current(self) -> int:
        return sum(n for c in self.columns for kid, n in c.counts.items() if kid != self.current)


async def _pages(entry: EncryptedColumn, size: int, *extra):
    """The non-empty values of a column, ``size`` rows at a time, in id order (keyset paging:
    rows rewritten meanwhile neither shift nor repeat a page)."""
    table, column = entry.table, entry.table._meta.get_column_by_name(entry.column)
    last = 0
    while True:
        rows = await table.select(table.id, column, *extra).where(
            (table.id > last) & (column != "")
        ).order_by(table.id).limit(size)
        if not rows:
            return
        last = rows[-1]["id"]
        yield rows


async def _count_by_key(entry: EncryptedColumn) -> dict[str | None, int]:
    counts: Counter = Counter()
    async for rows in _pages(entry, STATUS_PAGE):
        counts.update(Keyring.key_id(r[entry.column]) for r in rows)
    return dict(counts)


async def status(settings) -> KeyStatus:
    """Which keys the ring holds and how many stored values use each (nothing is decrypted)."""
    ring = load_ring(settings)
    source = ENV_NAME if _from_environment(settings) else str(keys_path(settings))
    columns = [ColumnStatus(e.label, await _count_by_key(e)) for e in ENCRYPTED_COLUMNS]
    return KeyStatus(source, ring.current, list(ring.keys), columns)


# --- re-encryption -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Reported after each committed batch."""

    label: str
    checked: int
    total: int
    rewritten: int


@dataclass
class ColumnResult:
    label: str
    checked: int = 0
    rewritten: int = 0
    already_current: int = 0
    #: Changed by someone else between reading and rewriting: left alone, for ``--resume``.
    changed_meanwhile: int = 0
    #: Row ids whose value could not be decrypted (unknown key, wrong context, not ``enc1``).
    unreadable: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Reencryption:
    kid: str
    columns: list[ColumnResult]

    @property
    def rewritten(self) -> int:
        return sum(c.rewritten for c in self.columns)

    @property
    def already_current(self) -> int:
        return sum(c.already_current for c in self.columns)

    @property
    def left_behind(self) -> int:
        """Values not on the current key after this run."""
        return sum(c.changed_meanwhile + len(c.unreadable) for c in self.columns)


def _reseal(entry: EncryptedColumn, ring: Keyring, rows: list[dict], result: ColumnResult) -> list[tuple]:
    """(id, old value, new value) for the rows not on the current key yet."""
    changes = []
    for row in rows:
        value = row[entry.column]
        if Keyring.key_id(value) == ring.current:
            result.already_current += 1
            continue
        try:
            changes.append((row["id"], value, ring.reencrypt(value, entry.context(row))))
        except DecryptionError:
            result.unreadable.append(row["id"])
    return changes


async def _write(entry: EncryptedColumn, changes: list[tuple]) -> int:
    """Store one batch in one transaction; returns how many rows were rewritten."""
    table, column = entry.table, entry.table._meta.get_column_by_name(entry.column)
    written = 0
    async with table._meta.db.transaction():
        for row_id, old, new in changes:
            # Only if still the value read: a concurrent edit is never overwritten.
            updated = await table.update({column: new}).where((table.id == row_id) & (column == old)).returning(table.id)
            written += len(updated)
    return written


async def _reencrypt_column(entry, ring, batch_size, on_batch) -> ColumnResult:
    result = ColumnResult(entry.label)
    column = entry.table._meta.get_column_by_name(entry.column)
    total = await entry.table.count().where(column != "")
    async for rows in _pages(entry, batch_size, *entry.needs):
        changes = _reseal(entry, ring, rows, result)
        written = await _write(entry, changes) if changes else 0
        result.checked += len(rows)
        result.rewritten += written
        result.changed_meanwhile += len(changes) - written
        if on_batch:
            on_batch(Progress(entry.label, result.checked, total, result.rewritten))
    return result


async def reencrypt(settings, *, batch_size: int = BATCH_SIZE, on_batch: Callable[[Progress], None] | None = None) -> Reencryption:
    """Re-encrypt every registered value that is not on the current key, ``batch_size`` rows per
    transaction. Safe to interrupt and run again: what is done stays done and is skipped.

    ``on_batch`` is called after each committed batch (progress output; tests raise from it to
    simulate an interruption).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    ring = load_ring(settings)
    columns = [await _reencrypt_column(e, ring, batch_size, on_batch) for e in ENCRYPTED_COLUMNS]
    return Reencryption(ring.current, columns)


async def rotate(
    settings, *, batch_size: int = BATCH_SIZE, resume: bool = False, on_batch: Callable[[Progress], None] | None = None
) -> Reencryption:
    """Add a new current key (unless ``resume``), then re-encrypt every registered value with it."""
    if not resume:
        add_key(settings)
    return await reencrypt(settings, batch_size=batch_size, on_batch=on_batch)


# --- retirement --------------------------------------------------------------------------------


def _check_retirable(ring: Keyring, kid: str) -> None:
    if kid not in ring.keys:
        raise KeysRefused(f"There is no key {kid!r} in the keyring (keys: {', '.join(ring.keys)}).")
    if kid == ring.current:
        raise KeysRefused(f"Key {kid} is the current key: rotate first (`cpms keys rotate`).")
    if kid == next(iter(ring.keys)):
        raise KeysRefused(
            f"Key {kid} is the oldest key, from which the duplicate-detection index is derived: "
            "removing it would silently stop duplicate warnings for every enrolled patient."
        )


async def retire(settings, kid: str, *, files_reencrypted: bool = False) -> Path:
    """Remove ``kid`` from the key file; returns the backup of the previous file.

    Refused for the current and the oldest key, while any registered value uses it, and unless
    the caller states that no stored file uses it (files are not tracked here).
    """
    _refuse_environment(settings, f"remove key {kid}")
    _check_retirable(load_ring(settings), kid)
    in_use = (await status(settings)).uses(kid)
    if in_use:
        raise KeysRefused(
            f"{in_use} stored value(s) still use key {kid}: run `cpms keys rotate --resume` first "
            "(`cpms keys status` shows where they are)."
        )
    if not files_reencrypted:
        raise KeysRefused(
            f"Files in storage may still be encrypted with key {kid} and would become unreadable. "
            "Retire it only once no file uses it, and say so with --i-have-re-encrypted-files."
        )

    def without(ring: Keyring) -> Keyring:
        _check_retirable(ring, kid)  # again, under the lock: the file may have changed meanwhile
        return ring.without_key(kid)

    return _change_ring(settings, without)[1]


# --- the command line --------------------------------------------------------------------------

FILES_NOTE = (
    "Files in storage were not re-encrypted: they stay readable with the key they were written "
    "with, which therefore stays in the keyring."
)
RESTART_NOTE = (
    "Running CPMS processes reload the keys file by themselves; no restart is needed."
)


def add_commands(cli) -> None:
    """Register the ``cpms keys`` group on the ``cpms`` command (from the patients plugin's hook)."""
    import click

    @cli.group("keys", help="Encryption keys: which values use which key, rotation, retirement.")
    def keys():
        pass

    @keys.command("status", help="The keys in the ring and how many stored values use each (never a value).")
    def status_command():
        _print_status(click.echo, _run(status))

    @keys.command("rotate", help=(
        "Add a new 256-bit key, make it current and re-encrypt every stored database value with it, "
        "in batches (one transaction each). Interrupted? Run again with --resume: finished values are "
        "skipped. Running web processes pick up the new key by themselves. "
        "Files in storage are not re-encrypted and keep their (old) key."
    ))
    @click.option("--batch-size", default=BATCH_SIZE, show_default=True, type=click.IntRange(min=1), help="Rows per transaction.")
    @click.option("--resume", is_flag=True, help=(
        "Add no key: re-encrypt what is not on the current key yet (after an interrupted run, "
        f"or after a new key was added to {ENV_NAME})."
    ))
    def rotate_command(batch_size, resume):
        _run_rotation(click, batch_size, resume)

    @keys.command("retire", help=(
        "Remove key KID from the key file once no stored value uses it (see `cpms keys status`). "
        "The current and the oldest key (duplicate detection) cannot be retired. RISK: files in "
        "storage are not tracked here; a file still encrypted with KID becomes unreadable for good. "
        "Timestamped backups of the key file still hold KID: delete them when sure."
    ))
    @click.argument("kid")
    @click.option("--i-have-re-encrypted-files", "files_done", is_flag=True, help="Confirm that no stored file uses KID any more.")
    def retire_command(kid, files_done):
        backup = _refusing(click, lambda: _run(lambda settings: retire(settings, kid, files_reencrypted=files_done)))
        click.echo(f"Key {kid} retired. The previous key file is backed up at {backup} (it still holds {kid}).")


def _run(work):
    from core.cli import run_with_settings  # imported late: core.cli loads the plugins, this one among them

    return run_with_settings(work)


def _refusing(click, action):
    """``action()``, or the refusal on stderr and exit status 2."""
    try:
        return action()
    except KeysRefused as exc:
        click.echo(f"cpms keys: {exc}", err=True)
        sys.exit(2)


def _run_rotation(click, batch_size: int, resume: bool) -> None:
    def progress(p: Progress) -> None:
        click.echo(f"  {p.label}: {p.checked}/{p.total} checked, {p.rewritten} re-encrypted")

    started = []

    async def work(settings):
        if not resume:
            ring, backup = add_key(settings)
            click.echo(f"New key {ring.current} is current; the previous key file is backed up at {backup}.")
            click.echo(RESTART_NOTE)
        started.append(True)
        click.echo(f"Re-encrypting stored values with the current key, {batch_size} rows per transaction:")
        return await reencrypt(settings, batch_size=batch_size, on_batch=progress)

    try:
        result = _refusing(click, lambda: _run(work))
    except (Exception, KeyboardInterrupt):
        # Only once re-encryption began is there something to resume; the new key is kept.
        if started:
            click.echo("Interrupted: run `cpms keys rotate --resume` to finish (finished values are skipped).", err=True)
        raise
    _print_result(click, result)


def _print_result(click, result: Reencryption) -> None:
    click.echo(f"{result.rewritten} value(s) re-encrypted with key {result.kid}; {result.already_current} already used it.")
    click.echo(FILES_NOTE)
    for c in result.columns:
        if c.changed_meanwhile:
            click.echo(f"{c.label}: {c.changed_meanwhile} value(s) changed during the run and were left as written.", err=True)
        if c.unreadable:
            ids = ", ".join(str(i) for i in c.unreadable[:20]) + (" ..." if len(c.unreadable) > 20 else "")
            click.echo(f"{c.label}: {len(c.unreadable)} value(s) cannot be decrypted (row ids {ids}).", err=True)
    if result.left_behind:
        click.echo("Some values are not on the current key: run `cpms keys rotate --resume` again.", err=True)
        sys.exit(1)


def _print_status(echo, s: KeyStatus) -> None:
    echo(f"Keys from: {s.source}")
    echo(f"Current key: {s.current}")
    echo("Keys (oldest first): " + ", ".join(_key_label(s, kid) for kid in s.key_ids))
    echo("Stored values per key:")
    for c in s.columns:
        echo(f"  {c.label}: {_counts_label(s, c.counts)}")
    if s.not_current:
        echo(f"{s.not_current} value(s) are not on the current key: `cpms keys rotate --resume` re-encrypts them.")
    else:
        echo("Every stored value uses the current key.")
    echo("Files in storage are not counted here: they keep the key they were written with.")


def _key_label(s: KeyStatus, kid: str) -> str:
    notes = (["current"] if kid == s.current else []) + (["oldest: duplicate detection"] if kid == s.key_ids[0] else [])
    return f"{kid} ({', '.join(notes)})" if notes else kid


def _counts_label(s: KeyStatus, counts: dict) -> str:
    if not counts:
        return "none"
    parts = []
    for kid, n in sorted(counts.items(), key=lambda item: (item[0] is None, item[0] or "")):
        if kid is None:
            parts.append(f"not encrypted={n}")
        else:
            parts.append(f"{kid}={n}" + ("" if kid in s.key_ids else " (key not in the ring!)"))
    return ", ".join(parts)
