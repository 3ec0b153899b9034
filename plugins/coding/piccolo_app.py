from pathlib import Path

from piccolo.conf.apps import AppConfig

from plugins.coding.tables import CodeSystem, Concept, ConceptParent, Designation, Mapping

APP_CONFIG = AppConfig(
    app_name="coding",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[CodeSystem, Concept, Designation, ConceptParent, Mapping],
)
