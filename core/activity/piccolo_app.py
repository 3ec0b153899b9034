from pathlib import Path

from piccolo.conf.apps import AppConfig

from core.activity.tables import Activity

APP_CONFIG = AppConfig(
    app_name="activity",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[Activity],
)
