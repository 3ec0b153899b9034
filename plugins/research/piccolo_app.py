from pathlib import Path

from piccolo.conf.apps import AppConfig

from plugins.research.tables import (
    ResearchCohort, ResearchExport, ResearchLog, ResearchProject, ResearchProjectErn, ResearchSetting,
    ResearchSubject, ResearchTerm,
)

APP_CONFIG = AppConfig(
    app_name="research",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[ResearchSubject, ResearchTerm, ResearchSetting, ResearchProject, ResearchProjectErn,
                   ResearchCohort, ResearchExport, ResearchLog],
    migration_dependencies=["core.patients.piccolo_app", "core.orgs.piccolo_app"],
)
