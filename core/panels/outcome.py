"""A panel's outcome: drafted by the lead, commented by the members, signed by the lead and
the co-signers the lead chose. The lead's signature locks the text; the last signature makes
the outcome final, and a PDF report goes onto the patient's record at the enrolling hospital.

The report is built and its file stored before the last signature is written, so a failure
leaves the outcome unsigned rather than signed without its report.
"""

from __future__ import annotations

from datetime import datetime, timezone

from anyio import to_thread
from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect

from core.panels import notices
from core.panels.access import PanelCtx, audit, check_revision, load_panel, require

#: Panel states in which the outcome is drafted, commented, signed.
OUTCOME_STATES = frozenset({"open", "outcome_review"})
#: The lead signs once the outcome was put up for review.
SIGN_STATES = frozenset({"outcome_review"})
TEXT_MAX = 20000
COMMENT_MAX = 5000
TEXT_FIELDS = {
    "findings": "Findings",
    "recommendations": "Recommendations",
    "treatment_plan": "Treatment plan",
}
DIAGNOSIS_FIELD = "f_diagnosis"  # inputs f_diagnosis_label/_system/_code, as the panel forms' coded fields
SYSTEMS = ("ORPHA", "OMIM", "ICD-10", "ICD-11", "SNOMEDCT", "MONDO")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _invalid(detail: str) -> HTTPException:
    return HTTPException(status_code=422, detail=detail)


def _redirect(ctx: PanelCtx) -> Redirect:
    return Redirect(f"/panels/{ctx.id}#outcome", status_code=303)


async def _outcome(panel_id: int) -> dict | None:
    from core.panels.tables import Outcome

    return await Outcome.select().where(Outcome.panel == panel_id).first()


async def _cosigners(panel_id: int) -> list[dict]:
    from core.panels.tables import OutcomeSigner

    return await OutcomeSigner.select().where(OutcomeSigner.panel == panel_id).order_by(OutcomeSigner.id)


async def _accepted(panel_id: int) -> set[int]:
    from core.panels.tables import PanelMember

    rows = await PanelMember.select(PanelMember.user).where((PanelMember.panel == panel_id) & (PanelMember.status == "accepted"))
    return {r["user"] for r in rows}


async def _bump(ctx: PanelCtx) -> None:
    """Next revision, only from the one the form was built from (else 409, transaction undone)."""
    from core.panels.tables import Panel

    changed = await Panel.update({Panel.revision: Panel.revision + 1, Panel.updated_at: _now()}).where(
        (Panel.id == ctx.id) & (Panel.revision == ctx.panel["revision"])
    ).returning(Panel.id)
    if not changed:
        raise HTTPException(status_code=409, detail="This panel changed meanwhile. Reload the page and try again.")


def _locked(outcome: dict | None) -> bool:
    return outcome is not None and outcome["signed_by"] is not None


# --- helpers for the lifecycle -------------------------------------------------------------------


async def is_final(panel_id: int) -> bool:
    """Signed by the lead and by every co-signer the lead asked for."""
    outcome = await _outcome(panel_id)
    if outcome is None or outcome["signed_by"] is None:
        return False
    return all(s["signed_at"] is not None for s in await _cosigners(panel_id))


async def contributors(panel_id: int) -> set[int]:
    """Users who contributed: posted a message or an outcome comment, drafted or signed the outcome."""
    from core.panels.tables import Message, OutcomeComment, OutcomeSigner

    people = {r["author"] for r in await Message.select(Message.author).where(Message.panel == panel_id)}
    people |= {r["author"] for r in await OutcomeComment.select(OutcomeComment.author).where(OutcomeComment.panel == panel_id)}
    people |= {
        r["user"] for r in await OutcomeSigner.select(OutcomeSigner.user).where(
            (OutcomeSigner.panel == panel_id) & OutcomeSigner.signed_at.is_not_null()
        )
    }
    outcome = await _outcome(panel_id)
    if outcome is not None:
        people |= {outcome["updated_by"], outcome["signed_by"]}
    return {p for p in people if p is not None}


