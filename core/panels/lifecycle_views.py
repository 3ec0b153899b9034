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
    ctx = await load_panel(request, panel_id)
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


ROUTES = [transition]
