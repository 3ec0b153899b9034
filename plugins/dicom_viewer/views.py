"""Pages and routes of the imaging section: the patient section (studies with thumbnails, upload with
per-file results, the review queue), the upload, the review/masking form, the panel section, the study
page, the de-identification report, deletion, and the series JSON the viewer reads.

Every change is a form post; an htmx post gets the re-rendered section, a plain post a redirect, an
upload asked for JSON (``Accept: application/json``, the progress-bar script; STOW-RS is in
``dicomweb``) gets JSON. Bad input is a clear 4xx and changes nothing. Reads and changes are audited
under the patient's pseudonym.
"""

from __future__ import annotations

import re
from typing import TypedDict

from anyio import to_thread
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.events import Event
from core.permissions import allowed
from core.openapi import Id
from core.web import is_fragment_request, page
from plugins.dicom_viewer import access, files, render, store
from plugins.dicom_viewer.access import REVIEW, UPLOAD, VIEW

#: Largest request body the upload route lets Litestar take; the real limit (CPMS_DICOM_MAX_UPLOAD_BYTES)
#: is counted while streaming.
HARD_MAX_BODY = 64 * 1024**3
MAX_RECTS = 50
RECT_LINE = re.compile(r"^\s*(-?\d{1,6})[\s,;]+(-?\d{1,6})[\s,;]+(\d{1,6})[\s,;]+(\d{1,6})\s*$")
STATUS_TEXT = {
    files.OK: "stored (de-identified)", files.NOT_DICOM: "not a DICOM file", files.CORRUPT: "damaged or unreadable",
    files.DUPLICATE: "already stored", files.MISSING: "missing from the media", files.SKIPPED: "skipped",
    store.REFUSED: "archive refused",
}


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _problem(status: int, title: str, detail: str) -> Response:
    return Response({"type": "about:blank", "title": title, "status": status, "detail": detail},
                    status_code=status, media_type="application/problem+json")


async def _patient(request: Request, pseudonym: str, permission: str = "patients.view") -> dict:
    from core.patients.access import load_patient

    return await load_patient(request, pseudonym, permission)


async def _audit_patient(request: Request, action: str, patient: dict, detail: dict | None = None) -> None:
    from core.patients.records import audit

    await audit(request, action, patient, detail)


# --- what pages show ----------------------------------------------------------------------------


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if value and len(value) == 8 and value.isdecimal() else ""