# --- drafting ----------------------------------------------------------------------------------------


def parse_outcome_form(form) -> dict:
    """The outcome's columns from the lead's form (422 with the first problem otherwise)."""
    from core.panels.forms import parse_code
    from core.patients import coded

    values = {}
    for key, label in TEXT_FIELDS.items():
        text = str(form.get(key, "") or "").replace("\r\n", "\n").strip()
        if len(text) > TEXT_MAX:
            raise _invalid(f"{label}: at most {TEXT_MAX:,} characters.")
        values[key] = text
    code, problem = parse_code({"systems": []}, form, DIAGNOSIS_FIELD)
    if problem:
        raise _invalid(f"Diagnosis: {problem}")
    code = code or {}
    values.update(diagnosis_label=code.get("label", ""), diagnosis_system=code.get("system", ""), diagnosis_code=code.get("code", ""))
    codings, problem = coded.parse_codings(form, f"{DIAGNOSIS_FIELD}_")
    if problem:
        raise _invalid(f"Diagnosis: {problem}")
    main = (values["diagnosis_system"], values["diagnosis_code"])
    values["diagnosis_codings"] = coded.dump([c for c in codings if (c["system"], c["code"]) != main] if values["diagnosis_code"] else [])
    return values


@post("/panels/{panel_id:int}/outcome", opt={"permission": "panels.view"}, include_in_schema=False)
async def save(request: Request, panel_id: FromPath[int]) -> Redirect:
    from core.panels.tables import Outcome

    ctx = await load_panel(request, panel_id)
    require(ctx, "lead", states=OUTCOME_STATES, what="draft the outcome")
    form = await request.form()
    check_revision(ctx, form)
    outcome = await _outcome(ctx.id)
    if _locked(outcome):
        raise HTTPException(status_code=409, detail="The lead signed the outcome: its text can no longer change.")
    values = parse_outcome_form(form)
    actor = request.scope["user"]
    async with Outcome._meta.db.transaction():
        await _bump(ctx)
        if outcome is None:
            await Outcome.insert(Outcome(panel=ctx.id, updated_by=actor.user_id, updated_at=_now(), **values))
        else:
            done = await Outcome.update({
                **{getattr(Outcome, k): v for k, v in values.items()}, Outcome.updated_by: actor.user_id, Outcome.updated_at: _now(),
            }).where((Outcome.panel == ctx.id) & Outcome.signed_by.is_null()).returning(Outcome.id)
            if not done:
                raise HTTPException(status_code=409, detail="The lead signed the outcome: its text can no longer change.")
    if outcome is None:
        await notices.timeline(ctx.id, "outcome_drafted", actor.user_id)
    await audit(request, ctx, "panel.outcome_saved", {"fields": sorted(k for k, v in values.items() if v and v != "[]")})
    await notices.live(request, ctx.id, {"type": "outcome", "change": "saved"})
    return _redirect(ctx)


@post("/panels/{panel_id:int}/outcome/comments", opt={"permission": "panels.view"}, include_in_schema=False)
async def comment(request: Request, panel_id: FromPath[int]) -> Redirect:
    from core.panels.tables import OutcomeComment

    ctx = await load_panel(request, panel_id)
    if not ctx.participant:
        raise HTTPException(status_code=403, detail="Only the panel's members comment on the outcome.")
    require(ctx, states=OUTCOME_STATES, what="comment on the outcome")
    form = await request.form()
    check_revision(ctx, form)
    body = str(form.get("body", "") or "").replace("\r\n", "\n").strip()
    if not body:
        raise _invalid("Write a comment first.")
    if len(body) > COMMENT_MAX:
        raise _invalid(f"A comment holds at most {COMMENT_MAX:,} characters.")
    if await _outcome(ctx.id) is None:
        raise HTTPException(status_code=409, detail="There is no drafted outcome to comment on yet.")
    await OutcomeComment.insert(OutcomeComment(panel=ctx.id, author=request.scope["user"].user_id, body=body))
    await audit(request, ctx, "panel.outcome_commented")
    await notices.live(request, ctx.id, {"type": "outcome", "change": "comment"})
    return _redirect(ctx)


