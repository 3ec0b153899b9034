"""The one route every lifecycle button posts to."""

from __future__ import annotations

from litestar import Request, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.panels.access import load_panel
from core.panels.lifecycle import TRANSITIONS, ConfirmationNeeded, apply
from core.web import page


@post("/panels/{panel_id:int}/transition/{action:str}", opt={"permission": "panels.view"}, include_in_schema=False)
async def transition(request: Request, panel_id: FromPath[int], action: FromPath[str]) -> Redirect | Template:
    # A suspended panel (consent) may still be cancelled or closed by its lead: ``apply`` checks.
    ctx = await load_panel(request, panel_id, while_suspended=True)
    form = await request.form()
    try:
        await apply(request, ctx, action, form)
    except ConfirmationNeeded as exc:
        t = TRANSITIONS[action]
        return page(
            request, "panels/confirm.html",
            {"panel": ctx.panel, "transition": t, "question": exc.detail, "note": str(form.get("note", "") or ""), "revision": ctx.panel["revision"]},
            status_code=409,
        )
    return Redirect(f"/panels/{panel_id}", status_code=303)


@post("/panels/{panel_id:int}/urgency", opt={"permission": "panels.view"}, include_in_schema=False)
async def change_urgency(request: Request, panel_id: FromPath[int]) -> Redirect:
    """Raising the urgency notifies the members and the ERN's coordinators at once."""
    from litestar.exceptions import HTTPException

    from core.panels import notices
    from core.panels.access import READ_ONLY, URGENCIES, check_revision, member_ids, require
    from core.panels.lifecycle import _ern_assemblers, _now
    from core.panels.tables import Panel

    ctx = await load_panel(request, panel_id)
    live = frozenset(s for s in ("draft", "submitted", "assembling", "open", "outcome_review") if s not in READ_ONLY)
    require(ctx, "lead", "creator", "assembler", states=live, what="change the urgency")
    form = await request.form()
    check_revision(ctx, form)
    urgency = str(form.get("urgency", "") or "")
    if urgency not in URGENCIES:
        raise HTTPException(status_code=422, detail="Choose routine, within two weeks, or urgent.")
    if urgency == ctx.panel["urgency"]:
        return Redirect(f"/panels/{panel_id}", status_code=303)
    done = await Panel.update({Panel.urgency: urgency, Panel.revision: ctx.panel["revision"] + 1, Panel.updated_at: _now()}).where(
        (Panel.id == panel_id) & (Panel.revision == ctx.panel["revision"])
    ).returning(Panel.id)
    if not done:
        raise HTTPException(status_code=409, detail="This panel changed since you opened the page. Reload the page and try again.")
    await notices.timeline(panel_id, "urgency", ctx.actor.user_id, note=f"{URGENCIES[ctx.panel['urgency']]} → {URGENCIES[urgency]}")
    panel = {**ctx.panel, "urgency": urgency}
    if urgency == "urgent":
        people = await member_ids(panel_id, include_invited=True)
        if ctx.panel["status"] != "draft":
            people |= await _ern_assemblers(ctx.panel["ern"])
        await notices.tell(request, panel, people, "panel.urgent", "the panel was marked urgent")
    return Redirect(f"/panels/{panel_id}", status_code=303)


ROUTES = [transition, change_urgency]
