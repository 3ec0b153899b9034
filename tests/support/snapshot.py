"""Build the demo once per test process and put it back into the test database in about a second.

``cpms demo`` takes about 15 s (it parses the bundled terminologies, writes a slide, DICOM
studies, users, patients and panels). Tests that need the demo (the browser journeys start from
it, and a few tests check what it holds) used to run it each time. Instead, ``build`` runs the
real ``cpms demo`` command once, into a database and a data folder of its own that share the
test run's encryption keys; ``restore`` then replaces the rows of the test database with the
demo's and links the demo's stored files into the test data folder.

Rows are copied, not database files swapped, so connections that the test process (or a served
app) holds stay valid: SQLite through its backup API, PostgreSQL through COPY. Both functions are
plain (not async): browser-test fixtures call them while Playwright's sync API owns this thread's
event loop, so PostgreSQL's work runs on a loop of its own in a helper thread.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from tests.support.cli import ROOT, cli_env


@dataclass
class Snapshot:
    data_dir: Path
    database_url: str
    #: PostgreSQL: each table's rows in COPY's binary format, read once.
    copies: dict[str, bytes] = field(default_factory=dict)


def _run(coro):
    """Run ``coro`` to completion on a fresh event loop in another thread."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def build(settings, tables) -> Snapshot:
    """Run ``cpms demo`` into a database and folder beside the test ones; keep what it made."""
    from core import crypto

    folder = Path(settings.data_dir).parent / (Path(settings.data_dir).name + "-demo")
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "keys").mkdir(parents=True)
    crypto.keyring(settings)  # make sure the test run's key file exists, then share it
    shutil.copy2(Path(settings.data_dir) / "keys" / "cpms.keys", folder / "keys" / "cpms.keys")
    url = ""
    if settings.uses_postgres:
        url = _run(_fresh_postgres_database(settings.database_url, suffix="_demo"))
    env = cli_env(settings, CPMS_DATA_DIR=str(folder), CPMS_DATABASE_URL=url)
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError("cpms demo failed: " + done.stderr[-3000:])
    snap = Snapshot(folder, url)
    if url:
        snap.copies = _run(_copy_out(url, [t._meta.tablename for t in tables]))
    return snap


async def _copy_out(url: str, names: list[str]) -> dict[str, bytes]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        copies = {}
        for name in names:
            buf = BytesIO()
            await conn.copy_from_table(name, output=buf, format="binary")
            copies[name] = buf.getvalue()
        return copies
    finally:
        await conn.close()


def restore(snap: Snapshot, settings, tables) -> None:
    """Make the test database hold exactly the demo's rows, and its data folder the demo's files.
    Idle pooled SQLite connections stay usable: they hold no lock, and SQLite notices the change."""
    if settings.uses_postgres:
        _run(_restore_postgres(snap, settings, tables))
    else:
        source = sqlite3.connect(snap.data_dir / "cpms.sqlite3")
        target = sqlite3.connect(settings.sqlite_path, timeout=30)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
    _link_files(snap.data_dir, Path(settings.data_dir))


async def _restore_postgres(snap: Snapshot, settings, tables) -> None:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            names = ", ".join(f'"{t._meta.tablename}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            for table in tables:  # parents first: foreign keys are checked row by row
                data = snap.copies[table._meta.tablename]
                await conn.copy_to_table(table._meta.tablename, source=BytesIO(data), format="binary")
            for table in tables:
                name = table._meta.tablename
                pk = table._meta.primary_key._meta.db_column_name
                seq = await conn.fetchval("SELECT pg_get_serial_sequence($1, $2)", f'"{name}"', pk)
                if seq:
                    await conn.execute(
                        f'SELECT setval($1, COALESCE((SELECT MAX("{pk}") FROM "{name}"), 0) + 1, false)', seq
                    )
    finally:
        await conn.close()


def _link_files(source: Path, target: Path) -> None:
    """Stored files are written once under random names (and replaced by rename), so a hard
    link is as good as a copy and costs nothing; the database and the keys are not files to share."""
    skip = {"keys", "cpms.sqlite3", "cpms.sqlite3-wal", "cpms.sqlite3-shm"}

    def link(src, dst):
        try:
            os.link(src, dst)
        except FileExistsError:
            pass
        except OSError:
            shutil.copy2(src, dst)

    for entry in source.iterdir():
        if entry.name in skip or entry.name.startswith("server-"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, copy_function=link, dirs_exist_ok=True)
        else:
            link(entry, target / entry.name)


async def _fresh_postgres_database(url: str, suffix: str) -> str:
    """An empty database named after ``url``'s plus ``suffix`` (dropped first if it exists)."""
    import asyncpg

    base, _, name = url.rpartition("/")
    new = f"{name}{suffix}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{new}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{new}"')
    finally:
        await conn.close()
    return f"{base}/{new}"


async def ensure_postgres_database(url: str, maintenance_url: str) -> None:
    """Create ``url``'s database (a per-worker one) through ``maintenance_url`` if it is missing."""
    import asyncpg

    name = url.rpartition("/")[2]
    conn = await asyncpg.connect(maintenance_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