@post("/panels/{panel_id:int}/outcome/signers", opt={"permission": "panels.view"}, include_in_schema=False)
async def choose_signers(request: Request, panel_id: FromPath[int]) -> Redirect:
    """The lead names the co-signers among the accepted members (before signing)."""
    from core.panels.tables import OutcomeSigner

    ctx = await load_panel(request, panel_id)
    require(ctx, "lead", states=OUTCOME_STATES, what="choose co-signers")
    form = await request.form()
    check_revision(ctx, form)
    if _locked(await _outcome(ctx.id)):
        raise HTTPException(status_code=409, detail="The lead signed the outcome: the co-signers can no longer change.")
    candidates = await _accepted(ctx.id) - {ctx.panel["lead"]}
    chosen: set[int] = set()
    for raw in form.getall("signer") if hasattr(form, "getall") else []:
        raw = str(raw)
        if not raw.isdecimal() or int(raw) not in candidates:
            raise _invalid("Co-signers are chosen among the members who accepted; reload the page.")
        chosen.add(int(raw))
    actor = request.scope["user"]
    async with OutcomeSigner._meta.db.transaction():
        await _bump(ctx)
        await OutcomeSigner.delete().where(OutcomeSigner.panel == ctx.id)
        if chosen:
            await OutcomeSigner.insert(*[OutcomeSigner(panel=ctx.id, user=u) for u in sorted(chosen)])
    await notices.timeline(ctx.id, "cosigners_chosen", actor.user_id, note=f"{len(chosen)} co-signer(s)")
    await notices.live(request, ctx.id, {"type": "outcome", "change": "signers"})
    return _redirect(ctx)


# --- signing --------------------------------------------------------------------------------------


async def _store_report(request: Request, ctx: PanelCtx, signed: dict[int, datetime]):
    from core.panels.report import outcome_pdf, report_data, store_pdf

    data = await report_data(ctx.id, signed=signed)
    pdf = await to_thread.run_sync(outcome_pdf, data)
    return await store_pdf(request.app.state.settings, pdf)


async def _document_row(request: Request, ctx: PanelCtx, stored) -> int:
    from core.crypto import keyring
    from core.panels.report import KIND, document_title, file_name
    from core.patients.documents import _context
    from core.patients.tables import Document

    ring = keyring(request.app.state.settings)
    context = _context(ctx.patient["pseudonym"])
    doc = Document(
        patient=ctx.patient["id"], kind=KIND, title=ring.encrypt(document_title(ctx.id), context),
        filename=ring.encrypt(file_name(ctx.id), context), content_type=stored.content_type, size=stored.size,
        sha256=stored.sha256, storage_key=stored.key, uploaded_by=ctx.panel["lead"],
    )
    await doc.save()
    return doc.id


