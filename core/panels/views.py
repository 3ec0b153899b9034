"""Creating and editing a panel, its page, and the lists (my panels, the ERN queue)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated

from litestar import Request, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from core.panels import shares
from core.panels.access import KINDS, READ_ONLY, STATUSES, URGENCIES, PanelCtx, audit, check_revision, load_panel, require
from core.panels.templates_store import definition_of
from core.patients import consent_rules
from core.patients.access import PatientRef, current_consents, has_care_consent, load_patient
from core.web import page, visible

PER_PAGE = 50
#: Invitations listed above "my panels" (the newest; the rest are in the list, status filter).
INVITATIONS_SHOWN = 20


@dataclass(frozen=True)
class PanelRef:
    """What plugins receive for a panel (``panel_sections``)."""

    id: int
    status: str
    ern_id: int
    patient: PatientRef

    def __str__(self) -> str:
        return str(self.id)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- the create / edit form ------------------------------------------------------------------


async def _erns_for(actor, patient: dict) -> list[dict]:
    """ERNs the panel may go to: the patient's, where the actor may create panels."""
    from core.patients.tables import PatientErn

    rows = await PatientErn.select(PatientErn.ern, PatientErn.ern.acronym.as_alias("acronym")).where(PatientErn.patient == patient["id"])
    return [{"id": r["ern"], "acronym": r["acronym"]} for r in rows if actor.can("panels.create", r["ern"])]


def _basics(form) -> tuple[dict, dict]:
    values = {
        "title": str(form.get("title", "") or "").strip(),
        "question": str(form.get("question", "") or "").strip(),
        "kind": str(form.get("kind", "") or ""),
        "urgency": str(form.get("urgency", "") or ""),
        "specialties": str(form.get("specialties", "") or "").strip(),
    }
    errors = {}
    if not 1 <= len(values["title"]) <= 200:
        errors["title"] = "Give the panel a short title (at most 200 characters), without the patient's name."
    if not 1 <= len(values["question"]) <= 5000:
        errors["question"] = "State the clinical question (at most 5,000 characters)."
    if values["kind"] not in KINDS:
        errors["kind"] = "Choose the type of panel."
    if values["urgency"] not in URGENCIES:
        errors["urgency"] = "Choose the urgency."
    if len(values["specialties"]) > 300:
        errors["specialties"] = "At most 300 characters."
    return values, errors


async def _form_context(
    request: Request, patient: dict, *, panel: dict | None, ern_id: int | None, values=None, errors=None, answers=None, answer_errors=None, chosen=None,
) -> dict:
    from core.panels.templates_store import current_template
    from core.patients.clinical import code_search_urls

    actor = request.scope["user"]
    erns = await _erns_for(actor, patient)
    if panel is not None:
        definition = await definition_of(panel["form_template"])
        label = panel["form_label"]
    else:
        ids = [e["id"] for e in erns]
        ern_id = ern_id if ern_id in ids else (ids[0] if ids else None)
        template = await current_template(ern_id) if ern_id else None
        definition = template["definition"] if template else {"sections": []}
        label = template["label"] if template else ""
    return {
        "patient": patient, "panel": panel, "erns": erns, "ern_id": ern_id, "definition": definition, "form_label": label,
        "values": values or {}, "errors": errors or {}, "answers": answers or {}, "answer_errors": answer_errors or {},
        "kinds": KINDS, "urgencies": URGENCIES,
        "shareable": await shares.shareable(request.app.state.settings, patient), "share_labels": shares.LABELS,
        "chosen": chosen if chosen is not None else {"summary:"}, "code_search": code_search_urls(request.app.state.host),
    }


@get("/panels/new", opt={"permission": "panels.view"}, include_in_schema=False)
async def new_form(
    request: Request,
    patient: Annotated[str, QueryParameter(max_length=20)] = "",
    ern: Annotated[int | None, QueryParameter(ge=1)] = None,
) -> Template:
    if not patient:  # panels start from a patient's record
        return page(request, "panels/choose_patient.html")
    row = await load_patient(request, patient)
    ctx = await _form_context(request, row, panel=None, ern_id=ern)
    if not ctx["erns"]:
        raise HTTPException(status_code=403, detail="You may open panels only in an ERN where you are a healthcare professional and the patient is enrolled.")
    return page(request, "panels/form.html", ctx, fragment="panels/_form.html")


