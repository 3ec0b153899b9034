"""Pathology viewer: whole-slide images read with OpenSlide, served as Deep Zoom tiles and through the
IIIF Image API, viewed with OpenSeadragon, annotated, and embeddable through share links (issue 8).

Modules: ``access`` (who sees a slide), ``slides`` (working copies, handles, caches, facts, the
property whitelist), ``ingest`` (uploads: streaming, ZIP safety, validation with OpenSlide), ``tiles``
(DZI, tiles, thumbnail), ``iiif`` (IIIF Image API 3.0), ``views`` (sections, upload, facts page, tile
routes), ``viewer``/``annotations``/``embed`` (the viewer page, annotations, share links), ``demo``.

Privacy: the label and macro images (often the patient's name or barcode) and identifying properties
are never served outside the enrolling hospital, through any route; the slide row keeps the whitelisted
properties only, and never the upload's file name.
"""

from __future__ import annotations

from core.events import EventType
from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import Section

VIEW = "pathology.view"
EDIT = "pathology.edit"
ANNOTATE = "pathology.annotate"


@hookimpl
def register_permissions():
    return [
        # Like the family tree: guests take part in panels and see the slides of a panel they accepted;
        # the enrolling hospital's view still needs patients.view.
        Permission(VIEW, "See the whole-slide images of a patient one may see (own hospital, or a panel one takes part in)",
                   default_roles=("hp", "coordinator", "dispatcher", "assistant", "guest")),
        Permission(EDIT, "Upload, hide and delete whole-slide images of one's hospital's patients; manage their share links",
                   default_roles=("hp", "coordinator", "assistant")),
        Permission(ANNOTATE, "Draw and change one's annotations on a slide one may see",
                   default_roles=("hp", "coordinator", "guest", "assistant")),
    ]


@hookimpl
def register_piccolo_apps():
    return ["plugins.pathology_viewer.piccolo_app"]


@hookimpl
def register_event_types():
    return [
        EventType("pathology.slide_uploaded", "A whole-slide image was added to a patient's record"),
        EventType("pathology.slide_deleted", "A whole-slide image was deleted from a patient's record"),
    ]


@hookimpl
def register_routes():
    from plugins.pathology_viewer.views import ROUTES

    routes = list(ROUTES)
    # The viewer page, annotations and share links live in their own modules (written alongside).
    for module, name in (("viewer", "ROUTES"), ("annotations", "ROUTES"), ("embed", "ROUTES")):
        try:
            mod = __import__(f"plugins.pathology_viewer.{module}", fromlist=[name])
        except ModuleNotFoundError as exc:
            if exc.name != f"plugins.pathology_viewer.{module}":
                raise
            continue
        routes.extend(getattr(mod, name, []))
    return routes


@hookimpl
def extra_template_vars(request):
    # handle_event receives only the event: erasure needs the data folder of the apps served here.
    from plugins.pathology_viewer.store import remember_settings

    remember_settings(request.app.state.settings)
    return {}


@hookimpl
def patient_sections(patient, actor):
    return [Section("pathology", "Slides", f"/pathology/patients/{patient}", VIEW, order=50)]


@hookimpl
def panel_sections(panel, actor):
    return [Section("pathology", "Slides", f"/pathology/panels/{panel.id}", VIEW, order=50)]


@hookimpl
async def gdpr_export(patient):
    from plugins.pathology_viewer.store import export_for_gdpr

    return await export_for_gdpr(patient.id)


@hookimpl
async def load_demo_data(ctx):
    from plugins.pathology_viewer.demo import load

    await load(ctx)


@hookimpl
async def handle_event(event):
    if event.name == "consent.changed":
        # Access decisions remembered in this process ask the consent again (other workers within
        # the access TTL); routes themselves ask it on every page and change.
        from plugins.pathology_viewer import access

        access.forget()
        from plugins.pathology_viewer import embed

        embed.forget()
    # The core erases its own tables; slides (rows, stored files, working copies) go when it hears.
    if event.name == "patient.erased" and event.subject_type == "patient":
        from plugins.pathology_viewer.store import erase

        await erase(event.subject_id)


@hookimpl
async def storage_keys():
    from plugins.pathology_viewer.tables import Slide

    return {row["file_key"] for row in await Slide.select(Slide.file_key)}


@hookimpl
async def sweep_working_files(settings):
    from anyio import to_thread

    from plugins.pathology_viewer.slides import cache_root, sweep_incoming

    return await to_thread.run_sync(sweep_incoming, cache_root(settings))


@hookimpl
def register_research_fields():
    from core.contributions import ResearchField
    from plugins.pathology_viewer.research import slides_present, slides_present_many

    return [
        ResearchField("pathology.slides", "Whole-slide images present", slides_present, slides_present_many),
    ]
