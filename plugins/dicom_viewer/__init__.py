"""DICOM viewer (issue 7): de-identified upload, server-side rendering, a shared viewer with
annotations, and DICOMweb for the patient's de-identified studies.

Modules: ``deid`` (PS3.15 Annex E de-identification, the burned-in text gate, masking), ``render``
(frames to PNG/JPEG/WebP, presets, measurements), ``files`` (safe ingestion of files, ZIPs, DICOMDIR
media), ``index`` (studies/series grouping), ``access`` (who sees what), ``store`` (the ingest
pipeline, stored files, review, erasure, GDPR export), ``frames`` (rendered frames and thumbnails,
cached, ETags), ``views`` (sections, upload, review queue, study and report pages), ``dicomweb``
(QIDO-RS, WADO-RS, STOW-RS), ``viewer``/``annotations`` (the viewer page and its annotations),
``demo``, ``synthetic`` (test files).

Privacy: every stored file was de-identified first and the original is never kept; an instance that
may carry burned-in text stays within the enrolling hospital until someone there reviews it.
"""

from __future__ import annotations

from core.events import EventType
from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import Section

VIEW = "dicom.view"
UPLOAD = "dicom.upload"
REVIEW = "dicom.review"
ANNOTATE = "dicom.annotate"


@hookimpl
def register_permissions():
    return [
        # Guests take part in panels: they see the reviewed images of a panel they accepted.
        Permission(VIEW, "See the de-identified DICOM images of a patient one may see (own hospital, or a panel one takes part in)",
                   default_roles=("hp", "coordinator", "dispatcher", "assistant", "guest")),
        Permission(UPLOAD, "Upload DICOM studies for one's hospital's patients (de-identified on arrival) and delete them",
                   default_roles=("hp", "coordinator", "assistant")),
        Permission(REVIEW, "Review images that may carry burned-in text, mask it, and release them to panels",
                   default_roles=("hp", "coordinator")),
        Permission(ANNOTATE, "Draw and remove one's annotations on DICOM images one may see",
                   default_roles=("hp", "coordinator", "assistant", "guest")),
    ]


@hookimpl
def register_piccolo_apps():
    return ["plugins.dicom_viewer.piccolo_app"]


@hookimpl
def register_event_types():
    return [
        EventType("dicom.study_uploaded", "DICOM images were added to a patient's record (de-identified)"),
        EventType("dicom.reviewed", "DICOM images were reviewed for burned-in text and released to panels"),
        EventType("dicom.study_deleted", "A DICOM study was deleted from a patient's record"),
    ]


@hookimpl
def register_routes():
    from plugins.dicom_viewer.dicomweb import ROUTES as WEB
    from plugins.dicom_viewer.frames import ROUTES as FRAMES
    from plugins.dicom_viewer.views import ROUTES

    routes = [*ROUTES, *FRAMES, *WEB]
    # The viewer page and the annotations API are written alongside, in their own modules.
    for module in ("viewer", "annotations"):
        try:
            mod = __import__(f"plugins.dicom_viewer.{module}", fromlist=["ROUTES"])
        except ModuleNotFoundError as exc:
            if exc.name != f"plugins.dicom_viewer.{module}":
                raise
            continue
        routes.extend(getattr(mod, "ROUTES", []))
    return routes


@hookimpl
def extra_template_vars(request):
    # handle_event receives only the event: erasure needs the data folder of the apps served here.
    from plugins.dicom_viewer.store import remember_settings

    remember_settings(request.app.state.settings)
    return {}


@hookimpl
def patient_sections(patient, actor):
    return [Section("dicom", "Imaging", f"/dicom/patients/{patient}", VIEW, order=60)]


@hookimpl
def panel_sections(panel, actor):
    return [Section("dicom", "Imaging", f"/dicom/panels/{panel.id}", VIEW, order=60)]


@hookimpl
async def gdpr_export(patient):
    from plugins.dicom_viewer.store import export_for_gdpr

    return await export_for_gdpr(patient.id)


@hookimpl
async def load_demo_data(ctx):
    from plugins.dicom_viewer.demo import load

    await load(ctx)


@hookimpl
async def handle_event(event):
    if event.name == "consent.changed":
        # Access decisions remembered in this process ask the consent again (other workers within
        # the access TTL); routes themselves ask it on every page and change.
        from plugins.dicom_viewer import access

        access.forget()
    # The core erases its own tables; studies (rows and stored files) go when it hears.
    if event.name == "patient.erased" and event.subject_type == "patient":
        from plugins.dicom_viewer.store import erase

        await erase(event.subject_id)


@hookimpl
async def storage_keys():
    from plugins.dicom_viewer.tables import Instance

    return {row["file_key"] for row in await Instance.select(Instance.file_key)}


@hookimpl
async def sweep_working_files(settings):
    from anyio import to_thread

    from plugins.dicom_viewer.store import sweep_incoming

    return await to_thread.run_sync(sweep_incoming, settings)


@hookimpl
def register_research_fields():
    from core.contributions import ResearchField
    from plugins.dicom_viewer.research import modalities, modalities_many

    return [
        ResearchField("dicom.modalities", "Imaging modalities present (CT, MR, ...)", modalities, modalities_many),
    ]