@post("/panels/new", opt={"permission": "panels.view"}, include_in_schema=False)
async def new_submit(request: Request) -> Template | Redirect:
    from core.panels import notices
    from core.panels.forms import parse_answers, posted_values
    from core.panels.tables import Panel, PanelShare
    from core.panels.templates_store import current_template

    actor = request.scope["user"]
    form = await request.form()
    patient = await load_patient(request, str(form.get("patient", ""))[:20])
    erns = {e["id"] for e in await _erns_for(actor, patient)}
    raw_ern = str(form.get("ern", "") or "")
    ern_id = int(raw_ern) if raw_ern.isdecimal() else None
    values, errors = _basics(form)
    if ern_id not in erns:
        errors["ern"] = "Choose one of the patient's ERNs where you may open panels."
        ern_id = None
    consents = (await current_consents([patient["id"]])).get(patient["id"], {})
    if not consent_rules.allowed(consents, "panels"):
        errors["consent"] = (
            "Without a valid Consent for Care the patient cannot be discussed in a panel."
            if not has_care_consent(consents) else
            "The patient refused or withdrew sharing their data within the ERN: they cannot be discussed in a panel."
        )
    if patient["restricted"]:
        errors["consent"] = "Processing of this record is restricted at the patient's request (GDPR)."
    template = await current_template(ern_id) if ern_id else None
    # Saving a draft takes an incomplete form; submitting needs every required field, and is
    # refused before anything is stored.
    submitting = str(form.get("then", "")) == "submit"
    answers, answer_errors = parse_answers(template["definition"], form, require=submitting) if template else ({}, {})
    available = await shares.shareable(request.app.state.settings, patient)
    chosen, share_errors = shares.parse_choices(form, available)
    errors.update(share_errors)
    if errors or answer_errors:
        # What was typed is shown again as typed (a malformed number included), with its error.
        typed = posted_values(template["definition"], form) if template else {}
        ctx = await _form_context(request, patient, panel=None, ern_id=ern_id, values=values, errors=errors, answers=typed,
                                  answer_errors=answer_errors, chosen={str(v) for v in form.getall("share", [])})
        return page(request, "panels/form.html", ctx, status_code=422)
    async with Panel._meta.db.transaction():
        panel = Panel(
            patient=patient["id"], ern=ern_id, status="draft", created_by=actor.user_id, lead=actor.user_id,
            form_template=template["id"], form_label=template["label"], form_answers=json.dumps(answers),
            **values,
        )
        await panel.save()
        if chosen:
            await PanelShare.insert(*[PanelShare(panel=panel.id, kind=c["kind"], ref_id=c["ref_id"], label=c["label"], shared_by=actor.user_id) for c in chosen])
        await notices.timeline(panel.id, "created", actor.user_id, to_status="draft")
    row = await Panel.select().where(Panel.id == panel.id).first()
    ctx = PanelCtx(row, patient, actor, None, {"creator", "lead", "home"})
    await audit(request, ctx, "panel.create", {"shared": len(chosen)})
    await notices.emit(request, "panel.created", row, {"ern": ern_id})
    if submitting:
        from core.panels.lifecycle import apply

        await apply(request, ctx, "submit", {"revision": str(row["revision"])})
    return Redirect(f"/panels/{panel.id}", status_code=303)


@get("/panels/{panel_id:int}/edit", opt={"permission": "panels.view"}, include_in_schema=False)
async def edit_form(request: Request, panel_id: FromPath[int]) -> Template:
    from core.panels.tables import PanelShare

    ctx = await load_panel(request, panel_id)
    require(ctx, "creator", "lead", states={"draft"}, what="edit the request")
    patient = await _home_patient(request, ctx)
    current = {f"{s['kind']}:{s['ref_id'] if s['ref_id'] is not None else ''}" for s in await PanelShare.select().where(PanelShare.panel == panel_id)}
    fctx = await _form_context(request, patient, panel=ctx.panel, ern_id=ctx.panel["ern"], values=ctx.panel,
                               answers=json.loads(ctx.panel["form_answers"] or "{}"), chosen=current)
    return page(request, "panels/form.html", fctx)