@post("/panels/{panel_id:int}/outcome/sign", opt={"permission": "panels.view"}, include_in_schema=False)
async def sign(request: Request, panel_id: FromPath[int]) -> Redirect:
    from core.panels.tables import Outcome, OutcomeSigner
    from core.patients.tables import Document
    from core.storage import Storage

    ctx = await load_panel(request, panel_id)
    actor = request.scope["user"]
    form = await request.form()
    outcome = await _outcome(ctx.id)
    cosigners = await _cosigners(ctx.id)
    mine = next((s for s in cosigners if s["user"] == actor.user_id), None)
    as_lead = ctx.has("lead") and (outcome is None or outcome["signed_by"] is None)
    if not as_lead and mine is None:
        if ctx.has("lead"):
            raise HTTPException(status_code=409, detail="You already signed this outcome.")
        raise HTTPException(status_code=403, detail="Only the lead and the co-signers the lead chose sign the outcome.")
    require(ctx, states=SIGN_STATES, what="sign the outcome")
    check_revision(ctx, form)
    if as_lead:
        missing = [label for key, label in (("findings", "findings"), ("recommendations", "recommendations")) if not (outcome or {}).get(key, "").strip()]
        if missing:
            raise _invalid(f"Write the {' and the '.join(missing)} before signing.")
    else:
        if outcome is None or outcome["signed_by"] is None:
            raise HTTPException(status_code=409, detail="Co-signers sign after the lead.")
        if mine["signed_at"] is not None:
            raise HTTPException(status_code=409, detail="You already signed this outcome.")
        if actor.user_id not in await _accepted(ctx.id):
            raise HTTPException(status_code=403, detail="Only members of the panel sign its outcome.")
    now = _now()
    pending = [s for s in cosigners if s["signed_at"] is None and s["user"] != actor.user_id]
    final = not pending
    stored = await _store_report(request, ctx, {actor.user_id: now}) if final else None
    document_id = None
    try:
        async with Outcome._meta.db.transaction():
            await _bump(ctx)
            if as_lead:
                done = await Outcome.update({Outcome.signed_by: actor.user_id, Outcome.signed_at: now}).where(
                    (Outcome.panel == ctx.id) & Outcome.signed_by.is_null()
                ).returning(Outcome.id)
            else:
                done = await OutcomeSigner.update({OutcomeSigner.signed_at: now}).where(
                    (OutcomeSigner.id == mine["id"]) & OutcomeSigner.signed_at.is_null()
                ).returning(OutcomeSigner.id)
            if not done:
                raise HTTPException(status_code=409, detail="This outcome changed meanwhile. Reload the page and try again.")
            if final:
                document_id = await _document_row(request, ctx, stored)
                await Outcome.update({Outcome.document: document_id}).where(Outcome.panel == ctx.id)
    except BaseException:
        # No signature, no document row: and no file, unless another document holds the same bytes.
        if stored is not None and not await Document.exists().where(Document.storage_key == stored.key):
            await Storage(request.app.state.settings).delete(stored.key)
        raise
    await notices.timeline(ctx.id, "outcome_signed", actor.user_id, note="lead" if as_lead else "co-signer")
    await audit(request, ctx, "panel.outcome_signed", {"as": "lead" if as_lead else "co-signer", "final": final})
    if final:
        await _finished(request, ctx, document_id, stored)
    elif as_lead:
        await notices.tell(
            request, ctx.panel, [s["user"] for s in pending], "panel.outcome", "The outcome awaits your signature",
            anchor="#outcome", body=f"The lead signed the outcome of this panel; your signature is needed.\n\nPanel: {ctx.panel['title']}",
        )
    await notices.live(request, ctx.id, {"type": "outcome", "change": "final" if final else "signed"})
    return _redirect(ctx)


async def _finished(request: Request, ctx: PanelCtx, document_id: int, stored) -> None:
    from core.events import Event
    from core.identity.login import client_address
    from core.panels.report import KIND

    actor = request.scope["user"]
    await notices.timeline(ctx.id, "outcome_final", actor.user_id, note="Report added to the patient's record")
    await audit(request, ctx, "panel.outcome_report_stored", {"document": document_id, "size": stored.size})
    await request.app.state.host.events.emit(Event(
        "document.uploaded", actor.user_id, "patient", ctx.patient["pseudonym"], {"document": document_id, "kind": KIND, "panel": ctx.id},
        client_address(request),
    ))
    await notices.tell(
        request, ctx.panel, {ctx.panel["created_by"], ctx.panel["lead"]}, "panel.outcome", "The outcome is signed",
        anchor="#outcome",
        body=(f"Every signer signed the outcome of this panel. The report is on the patient's record "
              f"(documents) and on the panel page.\n\nPanel: {ctx.panel['title']}"),
    )
    await notices.emit(request, "panel.outcome_signed", ctx.panel, {"document": document_id})


# --- the report ------------------------------------------------------------------------------------


