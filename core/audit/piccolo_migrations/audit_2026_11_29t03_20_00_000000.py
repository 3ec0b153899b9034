"""An index for the audit page's query: one hospital's entries, newest first, paged by seq.

piccolo declares single-column indexes only; with this composite one, a page is an index
range scan however many entries the chain holds.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-29T03:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "index on (patient_hcp, seq)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="audit", description=DESCRIPTION)

    async def create_index():
        await engine_finder().run_ddl("CREATE INDEX IF NOT EXISTS audit_entry_hcp_seq ON audit_entry (patient_hcp, seq)")

    async def drop_index():
        await engine_finder().run_ddl("DROP INDEX IF EXISTS audit_entry_hcp_seq")

    manager.add_raw(create_index)
    manager.add_raw_backwards(drop_index)
    return manager
