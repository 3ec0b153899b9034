"""Pages and routes of the slides: the patient section (list, upload, hide, delete), the panel section,
the facts page, and the tile server's session routes (DZI, tiles, thumbnail, label/macro for the
enrolling hospital only). The IIIF routes are in ``iiif``; viewer, annotations and embed in their modules.

Every change is a form post; an htmx post gets the re-rendered section, a plain post a redirect, an
upload asked for JSON (``Accept: application/json``, the progress-bar script) gets JSON. Bad input is a
clear 4xx and leaves nothing stored. Reads and changes are audited under the patient's pseudonym.
"""

from __future__ import annotations

import re

from anyio import to_thread
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.events import Event
from core.permissions import allowed
from core.web import is_fragment_request, page
from plugins.pathology_viewer import access, iiif, ingest, slides, store, tiles
from plugins.pathology_viewer.access import EDIT, VIEW

TILE_NAME = re.compile(r"^([0-9]{1,7})_([0-9]{1,7})\.([A-Za-z]{1,5})$")
#: Largest request body the upload route lets Litestar take; the real limit (CPMS_PATHOLOGY_MAX_UPLOAD_BYTES)
#: is counted while streaming.
HARD_MAX_BODY = 64 * 1024**3
ASSOCIATED = re.compile(r"^[a-z0-9_-]{1,40}$")


def _json(value, default):
    return slides._loads(value, default)


def slide_view(slide: dict, *, enrolling: bool) -> dict:
    """What templates show of a slide: facts and whitelisted properties; associated images only for
    the enrolling hospital."""
    mpp = slides.slide_mpp(slide)
    out = {
        "id": slide["id"], "title": slide["title"] or f"Slide {slide['id']}", "vendor": slide["vendor"],
        "width": slide["width"], "height": slide["height"], "level_count": slide["level_count"],
        "mpp": mpp, "objective_power": slide["objective_power"], "container": slide["container"],
        "size_mb": round((slide["size"] or 0) / 1024**2, 1), "hidden": slide["hidden_from_panels"],
        "created_at": slide["created_at"], "properties": slides.slide_properties(slide),
        "field_mm": (round(slide["width"] * mpp / 1000, 2), round(slide["height"] * mpp / 1000, 2)) if mpp else None,
    }
    if enrolling:
        out["associated"] = [a for a in _json(slide["associated"], []) if ASSOCIATED.match(str(a))]
    return out


async def _patient(request: Request, pseudonym: str, permission: str = "patients.view") -> dict:
    from core.patients.access import load_patient

    return await load_patient(request, pseudonym, permission)


async def _slides_of(patient_id: int, *, panel_view: bool = False) -> list[dict]:
    from plugins.pathology_viewer.tables import Slide

    query = Slide.select().where(Slide.patient == patient_id)
    if panel_view:
        query = query.where(Slide.hidden_from_panels.eq(False))
    return await query.order_by(Slide.id, ascending=False)


async def _section(request: Request, patient: dict, *, errors: list[str] | None = None, message: str = "",
                   status: int = 200, form: dict | None = None) -> Template:
    actor = request.scope["user"]
    rows = await _slides_of(patient["id"])
    ctx = {
        "patient": patient, "slides": [slide_view(r, enrolling=True) for r in rows],
        "may_edit": allowed(actor, EDIT) and not patient.get("restricted"), "errors": errors or [],
        "message": message, "form": form or {}, "base": f"/pathology/patients/{patient['pseudonym']}",
        "max_upload_mb": slides.config(request.app.state.settings).max_upload_bytes // 1024**2,
    }
    return page(request, "pathology/section.html", ctx, fragment="pathology/_section.html", status_code=status)


# --- the patient section ------------------------------------------------------------------------


@get("/pathology/patients/{pseudonym:str}", opt={"permission": VIEW}, include_in_schema=False)
async def patient_section(request: Request, pseudonym: FromPath[str]) -> Template:
    patient = await _patient(request, pseudonym)
    store.remember_settings(request.app.state.settings)
    await _audit_patient(request, "pathology.list", patient)
    return await _section(request, patient)


@get("/pathology/patients/{pseudonym:str}/upload", opt={"permission": EDIT}, include_in_schema=False)
async def upload_form(request: Request, pseudonym: FromPath[str]) -> Template:
    patient = await _patient(request, pseudonym, EDIT)
    return _upload_page(request, patient)


def _upload_page(request: Request, patient: dict, errors: list[str] | None = None, status: int = 200,
                 form: dict | None = None) -> Template:
    return page(request, "pathology/upload.html", {
        "patient": patient, "errors": errors or [], "form": form or {},
        "base": f"/pathology/patients/{patient['pseudonym']}",
        "max_upload_mb": slides.config(request.app.state.settings).max_upload_bytes // 1024**2,
    }, status_code=status)


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


