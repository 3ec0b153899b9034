"""Annotations on a DICOM frame: a JSON API used by the viewer, and the list beside it.

Everyone who may see an instance (``access.load_instance``: the enrolling hospital, accepted panel
members once the instance is reviewed) sees every annotation on it; those holding ``dicom.annotate``
add their own. The author, or an editor of the enrolling hospital (``ctx.may_edit``), deletes one.

``POST /dicom/instances/{id}/annotations`` takes ``{"kind", "frame", "geometry": {"points"}, "text"}``
(``frame`` numbered from 1, as DICOM numbers frames; ``geometry`` in pixels of the frame, see
``geometry``). The geometry is validated before anything is stored, and the measurement (length in mm
from the Pixel Spacing, angle, ellipse mean/SD in HU for CT) is computed here from the de-identified
dataset and stored with the annotation, so every viewer shows the same figures. Bad input gets an
RFC 9457 problem (4xx) and stores nothing.

Audited: every change (created, deleted) and reads through the JSON API. The list fragment the viewer
reloads after a change is part of the viewer page, whose opening is audited.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypedDict

import anyio
from litestar import Request, Response, delete, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Template
from msgspec import Meta

from core.openapi import Id, json_schema, operation, problems, unknown_fields
from core.web import page
from plugins.dicom_viewer import geometry as geo

VIEW = "dicom.view"
ANNOTATE = "dicom.annotate"
BASE = "/dicom/instances/{instance_id:int}/annotations"
#: An annotation is a few points and a note: a body beyond this is not one.
MAX_BODY = 16 * 1024
MAX_PER_INSTANCE = 500


# --- the OpenAPI document (core/openapi.py) -----------------------------------------------------------

Coordinate = Annotated[float, Meta(ge=0, le=1e15, description="Pixels of the frame, from 0 to its columns (x) or rows (y).")]


class AnnotationGeometry(TypedDict):
    #: arrow and length 2 points, text 1, angle 3 (ends and vertex), ellipse 2 (its bounding box's corners).
    points: Annotated[list[Annotated[list[Coordinate], Meta(min_length=2, max_length=2)]], Meta(min_length=1, max_length=3)]


class _AnnotationIn(TypedDict):
    """A new annotation. Checked against the image before anything is stored (422 naming the fault): the
    points' number for the kind, every point on the frame, the frame number, text at most 500 characters
    (after trimming) and without control characters, a text annotation's text not empty."""

    kind: Literal["arrow", "text", "length", "angle", "ellipse"]
    geometry: AnnotationGeometry


class AnnotationIn(_AnnotationIn, total=False):
    frame: Annotated[int, Meta(ge=1, le=10**9)] | None
    text: str | None


class Author(TypedDict):
    id: int | None
    name: str


class DicomAnnotation(TypedDict):
    id: int
    instance: int
    frame: int
    kind: str
    geometry: dict[str, Any]
    text: str
    #: length (mm), angle (degrees) or ellipse statistics (mean, SD, area), as computed at creation.
    measurement: dict[str, Any]
    created_at: str
    author: Author
    may_change: bool


class DicomAnnotations(TypedDict):
    instance: int
    annotations: list[DicomAnnotation]


API = dict(tags=["DICOM viewer"])
BODY = json_schema(AnnotationIn, closed=True)


def problem(status: int, detail: str) -> Response:
    from core.errors import problem_response

    return problem_response(status, detail)


async def dataset(instance: dict, settings=None):
    """The de-identified dataset of an instance (``store.dataset``: decrypted, parsed, cached)."""
    from plugins.dicom_viewer import store

    return await store.dataset(instance, settings)


async def _ctx(request: Request, instance_id: int):
    """The instance context, or a problem response (the API answers JSON even to a plain client)."""
    from plugins.dicom_viewer.access import load_instance

    try:
        return await load_instance(request, instance_id), None
    except HTTPException as exc:
        return None, problem(exc.status_code, str(exc.detail))


def _json(value, default):
    if isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(value or "null") or default
    except ValueError:
        return default


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="seconds")


def shape(row: dict, *, actor=None, may_edit: bool = False, names: dict | None = None) -> dict:
    """An annotation row as the API and the viewer see it (``frame`` from 1)."""
    return {
        "id": row["id"], "instance": row["instance"], "frame": int(row["frame"] or 0) + 1, "kind": row["kind"],
        "geometry": _json(row["geometry"], {"points": []}), "text": row["text"] or "",
        "measurement": _json(row["measurement"], {}), "created_at": _iso(row["created_at"]),
        "author": {"id": row["author"], "name": (names or {}).get(row["author"], "a former user")},
        "may_change": actor is not None and (row["author"] == actor.user_id or may_edit),
    }


async def author_names(rows: list[dict]) -> dict[int, str]:
    from core.identity.tables import User

    ids = sorted({r["author"] for r in rows if r["author"] is not None})
    if not ids:
        return {}
    return {u["id"]: u["name"] for u in await User.select(User.id, User.name).where(User.id.is_in(ids))}


async def listing(instance_ids: list[int], actor, may_edit: bool) -> list[dict]:
    """The annotations on these instances (those the actor sees), oldest first."""
    from plugins.dicom_viewer.tables import Annotation

    if not instance_ids:
        return []
    rows = await Annotation.select().where(Annotation.instance.is_in(list(instance_ids))).order_by(Annotation.id)
    names = await author_names(rows)
    return [shape(r, actor=actor, may_edit=may_edit, names=names) for r in rows]


