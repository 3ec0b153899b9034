"""Annotations on a slide: a JSON API used by the viewer, and the list beside it.

Everyone who may see the slide (``access.load_slide``: the enrolling hospital, accepted panel
members) sees every annotation on it; those holding ``pathology.annotate`` add their own. The
author, or an editor of the enrolling hospital, changes or deletes one. Geometry is validated
(``geometry.validate``: inside the slide, bounded number of points, text length) before anything
is stored; bad input gets an RFC 9457 problem (4xx) and stores nothing. Measurements are computed
here from the slide's microns per pixel and returned with each annotation.

Audited: every change (created, changed, deleted) and reads through the JSON API. The list
fragment the viewer reloads after a change is part of the viewer page, whose opening is audited.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypedDict

from litestar import Request, Response, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.response import Template
from msgspec import Meta

from core.openapi import Id, json_schema, operation, problems, unknown_fields
from core.web import page
from plugins.pathology_viewer import geometry as geo

VIEW = "pathology.view"
ANNOTATE = "pathology.annotate"
BASE = "/pathology/slides/{slide_id:int}/annotations"
#: An annotation is at most a few thousand points: a body beyond this is not one.
MAX_BODY = 256 * 1024
MAX_PER_SLIDE = 2000


# --- the OpenAPI document (core/openapi.py) -----------------------------------------------------------

Coordinate = Annotated[float, Meta(ge=0, le=1e15, description="Level-0 pixels of the slide, from 0 to its width (x) or height (y).")]
Points = Annotated[list[Annotated[list[Coordinate], Meta(min_length=2, max_length=2)]], Meta(min_length=1, max_length=5000)]


class _SlideGeometry(TypedDict):
    #: point and text 1 point, rect 2 (opposite corners), polygon 3 to 1,000, freehand 2 to 5,000.
    points: Points


class SlideGeometry(_SlideGeometry, total=False):
    #: freehand only: a closed outline (at least 3 points) has an area.
    closed: bool


class _SlideAnnotationIn(TypedDict):
    """A new annotation. Checked against the slide before anything is stored (422 naming the fault): the
    points' number for the kind, every point on the slide, a rectangle's width and height, a polygon's
    area, text at most 500 characters (after trimming) and without control characters."""

    kind: Literal["point", "rect", "polygon", "freehand", "text"]
    geometry: SlideGeometry


class SlideAnnotationIn(_SlideAnnotationIn, total=False):
    text: str | None


class SlideAnnotationChange(TypedDict, total=False):
    """A change: the geometry and/or the text (the kind stays); checked as a new one is."""

    geometry: SlideGeometry
    text: str | None


class Author(TypedDict):
    id: int | None
    name: str


class SlideAnnotation(TypedDict):
    id: int
    kind: str
    geometry: dict[str, Any]
    text: str
    #: Length, area or sides in µm (calibrated slides) or pixels, with a label; none for a point or text.
    measurement: dict[str, Any] | None
    created_at: str
    updated_at: str
    author: Author
    may_change: bool


class SlideAnnotations(TypedDict):
    slide: int
    annotations: list[SlideAnnotation]


API = dict(tags=["pathology viewer"])
NEW_BODY = json_schema(SlideAnnotationIn, closed=True)
CHANGE_BODY = json_schema(SlideAnnotationChange, closed=True)


def problem(status: int, detail: str) -> Response:
    from core.errors import problem_response

    return problem_response(status, detail)


async def _ctx(request: Request, slide_id: int):
    """The slide context, or a problem response (the API answers JSON even to a plain client)."""
    from plugins.pathology_viewer.access import load_slide

    try:
        return await load_slide(request, slide_id), None
    except HTTPException as exc:
        return None, problem(exc.status_code, str(exc.detail))


def shape(row: dict, slide: dict, *, actor=None, may_edit: bool = False, names: dict | None = None,
          with_author: bool = True) -> dict:
    """An annotation row as the API and the viewer see it (with its measurement)."""
    geometry = row["geometry"] if isinstance(row["geometry"], dict) else json.loads(row["geometry"] or "{}")
    m = geo.measure(row["kind"], geometry, slide.get("mpp_x"), slide.get("mpp_y"))
    out = {
        "id": row["id"], "kind": row["kind"], "geometry": geometry, "text": row["text"],
        "measurement": m.as_dict() if m else None,
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
    }
    if with_author:
        out["author"] = {"id": row["author"], "name": (names or {}).get(row["author"], "a former user")}
        out["may_change"] = actor is not None and (row["author"] == actor.user_id or may_edit)
    return out


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="seconds")


async def author_names(rows: list[dict]) -> dict[int, str]:
    from core.identity.tables import User

    ids = sorted({r["author"] for r in rows if r["author"] is not None})
    if not ids:
        return {}
    return {u["id"]: u["name"] for u in await User.select(User.id, User.name).where(User.id.is_in(ids))}


async def rows_of(slide_id: int) -> list[dict]:
    from plugins.pathology_viewer.tables import Annotation

    return await Annotation.select().where(Annotation.slide == slide_id).order_by(Annotation.id)


async def listing(ctx, actor) -> list[dict]:
    rows = await rows_of(ctx.id)
    names = await author_names(rows)
    return [shape(r, ctx.slide, actor=actor, may_edit=ctx.may_edit, names=names) for r in rows]


async def _body(request: Request, schema: dict) -> tuple[dict | None, Response | None]:
    from core.jsonbody import JsonRejected, parse

    try:
        data = parse(await request.body(), max_bytes=MAX_BODY, what="An annotation")
    except JsonRejected as exc:
        return None, problem(exc.status, exc.detail)
    if not isinstance(data, dict):
        return None, problem(422, "The body must be a JSON object with kind, geometry and text.")
    if unknown := unknown_fields(data, schema):
        return None, problem(422, f"Unknown fields: {', '.join(unknown[:5])}.")
    return data, None


# --- routes ------------------------------------------------------------------------------------


@get(BASE, opt={"permission": VIEW}, operation_id="listSlideAnnotations", **API)
async def list_annotations(request: Request, slide_id: Id) -> Response[SlideAnnotations]:
    """Every annotation on a slide, oldest first, with its measurement (audited)."""
    from plugins.pathology_viewer.access import audit_read

    ctx, err = await _ctx(request, slide_id)
    if err:
        return err
    items = await listing(ctx, request.scope["user"])
    await audit_read(request, ctx, "pathology.annotations_read", {"count": len(items)})
    return Response({"slide": ctx.id, "annotations": items}, media_type="application/json")


@get(BASE + "/list", opt={"permission": VIEW}, include_in_schema=False)
async def list_fragment(request: Request, slide_id: FromPath[int]) -> Template:
    """The list beside the viewer (``pathology/_annotations.html``), reloaded after each change."""
    from plugins.pathology_viewer.access import load_slide

    ctx = await load_slide(request, slide_id)
    items = await listing(ctx, request.scope["user"])
    return page(request, "pathology/_annotations.html", {"slide": ctx.slide, "annotations": items})


@post(BASE, opt={"permission": ANNOTATE}, status_code=201, operation_id="createSlideAnnotation",
      request_max_body_size=MAX_BODY, operation_class=operation(body=NEW_BODY),
      responses=problems(409, 422, s400="The body is not JSON, or not a JSON object."), **API)
async def create_annotation(request: Request, slide_id: Id) -> Response[SlideAnnotation]:
    """Annotate the slide."""
    from plugins.pathology_viewer.access import audit_read
    from plugins.pathology_viewer.tables import Annotation

    ctx, err = await _ctx(request, slide_id)
    if err:
        return err
    data, err = await _body(request, NEW_BODY)
    if err:
        return err
    try:
        kind, geometry, text = geo.validate(data.get("kind"), data.get("geometry"), data.get("text"),
                                            int(ctx.slide["width"]), int(ctx.slide["height"]))
    except geo.GeometryError as exc:
        return problem(422, str(exc))
    if await Annotation.count().where(Annotation.slide == ctx.id) >= MAX_PER_SLIDE:
        return problem(409, f"This slide already has {MAX_PER_SLIDE} annotations; delete some first.")
    actor = request.scope["user"]
    row = Annotation(slide=ctx.id, author=actor.user_id, kind=kind, geometry=json.dumps(geometry), text=text)
    await row.save()
    await audit_read(request, ctx, "pathology.annotation_created", {"annotation": row.id, "kind": kind})
    saved = await Annotation.select().where(Annotation.id == row.id).first()
    body = shape(saved, ctx.slide, actor=actor, may_edit=ctx.may_edit, names={actor.user_id: actor.name})
    return Response(body, status_code=201, media_type="application/json",
                    headers={"Location": f"/pathology/slides/{ctx.id}/annotations/{row.id}"})


async def _own(request: Request, slide_id: int, annotation_id: int):
    """(ctx, row) when the actor may change this annotation, else a problem response."""
    from plugins.pathology_viewer.tables import Annotation

    ctx, err = await _ctx(request, slide_id)
    if err:
        return None, None, err
    row = await Annotation.select().where((Annotation.id == annotation_id) & (Annotation.slide == ctx.id)).first()
    if row is None:
        return None, None, problem(404, "No such annotation on this slide.")
    actor = request.scope["user"]
    if row["author"] != actor.user_id and not ctx.may_edit:
        return None, None, problem(403, "Only its author, or an editor of the enrolling hospital, changes an annotation.")
    return ctx, row, None


@put(BASE + "/{annotation_id:int}", opt={"permission": ANNOTATE}, operation_id="changeSlideAnnotation",
     request_max_body_size=MAX_BODY, operation_class=operation(body=CHANGE_BODY),
     responses=problems(422, s400="The body is not JSON, or not a JSON object.",
                        s403="Only its author, or an editor of the enrolling hospital, changes an annotation; or the CSRF "
                             "token is missing or wrong."), **API)
async def change_annotation(request: Request, slide_id: Id, annotation_id: Id) -> Response[SlideAnnotation]:
    """Change the text and/or geometry (the kind stays)."""
    from plugins.pathology_viewer.access import audit_read
    from plugins.pathology_viewer.tables import Annotation

    ctx, row, err = await _own(request, slide_id, annotation_id)
    if err:
        return err
    data, err = await _body(request, CHANGE_BODY)
    if err:
        return err
    old_geometry = row["geometry"] if isinstance(row["geometry"], dict) else json.loads(row["geometry"] or "{}")
    try:
        _, geometry, text = geo.validate(row["kind"], data.get("geometry", old_geometry), data.get("text", row["text"]),
                                         int(ctx.slide["width"]), int(ctx.slide["height"]))
    except geo.GeometryError as exc:
        return problem(422, str(exc))
    await Annotation.update({Annotation.geometry: json.dumps(geometry), Annotation.text: text,
                             Annotation.updated_at: datetime.now(timezone.utc)}).where(Annotation.id == row["id"])
    await audit_read(request, ctx, "pathology.annotation_changed", {"annotation": row["id"]})
    saved = await Annotation.select().where(Annotation.id == row["id"]).first()
    actor = request.scope["user"]
    return Response(shape(saved, ctx.slide, actor=actor, may_edit=ctx.may_edit, names=await author_names([saved])),
                    media_type="application/json")


@delete(BASE + "/{annotation_id:int}", opt={"permission": ANNOTATE}, status_code=204, operation_id="deleteSlideAnnotation",
        responses=problems(s403="Only its author, or an editor of the enrolling hospital, deletes an annotation; or the "
                                "CSRF token is missing or wrong."), **API)
async def delete_annotation(request: Request, slide_id: Id, annotation_id: Id) -> Response[None]:
    """Delete an annotation (its author, or an editor of the enrolling hospital)."""
    from plugins.pathology_viewer.access import audit_read
    from plugins.pathology_viewer.tables import Annotation

    ctx, row, err = await _own(request, slide_id, annotation_id)
    if err:
        return err
    await Annotation.delete().where(Annotation.id == row["id"])
    await audit_read(request, ctx, "pathology.annotation_deleted", {"annotation": row["id"], "kind": row["kind"]})
    return Response(b"", status_code=204)


ROUTES = [list_annotations, list_fragment, create_annotation, change_annotation, delete_annotation]