@get("/panels/{panel_id:int}/outcome.pdf", opt={"permission": "panels.view"}, include_in_schema=False)
async def download(request: Request, panel_id: FromPath[int]) -> Response:
    from core.patients.documents import file_response
    from core.patients.tables import Document

    ctx = await load_panel(request, panel_id)
    outcome = await _outcome(ctx.id)
    if outcome is None or outcome["document"] is None:
        raise NotFoundException("The outcome report exists once every signer signed.")
    row = await Document.select().where((Document.id == outcome["document"]) & (Document.patient == ctx.patient["id"])).first()
    if row is None:
        raise NotFoundException("The outcome report is no longer on the record.")
    response = await file_response(request.app.state.settings, row, f"panel-{ctx.id}-outcome")
    await audit(request, ctx, "panel.outcome_downloaded", {"document": row["id"]})
    return response


# --- the page section ------------------------------------------------------------------------------


async def section(request: Request, ctx: PanelCtx) -> dict:
    """What ``panels/_outcome.html`` shows, and what the actor may do there."""
    from core.identity.tables import User
    from core.panels.tables import OutcomeComment
    from core.patients.clinical import code_search_urls

    outcome = await _outcome(ctx.id)
    comments = await OutcomeComment.select().where(OutcomeComment.panel == ctx.id).order_by(OutcomeComment.id)
    cosigners = await _cosigners(ctx.id)
    accepted = await _accepted(ctx.id)
    ids = {c["author"] for c in comments} | {s["user"] for s in cosigners} | accepted | {ctx.panel["lead"]}
    if outcome is not None:
        ids |= {outcome["updated_by"], outcome["signed_by"]} - {None}
    names = {u["id"]: u["name"] for u in await User.select(User.id, User.name).where(User.id.is_in(sorted(ids)))} if ids else {}
    uid = getattr(ctx.actor, "user_id", None)
    status = ctx.panel["status"]
    locked = _locked(outcome)
    final = locked and all(s["signed_at"] is not None for s in cosigners)
    mine = next((s for s in cosigners if s["user"] == uid), None)
    lead = ctx.has("lead")
    return {
        "outcome": outcome,
        "outcome_fields": TEXT_FIELDS,
        "outcome_systems": SYSTEMS,
        "outcome_text_max": TEXT_MAX,
        "outcome_comment_max": COMMENT_MAX,
        "outcome_code_search": code_search_urls(request.app.state.host).get("diagnoses", ""),
        "outcome_lead_name": names.get(ctx.panel["lead"], ""),
        "outcome_editor_name": names.get(outcome["updated_by"], "") if outcome else "",
        "outcome_comments": [{**c, "author_name": names.get(c["author"], f"user {c['author']}")} for c in comments],
        "outcome_signers": [{**s, "name": names.get(s["user"], f"user {s['user']}")} for s in cosigners],
        "outcome_candidates": [
            {"id": u, "name": names.get(u, f"user {u}"), "chosen": any(s["user"] == u for s in cosigners)}
            for u in sorted(accepted - {ctx.panel["lead"]}, key=lambda u: names.get(u, "").lower())
        ],
        "outcome_locked": locked,
        "outcome_final": final,
        "outcome_may_edit": lead and status in OUTCOME_STATES and not locked,
        "outcome_may_choose_signers": lead and status in OUTCOME_STATES and not locked,
        "outcome_may_comment": ctx.participant and status in OUTCOME_STATES and outcome is not None,
        "outcome_may_sign": status in SIGN_STATES and (
            (lead and outcome is not None and not locked)
            or (mine is not None and mine["signed_at"] is None and locked and uid in accepted)
        ),
        "outcome_sign_ready": bool(outcome and outcome["findings"].strip() and outcome["recommendations"].strip()),
        "outcome_pdf_url": f"/panels/{ctx.id}/outcome.pdf" if outcome and outcome["document"] else "",
    }


ROUTES = [save, comment, choose_signers, sign, download]
