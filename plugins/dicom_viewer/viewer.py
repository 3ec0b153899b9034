"""The viewer page of a DICOM series, and the de-identified tag browser's JSON.

``GET /dicom/series/{id}/view`` reopens a cited view from its query (every part optional):

- ``instance``: the instance shown (its id; by default the series' first visible one);
- ``frame``: its frame, numbered from 1 as DICOM numbers frames (by default 1);
- ``wc``, ``ww``: window centre and width, both or neither (by default the file's own window);
- ``zoom``: screen (CSS) pixels per image pixel, ``1`` for one image pixel per screen pixel; it does
  not depend on the window's size, so a view reopened elsewhere shows the same scale. By default the
  image fits the viewport; ``x``, ``y`` (image pixels) is the point at the viewport's centre;
- ``rot``: degrees clockwise, a quarter turn (0, 90, 180, 270; other multiples of 90 are reduced);
- ``flip``: ``h``, ``v`` or ``hv`` (the image is flipped before it is rotated); ``invert``: 0 or 1;
- or ``annotation=ID``: the instance and frame of that annotation, highlighted;
- ``panel=ID``: the panel whose discussion "Cite" posts to (by default the panels about this
  patient in which the viewer takes part and which are open for discussion).

Nonsense gives 400 with a page saying what is wrong; an instance or annotation one may not see (or
that is not in this series) is 404, like a missing one. Nothing is configured by inline scripts (the
CSP forbids them): the page carries its settings in ``data-`` attributes read by ``static/viewer.js``.
Opening the page is audited (``dicom.view``); its frames and the annotation list it reloads are not.

``GET /dicom/instances/{id}/tags`` lists the elements of the stored (de-identified) dataset, file meta
first, nested sequences as items; pixel data and other bulk values are described, never sent.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, TypedDict
from urllib.parse import urlencode

import anyio
from litestar import Request, Response, get
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from core.openapi import Id, problems
from core.web import page

VIEW = "dicom.view"
ANNOTATE = "dicom.annotate"
MAX_ZOOM = 32.0
MIN_ZOOM = 0.01
WINDOW_LIMIT = 1e7
log = logging.getLogger(__name__)
#: Tag browser bounds: a hostile or huge dataset must not make a huge answer.
MAX_TAG_ELEMENTS = 5000
MAX_TAG_DEPTH = 8
MAX_VALUE_CHARS = 300
#: Values never shown: pixel data, whatever its VR.
PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}
BULK_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}


class BadView(HTTPException):
    status_code = 400


def _number(params, name: str, low: float, high: float) -> float | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadView(detail=f"{name} must be a number.") from None
    if not math.isfinite(value):
        raise BadView(detail=f"{name} must be a finite number.")
    if not low <= value <= high:
        raise BadView(detail=f"{name} must be between {low:g} and {high:g}.")
    return value


def _id(params, name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if not str(raw).isdecimal() or len(str(raw)) > 12 or int(raw) == 0:
        raise BadView(detail=f"{name} must be a positive whole number.")
    return int(raw)


def parse_view(params, instances: list[dict]) -> dict:
    """The view asked for by a query: ``{instance, frame (from 1), wc, ww, zoom, x, y, rot, flipH, flipV,
    invert}`` (None where not given), checked against the series' visible ``instances``; BadView (400)
    for nonsense, NotFoundException for an instance that is not one of them."""
    by_id = {i["id"]: i for i in instances}
    instance_id = _id(params, "instance")
    if instance_id is not None and instance_id not in by_id:
        raise NotFoundException("No such image in this series, or you may not see it.")
    inst = by_id.get(instance_id) if instance_id else (instances[0] if instances else None)
    frames = max(1, int(inst["frames"] or 1)) if inst else 1
    frame_raw = params.get("frame")
    frame = 1
    if frame_raw not in (None, ""):
        if not str(frame_raw).isdecimal() or len(str(frame_raw)) > 6 or not 1 <= int(frame_raw) <= frames:
            raise BadView(detail=f"frame must be a frame number from 1 to {frames}.")
        frame = int(frame_raw)
    wc = _number(params, "wc", -WINDOW_LIMIT, WINDOW_LIMIT)
    ww = _number(params, "ww", 0, WINDOW_LIMIT)
    if (wc is None) != (ww is None):
        raise BadView(detail="Give both wc (window centre) and ww (window width), or neither.")
    if ww is not None and ww <= 0:
        raise BadView(detail="ww (window width) must be above 0.")
    zoom = _number(params, "zoom", MIN_ZOOM, MAX_ZOOM)
    columns, rows = (int(inst["columns"] or 0), int(inst["rows"] or 0)) if inst else (0, 0)
    x = _number(params, "x", 0, columns)
    y = _number(params, "y", 0, rows)
    if (x is None) != (y is None):
        raise BadView(detail="Give both x and y (the image point at the centre of the view), or neither.")
    rot_raw = params.get("rot")
    rot = 0
    if rot_raw not in (None, ""):
        try:
            rot = int(str(rot_raw))
        except ValueError:
            raise BadView(detail="rot must be a whole number of degrees (0, 90, 180 or 270).") from None
        if rot % 90 or abs(rot) > 3600:
            raise BadView(detail="rot turns by quarter turns: 0, 90, 180 or 270 degrees.")
        rot %= 360
    flip = (params.get("flip") or "").strip().lower()
    if flip not in ("", "h", "v", "hv", "vh"):
        raise BadView(detail="flip must be h, v or hv.")
    invert_raw = (params.get("invert") or "0").strip().lower()
    if invert_raw not in ("0", "1", "true", "false"):
        raise BadView(detail="invert must be 0 or 1.")
    return {
        "instance": inst["id"] if inst else None, "frame": frame, "wc": wc, "ww": ww, "zoom": zoom, "x": x, "y": y,
        "rot": rot, "flipH": "h" in flip, "flipV": "v" in flip, "invert": invert_raw in ("1", "true"),
    }


def view_url(series_id: int, view: dict, frames: int = 1) -> str:
    """The address that reopens ``view`` (the same form viewer.js cites, and the tests check)."""
    query: dict = {"instance": view["instance"]}
    if frames > 1 or view.get("frame", 1) != 1:
        query["frame"] = view["frame"]
    if view.get("wc") is not None:
        query["wc"], query["ww"] = f"{view['wc']:g}", f"{view['ww']:g}"
    if view.get("zoom"):
        query["zoom"] = f"{view['zoom']:.4g}"
        if view.get("x") is not None:
            query["x"], query["y"] = f"{view['x']:g}", f"{view['y']:g}"
    if view.get("rot"):
        query["rot"] = view["rot"]
    flip = ("h" if view.get("flipH") else "") + ("v" if view.get("flipV") else "")
    if flip:
        query["flip"] = flip
    if view.get("invert"):
        query["invert"] = 1
    return f"/dicom/series/{series_id}/view?{urlencode(query)}"


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


def default_window(ds, frame: int = 0) -> list[float] | None:
    """Where a window drag starts when the file's own window is shown: the file's window, else the
    frame's value range (what ``render`` shows then). None for colour images."""
    from plugins.dicom_viewer import render

    try:
        window = render.file_window(ds, frame)
        if window:
            return [float(window[0]), float(window[1])]
        values = render.modality_values(ds, frame)
        lo, hi = float(values.min()), float(values.max())
        return [(lo + hi) / 2, max(hi - lo, 1.0)]
    except (render.UnsupportedPixelData, ValueError, TypeError, AttributeError, KeyError):
        return None


