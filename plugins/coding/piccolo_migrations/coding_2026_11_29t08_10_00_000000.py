"""A code exists once per system, and cross-walks are found from their target too
(piccolo declares single-column indexes only)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-29T08:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique (system, code); mapping target index"

INDEXES = (
    ("coding_concept_system_code", "CREATE UNIQUE INDEX IF NOT EXISTS coding_concept_system_code ON coding_concept (system, code)"),
    ("coding_mapping_target", "CREATE INDEX IF NOT EXISTS coding_mapping_target ON coding_mapping (target_system, target_code)"),
    ("coding_parent_child_parent", "CREATE UNIQUE INDEX IF NOT EXISTS coding_parent_child_parent ON coding_parent (child, parent)"),
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="coding", description=DESCRIPTION)

    async def create_indexes():
        for _, ddl in INDEXES:
            await engine_finder().run_ddl(ddl)

    async def drop_indexes():
        for name, _ in INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)
    return manager
