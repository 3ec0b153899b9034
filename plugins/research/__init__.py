"""Research: anonymised, consent-filtered data for researchers (issue 16).

Who sees what: researchers (and the platform admin, for oversight) reach ``/research``; they
never see a name, pseudonym, nickname, hospital, free text, document, image or exact date. A
patient is in the research data only while their current consent allows ``registry`` use
(``core.patients.consent_rules``); the projection (``projection``) follows every change by
event, and every query re-checks the consent row it was built from (``query``), so a withdrawal
counts at once. Coordinators decide projects for their ERN; every query, view and export is
logged against its project (``ResearchLog``). Rows are k-anonymised (``anonymise``) and counts
protected by the cell-key method and small-cell suppression before anything leaves the server.

Modules: ``model`` (the record), ``projection`` (core tables -> research tables), ``query``
(cohort definitions -> SQL), ``anonymise``, ``projects``, the exports (``cde``,
``phenopackets_export``, ``beacon``), ``views`` (pages), ``demo``.
"""

from __future__ import annotations

from core.events import EventType
from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import MenuLink, Section

USE = "research.use"
REVIEW = "research.review"

from core.notify.kinds import register_kind  # noqa: E402  (kinds are declared at import)

PROJECT_FILED = register_kind("research.project", "A research project asks for the data of an ERN you coordinate")
PROJECT_DECIDED = register_kind("research.decision", "A coordinator decided on your research project")

#: Events after which a patient's research row is rebuilt.
REFRESH_ON = {
    "patient.enrolled", "patient.updated", "consent.changed", "patient.erased", "patient.restriction_changed",
    "patient.rectified", "panel.outcome_signed", "pedigree.changed",
}


@hookimpl
def register_permissions():
    return [
        Permission(USE, "Use the research section: file projects, build cohorts, see anonymised data, export",
                   default_roles=("researcher", "admin")),
        # Coordinators decide projects for their ERN and see who exported what; they see no research data.
        Permission(REVIEW, "Decide research projects for one's ERN and see their exports",
                   default_roles=("coordinator", "admin"), ern_scoped=True),
    ]


@hookimpl
def register_piccolo_apps():
    return ["plugins.research.piccolo_app"]


@hookimpl
def register_event_types():
    return [
        EventType("research.project_filed", "A researcher filed a research project"),
        EventType("research.project_decided", "A coordinator approved or rejected a research project for an ERN"),
        EventType("research.exported", "Anonymised research data was exported"),
    ]


@hookimpl
def register_routes():
    from plugins.research import beacon_api, views

    return views.ROUTES + beacon_api.ROUTES


@hookimpl
def menu_links(actor):
    return [MenuLink("Research", "/research", USE, order=70),
            MenuLink("Research projects", "/research/review", REVIEW, order=71)]


@hookimpl
def patient_sections(patient, actor):
    return [Section("research", "Research", f"/research/patients/{patient}", "patients.view", order=90)]


@hookimpl
async def handle_event(event, host):
    if event.subject_type == "patient" and event.name in REFRESH_ON and event.subject_id:
        from plugins.research.projection import refresh_pseudonym

        await refresh_pseudonym(host, event.subject_id)
    elif event.name == "panel.outcome_signed":
        from plugins.research.projection import refresh_panel

        await refresh_panel(host, event.subject_id)


@hookimpl
async def gdpr_export(patient):
    from plugins.research.projection import export_for_gdpr

    return await export_for_gdpr(patient.id)


@hookimpl
def register_commands(cli):
    from plugins.research.cli import research

    cli.add_command(research)


@hookimpl
async def load_demo_data(ctx):
    from plugins.research.demo import load

    await load(ctx)