@get("/dicom/series/{series_id:int}/view", opt={"permission": VIEW}, include_in_schema=False)
async def viewer_page(request: Request, series_id: FromPath[int]) -> Template:
    from core.permissions import allowed
    from plugins.dicom_viewer import render, store
    from plugins.dicom_viewer.access import audit_read, load_series, visible_instances
    from plugins.dicom_viewer.annotations import listing
    from plugins.dicom_viewer.geometry import KIND_LABELS
    from plugins.dicom_viewer.views import instance_json

    ctx = await load_series(request, series_id)
    instances = await visible_instances(ctx)
    actor = request.scope["user"]
    params = request.query_params
    annotations = await listing([i["id"] for i in instances], actor, ctx.may_edit)
    focus = None
    annotation_id = _id(params, "annotation")
    if annotation_id is not None:
        focus = next((a for a in annotations if a["id"] == annotation_id), None)
        if focus is None:
            raise NotFoundException("No such annotation in this series.")
    view = parse_view(params, instances)
    if focus is not None:
        view.update(instance=focus["instance"], frame=focus["frame"])
    current = next((i for i in instances if i["id"] == view["instance"]), None)
    window = None
    if current is not None:
        try:
            ds = await store.dataset(current, request.app.state.settings)
            window = await anyio.to_thread.run_sync(default_window, ds, view["frame"] - 1)
        except (OSError, ValueError, KeyError) as exc:  # a missing or damaged file: the page still opens
            window = None
            log.warning("dicom viewer: no dataset for instance %s: %s", current["id"], type(exc).__name__)
    wanted_raw = params.get("panel")
    wanted = int(wanted_raw) if wanted_raw and str(wanted_raw).isdecimal() and len(wanted_raw) < 12 else ctx.panel_id
    targets = await cite_targets(actor, ctx.patient["id"], wanted)
    await audit_read(request, ctx, "dicom.view", {"viewer": True, **({"annotation": focus["id"]} if focus else {})})
    presets = [[name.capitalize(), c, w] for name, (c, w) in render.PRESETS.items()]
    config = {
        "series": ctx.series["id"],
        "instances": [instance_json(i) for i in instances],
        "renderedUrl": "/dicom/instances/{instance}/frames/{frame}/rendered",
        "annotationsUrl": "/dicom/instances/{instance}/annotations",
        "tagsUrl": "/dicom/instances/{instance}/tags",
        "viewUrl": f"/dicom/series/{ctx.series['id']}/view",
        "view": view, "focus": focus["id"] if focus else None, "defaultWindow": window,
        "presets": presets, "mayAnnotate": allowed(actor, ANNOTATE), "modality": ctx.series["modality"],
    }
    frames = max(1, int(current["frames"] or 1)) if current else 1
    explicit = any(params.get(k) not in (None, "") for k in ("instance", "frame", "wc", "zoom", "rot", "flip", "invert"))
    if focus:
        initial_link = f"/dicom/series/{ctx.series['id']}/view?annotation={focus['id']}"
    elif explicit and current:
        initial_link = view_url(ctx.series["id"], view, frames)
    else:
        initial_link = f"/dicom/series/{ctx.series['id']}/view"
    title = " · ".join(p for p in (ctx.series["modality"], ctx.series["description"]) if p) or f"Series #{ctx.series['id']}"
    return page(request, "dicom/viewer.html", {
        "ctx": ctx, "series": ctx.series, "study": ctx.study, "instances": instances, "title": title,
        "config_json": json.dumps(config), "annotations": annotations, "annotations_json": json.dumps(annotations),
        "cite_targets": targets, "focus": focus, "may_annotate": config["mayAnnotate"], "presets": presets,
        "initial_link": initial_link, "kind_labels": KIND_LABELS, "numbers": {i["id"]: i["number"] for i in instances},
        "stack_size": sum(max(1, int(i["frames"] or 1)) for i in instances),
    })