@post("/panels/{panel_id:int}/edit", opt={"permission": "panels.view"}, include_in_schema=False)
async def edit_submit(request: Request, panel_id: FromPath[int]) -> Template | Redirect:
    from core.panels import notices
    from core.panels.forms import parse_answers, posted_values
    from core.panels.tables import Panel, PanelShare

    ctx = await load_panel(request, panel_id)
    require(ctx, "creator", "lead", states={"draft"}, what="edit the request")
    form = await request.form()
    check_revision(ctx, form)
    patient = await _home_patient(request, ctx)
    values, errors = _basics(form)
    definition = await definition_of(ctx.panel["form_template"])
    submitting = str(form.get("then", "")) == "submit"
    answers, answer_errors = parse_answers(definition, form, require=submitting)
    chosen, share_errors = shares.parse_choices(form, await shares.shareable(request.app.state.settings, patient))
    errors.update(share_errors)
    if errors or answer_errors:
        fctx = await _form_context(request, patient, panel=ctx.panel, ern_id=ctx.panel["ern"], values=values, errors=errors,
                                   answers=posted_values(definition, form), answer_errors=answer_errors,
                                   chosen={str(v) for v in form.getall("share", [])})
        return page(request, "panels/form.html", fctx, status_code=422)
    async with Panel._meta.db.transaction():
        done = await Panel.update({
            **{getattr(Panel, k): v for k, v in values.items()}, Panel.form_answers: json.dumps(answers),
            Panel.revision: ctx.panel["revision"] + 1, Panel.updated_at: _now(),
        }).where((Panel.id == panel_id) & (Panel.revision == ctx.panel["revision"]) & (Panel.status == "draft")).returning(Panel.id)
        if not done:
            raise HTTPException(status_code=409, detail="This panel changed since you opened the page. Reload the page and try again.")
        await PanelShare.delete().where(PanelShare.panel == panel_id)
        if chosen:
            await PanelShare.insert(*[PanelShare(panel=panel_id, kind=c["kind"], ref_id=c["ref_id"], label=c["label"], shared_by=ctx.actor.user_id) for c in chosen])
        await notices.timeline(panel_id, "edited", ctx.actor.user_id)
    await audit(request, ctx, "panel.edit", {"shared": len(chosen)})
    if submitting:
        from core.panels.lifecycle import apply

        fresh = await load_panel(request, panel_id)
        await apply(request, fresh, "submit", {"revision": str(fresh.panel["revision"])})
    return Redirect(f"/panels/{panel_id}", status_code=303)


async def _home_patient(request: Request, ctx: PanelCtx) -> dict:
    """The full patient row, for the enrolling hospital only (it chooses what is shared)."""
    if not ctx.has("home"):
        raise HTTPException(status_code=403, detail="Only the enrolling hospital chooses what the panel sees of the record.")
    return await load_patient(request, ctx.patient["pseudonym"])


@post("/panels/{panel_id:int}/shares", opt={"permission": "panels.view"}, include_in_schema=False)
async def add_shares(request: Request, panel_id: FromPath[int]) -> Redirect:
    """The enrolling hospital shares more of the record while the panel runs."""
    ctx = await load_panel(request, panel_id)
    if ctx.read_only:
        raise HTTPException(status_code=409, detail="This panel is closed: nothing more can be shared.")
    patient = await _home_patient(request, ctx)
    form = await request.form()
    chosen, errors = shares.parse_choices(form, await shares.shareable(request.app.state.settings, patient))
    if errors or not chosen:
        raise HTTPException(status_code=422, detail=" ".join(errors.values()) or "Choose what to share.")
    added = await shares.add_shares(panel_id, chosen, ctx.actor.user_id)
    from core.panels import notices

    await notices.timeline(panel_id, "shared", ctx.actor.user_id, note=f"{added} item(s) of the record shared")
    await audit(request, ctx, "panel.share", {"added": added})
    return Redirect(f"/panels/{panel_id}#shared", status_code=303)


# --- the panel page ---------------------------------------------------------------------------


