"""The database layer on SQLite and PostgreSQL alike: WAL, migrations both ways, atomic writes."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core import db
from tests.conftest import app_client, make_settings

ROOT = Path(__file__).resolve().parents[1]


def test_sqlite_uses_wal(settings, migrated):
    if settings.uses_postgres:
        pytest.skip("WAL is a SQLite setting; this run uses PostgreSQL")
    with sqlite3.connect(settings.sqlite_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_failed_transaction_leaves_nothing(clean_db):
    from core.orgs.tables import Hcp

    before = await Hcp.count()
    with pytest.raises(RuntimeError):
        async with db.engine().transaction():
            await Hcp.insert(Hcp(name="Half", city="X", country="BE"))
            raise RuntimeError("crash in the middle")
    assert await Hcp.count() == before


async def test_migrations_run_backwards_and_forwards(clean_db):
    """Every app's migrations can be undone and re-applied (dependents first)."""
    from piccolo.apps.migrations.commands.backwards import run_backwards

    _, registry = db.current()
    tables_before = await _table_names()
    assert {"orgs_ern", "identity_user", "core_activity", "example_note"} <= tables_before
    for app in ["example", "panels", "notify", "activity", "identity", "orgs"]:
        result = await run_backwards(app_name=app, migration_id="all", auto_agree=True)
        assert result.success, result.message
    assert not ({"orgs_ern", "identity_user", "core_activity", "example_note", "panels_panel", "notify_notification"} & await _table_names())
    await db.migrate()
    assert await _table_names() >= tables_before


async def _table_names() -> set[str]:
    eng = db.engine()
    if eng.engine_type == "postgres":
        rows = await eng.run_ddl("SELECT tablename AS name FROM pg_tables WHERE schemaname='public'")
    else:
        rows = await eng.run_ddl("SELECT name FROM sqlite_master WHERE type='table'")
    return {r["name"] for r in rows}


KILLED_WRITER = textwrap.dedent('''
    import asyncio, sys, time
    sys.path.insert(0, {root!r})
    from core import db
    from core.plugins import PluginHost
    from tests.conftest import make_settings
    settings = make_settings()
    host = PluginHost(settings)
    db.configure(settings, host)
    from core.orgs.tables import Hcp

    async def main():
        await Hcp.insert(Hcp(name="Committed", city="A", country="BE"))
        async with db.engine().transaction():
            for i in range(200):
                await Hcp.insert(Hcp(name=f"Uncommitted {{i}}", city="B", country="BE"))
            print("MID", flush=True)
            time.sleep(60)

    asyncio.run(main())
''')


async def test_process_killed_mid_write_loses_nothing_committed(clean_db, settings, tmp_path):
    from core.orgs.tables import Hcp

    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER.format(root=str(ROOT)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CPMS_TEST_DATA_DIR": str(settings.data_dir)}
    env.pop("PYTEST_XDIST_WORKER", None)  # these are already this worker's database and folder
    if settings.database_url:
        env["CPMS_TEST_DATABASE_URL"] = settings.database_url
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline().decode()
        assert line.strip() == "MID", line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    names = [r["name"] for r in await Hcp.select(Hcp.name)]
    assert names == ["Committed"]
    if not settings.uses_postgres:
        with sqlite3.connect(settings.sqlite_path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def test_healthz_reports_unreachable_database(clean_db):
    
    from core.app import create_app

    # A database that cannot be reached: the health check says so instead of crashing.
    bad = make_settings(database_url="postgresql://nobody@127.0.0.1:1/none")
    app = create_app(bad)
    try:
        async with app_client(app) as client:
            r = await client.get("/healthz")
            assert r.status_code == 503
            assert r.json()["database"] == "unreachable"
    finally:
        db.configure(make_settings(), clean_db)
