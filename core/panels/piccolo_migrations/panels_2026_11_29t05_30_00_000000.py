"""Composite indexes for the panel lists (measured with benchmarks/panels_bench.py at 100,000 panels).

piccolo declares single-column indexes only.

``panels_panel_ern_status_id`` serves the ERN queue once a status is chosen (``ern IN (…) AND
status = ? [AND urgency = ?] [AND id < ?] ORDER BY id DESC``): the rows of one ERN in one status
come out of the index newest first, instead of every panel the ERN ever had being read and
filtered. On PostgreSQL it also narrows the default queue's search to the queue's own rows.
It does not change the plan of the default queue (two statuses), which both engines already
serve from the primary key or the ``ern`` index in id order.

``panels_member_user_status`` covers "my panels" and the invitations list (``"user" = ? AND
status IN (…)`` → panel ids), so they read the index only, not one table page per membership.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-29T05:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for the panel queue and my panels"

INDEXES = (
    ("panels_panel_ern_status_id", "CREATE INDEX IF NOT EXISTS panels_panel_ern_status_id ON panels_panel (ern, status, id)"),
    ("panels_member_user_status", 'CREATE INDEX IF NOT EXISTS panels_member_user_status ON panels_member ("user", status, panel)'),
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="panels", description=DESCRIPTION)

    async def create_indexes():
        for _, ddl in INDEXES:
            await engine_finder().run_ddl(ddl)

    async def drop_indexes():
        for name, _ in INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)
    return manager