@post("/pathology/patients/{pseudonym:str}/slides", opt={"permission": EDIT}, include_in_schema=False,
      request_max_body_size=HARD_MAX_BODY)
async def upload(request: Request, pseudonym: FromPath[str]) -> Response | Template | Redirect:
    patient = await _patient(request, pseudonym, EDIT)
    settings = request.app.state.settings
    store.remember_settings(settings)
    try:
        slide_id = await ingest_upload(request, settings, patient)
    except ingest.IngestError as exc:
        if _wants_json(request):
            return Response({"type": "about:blank", "title": "The slide was not stored", "status": exc.status,
                             "detail": exc.message}, status_code=exc.status, media_type="application/problem+json")
        if is_fragment_request(request):
            return await _section(request, patient, errors=[exc.message], status=exc.status)
        return _upload_page(request, patient, [exc.message], exc.status)
    if _wants_json(request):
        return Response({"id": slide_id, "url": f"/pathology/slides/{slide_id}",
                         "viewer": f"/pathology/slides/{slide_id}/view",
                         "section": f"/pathology/patients/{pseudonym}"}, status_code=201)
    if is_fragment_request(request):
        return await _section(request, patient, message="The slide was stored.")
    return Redirect(f"/pathology/slides/{slide_id}", status_code=303)


async def ingest_upload(request: Request, settings, patient: dict) -> int:
    """Receive, check and store one upload; the new slide's id, or IngestError with nothing left behind."""
    from core.identity.login import client_address

    folder = await to_thread.run_sync(ingest.new_folder, settings)
    try:
        got = await ingest.receive(request, settings, folder)
        row = await ingest.commit(
            settings, patient, got, got.fields.get("title", ""), request.scope["user"].user_id,
            # in the row's transaction: a slide is never committed without its audit entry
            audit=lambda new: _audit_patient(request, "pathology.upload", patient, {
                "slide": new["id"], "size": new["size"], "vendor": new["vendor"]}),
        )
    finally:
        # Synchronous on purpose: when the client goes away mid-upload the task is cancelled, and an
        # await here would be cancelled too, leaving the partial upload behind.
        ingest.discard(folder)
    await request.app.state.host.events.emit(Event(
        "pathology.slide_uploaded", request.scope["user"].user_id, "patient", patient["pseudonym"],
        {"slide": row["id"]}, client_address(request)))
    return row["id"]


async def _audit_patient(request: Request, action: str, patient: dict, detail: dict | None = None) -> None:
    from core.patients.records import audit

    await audit(request, action, patient, detail)


@post("/pathology/slides/{slide_id:int}/hidden", opt={"permission": EDIT}, include_in_schema=False)
async def set_hidden(request: Request, slide_id: FromPath[int]) -> Template | Redirect:
    from plugins.pathology_viewer.tables import Slide

    ctx = await access.load_slide(request, slide_id, edit=True)
    form = await request.form()
    hidden = str(form.get("hidden", "")) in ("1", "on", "true", "yes")
    await Slide.update({Slide.hidden_from_panels: hidden}).where(Slide.id == slide_id)
    access.forget(slide_id)
    await access.audit_read(request, ctx, "pathology.change", {"hidden_from_panels": hidden})
    if is_fragment_request(request):
        return await _section(request, ctx.patient, message="Hidden from panels." if hidden else "Shown to panels.")
    return Redirect(f"/pathology/patients/{ctx.patient['pseudonym']}", status_code=303)


@get("/pathology/slides/{slide_id:int}/delete", opt={"permission": EDIT}, include_in_schema=False)
async def delete_confirm(request: Request, slide_id: FromPath[int]) -> Template:
    ctx = await access.load_slide(request, slide_id, edit=True)
    return page(request, "pathology/delete.html", {"slide": slide_view(ctx.slide, enrolling=True), "patient": ctx.patient})


@post("/pathology/slides/{slide_id:int}/delete", opt={"permission": EDIT}, include_in_schema=False)
async def delete(request: Request, slide_id: FromPath[int]) -> Template | Redirect:
    from core.identity.login import client_address

    ctx = await access.load_slide(request, slide_id, edit=True)
    form = await request.form()
    if str(form.get("confirm", "")) != "yes":
        return page(request, "pathology/delete.html", {
            "slide": slide_view(ctx.slide, enrolling=True), "patient": ctx.patient,
            "errors": ["Tick the box to confirm that this slide, its annotations and share links are deleted."],
        }, status_code=422)
    await store.delete_slide(request.app.state.settings, ctx.slide)
    await access.audit_read(request, ctx, "pathology.delete", {"sha256": ctx.slide["sha256"][:16]})
    await request.app.state.host.events.emit(Event(
        "pathology.slide_deleted", request.scope["user"].user_id, "patient", ctx.patient["pseudonym"],
        {"slide": slide_id}, client_address(request)))
    if is_fragment_request(request):
        return await _section(request, ctx.patient, message="The slide was deleted.")
    return Redirect(f"/pathology/patients/{ctx.patient['pseudonym']}", status_code=303)