SECTION_MODULES = ("members", "discussion", "requests", "meetings", "outcome")


async def _names(ids) -> dict[int, dict]:
    from core.identity.tables import User

    ids = [i for i in set(ids) if i]
    if not ids:
        return {}
    rows = await User.select(User.id, User.name, User.hcp.name.as_alias("hcp_name")).where(User.id.is_in(ids))
    return {r["id"]: r for r in rows}


async def _timeline(panel_id: int) -> list[dict]:
    from core.panels.lifecycle import describe
    from core.panels.tables import PanelTransition

    rows = await PanelTransition.select().where(PanelTransition.panel == panel_id).order_by(PanelTransition.id)
    names = await _names(r["actor"] for r in rows)
    return [{**r, "text": describe(r["action"], r["from_status"], r["to_status"]), "who": names.get(r["actor"], {}).get("name", "—")} for r in rows]


async def _forwards(panel_id: int) -> list[dict]:
    from core.panels.tables import PanelForward

    return await PanelForward.select(
        PanelForward.at, PanelForward.reason, PanelForward.from_ern.acronym.as_alias("from_acronym"), PanelForward.to_ern.acronym.as_alias("to_acronym"),
    ).where(PanelForward.panel == panel_id).order_by(PanelForward.id)


def panel_ref(ctx: PanelCtx) -> PanelRef:
    p = ctx.patient
    return PanelRef(ctx.id, ctx.panel["status"], ctx.panel["ern"], PatientRef(p["id"], p["pseudonym"], p["nickname"], p["hcp"]))


@get("/panels/{panel_id:int}", opt={"permission": "panels.view"}, include_in_schema=False)
async def panel_page(request: Request, panel_id: FromPath[int]) -> Template:
    import importlib

    from core.orgs.tables import Ern
    from core.panels.forms import display_answers
    from core.panels.lifecycle import available

    ctx = await load_panel(request, panel_id, full=False)
    panel = ctx.panel
    ern = await Ern.select(Ern.id, Ern.acronym, Ern.name).where(Ern.id == panel["ern"]).first()
    people = await _names([panel["created_by"], panel["lead"], panel["assembler"]])
    base = {
        "p": ctx, "panel": panel, "patient": ctx.patient, "ern": ern, "people": people, "revision": str(panel["revision"]),
        "statuses": STATUSES, "kinds": KINDS, "urgencies": URGENCIES,
    }
    if not ctx.full:  # an invitation: enough to decide, nothing of the record
        members = importlib.import_module("core.panels.members")
        base.update(await members.section(request, ctx))
        return page(request, "panels/invitation.html", base)
    await audit(request, ctx, "panel.view")
    definition = await definition_of(panel["form_template"])
    base.update({
        "answers": display_answers(definition, json.loads(panel["form_answers"] or "{}")) if definition else [],
        "shared": await shares.shared_data(panel_id, ctx.patient),
        "share_labels": shares.LABELS,
        "transitions": available(ctx),
        "timeline": await _timeline(panel_id),
        "forwards": await _forwards(panel_id),
        "other_erns": await Ern.select(Ern.id, Ern.acronym).where(Ern.id != panel["ern"]).order_by(Ern.acronym),
        "identity_name": await _identity_name(request, ctx),
        "shareable": await shares.shareable(request.app.state.settings, await load_patient(request, ctx.patient["pseudonym"])) if ctx.has("home") and not ctx.read_only else None,
    })
    included = []
    for name in SECTION_MODULES:
        module = importlib.import_module(f"core.panels.{name}")
        base.update(await module.section(request, ctx))
        included.append(f"panels/_{name}.html")
    host = request.app.state.host
    sections = [s for _, secs in host.results_by_plugin("panel_sections", panel=panel_ref(ctx), actor=ctx.actor) for s in secs]
    base.update({"section_templates": included, "plugin_sections": visible(sections, ctx.actor)})
    return page(request, "panels/page.html", base)


async def _identity_name(request: Request, ctx: PanelCtx) -> str:
    """The patient's name, for the enrolling hospital only."""
    if not ctx.sees_identity:
        return ""
    from core.patients import identity as ident
    from core.patients.tables import Patient

    row = await Patient.select(Patient.identity).where(Patient.id == ctx.patient["id"]).first()
    return ident.display_name(ident.decrypt_identity(request.app.state.settings, ctx.patient["pseudonym"], row["identity"]))


