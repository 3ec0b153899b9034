"""Patients: enrolment with consent, pseudonymisation, the clinical record, GDPR rights."""

from core.events import EventType
from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import MenuLink

CLINICAL = ("hp", "coordinator", "dispatcher", "assistant")


@hookimpl
def register_piccolo_apps():
    return ["core.patients.piccolo_app"]


@hookimpl
def register_permissions():
    return [
        Permission("patients.view", "See the patients of one's own hospital, identity included", CLINICAL),
        Permission("patients.enrol", "Enrol a patient of one's hospital into an ERN", CLINICAL),
        Permission("patients.edit", "Edit identity, consent and the clinical record of one's hospital's patients", CLINICAL),
        Permission("patients.export", "Export everything held about a patient (GDPR access)", ("hp", "coordinator", "dispatcher")),
        Permission("patients.gdpr.decide", "Carry out or refuse erasure and restriction requests of one's hospital", ("dpo",)),
    ]


@hookimpl
def register_event_types():
    return [
        EventType("patient.enrolled", "A patient was enrolled with Consent for Care"),
        EventType("patient.updated", "A patient's identity or clinical record changed"),
        EventType("consent.changed", "A consent was given, refused or withdrawn"),
        EventType("document.uploaded", "A file was added to a patient's record"),
        EventType("patient.gdpr_requested", "An erasure, restriction or rectification request was recorded"),
        EventType("patient.erased", "A patient's data was erased (GDPR); the pseudonymous audit remains"),
        EventType("patient.restriction_changed", "Processing of a patient's data was restricted or the restriction lifted"),
        EventType("patient.rectified", "Inaccurate data of a patient was rectified at their request (GDPR Art. 16)"),
        EventType("patient.gdpr_decided", "A data-protection request was refused"),
    ]


@hookimpl
def menu_links(actor):
    return [MenuLink("Patients", "/patients", "patients.view", order=10), MenuLink("GDPR requests", "/gdpr", "patients.gdpr.decide", order=70)]


@hookimpl
def register_routes():
    from core.patients import clinical, consent, consent_form, documents, gdpr, gdpr_export, records

    return [*records.ROUTES, *clinical.ROUTES, *consent.ROUTES, *consent_form.ROUTES, *documents.ROUTES, *gdpr.ROUTES, *gdpr_export.ROUTES]


@hookimpl
def register_commands(cli):
    # Imported here: core.keys loads the table classes, which the CLI needs only for this group.
    from core.keys import add_commands

    add_commands(cli)


@hookimpl
async def load_demo_data(ctx):
    from core.patients.demo import load

    await load(ctx)


@hookimpl
async def storage_keys():
    """Documents: uploads, signed consent forms, outcome reports filed in the record."""
    from core.patients.tables import Document

    return {row["storage_key"] for row in await Document.select(Document.storage_key)}

