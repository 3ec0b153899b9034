from pathlib import Path

from piccolo.conf.apps import AppConfig

from plugins.pedigree.tables import PedigreeRecord, PedigreeVersion

APP_CONFIG = AppConfig(
    app_name="pedigree",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[PedigreeRecord, PedigreeVersion],
    migration_dependencies=["core.patients.piccolo_app"],
)
