from pathlib import Path

from piccolo.conf.apps import AppConfig

from core.panels.tables import (
    ConsultationTemplate, DataRequest, ExpertGroup, ExpertGroupMember, Meeting, MeetingAttendance, Mention,
    Message, Outcome, OutcomeComment, OutcomeSigner, Panel, PanelForward, PanelMember, PanelShare,
    PanelTransition,
)

APP_CONFIG = AppConfig(
    app_name="panels",
    migrations_folder_path=Path(__file__).parent / "piccolo_migrations",
    table_classes=[
        ConsultationTemplate, Panel, PanelTransition, PanelForward, PanelMember, PanelShare, ExpertGroup,
        ExpertGroupMember, Message, Mention, DataRequest, Meeting, MeetingAttendance, Outcome, OutcomeSigner,
        OutcomeComment,
    ],
    migration_dependencies=["core.orgs.piccolo_app", "core.identity.piccolo_app", "core.patients.piccolo_app"],
)
