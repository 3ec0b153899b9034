"""What a consent change does to the patient's panels (the rules: ``core.patients.consent_rules``).

Access is never stored: ``access.load_panel`` and ``is_accepted_member`` ask the patient's
current consent on every request, so a withdrawal stops every member at once. What is stored
here is the history: when sharing stops (or starts again), each panel about the patient that is
still running gets a timeline entry, its lead, creator and assembling coordinator are told, and
open panel pages reload their state.
"""

from __future__ import annotations

from litestar import Request

#: Panels that a consent change suspends or resumes (closed and cancelled ones only keep history).
RUNNING = ("draft", "submitted", "assembling", "open", "outcome_review")

SUSPENDED_WHAT = "suspended: the patient's consent no longer allows sharing their data"
RESUMED_WHAT = "resumed: the patient's consent allows sharing their data again"


async def consent_changed(request: Request, patient: dict, shareable_before: bool) -> int:
    """Call after a consent row was committed; returns how many panels changed state."""
    from core.panels import notices
    from core.panels.tables import Panel
    from core.patients.consent_rules import patient_shareable

    shareable = await patient_shareable(patient["id"])
    if shareable == shareable_before:
        return 0
    actor = request.scope.get("user")
    panels = await Panel.select().where((Panel.patient == patient["id"]) & Panel.status.is_in(list(RUNNING)))
    what = RESUMED_WHAT if shareable else SUSPENDED_WHAT
    for panel in panels:
        await notices.timeline(panel["id"], "consent_resumed" if shareable else "consent_suspended", actor.user_id if actor else None)
        people = {panel["lead"], panel["created_by"], panel["assembler"]}
        # The body names no clinical detail (the default adds the panel's title): recipients
        # outside the enrolling hospital no longer have the right to see it.
        await notices.tell(request, panel, people, "panel.consent", what, body=what)
        await notices.live(request, panel["id"], {"type": "status", "status": panel["status"]})
    return len(panels)


SUSPENDED_TITLE = "Suspended: the patient's consent does not allow sharing"


async def mark_suspended(actor, rows: list[dict]) -> list[dict]:
    """Panel list rows (``panel_rows``) with ``suspended`` set; outside the enrolling hospital a
    suspended panel's title (clinical information) is replaced by why it is suspended."""
    from core.patients.access import current_consents
    from core.patients.consent_rules import allowed

    consents = await current_consents(list({r["patient_id"] for r in rows}))
    out = []
    for row in rows:
        if not allowed(consents.get(row["patient_id"], {}), "panels"):
            row = {**row, "suspended": True}
            if actor is None or actor.hcp_id != row["patient_hcp"]:
                # Neither the title nor a link: the page behind it would only refuse (403).
                row["title"], row["closed_to_viewer"] = SUSPENDED_TITLE, True
        out.append(row)
    return out


async def tell_recipients(request: Request, patient_id: int, what: str) -> int:
    """GDPR Art. 19: tell everyone the patient's data was disclosed to through a panel (lead,
    creator, accepted members of panels not cancelled) about a rectification; returns how many."""
    from core.panels import notices
    from core.panels.tables import Panel, PanelMember

    told = 0
    for panel in await Panel.select().where((Panel.patient == patient_id) & (Panel.status != "cancelled")):
        members = await PanelMember.select(PanelMember.user).where(
            (PanelMember.panel == panel["id"]) & (PanelMember.status == "accepted"))
        people = {panel["lead"], panel["created_by"]} | {m["user"] for m in members}
        told += await notices.tell(request, panel, people, "panel.status", what, body=what)  # no clinical title
    return told
