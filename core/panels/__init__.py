"""Panels: virtual case discussion from submission to outcome.

A panel discusses one patient. Its members see the nickname, the shared clinical data and
the plugins' panel sections, never the identity. See ``lifecycle`` for the states.
"""

from core.events import EventType
from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import MenuLink, Section

PARTICIPANTS = ("hp", "coordinator", "dispatcher", "guest", "assistant")


@hookimpl
def register_piccolo_apps():
    return ["core.panels.piccolo_app"]


@hookimpl
def register_permissions():
    return [
        Permission("panels.view", "Take part in panels one is invited to, and list them", PARTICIPANTS),
        Permission("panels.create", "Open a panel for a patient of one's hospital in one's ERN", ("hp", "coordinator", "dispatcher"), ern_scoped=True),
        Permission("panels.assemble", "Work the ERN's panel queue: assemble, return, forward", ("coordinator", "dispatcher"), ern_scoped=True),
        Permission("panels.templates.manage", "Edit the ERN's consultation template and expert groups", ("coordinator",), ern_scoped=True),
    ]


@hookimpl
def register_event_types():
    return [
        EventType("panel.created", "A panel was drafted"),
        EventType("panel.transition", "A panel changed status (submitted, returned, forwarded, opened, closed...)"),
        EventType("panel.member_invited", "Someone was invited into a panel"),
        EventType("panel.member_responded", "An invited member accepted or declined"),
        EventType("panel.message_posted", "A message was posted in a panel's discussion"),
        EventType("panel.data_requested", "A member asked for further data"),
        EventType("panel.data_answered", "The enrolling HP answered a request for data"),
        EventType("panel.meeting_scheduled", "A panel meeting was scheduled, changed or cancelled"),
        EventType("panel.outcome_signed", "A panel's outcome was signed"),
        EventType("panel.template_saved", "An ERN saved a new version of its consultation template"),
    ]


@hookimpl
def menu_links(actor):
    return [
        MenuLink("Panels", "/panels", "panels.view", order=20),
        MenuLink("Panel queue", "/panels/queue", "panels.assemble", order=21),
        MenuLink("Consultation forms", "/panels/templates", "panels.templates.manage", order=62),
        MenuLink("Expert groups", "/panels/groups", "panels.templates.manage", order=63),
    ]


@hookimpl
def patient_sections(patient, actor):
    return [Section("panels", "Panels", f"/panels/for-patient/{patient}", "panels.view", order=10)]


@hookimpl
def register_routes():
    from core.panels import ROUTE_MODULES

    return [route for module in ROUTE_MODULES() for route in module.ROUTES]


def ROUTE_MODULES():  # noqa: N802  (a function so that importing the package stays cheap)
    import importlib

    names = ("views", "lifecycle_views", "shares", "members", "discussion", "requests", "meetings", "outcome", "templates_admin", "groups")
    out = []
    for name in names:
        try:
            out.append(importlib.import_module(f"core.panels.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"core.panels.{name}":
                raise
    return out


@hookimpl
async def gdpr_export(patient):
    from core.panels.gdpr import export

    return await export(patient)


@hookimpl
async def load_demo_data(ctx):
    try:
        from core.panels.demo import load
    except ModuleNotFoundError:
        return
    await load(ctx)