async def studies_of(patient_id: int, *, enrolling: bool) -> list[dict]:
    """The patient's studies with their series; panel members' view holds reviewed instances only
    (a series or study with none left is not shown). Each series names a thumbnail instance."""
    from plugins.dicom_viewer.tables import Instance, Series, Study

    studies = await Study.select().where(Study.patient == patient_id).order_by(Study.id, ascending=False)
    if not studies:
        return []
    series = await Series.select().where(Series.study.is_in([s["id"] for s in studies])).order_by(Series.number).order_by(Series.id)
    instances = await Instance.select(
        Instance.id, Instance.series, Instance.number, Instance.frames, Instance.needs_review, Instance.rows,
        Instance.columns,
    ).where(Instance.series.is_in([s["id"] for s in series]) if series else Instance.id == -1).order_by(
        Instance.number).order_by(Instance.id)
    by_series: dict[int, list[dict]] = {}
    for i in instances:
        if enrolling or not i["needs_review"]:
            by_series.setdefault(i["series"], []).append(i)
    out = []
    for st in studies:
        rows = []
        for se in series:
            if se["study"] != st["id"]:
                continue
            insts = by_series.get(se["id"], [])
            if not insts:
                continue
            rows.append({
                "id": se["id"], "modality": se["modality"], "description": se["description"], "number": se["number"],
                "instances": len(insts), "frames": sum(i["frames"] or 1 for i in insts),
                "pending": sum(1 for i in insts if i["needs_review"]),
                "thumbnail": insts[len(insts) // 2]["id"],
                "size": f'{insts[0]["columns"]} × {insts[0]["rows"]}',
            })
        if not rows:
            continue
        out.append({"id": st["id"], "date": _date(st["study_date"]), "description": st["description"],
                    "modalities": st["modalities"].replace(",", ", "), "series": rows,
                    "pending": sum(r["pending"] for r in rows), "created_at": st["created_at"]})
    return out


async def review_queue(patient_id: int) -> list[dict]:
    from plugins.dicom_viewer.tables import Instance

    return await Instance.select(
        Instance.id, Instance.number, Instance.rows, Instance.columns, Instance.frames, Instance.sop_class,
        Instance.series.modality.as_alias("modality"), Instance.series.study.as_alias("study"),
    ).where((Instance.series.study.patient == patient_id) & (Instance.needs_review == True)).order_by(  # noqa: E712
        Instance.id)


async def _last_upload(patient_id: int, user_id: int | None) -> dict | None:
    from plugins.dicom_viewer.tables import Upload

    row = await Upload.select().where((Upload.patient == patient_id) & (Upload.uploaded_by == user_id)).order_by(
        Upload.id, ascending=False).first()
    if row is None:
        return None
    return {"id": row["id"], "results": _with_text(store._json(row["results"], [])), "created_at": row["created_at"]}


def _with_text(results: list[dict]) -> list[dict]:
    return [{**r, "status_text": STATUS_TEXT.get(r.get("status"), r.get("status"))} for r in results]


async def _section(request: Request, patient: dict, *, errors: list[str] | None = None, message: str = "",
                   status: int = 200, outcome: list[dict] | None = None) -> Template:
    actor = request.scope["user"]
    may_upload = allowed(actor, UPLOAD) and not patient.get("restricted")
    may_review = allowed(actor, REVIEW) and not patient.get("restricted")
    ctx = {
        "patient": patient, "studies": await studies_of(patient["id"], enrolling=True),
        "queue": await review_queue(patient["id"]) if may_review else [],
        "may_upload": may_upload, "may_review": may_review, "errors": errors or [], "message": message,
        "outcome": _with_text(outcome) if outcome is not None else None,
        "base": f"/dicom/patients/{patient['pseudonym']}",
        "max_upload_mb": store.config(request.app.state.settings).max_upload_bytes // 1024**2,
    }
    return page(request, "dicom/section.html", ctx, fragment="dicom/_section.html", status_code=status)


# --- the patient section and the upload ---------------------------------------------------------


@get("/dicom/patients/{pseudonym:str}", opt={"permission": VIEW}, include_in_schema=False)
async def patient_section(request: Request, pseudonym: FromPath[str]) -> Template:
    patient = await _patient(request, pseudonym)
    store.remember_settings(request.app.state.settings)
    await _audit_patient(request, "dicom.list", patient)
    return await _section(request, patient)


@get("/dicom/patients/{pseudonym:str}/upload", opt={"permission": UPLOAD}, include_in_schema=False)
async def upload_form(request: Request, pseudonym: FromPath[str]) -> Template:
    patient = await _patient(request, pseudonym, UPLOAD)
    return _upload_page(request, patient)


def _upload_page(request: Request, patient: dict, errors: list[str] | None = None, status: int = 200,
                 outcome: list[dict] | None = None) -> Template:
    return page(request, "dicom/upload.html", {
        "patient": patient, "errors": errors or [], "outcome": _with_text(outcome) if outcome is not None else None,
        "base": f"/dicom/patients/{patient['pseudonym']}",
        "max_upload_mb": store.config(request.app.state.settings).max_upload_bytes // 1024**2,
    }, status_code=status)


async def ingest_request(request: Request, patient: dict) -> store.Outcome:
    """Receive, de-identify and store one upload; the outcome, or IngestError with nothing stored."""
    from core.identity.login import client_address

    settings = request.app.state.settings
    store.remember_settings(settings)
    folder = await to_thread.run_sync(store.new_folder, settings)
    try:
        got = await store.receive(request, settings, folder)
        outcome = await store.ingest(
            settings, patient, got, request.scope["user"].user_id,
            audit=lambda done: _audit_patient(request, "dicom.upload", patient, {
                "upload": done.upload_id, "stored": done.stored, "counts": done.counts}),
        )
    finally:
        # Synchronous on purpose: when the request is cancelled (the client went away, the server
        # stops) an await here would be cancelled too, leaving the original files behind.
        store.discard(folder)
    if outcome.stored:
        await request.app.state.host.events.emit(Event(
            "dicom.study_uploaded", request.scope["user"].user_id, "patient", patient["pseudonym"],
            {"upload": outcome.upload_id, "instances": outcome.stored}, client_address(request)))
    return outcome


@post("/dicom/patients/{pseudonym:str}/uploads", opt={"permission": UPLOAD}, include_in_schema=False,
      request_max_body_size=HARD_MAX_BODY)
async def upload(request: Request, pseudonym: FromPath[str]) -> Response | Template | Redirect:
    patient = await _patient(request, pseudonym, UPLOAD)
    try:
        outcome = await ingest_request(request, patient)
    except store.IngestError as exc:
        if _wants_json(request):
            return _problem(exc.status, "The upload was not stored", exc.message)
        if is_fragment_request(request):
            return await _section(request, patient, errors=[exc.message], status=exc.status)
        return _upload_page(request, patient, [exc.message], exc.status)
    status = 201 if outcome.stored else 422
    if _wants_json(request):
        return Response({
            "upload": outcome.upload_id, "stored": outcome.stored, "counts": outcome.counts,
            "results": _with_text(outcome.results), "studies": [f"/dicom/studies/{s}" for s in outcome.studies],
            "section": f"/dicom/patients/{pseudonym}", "url": f"/dicom/uploads/{outcome.upload_id}",
        }, status_code=status)
    message = f"{outcome.stored} instance{'s' if outcome.stored != 1 else ''} stored, de-identified."
    if is_fragment_request(request):
        return await _section(request, patient, message=message, outcome=outcome.results,
                              status=200 if outcome.stored else 422)
    return Redirect(f"/dicom/uploads/{outcome.upload_id}", status_code=303)


@get("/dicom/uploads/{upload_id:int}", opt={"permission": UPLOAD}, include_in_schema=False)
async def upload_result(request: Request, upload_id: FromPath[int]) -> Template:
    """An upload's per-file outcome (positions, not the file names: those are never kept)."""
    from core.patients.tables import Patient
    from plugins.dicom_viewer.tables import Upload

    row = await Upload.select().where(Upload.id == upload_id).first()
    patient = await Patient.select(Patient.pseudonym).where(Patient.id == row["patient"]).first() if row else None
    if patient is None:
        raise NotFoundException("No such upload.")
    patient = await _patient(request, patient["pseudonym"], UPLOAD)
    return page(request, "dicom/upload_result.html", {
        "patient": patient, "upload": {"id": row["id"], "results": _with_text(store._json(row["results"], [])),
                                       "created_at": row["created_at"]},
        "base": f"/dicom/patients/{patient['pseudonym']}",
    })


# --- review and masking ------------------------------------------------------------------------


def parse_rects(text: str, columns: int, rows: int) -> list[tuple[int, int, int, int]]:
    """Rectangles ``x y width height`` one per line (commas allowed), inside the image; ValueError
    with the line number otherwise."""
    rects = []
    for n, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        m = RECT_LINE.match(line)
        if not m:
            raise ValueError(f"Line {n}: write x y width height, four whole numbers.")
        x, y, w, h = (int(v) for v in m.groups())
        if w <= 0 or h <= 0:
            raise ValueError(f"Line {n}: width and height must be above 0.")
        if x < 0 or y < 0 or x + w > columns or y + h > rows:
            raise ValueError(f"Line {n}: the rectangle leaves the image ({columns} × {rows} pixels).")
        rects.append((x, y, w, h))
    if len(rects) > MAX_RECTS:
        raise ValueError(f"At most {MAX_RECTS} rectangles at once.")
    return rects


async def _review_ctx(request: Request, instance_id: int):
    ctx = await access.load_instance(request, instance_id, edit=True)
    if not allowed(request.scope["user"], REVIEW):
        raise PermissionDeniedException("Reviewing images needs the dicom.review permission.")
    return ctx


def _review_page(request: Request, ctx, *, errors: list[str] | None = None, rects: str = "", status: int = 200,
                 problem: str | None = None):
    return page(request, "dicom/review.html", {
        "patient": ctx.patient, "instance": ctx.instance, "series": ctx.series, "study": ctx.study,
        "errors": errors or [], "rects": rects, "masked": store._json(ctx.instance["masked"], []),
        "base": f"/dicom/patients/{ctx.patient['pseudonym']}", "problem": problem,
        "may_delete": allowed(request.scope["user"], UPLOAD),
    }, status_code=status)


def _unviewable(ctx, problem: str) -> list[str]:
    return ["Not released to panels: this image cannot be shown here, so no one could check it for burned-in "
            "text. Keep it private, or delete the study."]


@get("/dicom/instances/{instance_id:int}/review", opt={"permission": REVIEW}, include_in_schema=False)
async def review_form(request: Request, instance_id: FromPath[int]) -> Template:
    from plugins.dicom_viewer import frames

    ctx = await _review_ctx(request, instance_id)
    problem = await frames.pixel_problem(ctx.instance, request.app.state.settings)
    await access.audit_read(request, ctx, "dicom.view", {"via": "review"})
    return _review_page(request, ctx, problem=problem)


@post("/dicom/instances/{instance_id:int}/review", opt={"permission": REVIEW}, include_in_schema=False)
async def review(request: Request, instance_id: FromPath[int]) -> Template | Redirect:
    from core.identity.login import client_address

    from plugins.dicom_viewer import frames

    ctx = await _review_ctx(request, instance_id)
    form = await request.form()
    text = str(form.get("rects", ""))[:4000]
    inst = ctx.instance
    # An image that cannot be shown was not seen: it is never released (nor masked blind).
    problem = await frames.pixel_problem(inst, request.app.state.settings)
    if problem is not None:
        return _review_page(request, ctx, errors=_unviewable(ctx, problem), problem=problem, status=409)
    try:
        rects = parse_rects(text, inst["columns"], inst["rows"])
    except ValueError as exc:
        return _review_page(request, ctx, errors=[str(exc)], rects=text, status=422)
    if str(form.get("confirm", "")) != "yes":
        return _review_page(request, ctx, rects=text, status=422, errors=[
            "Tick the box to confirm that no identifying text remains visible (after masking)."])
    try:
        await store.review(request.app.state.settings, inst, rects, request.scope["user"].user_id)
    except store.Unviewable as exc:
        return _review_page(request, ctx, errors=_unviewable(ctx, str(exc)), problem=str(exc), status=409)
    except (ValueError, NotImplementedError, RuntimeError) as exc:
        return _review_page(request, ctx, errors=[f"These pixels cannot be masked here ({type(exc).__name__})."],
                            rects=text, status=422)
    await access.audit_read(request, ctx, "dicom.review", {"masked": len(rects)})
    await request.app.state.host.events.emit(Event(
        "dicom.reviewed", request.scope["user"].user_id, "patient", ctx.patient["pseudonym"],
        {"instance": inst["id"], "masked": len(rects)}, client_address(request)))
    if is_fragment_request(request):
        return await _section(request, ctx.patient, message="Reviewed: now visible to panels.")
    return Redirect(f"/dicom/patients/{ctx.patient['pseudonym']}", status_code=303)


# --- studies: page, report, deletion ---------------------------------------------------------------


async def load_study(request: Request, study_id: int, *, edit: bool = False) -> tuple[dict, dict, tuple]:
    """(study, patient, (enrolling, may_edit, panel_id)) or 404 like ``access``; a panel member must
    see at least one reviewed instance of it."""
    from core.patients.tables import Patient
    from plugins.dicom_viewer.tables import Instance, Study

    actor = request.scope.get("user")
    study = await Study.select().where(Study.id == study_id).first() if study_id > 0 else None
    patient = await Patient.select(
        Patient.id, Patient.pseudonym, Patient.nickname, Patient.hcp, Patient.erased_at, Patient.restricted,
    ).where(Patient.id == study["patient"]).first() if study else None
    role = await access.patient_role(actor, patient)
    if role is None or (not role[0] and not await Instance.exists().where(
            (Instance.series.study == study_id) & (Instance.needs_review == False))):  # noqa: E712
        raise NotFoundException(access.NOT_FOUND)
    if edit:
        if not role[0] or not allowed(actor, UPLOAD):
            raise PermissionDeniedException("Only the enrolling hospital changes these images.")
        if patient["restricted"]:
            raise HTTPException(status_code=409, detail="Processing of this record is restricted at the patient's "
                                                        "request (GDPR); it cannot be changed.")
    return study, patient, role


async def _audit_study(request: Request, study: dict, patient: dict, role: tuple, action: str,
                       detail: dict | None = None) -> None:
    from core.audit.chain import record
    from core.identity.login import client_address

    extra = {"study": study["id"]}
    if role[2] is not None:
        extra["panel"] = role[2]
    await record(action, patient_pseudonym=patient["pseudonym"], patient_hcp=patient["hcp"],
                 actor=request.scope.get("user"), address=client_address(request), detail={**extra, **(detail or {})})


@get("/dicom/studies/{study_id:int}", opt={"permission": VIEW}, include_in_schema=False)
async def study_page(request: Request, study_id: FromPath[int]) -> Template:
    study, patient, role = await load_study(request, study_id)
    studies = [s for s in await studies_of(patient["id"], enrolling=role[0]) if s["id"] == study_id]
    await _audit_study(request, study, patient, role, "dicom.study")
    return page(request, "dicom/study.html", {
        "study": studies[0] if studies else {"id": study_id, "series": []}, "enrolling": role[0],
        "may_edit": role[1], "patient": {"pseudonym": patient["pseudonym"], "nickname": patient["nickname"]},
        "panel_id": role[2],
    })


@get("/dicom/studies/{study_id:int}/report", opt={"permission": VIEW}, include_in_schema=False)
async def report_page(request: Request, study_id: FromPath[int]) -> Template:
    """What de-identification removed, blanked, replaced, remapped or shifted, per attribute, with the
    number of instances (no values: they are gone)."""
    study, patient, role = await load_study(request, study_id)
    report = store._json(study["report"], {})
    await _audit_study(request, study, patient, role, "dicom.report")
    return page(request, "dicom/report.html", {
        "study": {"id": study["id"], "date": _date(study["study_date"]), "modalities": study["modalities"]},
        "rows": report.get("rows", []), "instances": report.get("instances", 0),
        "dates": {"shift": "shifted by a secret per-patient offset (Retain Longitudinal Temporal Information, "
                           "Modified Dates)", "remove": "removed"}.get(report.get("dates"), "—"),
        "patient": {"pseudonym": patient["pseudonym"], "nickname": patient["nickname"]}, "enrolling": role[0],
    })


@get("/dicom/studies/{study_id:int}/delete", opt={"permission": UPLOAD}, include_in_schema=False)
async def delete_confirm(request: Request, study_id: FromPath[int]) -> Template:
    study, patient, _ = await load_study(request, study_id, edit=True)
    return page(request, "dicom/delete.html", {"study": study, "patient": patient, "errors": []})


@post("/dicom/studies/{study_id:int}/delete", opt={"permission": UPLOAD}, include_in_schema=False)
async def delete(request: Request, study_id: FromPath[int]) -> Template | Redirect:
    from core.identity.login import client_address

    study, patient, role = await load_study(request, study_id, edit=True)
    form = await request.form()
    if str(form.get("confirm", "")) != "yes":
        return page(request, "dicom/delete.html", {"study": study, "patient": patient, "errors": [
            "Tick the box to confirm that this study, its images and annotations are deleted."]}, status_code=422)
    await store.delete_study(request.app.state.settings, study)  # its cached frames and datasets too
    await _audit_study(request, study, patient, role, "dicom.delete")
    await request.app.state.host.events.emit(Event(
        "dicom.study_deleted", request.scope["user"].user_id, "patient", patient["pseudonym"],
        {"study": study_id}, client_address(request)))
    return Redirect(f"/dicom/patients/{patient['pseudonym']}", status_code=303)


# --- the panel section -------------------------------------------------------------------------


@get("/dicom/panels/{panel_id:int}", opt={"permission": VIEW}, include_in_schema=False)
async def panel_section(request: Request, panel_id: FromPath[int]) -> Template:
    """Pseudonymous: the reviewed studies a participant may open."""
    from core.panels.access import audit, is_accepted_member, load_panel

    ctx = await load_panel(request, panel_id)
    actor = request.scope["user"]
    participant = ctx.sees_identity or await is_accepted_member(actor, ctx.patient["id"])
    studies = await studies_of(ctx.patient["id"], enrolling=False) if participant else []
    pending = 0
    if ctx.sees_identity:
        pending = sum(s["pending"] for s in await studies_of(ctx.patient["id"], enrolling=True))
    await audit(request, ctx, "dicom.list", {"studies": len(studies)})
    return Template("dicom/_panel.html", context={
        "studies": studies, "panel_id": panel_id, "participant": participant, "pending": pending,
    })


# --- JSON for the viewer -----------------------------------------------------------------------


def instance_json(i: dict) -> dict:
    """What the viewer needs of an instance: size, spacing, frames and a default window."""
    return {
        "id": i["id"], "number": i["number"], "frames": i["frames"], "rows": i["rows"], "columns": i["columns"],
        "spacing": [i["spacing_row"], i["spacing_col"]] if i["spacing_row"] else None,
        "needs_review": i["needs_review"], "window": None,
        "rendered": f"/dicom/instances/{i['id']}/frames/{{frame}}/rendered",
        "thumbnail": f"/dicom/instances/{i['id']}/thumbnail.jpg",
    }


class SeriesOut(TypedDict):
    id: int
    modality: str
    description: str
    number: int | None
    study: int


class InstanceOut(TypedDict):
    id: int
    number: int | None
    frames: int
    rows: int
    columns: int
    #: Pixel spacing (row, column) in mm, when the file gives it.
    spacing: list[float] | None
    needs_review: bool
    #: The default window (center, width), when the file gives one.
    window: list[float] | None
    rendered: str
    thumbnail: str


class SeriesInstances(TypedDict):
    series: SeriesOut
    #: Window presets by name: [center, width].
    presets: dict[str, list[float]]
    instances: list[InstanceOut]


@get("/dicom/series/{series_id:int}/instances", opt={"permission": VIEW}, operation_id="dicomSeriesInstances",
     tags=["DICOM viewer"])
async def series_instances(request: Request, series_id: Id) -> Response[SeriesInstances]:
    """The visible instances of a series in order, each with its default window (the file's Window
    Center/Width of the first frame, when it has one)."""
    ctx = await access.load_series(request, series_id)
    rows = await access.visible_instances(ctx)
    out = []
    settings = request.app.state.settings
    for i in rows:
        item = instance_json(i)
        # The default window needs the header: read for small series, else for the first instance only.
        try:
            ds = await store.dataset(i, settings) if len(rows) <= 64 or i is rows[0] else None
            window = render.file_window(ds) if ds is not None else None
        except Exception:  # noqa: BLE001 - a missing or odd file only loses the default window
            window = None
        item["window"] = [window[0], window[1]] if window else None
        out.append(item)
    return Response({
        "series": {"id": ctx.series["id"], "modality": ctx.series["modality"], "description": ctx.series["description"],
                   "number": ctx.series["number"], "study": ctx.study["id"]},
        "presets": {k: list(v) for k, v in render.PRESETS.items()},
        "instances": out,
    }, headers={"Cache-Control": "private, no-cache"})


ROUTES = [patient_section, upload_form, upload, upload_result, review_form, review, study_page, report_page,
          delete_confirm, delete, panel_section, series_instances]
