"""Indexes for the inbox queries, and one preference row per (user, kind).

piccolo declares single-column indexes only. ``notify_unread`` is partial: it holds only
unread rows, so the badge count and "unread, newest first" stay an index range scan however
long a user's history grows. ``notify_inbox`` serves the inbox pages (keyset on id). The
unique index lets two concurrent saves of the preferences page never leave duplicates.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-29T04:49:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "inbox indexes, unique preference per kind"

INDEXES = (
    ("notify_unread", 'CREATE INDEX IF NOT EXISTS notify_unread ON notify_notification ("user", id) WHERE read_at IS NULL'),
    ("notify_inbox", 'CREATE INDEX IF NOT EXISTS notify_inbox ON notify_notification ("user", id)'),
    ("notify_preference_user_kind", 'CREATE UNIQUE INDEX IF NOT EXISTS notify_preference_user_kind ON notify_preference ("user", kind)'),
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="notify", description=DESCRIPTION)

    async def create_indexes():
        for _, ddl in INDEXES:
            await engine_finder().run_ddl(ddl)

    async def drop_indexes():
        for name, _ in INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)
    return manager
