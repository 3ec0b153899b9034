from pathlib import Path

from piccolo.conf.apps import AppConfig

from core.patients.tables import (
    ChangeLog, ClinicalNote, Consent, Diagnosis, Document, GdprRequest, GeneticFinding, Medication,
    Patient, PatientErn, Phenotype,
)

APP_CONFIG = AppConfig(
    app_name="patients",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[
        Patient, PatientErn, Document, Consent, Diagnosis, Phenotype, GeneticFinding, Medication,
        ClinicalNote, ChangeLog, GdprRequest,
    ],
    migration_dependencies=["core.orgs.piccolo_app"],
)
