"""The research section's pages: projects, the cohort builder, views, exports; the coordinators'
review; the research tab of a patient's page (enrolling hospital).

Every page that touches research data asks ``_open`` first: the project must be the actor's (or
the actor the admin), approved by at least one ERN and not ended; the data is then limited to
the approved ERNs. Every query, view and export is written to ``ResearchLog`` against the project.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.web import page
from plugins.research import REVIEW, USE, builder, projects, query, stats
from plugins.research.query import DefinitionError, Scope

ROWS_SHOWN = 50


async def _open(request: Request, project_id: int) -> projects.Project:
    project = await projects.load(project_id)
    actor = request.scope["user"]
    if project is None or not projects.may_open(actor, project):
        raise NotFoundException("No such research project.")
    return project


def _usable(project: projects.Project) -> None:
    if project.expired:
        raise PermissionDeniedException(f"This project ended on {project.ends.isoformat()}: its data is closed. File a new project to go on.")
    if not project.usable:
        raise PermissionDeniedException("No ERN has approved this project yet: its data opens when a coordinator approves it.")


async def _ern_choices() -> list[dict]:
    from core.orgs.tables import Ern

    return await Ern.select(Ern.id, Ern.acronym, Ern.name).order_by(Ern.acronym)


@get("/research", opt={"permission": USE}, include_in_schema=False)
async def home(request: Request) -> Template:
    actor = request.scope["user"]
    mine = await projects.for_actor(actor)
    return page(request, "research/home.html", {"projects": mine, "today": date.today()})


@get("/research/projects/new", opt={"permission": USE}, include_in_schema=False)
async def new_project(request: Request) -> Template:
    return page(request, "research/project_form.html", {
        "values": {"ends": (date.today() + timedelta(days=365)).isoformat(), "erns": []}, "errors": {},
        "erns": await _ern_choices(), "limits": projects.LIMITS,
    })


@post("/research/projects", opt={"permission": USE}, include_in_schema=False)
async def file_project(request: Request) -> Template | Redirect:
    form = await request.form()
    values, errors = projects.validate(form)
    choices = await _ern_choices()
    if not errors and not {e["id"] for e in choices} >= set(values["erns"]):
        errors["erns"] = "Choose ERNs from the list."
    if errors:
        shown = {**values, "ends": values["ends"].isoformat() if values.get("ends") else str(form.get("ends", ""))}
        return page(request, "research/project_form.html", {"values": shown, "errors": errors, "erns": choices,
                                                           "limits": projects.LIMITS}, status_code=422)
    project_id = await projects.file_project(request.app.state.settings, request.scope["user"], values)
    await projects.tell_coordinators(request.app.state.settings, project_id, values["title"], values["erns"])
    from core.events import Event

    await request.app.state.host.events.emit(Event("research.project_filed", request.scope["user"].user_id, "research_project", str(project_id), {"erns": values["erns"]}))
    return Redirect(f"/research/projects/{project_id}", status_code=303)


async def _cohort(request: Request, project: projects.Project):
    """The definition asked for (a saved cohort, or the builder's parameters), with form state."""
    from plugins.research.tables import ResearchCohort

    params = dict(request.query_params)
    cohort_id = params.get("cohort", "")
    if cohort_id.isdigit():
        row = await ResearchCohort.select().where((ResearchCohort.id == int(cohort_id)) & (ResearchCohort.project == project.id)).first()
        if row is None:
            raise NotFoundException("No such cohort in this project.")
        params = builder.params_from(json.loads(row["definition"]))
    try:
        definition, combine, conditions = builder.definition_from(params)
        error = ""
    except DefinitionError as exc:
        combine, conditions = builder.conditions_from(params)
        definition, error = None, exc.detail
    return definition, combine, conditions, error


async def _workspace_context(request: Request, project: projects.Project) -> dict:
    from plugins.research.tables import ResearchCohort

    definition, combine, conditions, error = await _cohort(request, project)
    scope = Scope(project.approved_erns)
    k = await projects.k_for(scope.erns)
    count = None
    if definition is not None:
        count = await stats.total(definition, scope, k)
        await projects.log(project.id, request.scope["user"], "query", {"cohort": builder.describe(definition), "shown": count.display})
    saved = await ResearchCohort.select().where(ResearchCohort.project == project.id).order_by(ResearchCohort.name)
    from plugins.research.anonymise import protect_sum

    left_out = protect_sum(*(await query.excluded(scope)), k)
    return {
        "project": project, "definition": definition, "combine": combine, "conditions": conditions, "error": error,
        "count": count, "k": k, "fields": builder.FIELDS, "saved": saved, "query_string": _query_string(request),
        "outcomes": query.OUTCOMES, "classes": query.VARIANT_CLASSES, "described": builder.describe(definition) if definition else "",
        "blank_rows": max(1, 3 - len(conditions)), "max_conditions": builder.MAX_CONDITIONS, "left_out": left_out,
    }


def _query_string(request: Request) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "cohort" or v.isdigit()])