# --- the tag browser ------------------------------------------------------------------------------


def _value(el) -> str:
    from pydicom.multival import MultiValue

    value = el.value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return f"({len(value)} bytes)"
    if isinstance(value, (list, tuple, MultiValue)):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"


def tag_elements(ds, budget: list[int] | None = None, depth: int = 0) -> list[dict]:
    """The elements of ``ds`` as ``{tag, keyword, name, vr, value, items?}``, pixel data and bulk values
    described (never sent), at most ``MAX_TAG_ELEMENTS`` in all and ``MAX_TAG_DEPTH`` levels deep."""
    budget = budget if budget is not None else [MAX_TAG_ELEMENTS]
    out = []
    for el in ds:
        if budget[0] <= 0:
            break
        budget[0] -= 1
        item = {"tag": f"({el.tag.group:04X},{el.tag.element:04X})", "keyword": el.keyword or "",
                "name": el.name if el.keyword else ("Private tag" if el.tag.is_private else el.name), "vr": el.VR}
        if int(el.tag) in PIXEL_TAGS:
            length = len(el.value) if isinstance(el.value, (bytes, bytearray)) else 0
            item["value"] = f"pixel data ({length} bytes, not shown)" if length else "pixel data (not shown)"
        elif el.VR == "SQ":
            seq = el.value or []
            item["value"] = f"{len(seq)} item{'s' if len(seq) != 1 else ''}"
            if depth < MAX_TAG_DEPTH:
                item["items"] = [tag_elements(sub, budget, depth + 1) for sub in seq if budget[0] > 0]
        elif el.VR in BULK_VRS:
            length = len(el.value) if isinstance(el.value, (bytes, bytearray)) else 0
            item["value"] = f"({length} bytes)"
        else:
            item["value"] = _value(el)
        out.append(item)
    return out


def tags_of(ds) -> list[dict]:
    budget = [MAX_TAG_ELEMENTS]
    meta = getattr(ds, "file_meta", None)
    head = tag_elements(meta, budget) if meta is not None else []
    return head + tag_elements(ds, budget)


class _TagElement(TypedDict):
    tag: str
    keyword: str
    name: str
    vr: str
    value: str


class TagElement(_TagElement, total=False):
    #: A sequence's items, each a list of elements (to a bounded depth).
    items: list[list[Any]]


class InstanceTags(TypedDict):
    instance: int
    elements: list[TagElement]


@get("/dicom/instances/{instance_id:int}/tags", opt={"permission": VIEW}, operation_id="dicomInstanceTags",
     tags=["DICOM viewer"], responses=problems(s404="No such image, you may not see it, or its stored file cannot be read."))
async def instance_tags(request: Request, instance_id: Id) -> Response[InstanceTags]:
    """The de-identified dataset's elements (pixel and bulk data summarised, not shown), for the tag browser."""
    from plugins.dicom_viewer import store
    from plugins.dicom_viewer.access import audit_read, load_instance
    from plugins.dicom_viewer.annotations import problem

    try:
        ctx = await load_instance(request, instance_id)
    except HTTPException as exc:
        return problem(exc.status_code, str(exc.detail))
    try:
        ds = await store.dataset(ctx.instance, request.app.state.settings)
    except (OSError, ValueError, KeyError):
        return problem(404, "The stored file of this image cannot be read.")
    elements = await anyio.to_thread.run_sync(tags_of, ds)
    await audit_read(request, ctx, "dicom.tags_read")
    return Response({"instance": ctx.instance["id"], "elements": elements}, media_type="application/json",
                    headers={"Cache-Control": "private, no-store"})


ROUTES = [viewer_page, instance_tags]