# --- the panel section and the facts page -----------------------------------------------------


@get("/pathology/panels/{panel_id:int}", opt={"permission": VIEW}, include_in_schema=False)
async def panel_section(request: Request, panel_id: FromPath[int]) -> Template:
    """Pseudonymous: the slides a participant may open (none hidden from panels), no label or macro."""
    from core.panels.access import audit, is_accepted_member, load_panel

    ctx = await load_panel(request, panel_id)
    actor = request.scope["user"]
    participant = ctx.sees_identity or await is_accepted_member(actor, ctx.patient["id"])
    rows = await _slides_of(ctx.patient["id"], panel_view=True) if participant else []
    hidden = 0
    if ctx.sees_identity:
        hidden = len(await _slides_of(ctx.patient["id"])) - len(rows)
    await audit(request, ctx, "pathology.list", {"slides": len(rows)})
    return Template("pathology/_panel.html", context={
        "slides": [slide_view(r, enrolling=False) for r in rows], "panel_id": panel_id,
        "participant": participant, "hidden": hidden,
    })


@get("/pathology/slides/{slide_id:int}", opt={"permission": VIEW}, include_in_schema=False)
async def slide_page(request: Request, slide_id: FromPath[int]) -> Template:
    ctx = await access.load_slide(request, slide_id)
    await access.audit_read(request, ctx, "pathology.facts")
    return page(request, "pathology/slide.html", {
        "slide": slide_view(ctx.slide, enrolling=ctx.enrolling), "enrolling": ctx.enrolling, "may_edit": ctx.may_edit,
        "patient": {"pseudonym": ctx.patient["pseudonym"], "nickname": ctx.patient["nickname"]},
        "panel_id": ctx.panel_id,
    })


# --- tiles ------------------------------------------------------------------------------------


@get("/pathology/slides/{slide_id:int}/image.dzi", opt={"permission": VIEW}, include_in_schema=False)
async def dzi(request: Request, slide_id: FromPath[int]) -> Response:
    ctx = await access.load_slide(request, slide_id)
    response = await tiles.dzi_response(ctx.slide, request)
    if response.status_code != 304:
        await access.audit_read(request, ctx, "pathology.view", {"via": "dzi"})
    return response


@get("/pathology/slides/{slide_id:int}/image_files/{level:int}/{name:str}", opt={"permission": VIEW},
     include_in_schema=False)
async def tile(request: Request, slide_id: FromPath[int], level: FromPath[int], name: FromPath[str]) -> Response:
    ctx = await access.load_slide(request, slide_id)
    col, row, fmt = parse_tile_name(name)
    return await tiles.tile_response(ctx.slide, level, col, row, fmt, request)


def parse_tile_name(name: str) -> tuple[int, int, str]:
    """``{col}_{row}.{fmt}`` of a Deep Zoom tile URL; 404 for anything else."""
    m = TILE_NAME.match(name)
    if not m:
        raise NotFoundException("A tile is named {column}_{row}.jpeg (or .webp).")
    return int(m.group(1)), int(m.group(2)), m.group(3)


@get("/pathology/slides/{slide_id:int}/thumbnail.jpg", opt={"permission": VIEW}, include_in_schema=False)
async def thumbnail(request: Request, slide_id: FromPath[int]) -> Response:
    ctx = await access.load_slide(request, slide_id)
    return await tiles.thumbnail_response(ctx.slide, request)


@get("/pathology/slides/{slide_id:int}/associated/{name:str}", opt={"permission": VIEW}, include_in_schema=False)
async def associated_image(request: Request, slide_id: FromPath[int], name: FromPath[str]) -> Response:
    """A label or macro image, for the enrolling hospital only (it checks what the scanner photographed);
    404 for everyone else, as if there were none."""
    ctx = await access.load_slide(request, slide_id)
    stem = name.removesuffix(".jpg")
    if not ctx.enrolling or stem not in _json(ctx.slide["associated"], []) or not ASSOCIATED.match(stem):
        raise NotFoundException("No such image.")
    settings = request.app.state.settings
    osr = await slides.open_handle(settings, ctx.slide)

    def work() -> bytes:
        image = osr.associated_images[stem].convert("RGB")
        image.thumbnail((1024, 1024))
        return tiles.encode(image, "JPEG", 85)

    try:
        body = await to_thread.run_sync(work)
    except Exception as exc:
        raise HTTPException(status_code=500, detail="This image cannot be read.") from exc
    await access.audit_read(request, ctx, "pathology.associated", {"image": stem})
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


ROUTES = [patient_section, upload_form, upload, set_hidden, delete_confirm, delete, panel_section, slide_page,
          dzi, tile, thumbnail, associated_image, *iiif.ROUTES]
