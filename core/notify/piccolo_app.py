from pathlib import Path

from piccolo.conf.apps import AppConfig

from core.notify.tables import Notification, NotificationPreference

APP_CONFIG = AppConfig(
    app_name="notify",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[Notification, NotificationPreference],
    migration_dependencies=["core.identity.piccolo_app"],
)
