"""Pedigree: family trees in the standardized human pedigree nomenclature (issue 9).

The pure-Python heart: the model and its validation (``model``), the layout (``layout``), the SVG
and PNG renderings (``svg``, ``png``, sharing ``symbols``), the linkage/PLINK PED format (``ped``),
JSON (``serial``) and the editing operations (``edit``). The plugin around it: a pedigree per
patient, versioned (``tables``), the patient-page editor and the panel-page view (``views``),
exports (SVG, PNG, PDF, PED, FHIR, Phenopackets, CanRisk).

Who sees it: the enrolling hospital (through the core's patient access) and the accepted members of
a panel about the patient (read-only). Relatives carry no names, only generation/number labels.
"""

from __future__ import annotations

from core.events import EventType
from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import Section

VIEW = "pedigree.view"
EDIT = "pedigree.edit"


@hookimpl
def register_permissions():
    return [
        # Guests take part in panels (core.panels PARTICIPANTS): with this they see the family tree of
        # a panel they accepted. It opens nothing else: the enrolling hospital's view still needs
        # patients.view, which guests do not hold.
        Permission(VIEW, "See the family tree of a patient one may see (own hospital, or a panel one takes part in)",
                   default_roles=("hp", "coordinator", "dispatcher", "assistant", "guest")),
        # Those who edit the clinical record (patients.edit) edit the family tree; dispatchers route
        # panels and do not write clinical data.
        Permission(EDIT, "Draw and change the family tree of one's hospital's patients",
                   default_roles=("hp", "coordinator", "assistant")),
    ]


@hookimpl
def register_piccolo_apps():
    return ["plugins.pedigree.piccolo_app"]


@hookimpl
def register_event_types():
    return [EventType("pedigree.changed", "A patient's family tree changed (a new version, or an undo)")]


@hookimpl
def register_routes():
    from plugins.pedigree.views import ROUTES

    return ROUTES


@hookimpl
def patient_sections(patient, actor):
    return [Section("pedigree", "Family tree", f"/pedigree/patients/{patient}", VIEW, order=40)]


@hookimpl
def panel_sections(panel, actor):
    return [Section("pedigree", "Family tree", f"/pedigree/panels/{panel.id}", VIEW, order=40)]


@hookimpl
async def gdpr_export(patient):
    from plugins.pedigree.store import export_for_gdpr

    return await export_for_gdpr(patient.id)


@hookimpl
async def load_demo_data(ctx):
    from plugins.pedigree.demo import load

    await load(ctx)


@hookimpl
async def handle_event(event):
    # The core erases its own tables; a plugin's patient data goes when it hears of the erasure.
    if event.name == "patient.erased" and event.subject_type == "patient":
        from plugins.pedigree.store import erase

        await erase(event.subject_id)


@hookimpl
def register_research_fields():
    from core.contributions import ResearchField
    from plugins.pedigree.research import extract_pattern, extract_relatives, pattern_many, relatives_many

    return [
        ResearchField("pedigree.pattern", "Pattern the family tree shows: vertical, horizontal, single case, no one affected", extract_pattern,
                      pattern_many),
        ResearchField("pedigree.affected_relatives", "Affected relatives in the family tree: none, one, two or more", extract_relatives,
                      relatives_many),
    ]