async def _body(request: Request) -> tuple[dict | None, Response | None]:
    from core.jsonbody import JsonRejected, parse

    try:
        data = parse(await request.body(), max_bytes=MAX_BODY, what="An annotation")
    except JsonRejected as exc:
        return None, problem(exc.status, exc.detail)
    if not isinstance(data, dict):
        return None, problem(422, "The body must be a JSON object with kind, frame, geometry and text.")
    if unknown := unknown_fields(data, BODY):
        return None, problem(422, f"Unknown fields: {', '.join(unknown[:5])}.")
    return data, None


# --- routes ------------------------------------------------------------------------------------


@get(BASE, opt={"permission": VIEW}, operation_id="listDicomAnnotations", **API)
async def list_annotations(request: Request, instance_id: Id) -> Response[DicomAnnotations]:
    """Every annotation on an instance, oldest first (audited)."""
    from plugins.dicom_viewer.access import audit_read

    ctx, err = await _ctx(request, instance_id)
    if err:
        return err
    items = await listing([ctx.instance["id"]], request.scope["user"], ctx.may_edit)
    await audit_read(request, ctx, "dicom.annotations_read", {"count": len(items)})
    return Response({"instance": ctx.instance["id"], "annotations": items}, media_type="application/json")


@get("/dicom/series/{series_id:int}/annotations/list", opt={"permission": VIEW}, include_in_schema=False)
async def list_fragment(request: Request, series_id: FromPath[int]) -> Template:
    """The list beside the viewer (``dicom/_annotations.html``), reloaded after each change."""
    from plugins.dicom_viewer.access import load_series, visible_instances

    ctx = await load_series(request, series_id)
    instances = await visible_instances(ctx)
    items = await listing([i["id"] for i in instances], request.scope["user"], ctx.may_edit)
    return page(request, "dicom/_annotations.html", {"series": ctx.series, "annotations": items,
                                                      "kind_labels": geo.KIND_LABELS,
                                                      "numbers": {i["id"]: i["number"] for i in instances}})


@post(BASE, opt={"permission": ANNOTATE}, status_code=201, operation_id="createDicomAnnotation",
      request_max_body_size=MAX_BODY, operation_class=operation(body=BODY),
      responses=problems(409, 422, s400="The body is not JSON, or not a JSON object."), **API)
async def create_annotation(request: Request, instance_id: Id) -> Response[DicomAnnotation]:
    """Annotate a frame; the measurement is computed here, from the de-identified dataset."""
    from plugins.dicom_viewer.access import audit_read
    from plugins.dicom_viewer.tables import Annotation

    ctx, err = await _ctx(request, instance_id)
    if err:
        return err
    data, err = await _body(request)
    if err:
        return err
    inst = ctx.instance
    try:
        kind, geometry, text, frame = geo.validate(
            data.get("kind"), data.get("geometry"), data.get("text"), columns=int(inst["columns"]),
            rows=int(inst["rows"]), frame=data.get("frame", 1), frames=max(1, int(inst["frames"] or 1)))
    except geo.GeometryError as exc:
        return problem(422, str(exc))
    if await Annotation.count().where(Annotation.instance == inst["id"]) >= MAX_PER_INSTANCE:
        return problem(409, f"This image already has {MAX_PER_INSTANCE} annotations; delete some first.")
    measurement: dict = {}
    if kind in ("length", "angle", "ellipse"):
        try:
            ds = await dataset(inst, request.app.state.settings)
            measurement = await anyio.to_thread.run_sync(geo.measure, kind, geometry, ds, frame)
        except geo.GeometryError as exc:
            return problem(422, str(exc))
    actor = request.scope["user"]
    row = Annotation(instance=inst["id"], frame=frame, author=actor.user_id, kind=kind, geometry=json.dumps(geometry),
                     text=text, measurement=json.dumps(measurement))
    await row.save()
    await audit_read(request, ctx, "dicom.annotation_created", {"annotation": row.id, "kind": kind, "frame": frame + 1})
    saved = await Annotation.select().where(Annotation.id == row.id).first()
    body = shape(saved, actor=actor, may_edit=ctx.may_edit, names={actor.user_id: actor.name})
    return Response(body, status_code=201, media_type="application/json",
                    headers={"Location": f"/dicom/series/{ctx.series['id']}/view?annotation={row.id}"})


@delete(BASE + "/{annotation_id:int}", opt={"permission": ANNOTATE}, status_code=204, operation_id="deleteDicomAnnotation",
        responses=problems(s403="Only its author, or an editor of the enrolling hospital, deletes an annotation; or the "
                                "CSRF token is missing or wrong."), **API)
async def delete_annotation(request: Request, instance_id: Id, annotation_id: Id) -> Response[None]:
    """Delete an annotation (its author, or an editor of the enrolling hospital)."""
    from plugins.dicom_viewer.access import audit_read
    from plugins.dicom_viewer.tables import Annotation

    ctx, err = await _ctx(request, instance_id)
    if err:
        return err
    row = await Annotation.select().where((Annotation.id == annotation_id) & (Annotation.instance == ctx.instance["id"])).first()
    if row is None:
        return problem(404, "No such annotation on this image.")
    if row["author"] != request.scope["user"].user_id and not ctx.may_edit:
        return problem(403, "Only its author, or an editor of the enrolling hospital, deletes an annotation.")
    await Annotation.delete().where(Annotation.id == row["id"])
    await audit_read(request, ctx, "dicom.annotation_deleted", {"annotation": row["id"], "kind": row["kind"]})
    return Response(b"", status_code=204)


ROUTES = [list_annotations, list_fragment, create_annotation, delete_annotation]
