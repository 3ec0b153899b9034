from pathlib import Path

from piccolo.conf.apps import AppConfig

from core.identity.tables import (
    AccessRequest, AssistantFor, MfaResetRequest, OneTimeToken, RecoveryCode, RoleAssignment,
    RolePermission, SeededPermission, Session, User,
)

APP_CONFIG = AppConfig(
    app_name="identity",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[
        User, RoleAssignment, AssistantFor, RolePermission, SeededPermission, Session,
        RecoveryCode, OneTimeToken, AccessRequest, MfaResetRequest,
    ],
    migration_dependencies=["core.orgs.piccolo_app"],
)
