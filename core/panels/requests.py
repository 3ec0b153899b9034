"""Requests for further data: a member asks for an exam or information, and the request
becomes a task for the enrolling hospital, which answers in words and, if it likes, shares
more of the record with the panel (chosen exactly as when the panel was created).

Requests and answers are clinical data: they are audited, and notifications and mails carry
only the panel number and who did what, never the text.
"""

from __future__ import annotations

from datetime import datetime, timezone

from litestar import Request, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.panels import notices, shares
from core.panels.access import DISCUSSING, PanelCtx, audit, load_panel, member_ids
from core.permissions import allowed
from core.web import is_fragment_request, page

TEXT_MAX = 5000
STATUS_LABELS = {"open": "Open", "answered": "Answered", "withdrawn": "Withdrawn"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def may_answer(ctx: PanelCtx) -> bool:
    """The enrolling hospital's clinicians who may edit its patients answer (and share)."""
    return ctx.has("home") and allowed(ctx.actor, "patients.edit")


def _text(form, name: str, what: str) -> tuple[str, str]:
    text = str(form.get(name, "") or "").replace("\r\n", "\n").strip()
    if not 1 <= len(text) <= TEXT_MAX:
        return text[:TEXT_MAX], f"Write {what} (at most {TEXT_MAX:,} characters)."
    return text, ""


# --- reading ------------------------------------------------------------------------------------


async def requests_of(panel_id: int) -> list[dict]:
    """The panel's requests, oldest first, with the names of who asked and who answered."""
    from core.identity.tables import User
    from core.panels.tables import DataRequest

    rows = await DataRequest.select(
        DataRequest.all_columns(), DataRequest.asked_by.name.as_alias("asker_name"), DataRequest.asked_by.hcp.name.as_alias("asker_hcp"),
    ).where(DataRequest.panel == panel_id).order_by(DataRequest.id)
    answerers = {r["answered_by"] for r in rows if r["answered_by"]}
    names = {
        u["id"]: u for u in await User.select(User.id, User.name, User.hcp.name.as_alias("hcp_name")).where(User.id.is_in(sorted(answerers) or [0]))
    }
    out = []
    for r in rows:
        who = names.get(r["answered_by"], {})
        out.append({
            **r, "created_at": _utc(r["created_at"]), "answered_at": _utc(r["answered_at"]),
            "asker_hcp": r["asker_hcp"] or "", "answerer_name": who.get("name", ""), "answerer_hcp": who.get("hcp_name") or "",
            "status_label": STATUS_LABELS.get(r["status"], r["status"]),
        })
    return out


async def section(request: Request, ctx: PanelCtx) -> dict:
    discussing = ctx.panel["status"] in DISCUSSING
    answering = may_answer(ctx) and discussing
    items = await requests_of(ctx.id)
    shareable = None
    if answering and any(r["status"] == "open" for r in items):
        shareable = await shares.shareable(request.app.state.settings, ctx.patient)
    return {
        "data_requests": items,
        "data_request_may_ask": ctx.participant and discussing,
        "data_request_may_answer": answering,
        "data_request_shareable": shareable,
        "data_request_share_labels": shares.LABELS,
        "data_request_text_max": TEXT_MAX,
        "data_request_actor_id": ctx.actor.user_id if ctx.actor else None,
        "data_request_errors": {},
        "data_request_values": {},
    }


async def open_tasks_for(actor) -> list[dict]:
    """Open requests waiting for ``actor``'s hospital: panels (still discussing) about its
    patients, for users who may edit those patients. Oldest first."""
    from core.panels.tables import DataRequest

    if actor is None or actor.hcp_id is None or not allowed(actor, "patients.edit") or not allowed(actor, "panels.view"):
        return []
    rows = await DataRequest.select(
        DataRequest.id, DataRequest.panel, DataRequest.text, DataRequest.created_at,
        DataRequest.panel.title.as_alias("title"), DataRequest.panel.urgency.as_alias("urgency"),
        DataRequest.panel.patient.nickname.as_alias("nickname"), DataRequest.asked_by.name.as_alias("asker_name"),
    ).where(
        (DataRequest.status == "open") & (DataRequest.panel.patient.hcp == actor.hcp_id)
        & DataRequest.panel.status.is_in(sorted(DISCUSSING)) & DataRequest.panel.patient.erased_at.is_null()
    ).order_by(DataRequest.id)
    return [
        {**r, "created_at": _utc(r["created_at"]), "link": f"/panels/{r['panel']}#request-{r['id']}"}
        for r in rows
    ]


# --- changing -----------------------------------------------------------------------------------


async def _done(request: Request, panel_id: int, anchor: str) -> Template | Redirect:
    """After a change: the section again for htmx, else back to the page."""
    if not is_fragment_request(request):
        return Redirect(f"/panels/{panel_id}#{anchor}", status_code=303)
    ctx = await load_panel(request, panel_id)
    return await _fragment(request, ctx)


async def _fragment(request: Request, ctx: PanelCtx, *, errors: dict | None = None, values: dict | None = None, status_code: int = 200) -> Template:
    context = {"p": ctx, "panel": ctx.panel, "revision": str(ctx.panel["revision"]), **await section(request, ctx)}
    context["data_request_errors"] = errors or {}
    context["data_request_values"] = values or {}
    return page(request, "panels/_requests.html", context, status_code=status_code)


async def _invalid(request: Request, ctx: PanelCtx, errors: dict, values: dict) -> Template:
    if is_fragment_request(request):
        return await _fragment(request, ctx, errors=errors, values=values, status_code=422)
    raise HTTPException(status_code=422, detail=" ".join(errors.values()))


async def _request_row(panel_id: int, request_id: int) -> dict:
    from core.panels.tables import DataRequest

    row = await DataRequest.select().where((DataRequest.id == request_id) & (DataRequest.panel == panel_id)).first()
    if row is None:
        raise NotFoundException("No such request in this panel.")
    return row


@post("/panels/{panel_id:int}/requests", opt={"permission": "panels.view"}, include_in_schema=False)
async def ask(request: Request, panel_id: FromPath[int]) -> Template | Redirect:
    from core.panels.tables import DataRequest

    ctx = await load_panel(request, panel_id)
    if not ctx.participant:
        raise HTTPException(status_code=403, detail="Only the panel's members ask for further data.")
    if ctx.panel["status"] not in DISCUSSING:
        raise HTTPException(status_code=409, detail="Further data can be asked for only while the panel is open or its outcome is in review.")
    form = await request.form()
    text, error = _text(form, "text", "what you need (an exam, a result, information)")
    if error:
        return await _invalid(request, ctx, {"ask": error}, {"ask": text})
    row = DataRequest(panel=panel_id, asked_by=ctx.actor.user_id, text=text, status="open")
    await row.save()
    await notices.timeline(panel_id, "data_requested", ctx.actor.user_id)
    await audit(request, ctx, "panel.data_requested", {"request": row.id})
    await notices.emit(request, "panel.data_requested", ctx.panel, {"request": row.id})
    await notices.tell(
        request, ctx.panel, {ctx.panel["created_by"], ctx.panel["lead"]}, "panel.data_request",
        f"{ctx.actor.name} asks for further data", anchor=f"#request-{row.id}",
    )
    return await _done(request, panel_id, f"request-{row.id}")


@post("/panels/{panel_id:int}/requests/{request_id:int}/answer", opt={"permission": "panels.view"}, include_in_schema=False)
async def answer(request: Request, panel_id: FromPath[int], request_id: FromPath[int]) -> Template | Redirect:
    from core.panels.tables import DataRequest
    from core.patients.access import load_patient

    ctx = await load_panel(request, panel_id)
    if not may_answer(ctx):
        raise HTTPException(status_code=403, detail="Only the enrolling hospital's clinicians answer requests for data.")
    row = await _request_row(panel_id, request_id)
    if ctx.panel["status"] not in DISCUSSING:
        raise HTTPException(status_code=409, detail="The panel is no longer discussing: requests cannot be answered now.")
    if row["status"] != "open":
        raise HTTPException(status_code=409, detail=f"This request is already {row['status']}.")
    # The full record (and 409 if its processing is restricted at the patient's request).
    patient = await load_patient(request, ctx.patient["pseudonym"], "patients.edit")
    form = await request.form()
    text, error = _text(form, "answer", "the answer")
    errors = {f"answer-{request_id}": error} if error else {}
    chosen, share_errors = shares.parse_choices(form, await shares.shareable(request.app.state.settings, patient))
    if share_errors:
        errors[f"answer-{request_id}-shares"] = " ".join(share_errors.values())
    if errors:
        return await _invalid(request, ctx, errors, {f"answer-{request_id}": text})
    async with DataRequest._meta.db.transaction():
        done = await DataRequest.update({
            DataRequest.status: "answered", DataRequest.answer: text, DataRequest.answered_by: ctx.actor.user_id,
            DataRequest.answered_at: _now(),
        }).where((DataRequest.id == request_id) & (DataRequest.panel == panel_id) & (DataRequest.status == "open")).returning(DataRequest.id)
        if not done:
            raise HTTPException(status_code=409, detail="This request was answered or withdrawn meanwhile.")
        added = await shares.add_shares(panel_id, chosen, ctx.actor.user_id) if chosen else 0
        note = f"{added} item(s) of the record shared" if added else ""
        await notices.timeline(panel_id, "data_answered", ctx.actor.user_id, note=note)
    await audit(request, ctx, "panel.data_answered", {"request": request_id, "shared": added})
    await notices.emit(request, "panel.data_answered", ctx.panel, {"request": request_id, "shared": added})
    everyone = await member_ids(panel_id) | {row["asked_by"]}
    await notices.tell(
        request, ctx.panel, everyone, "panel.data_answered",
        "A request for further data was answered" + (f" ({added} item(s) of the record shared)" if added else ""),
        anchor=f"#request-{request_id}",
    )
    return await _done(request, panel_id, f"request-{request_id}")


@post("/panels/{panel_id:int}/requests/{request_id:int}/withdraw", opt={"permission": "panels.view"}, include_in_schema=False)
async def withdraw(request: Request, panel_id: FromPath[int], request_id: FromPath[int]) -> Template | Redirect:
    from core.panels.tables import DataRequest

    ctx = await load_panel(request, panel_id)
    row = await _request_row(panel_id, request_id)
    if row["asked_by"] != ctx.actor.user_id or not ctx.participant:
        raise HTTPException(status_code=403, detail="Only who asked may withdraw a request.")
    if ctx.panel["status"] not in DISCUSSING:
        raise HTTPException(status_code=409, detail="The panel is no longer discussing: requests cannot be withdrawn now.")
    done = await DataRequest.update({DataRequest.status: "withdrawn"}).where(
        (DataRequest.id == request_id) & (DataRequest.panel == panel_id) & (DataRequest.status == "open")
    ).returning(DataRequest.id)
    if not done:
        raise HTTPException(status_code=409, detail="This request is no longer open.")
    await notices.timeline(panel_id, "data_request_withdrawn", ctx.actor.user_id)
    await audit(request, ctx, "panel.data_request_withdrawn", {"request": request_id})
    return await _done(request, panel_id, f"request-{request_id}")


ROUTES = [ask, answer, withdraw]
