from pathlib import Path

from piccolo.conf.apps import AppConfig

from tests.example_plugin.tables import ExampleNote

APP_CONFIG = AppConfig(
    app_name="example",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[ExampleNote],
)
