"""Database set-up: one piccolo engine for the process, chosen by the settings.

SQLite (a file in the data folder, WAL mode) is the embedded default; PostgreSQL is used
when ``CPMS_DATABASE_URL`` names one. Each plugin brings its own piccolo app (tables and
migrations); the registry is built from the enabled plugins.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import TYPE_CHECKING

from piccolo.conf.apps import AppRegistry
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine
from piccolo.table import Table, sort_table_classes

from core.settings import Settings

if TYPE_CHECKING:
    from core.plugins import PluginHost

# piccolo's own machinery (migrations, engine_finder) reads this module.
os.environ.setdefault("PICCOLO_CONF", "core.piccolo_conf")

_state: dict = {}


class PooledSQLiteEngine(SQLiteEngine):
    """piccolo's SQLite engine opens a connection (and a thread) per query; this one keeps a
    few open connections for queries outside transactions, which triples page throughput."""

    max_idle = 4

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._idle: list = []

    async def _open(self):
        import aiosqlite
        from piccolo.engine.sqlite import dict_factory

        pending = aiosqlite.connect(**self.connection_kwargs)
        # Idle pooled connections must not keep the process alive at exit (CLI, tests):
        # aiosqlite's worker thread is non-daemon by default (checked for the pinned 0.22).
        pending._thread.daemon = True
        conn = await pending
        conn.row_factory = dict_factory
        await conn.execute("PRAGMA foreign_keys = 1")
        return conn

    async def _run_in_new_connection(self, query, args=None, query_type="generic", table=None):
        conn = self._idle.pop() if self._idle else await self._open()
        reusable = False
        try:
            async with conn.execute(query, args or []) as cursor:
                rows = await cursor.fetchall()
            reusable = not conn.in_transaction  # autocommit mode: nothing may stay open
            return rows
        finally:
            if reusable and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            else:
                await conn.close()

    async def close_idle(self) -> None:
        while self._idle:
            await self._idle.pop().close()


def make_engine(settings: Settings) -> Engine:
    path = settings.sqlite_path
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers continue while one request writes; the mode is stored in the file.
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        return PooledSQLiteEngine(path=str(path), timeout=30)
    return PostgresEngine(config={"dsn": settings.database_url})


def configure(settings: Settings, host: "PluginHost") -> Engine:
    """Bind every table of every enabled plugin to the engine for ``settings``."""
    key = (settings.database_url, str(settings.sqlite_path), tuple(host.piccolo_apps()))
    if _state.get("key") == key:
        return _state["engine"]
    engine = make_engine(settings)
    registry = AppRegistry(apps=host.piccolo_apps())
    _state.update(key=key, engine=engine, registry=registry)
    for table in all_tables():
        table._meta.db = engine
    conf = sys.modules.get("core.piccolo_conf")
    if conf is not None:
        conf.DB, conf.APP_REGISTRY = engine, registry
    return engine


def current() -> tuple[Engine, AppRegistry]:
    """The configured engine and registry, or ones built from the environment (piccolo CLI)."""
    if "engine" not in _state:
        from core.plugins import PluginHost

        settings = Settings.from_env()
        configure(settings, PluginHost(settings))
    return _state["engine"], _state["registry"]


def engine() -> Engine:
    return current()[0]


def all_tables() -> list[type[Table]]:
    registry = _state.get("registry")
    if registry is None:
        return []
    tables = [t for cfg in registry.app_configs.values() for t in cfg.table_classes]
    return sort_table_classes(tables)


async def migrate(backwards_app: str | None = None) -> None:
    """Apply every pending migration of every enabled app (in dependency order)."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    import core.piccolo_conf  # noqa: F401  (make piccolo see the configured engine)

    result = await run_forwards(app_name="all")
    if not result.success:
        raise RuntimeError(f"migration failed: {result.message}")


async def open_pool() -> None:
    """At app start-up: a connection pool for PostgreSQL (SQLite pools lazily)."""
    eng = engine()
    if isinstance(eng, PostgresEngine) and eng.pool is None:
        await eng.start_connection_pool(min_size=1, max_size=10)


async def close_pool() -> None:
    eng = engine()
    if isinstance(eng, PostgresEngine) and eng.pool is not None:
        await eng.close_connection_pool()
    elif isinstance(eng, PooledSQLiteEngine):
        await eng.close_idle()


async def ping() -> bool:
    try:
        await engine().run_ddl("SELECT 1")
        return True
    except Exception:
        return False


async def delete_all_rows() -> None:
    """Empty every table (tests and ``cpms demo --reset``); the schema stays."""
    eng = engine()
    tables = all_tables()
    if isinstance(eng, PostgresEngine):
        # DELETE, children first, rather than TRUNCATE: TRUNCATE gives every table new files
        # (0.3 s for the ~60 tables even when they are empty; the test suite empties them
        # before each test), DELETE of a few rows takes milliseconds.
        async with eng.transaction():
            for table in reversed(tables):
                await eng.run_ddl(f'DELETE FROM "{table._meta.tablename}"')
            # Restart the integer keys of these tables (not piccolo's migration table), as
            # TRUNCATE ... RESTART IDENTITY did. Table names are our own identifiers.
            names = ", ".join("'" + t._meta.tablename.replace("'", "''") + "'" for t in tables)
            await eng.run_ddl(
                "SELECT setval(s.oid::regclass, 1, false) FROM pg_class s "
                "JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i') "
                "JOIN pg_class t ON t.oid = d.refobjid "
                f"WHERE s.relkind = 'S' AND t.relnamespace = current_schema()::regnamespace AND t.relname IN ({names})"
            )
        return
    async with eng.transaction():
        for table in reversed(tables):
            await eng.run_ddl(f'DELETE FROM "{table._meta.tablename}"')
        # Restart integer keys so runs are reproducible, as on PostgreSQL.
        exists = await eng.run_ddl("SELECT name FROM sqlite_master WHERE name='sqlite_sequence'")
        if exists:
            await eng.run_ddl("DELETE FROM sqlite_sequence")
