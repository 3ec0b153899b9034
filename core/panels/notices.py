"""What the rest of the panel code calls after a change: timeline entry, notification, live update.

Notifications and mails name the panel by number and the patient by nickname only.
"""

from __future__ import annotations

from litestar import Request

from core.events import Event


def panel_ref(panel: dict) -> str:
    return f"Panel #{panel['id']}"


async def timeline(panel_id: int, action: str, actor_id: int | None, *, from_status: str = "", to_status: str = "", note: str = "") -> None:
    from core.panels.tables import PanelTransition

    await PanelTransition.insert(
        PanelTransition(panel=panel_id, action=action, from_status=from_status, to_status=to_status, actor=actor_id, note=note[:2000])
    )


async def tell(request: Request, panel: dict, user_ids, kind: str, what: str, *, anchor: str = "", body: str = "", attachment=None) -> int:
    """Notify ``user_ids`` (never the actor) about ``what`` happened in ``panel``.
    Urgent panels notify at once by e-mail whatever the preferences."""
    from core.notify.service import notify

    actor = request.scope.get("user")
    targets = {u for u in user_ids if u is not None and (actor is None or u != actor.user_id)}
    if not targets:
        return 0
    title = f"{panel_ref(panel)} – {what}"
    text = body or f"{what}\n\nPanel: {panel['title']}"
    return await notify(
        request.app.state.settings, targets, kind, title, f"/panels/{panel['id']}{anchor}", text,
        urgent=panel.get("urgency") == "urgent", attachment=attachment,
    )


async def emit(request: Request, name: str, panel: dict, data: dict | None = None) -> None:
    from core.identity.login import client_address

    actor = request.scope.get("user")
    await request.app.state.host.events.emit(
        Event(name, actor.user_id if actor else None, "panel", str(panel["id"]), data or {}, client_address(request))
    )


async def live(request: Request, panel_id: int, payload: dict) -> None:
    """Tell everyone with the panel page open (``discussion.live_stream`` renders it per viewer)."""
    from core.live import publish

    await publish(request, f"panel:{panel_id}", payload)
