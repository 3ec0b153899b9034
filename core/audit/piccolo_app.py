from pathlib import Path

from piccolo.conf.apps import AppConfig

from core.audit.tables import AuditEntry

APP_CONFIG = AppConfig(
    app_name="audit",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[AuditEntry],
)