@get("/research/projects/{project_id:int}", opt={"permission": USE}, include_in_schema=False)
async def workspace(request: Request, project_id: FromPath[int]) -> Template:
    project = await _open(request, project_id)
    if not project.usable:
        return page(request, "research/project_waiting.html", {"project": project})
    ctx = await _workspace_context(request, project)
    return page(request, "research/workspace.html", ctx, fragment="research/_count.html",
                status_code=422 if ctx["error"] else 200)


@post("/research/projects/{project_id:int}/cohorts", opt={"permission": USE}, include_in_schema=False)
async def save_cohort(request: Request, project_id: FromPath[int]) -> Template | Redirect:
    from plugins.research.tables import ResearchCohort

    project = await _open(request, project_id)
    _usable(project)
    form = await request.form()
    name = str(form.get("name", "")).strip()
    try:
        definition, _, _ = builder.definition_from(form)
        problem = "" if name and len(name) <= 120 else "Give the cohort a name (at most 120 characters)."
    except DefinitionError as exc:
        problem = exc.detail
    if problem:
        ctx = await _workspace_context(request, project)
        ctx["save_error"] = problem
        return page(request, "research/workspace.html", ctx, status_code=422)
    async with ResearchCohort._meta.db.transaction():
        row = (await ResearchCohort.insert(ResearchCohort(
            project=project.id, name=name, definition=json.dumps(definition, sort_keys=True), created_by=request.scope["user"].user_id,
        )).returning(ResearchCohort.id))[0]
        await projects.log(project.id, request.scope["user"], "cohort.saved", {"cohort": row["id"], "definition": builder.describe(definition)})
    return Redirect(f"/research/projects/{project.id}?cohort={row['id']}", status_code=303)


async def _usable_cohort(request: Request, project_id: int) -> tuple[projects.Project, dict, int]:
    """An open project, the cohort asked for (a 400 page saying what to change if it is bad) and its k."""
    project = await _open(request, project_id)
    _usable(project)
    definition, _, _, error = await _cohort(request, project)
    if definition is None:
        raise DefinitionError(error)
    return project, definition, await projects.k_for(project.approved_erns)


@get("/research/projects/{project_id:int}/views", opt={"permission": USE}, include_in_schema=False)
async def views_page(request: Request, project_id: FromPath[int]) -> Template:
    from plugins.research import exports

    project, definition, k = await _usable_cohort(request, project_id)
    scope = Scope(project.approved_erns)
    total = await stats.total(definition, scope, k)
    displays = await exports.displays(request.app.state.host, definition, scope)
    from plugins.research.projection import research_fields

    titles = {f.name: f.description for _, f in await research_fields(request.app.state.host)}
    charts = await stats.charts(definition, scope, k, displays, titles)
    table = await exports.anonymised(request.app.state.host, request.app.state.settings, project, definition, k)
    await projects.log(project.id, request.scope["user"], "view", {"cohort": builder.describe(definition), "rows": len(table.rows)})
    return page(request, "research/views.html", {
        "project": project, "charts": charts, "total": total, "k": k, "table": table, "rows_shown": ROWS_SHOWN,
        "described": builder.describe(definition), "query_string": _query_string(request),
    })


