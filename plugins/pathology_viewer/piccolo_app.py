from pathlib import Path

from piccolo.conf.apps import AppConfig

from plugins.pathology_viewer.tables import Annotation, ShareLink, Slide

APP_CONFIG = AppConfig(
    app_name="pathology_viewer",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[Slide, Annotation, ShareLink],
    migration_dependencies=["core.patients.piccolo_app"],
)