# --- lists --------------------------------------------------------------------------------------

SEARCH_ID = re.compile(r"^#?(\d{1,9})$")


def _filters(status: str, ern: int | None, urgency: str, q: str):
    from core.panels.tables import Panel

    where = []
    if status:
        if status not in STATUSES:
            raise HTTPException(status_code=422, detail="Unknown status filter.")
        where.append(Panel.status == status)
    if ern:
        where.append(Panel.ern == ern)
    if urgency:
        if urgency not in URGENCIES:
            raise HTTPException(status_code=422, detail="Unknown urgency filter.")
        where.append(Panel.urgency == urgency)
    q = q.strip()
    if q:
        m = SEARCH_ID.match(q)
        if m:
            where.append(Panel.id == int(m.group(1)))
        else:
            # SQLite's LIKE ignores ASCII case already (and has no ILIKE).
            op = "ilike" if Panel._meta.db.engine_type == "postgres" else "like"
            for word in q.split()[:5]:
                pattern = f"%{word.replace('%', '').replace('_', '')}%"
                where.append(getattr(Panel.title, op)(pattern) | getattr(Panel.question, op)(pattern) | getattr(Panel.specialties, op)(pattern))
    return where


async def panel_rows(scope, *, status: str = "", ern: int | None = None, urgency: str = "", q: str = "", before: int | None = None, limit: int = PER_PAGE):
    """One page of panels (newest first), keyset-paginated on the id so page 2,000 costs what page 1 does."""
    from core.panels.tables import Panel

    where = [scope, *_filters(status, ern, urgency, q)]
    if before:
        where.append(Panel.id < before)
    condition = where[0]
    for w in where[1:]:
        condition = condition & w
    rows = await Panel.select(
        Panel.id, Panel.title, Panel.status, Panel.urgency, Panel.kind, Panel.updated_at, Panel.created_at,
        Panel.ern.acronym.as_alias("ern_acronym"), Panel.patient.nickname.as_alias("nickname"),
        Panel.patient.id.as_alias("patient_id"), Panel.patient.hcp.as_alias("patient_hcp"),
    ).where(condition).order_by(Panel.id, ascending=False).limit(limit + 1)
    return rows[:limit], (rows[limit - 1]["id"] if len(rows) > limit else None)


MINE = (
    "SELECT panel FROM panels_member WHERE \"user\" = {} AND status IN ('invited', 'accepted')"
    " UNION SELECT id FROM panels_panel WHERE created_by = {} OR lead = {}"
)


def mine_scope(user_id: int):
    """Panels the user takes part in, as one subquery: binding thousands of ids from Python
    cost 40 ms a page (benchmarks/panels_bench.py). PostgreSQL plans ``= ANY(ARRAY(...))``
    well together with a search, where a plain ``IN (subquery)`` scanned the primary key."""
    from piccolo.columns.combination import WhereRaw

    from core.panels.tables import Panel

    template = "panels_panel.id = ANY(ARRAY({}))" if Panel._meta.db.engine_type == "postgres" else "panels_panel.id IN ({})"
    return WhereRaw(template.format(MINE), user_id, user_id, user_id)


async def _list_context(request: Request, rows, next_before, **filters) -> dict:
    from core.orgs.tables import Ern

    from core.panels.consent import mark_suspended

    rows = await mark_suspended(request.scope.get("user"), rows)
    return {
        "rows": rows, "next_before": next_before, "filters": filters, "statuses": STATUSES, "urgencies": URGENCIES,
        "kinds": KINDS, "erns": await Ern.select(Ern.id, Ern.acronym).order_by(Ern.acronym),
    }


Status = Annotated[str, QueryParameter(max_length=20)]
Urgency = Annotated[str, QueryParameter(max_length=10)]
Search = Annotated[str, QueryParameter(max_length=100)]
# Numbers arrive as text: the filter form's "any ERN" sends ``ern=`` (empty), which must mean
# "no filter", not a 400. ``_number`` turns them into ints or refuses clearly.
ErnId = Annotated[str, QueryParameter(name="ern", max_length=12)]
Before = Annotated[str, QueryParameter(name="before", max_length=13)]


