from pathlib import Path

from piccolo.conf.apps import AppConfig

from core.mail.tables import OutboxMail

APP_CONFIG = AppConfig(
    app_name="mail",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[OutboxMail],
)