@get("/research/projects/{project_id:int}/export", opt={"permission": USE}, include_in_schema=False)
async def export_preview(request: Request, project_id: FromPath[int]) -> Template:
    from plugins.research import exports

    project, definition, k = await _usable_cohort(request, project_id)
    table = await exports.anonymised(request.app.state.host, request.app.state.settings, project, definition, k)
    await projects.log(project.id, request.scope["user"], "export.preview", {"cohort": builder.describe(definition), "rows": len(table.rows)})
    return page(request, "research/export.html", {
        "project": project, "table": table, "k": k, "kinds": exports.KINDS, "described": builder.describe(definition),
        "query_string": _query_string(request), "definition_json": json.dumps(definition, sort_keys=True),
    })


@post("/research/projects/{project_id:int}/export", opt={"permission": USE}, include_in_schema=False, status_code=200)
async def export_download(request: Request, project_id: FromPath[int]) -> Response[bytes]:
    from plugins.research import exports

    project = await _open(request, project_id)
    _usable(project)
    form = await request.form()
    kind = str(form.get("kind", ""))
    if kind not in exports.KINDS:
        raise DefinitionError("Choose what to export.")
    definition = query.parse_definition(str(form.get("definition", "")))
    k = await projects.k_for(project.approved_erns)
    body, filename = await exports.export(request.app.state.host, request.app.state.settings, request.scope["user"], project,
                                          definition, k, kind)
    from core.events import Event

    await request.app.state.host.events.emit(Event("research.exported", request.scope["user"].user_id, "research_project", str(project.id), {"kind": kind}))
    return Response(body, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


# --- coordinators --------------------------------------------------------------------------------

@get("/research/review", opt={"permission": REVIEW}, include_in_schema=False)
async def review(request: Request) -> Template:
    from plugins.research import exports
    from plugins.research.tables import ResearchProject, ResearchProjectErn, ResearchSetting

    actor = request.scope["user"]
    erns = projects.review_erns(actor)
    query_ = ResearchProjectErn.select(
        ResearchProjectErn.id, ResearchProjectErn.status, ResearchProjectErn.reason, ResearchProjectErn.decided_at,
        ResearchProjectErn.ern, ResearchProjectErn.ern.acronym.as_alias("acronym"), ResearchProjectErn.project,
    ).order_by(ResearchProjectErn.id, ascending=False)
    if erns is not None:
        query_ = query_.where(ResearchProjectErn.ern.is_in(sorted(erns) or [-1]))
    rows = await query_
    project_rows = {p["id"]: p for p in await ResearchProject.select().where(ResearchProject.id.is_in([r["project"] for r in rows] or [-1]))}
    from core.identity.tables import User

    people = {u["id"]: u for u in await User.select(User.id, User.name, User.email).where(User.id.is_in([p["researcher"] for p in project_rows.values()] or [-1]))}
    pending = [dict(r, project_row=project_rows[r["project"]], researcher=people.get(project_rows[r["project"]]["researcher"])) for r in rows if r["status"] == "pending"]
    decided = [dict(r, project_row=project_rows[r["project"]], researcher=people.get(project_rows[r["project"]]["researcher"])) for r in rows if r["status"] != "pending"]
    approved_projects = sorted({r["project"] for r in rows if r["status"] == "approved"})
    export_rows = await exports.exports_with_withdrawals(approved_projects)
    settings_rows = {r["ern"]: r["k"] for r in await ResearchSetting.select()}
    from core.orgs.tables import Ern

    my_erns = await Ern.select(Ern.id, Ern.acronym).order_by(Ern.acronym) if erns is None else \
        await Ern.select(Ern.id, Ern.acronym).where(Ern.id.is_in(sorted(erns) or [-1])).order_by(Ern.acronym)
    return page(request, "research/review.html", {
        "pending": pending, "decided": decided, "exports": export_rows, "people": people,
        "k_rows": [{"id": e["id"], "acronym": e["acronym"], "k": settings_rows.get(e["id"], projects.DEFAULT_K)} for e in my_erns],
        "min_k": projects.MIN_K, "max_k": projects.MAX_K, "errors": {},
    })


@post("/research/review/{decision_id:int}", opt={"permission": REVIEW}, include_in_schema=False)
async def decide(request: Request, decision_id: FromPath[int]) -> Redirect:
    form = await request.form()
    verdict = str(form.get("decision", ""))
    reason = str(form.get("reason", "")).strip()[: projects.LIMITS["reason"]]
    if verdict not in ("approve", "reject"):
        raise DefinitionError("Choose approve or reject.")
    if verdict == "reject" and not reason:
        raise DefinitionError("Give the researcher a reason when you reject a project.")
    decided = await projects.decide(request.scope["user"], decision_id, verdict == "approve", reason)
    if decided is None:
        raise NotFoundException("No such pending decision for your ERN.")
    from core.orgs.tables import Ern

    acronym = (await Ern.select(Ern.acronym).where(Ern.id == decided["ern"]).first())["acronym"]
    await projects.tell_researcher(request.app.state.settings, decided["project"], acronym, decided["status"], reason)
    from core.events import Event

    await request.app.state.host.events.emit(Event("research.project_decided", request.scope["user"].user_id, "research_project",
                                                   str(decided["project"]), {"ern": decided["ern"], "status": decided["status"]}))
    return Redirect("/research/review", status_code=303)


@post("/research/review/k", opt={"permission": REVIEW}, include_in_schema=False)
async def set_k(request: Request) -> Redirect:
    from plugins.research.tables import ResearchSetting

    form = await request.form()
    try:
        ern_id, k = int(str(form.get("ern", ""))), int(str(form.get("k", "")))
    except ValueError:
        raise DefinitionError("Give k as a whole number.") from None
    if not projects.MIN_K <= k <= projects.MAX_K:
        raise DefinitionError(f"k must be between {projects.MIN_K} and {projects.MAX_K}.")
    if not projects.may_review(request.scope["user"], ern_id):
        raise PermissionDeniedException("You set k only for your own ERN.")
    async with ResearchSetting._meta.db.transaction():
        if await ResearchSetting.exists().where(ResearchSetting.ern == ern_id):
            await ResearchSetting.update({ResearchSetting.k: k}).where(ResearchSetting.ern == ern_id)
        else:
            await ResearchSetting.insert(ResearchSetting(ern=ern_id, k=k))
        await projects.log(None, request.scope["user"], "k.changed", {"ern": ern_id, "k": k})
    return Redirect("/research/review#k", status_code=303)


# --- the patient's page (enrolling hospital) ------------------------------------------------------

@get("/research/patients/{pseudonym:str}", opt={"permission": "patients.view"}, include_in_schema=False)
async def patient_section(request: Request, pseudonym: FromPath[str]) -> Template:
    from core.patients.access import current_consents, load_patient
    from core.patients.records import audit
    from plugins.research.projection import export_for_gdpr

    patient = await load_patient(request, pseudonym, allow_restricted=True)
    consents = (await current_consents([patient["id"]])).get(patient["id"], {})
    held = (await export_for_gdpr(patient["id"]))["research"]
    included = await _included_now(patient["id"])
    await audit(request, "research.status_viewed", patient, {"included": included})
    return page(request, "research/patient.html", {
        "patient": patient, "included": included, "registry": consents.get("registry"), "exports": held["exports"],
        "restricted": patient.get("restricted"),
    }, fragment="research/_patient.html")


async def _included_now(patient_id: int) -> bool:
    """The same rule every research query applies (``query.INCLUDED``), for one patient."""
    from plugins.research.tables import ResearchSubject

    rows = await ResearchSubject.raw(
        f"SELECT COUNT(*) AS n {query.FROM} WHERE {query.INCLUDED} AND s.patient = {{}}", *query.INCLUDED_ARGS, patient_id)
    return bool(rows[0]["n"])


ROUTES = [home, new_project, file_project, workspace, save_cohort, views_page, export_preview, export_download,
          review, decide, set_k, patient_section]