def _number(raw: str, name: str, top: int) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdecimal() or not 1 <= int(raw) <= top:
        raise HTTPException(status_code=400, detail=f"The filter '{name}' must be a whole number from 1 to {top:,}, or empty.")
    return int(raw)


@get("/panels", opt={"permission": "panels.view"}, include_in_schema=False)
async def my_panels(request: Request, status: Status = "", ern_text: ErnId = "", urgency: Urgency = "", q: Search = "", before_text: Before = "") -> Template:
    ern, before = _number(ern_text, "ern", 10**6), _number(before_text, "before", 10**12)
    from core.panels.tables import PanelMember

    actor = request.scope["user"]
    rows, next_before = await panel_rows(mine_scope(actor.user_id), status=status, ern=ern, urgency=urgency, q=q, before=before)
    ctx = await _list_context(request, rows, next_before, status=status, ern=ern, urgency=urgency, q=q, before=before)
    invitations = await PanelMember.select(
        PanelMember.panel, PanelMember.panel.title.as_alias("title"), PanelMember.panel.urgency.as_alias("urgency"),
        PanelMember.panel.ern.acronym.as_alias("ern_acronym"), PanelMember.panel.status.as_alias("panel_status"),
    ).where(
        (PanelMember.user == actor.user_id) & (PanelMember.status == "invited") & PanelMember.panel.status.not_in(sorted(READ_ONLY))
    ).order_by(PanelMember.id, ascending=False).limit(INVITATIONS_SHOWN + 1)
    from core.panels.requests import open_tasks_for

    ctx.update({
        "title": "My panels", "base": "/panels", "invitations": invitations[:INVITATIONS_SHOWN],
        "more_invitations": len(invitations) > INVITATIONS_SHOWN,
        "tasks": await open_tasks_for(actor),
    })
    return page(request, "panels/list.html", ctx, fragment="panels/_rows.html")


@get("/panels/queue", opt={"permission": "panels.assemble"}, include_in_schema=False)
async def queue(request: Request, status: Status = "", ern_text: ErnId = "", urgency: Urgency = "", q: Search = "", before_text: Before = "") -> Template:
    ern, before = _number(ern_text, "ern", 10**6), _number(before_text, "before", 10**12)
    from core.panels.tables import Panel

    actor = request.scope["user"]
    scopes = actor.grants.get("panels.assemble", frozenset())
    erns = [e for e in scopes if e is not None]
    scope = Panel.ern.is_in(erns or [0])
    if status == "draft":
        raise HTTPException(status_code=422, detail="Drafts are not in the queue until submitted.")
    scope = scope & (Panel.status != "draft") if status else scope & Panel.status.is_in(["submitted", "assembling"])
    rows, next_before = await panel_rows(scope, status=status, ern=ern, urgency=urgency, q=q, before=before)
    ctx = await _list_context(request, rows, next_before, status=status, ern=ern, urgency=urgency, q=q, before=before)
    ctx.update({"title": "ERN panel queue", "base": "/panels/queue", "invitations": [], "tasks": []})
    return page(request, "panels/list.html", ctx, fragment="panels/_rows.html")


@get("/panels/for-patient/{pseudonym:str}", opt={"permission": "panels.view"}, include_in_schema=False)
async def for_patient(request: Request, pseudonym: FromPath[str]) -> Template:
    """The patient page's Panels tab (enrolling hospital only)."""
    from core.panels.tables import Panel

    patient = await load_patient(request, pseudonym)
    rows, _ = await panel_rows(Panel.patient == patient["id"], limit=200)
    erns = await _erns_for(request.scope["user"], patient)
    shareable = await consent_rules.patient_shareable(patient["id"])
    return page(request, "panels/_patient_panels.html", {
        "rows": rows, "patient": patient, "can_create": bool(erns) and shareable and not patient["restricted"],
        "consent_blocks": not shareable, "statuses": STATUSES, "urgencies": URGENCIES,
    })


ROUTES = [new_form, new_submit, edit_form, edit_submit, add_shares, panel_page, my_panels, queue, for_patient]
