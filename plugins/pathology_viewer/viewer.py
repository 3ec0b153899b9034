"""The viewer page: OpenSeadragon over the slide's Deep Zoom tiles, with annotations and citing.

``GET /pathology/slides/{id}/view`` reopens a cited view from its query:

- ``x``, ``y``: the centre of the view in level-0 image pixels;
- ``zoom``: OpenSeadragon's *image zoom*, screen (CSS) pixels per level-0 pixel: ``1`` shows the
  slide at full resolution (one image pixel per screen pixel), ``0.25`` at a quarter. It does not
  depend on the window's size, so a view reopened in another window shows the same scale (µm per
  screen pixel) around the same centre;
- ``rotation``: degrees clockwise (a multiple of 90 from the buttons; any angle is kept);
- or ``annotation=ID``: the view that frames that annotation (and highlights it);
- ``panel=ID``: the panel whose discussion "Cite" posts to (by default the panels about this
  patient in which the viewer takes part and which are open for discussion).

Nothing is configured by inline scripts (the CSP forbids them): the page carries its settings in
``data-`` attributes read by ``static/viewer.js``. Opening the page is audited
(``pathology.view``); its tiles and the annotation list it reloads are not (see ``access``).
"""

from __future__ import annotations

import json
import math
from urllib.parse import urlencode

from litestar import Request, get
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from core.web import page

VIEW = "pathology.view"
ANNOTATE = "pathology.annotate"
MAX_ZOOM = 64.0


class BadView(HTTPException):
    status_code = 400


def parse_view(params, width: int, height: int) -> dict | None:
    """The cited view from a query, or None when there is none; BadView for nonsense."""
    keys = ("x", "y", "zoom", "rotation")
    if not any(params.get(k) not in (None, "") for k in keys):
        return None
    values = {}
    for k in keys:
        raw = params.get(k)
        if raw in (None, ""):
            if k == "rotation":
                values[k] = 0.0
                continue
            raise BadView(detail="A cited view needs x, y and zoom (rotation is optional).")
        try:
            values[k] = float(raw)
        except ValueError:
            raise BadView(detail=f"{k} must be a number.") from None
        if not math.isfinite(values[k]):
            raise BadView(detail=f"{k} must be a finite number.")
    if not (0 <= values["x"] <= width and 0 <= values["y"] <= height):
        raise BadView(detail=f"The view's centre must lie on the slide (0–{width} × 0–{height} pixels).")
    if not 0 < values["zoom"] <= MAX_ZOOM:
        raise BadView(detail=f"zoom must be above 0 and at most {MAX_ZOOM:g}.")
    values["rotation"] = values["rotation"] % 360
    return values


def view_url(slide_id: int, view: dict) -> str:
    """The address that reopens ``view`` (what the viewer cites, and the tests check)."""
    query = {"x": f"{view['x']:.0f}", "y": f"{view['y']:.0f}", "zoom": f"{view['zoom']:.4g}"}
    if view.get("rotation"):
        query["rotation"] = f"{view['rotation']:g}"
    return f"/pathology/slides/{slide_id}/view?{urlencode(query)}"


async def cite_targets(actor, patient_id: int, wanted: int | None) -> list[dict]:
    """Panels about the patient whose discussion the actor may post in now (open, or outcome in
    review; lead, creator or accepted member); ``wanted`` first when it is one of them."""
    from core.panels.access import DISCUSSING, panel_roles
    from core.panels.tables import Panel
    from core.patients.tables import Patient

    patient = await Patient.select(Patient.hcp).where(Patient.id == patient_id).first()
    if patient is None:
        return []
    panels = await Panel.select().where((Panel.patient == patient_id) & Panel.status.is_in(sorted(DISCUSSING))).order_by(
        Panel.id, ascending=False)
    out = []
    for p in panels:
        roles, _ = await panel_roles(actor, p, patient["hcp"])
        if roles & {"lead", "creator", "member"}:
            out.append({"id": p["id"], "title": p["title"]})
    out.sort(key=lambda p: p["id"] != wanted)
    return out


@get("/pathology/slides/{slide_id:int}/view", opt={"permission": VIEW}, include_in_schema=False)
async def viewer_page(request: Request, slide_id: FromPath[int]) -> Template:
    from core.permissions import allowed
    from plugins.pathology_viewer.access import audit_read, load_slide
    from plugins.pathology_viewer.annotations import listing
    from plugins.pathology_viewer.geometry import bounds

    ctx = await load_slide(request, slide_id)
    slide = ctx.slide
    width, height = int(slide["width"]), int(slide["height"])
    params = request.query_params
    view = parse_view(params, width, height)
    actor = request.scope["user"]
    annotations = await listing(ctx, actor)
    focus = None
    raw_annotation = params.get("annotation")
    if raw_annotation not in (None, ""):
        if not str(raw_annotation).isdecimal() or len(str(raw_annotation)) > 12:
            raise BadView(detail="annotation must be an annotation's number.")
        focus = next((a for a in annotations if a["id"] == int(raw_annotation)), None)
        if focus is None:
            raise NotFoundException("No such annotation on this slide.")
    wanted_panel = params.get("panel")
    wanted = int(wanted_panel) if wanted_panel and str(wanted_panel).isdecimal() and len(wanted_panel) < 12 else ctx.panel_id
    targets = await cite_targets(actor, ctx.patient["id"], wanted)
    await audit_read(request, ctx, "pathology.view", {"viewer": True, **({"annotation": focus["id"]} if focus else {})})
    config = {
        "slide": slide["id"], "width": width, "height": height,
        "mppX": slide.get("mpp_x"), "mppY": slide.get("mpp_y") or slide.get("mpp_x"),
        "dzi": f"/pathology/slides/{slide['id']}/image.dzi",
        "annotationsUrl": f"/pathology/slides/{slide['id']}/annotations",
        "listUrl": f"/pathology/slides/{slide['id']}/annotations/list",
        "viewUrl": f"/pathology/slides/{slide['id']}/view",
        "view": view, "focus": focus["id"] if focus else None,
        "focusBounds": list(bounds(focus["geometry"])) if focus else None,
        "mayAnnotate": allowed(actor, ANNOTATE), "mode": "full",
    }
    return page(request, "pathology/viewer.html", {
        "slide": slide, "ctx": ctx, "config_json": json.dumps(config), "annotations": annotations,
        "annotations_json": json.dumps(annotations), "cite_targets": targets, "view": view, "focus": focus,
        "may_annotate": config["mayAnnotate"], "may_share": ctx.may_edit,
        "initial_link": view_url(slide["id"], view) if view else (
            f"/pathology/slides/{slide['id']}/view?annotation={focus['id']}" if focus else f"/pathology/slides/{slide['id']}/view"),
    })


ROUTES = [viewer_page]
