"""One row per person where the code relies on it (piccolo declares single-column indexes only).

A member, a co-signer, an attendance record, a mention and an expert-group membership exist at
most once per (panel or group or meeting or message, user), and a consultation-form version
once per ERN; the code checks before inserting, and these indexes make a race between two
requests fail instead of duplicating. (The default form has no ERN: NULLs are distinct in a
unique index, so its versions rely on the code's check alone.)
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-29T05:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "one row per person in members, signers, attendance, mentions, groups"

INDEXES = (
    ("panels_member_panel_user", 'CREATE UNIQUE INDEX IF NOT EXISTS panels_member_panel_user ON panels_member (panel, "user")'),
    ("panels_signer_panel_user", 'CREATE UNIQUE INDEX IF NOT EXISTS panels_signer_panel_user ON panels_outcome_signer (panel, "user")'),
    ("panels_attendance_meeting_user", 'CREATE UNIQUE INDEX IF NOT EXISTS panels_attendance_meeting_user ON panels_meeting_attendance (meeting, "user")'),
    ("panels_mention_message_user", 'CREATE UNIQUE INDEX IF NOT EXISTS panels_mention_message_user ON panels_mention (message, "user")'),
    ("panels_group_member_group_user", 'CREATE UNIQUE INDEX IF NOT EXISTS panels_group_member_group_user ON panels_expert_group_member ("group", "user")'),
    ("panels_group_member_user", 'CREATE INDEX IF NOT EXISTS panels_group_member_user ON panels_expert_group_member ("user")'),
    ("panels_group_ern_name", "CREATE UNIQUE INDEX IF NOT EXISTS panels_group_ern_name ON panels_expert_group (ern, name)"),
    ("panels_template_ern_version", "CREATE UNIQUE INDEX IF NOT EXISTS panels_template_ern_version ON panels_template (ern, version)"),
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
