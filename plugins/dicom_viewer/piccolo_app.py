from pathlib import Path

from piccolo.conf.apps import AppConfig

from plugins.dicom_viewer.tables import Annotation, Instance, Series, Study, Upload

APP_CONFIG = AppConfig(
    app_name="dicom_viewer",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[Study, Series, Instance, Upload, Annotation],
    migration_dependencies=["core.patients.piccolo_app"],
)
