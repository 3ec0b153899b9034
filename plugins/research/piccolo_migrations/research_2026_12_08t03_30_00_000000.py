from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-12-08T03:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "research: one index for cohort filters"


class ResearchTerm(Table, tablename="research_term", schema=None):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="research", description=DESCRIPTION)

    # Cohort filters look terms up by value and kind and want the subject: one index answers them all.
    async def create_index():
        await ResearchTerm.raw("CREATE INDEX research_term_lookup ON research_term (value, kind, subject, direct)")

    async def drop_index():
        await ResearchTerm.raw("DROP INDEX research_term_lookup")

    manager.add_raw(create_index)
    manager.add_raw_backwards(drop_index)
    return manager
