"""Panel meetings: scheduled by the lead or the assembling coordinator, with a video room,
calendar invitations (iCalendar by e-mail), changes, cancellation and attendance.

Times are stored in UTC with the IANA zone the organiser scheduled in; the page shows both.
Every change is sent again as the same calendar event (same UID, higher SEQUENCE), so the
members' calendars move or cancel it instead of adding a second one.
"""

from __future__ import annotations

import re
import secrets
from datetime import date, datetime, time, timedelta, timezone
from email.utils import parseaddr
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect

from core.panels import notices
from core.panels.access import PanelCtx, audit, check_revision, load_panel, member_ids, require
from core.panels.ical import event_ics

#: Panel states in which meetings are scheduled, changed, cancelled and attended.
MEETING_STATES = frozenset({"assembling", "open", "outcome_review"})
MIN_MINUTES, MAX_MINUTES = 15, 240
AGENDA_MAX = 5000
DEFAULT_ZONE = "Europe/Brussels"
DEFAULT_URL_TEMPLATE = "https://meet.jit.si/cpms-{room}"
#: Offered in the form; any other valid IANA zone is accepted too (and offered when in use).
ZONES = (
    "UTC", "Atlantic/Reykjavik", "Europe/Lisbon", "Europe/Dublin", "Europe/London", "Europe/Madrid", "Europe/Paris",
    "Europe/Brussels", "Europe/Amsterdam", "Europe/Luxembourg", "Europe/Berlin", "Europe/Zurich", "Europe/Vienna",
    "Europe/Rome", "Europe/Malta", "Europe/Ljubljana", "Europe/Zagreb", "Europe/Prague", "Europe/Bratislava",
    "Europe/Budapest", "Europe/Warsaw", "Europe/Copenhagen", "Europe/Oslo", "Europe/Stockholm", "Europe/Helsinki",
    "Europe/Tallinn", "Europe/Riga", "Europe/Vilnius", "Europe/Bucharest", "Europe/Sofia", "Europe/Athens",
    "Asia/Nicosia", "Atlantic/Canary", "Atlantic/Azores",
)
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$")
_ICS_NAME = re.compile(r"^(\d{1,12})\.ics$")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    """Aware UTC (SQLite may hand back naive datetimes that are UTC)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def zone(name: str) -> ZoneInfo | None:
    """The IANA zone called ``name``, or None for anything that is not one."""
    name = (name or "").strip()
    if len(name) > 60 or not _ZONE_NAME.match(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _invalid(detail: str) -> HTTPException:
    return HTTPException(status_code=422, detail=detail)


def parse_meeting_form(form, *, now: datetime | None = None) -> dict:
    """Validated values of the schedule/change form (422 with the first problem otherwise):
    ``starts_at`` (aware UTC), ``timezone``, ``minutes``, ``agenda``."""
    now = now or _now()
    tzname = str(form.get("timezone", "") or "").strip()
    tz = zone(tzname)
    if tz is None:
        raise _invalid("Choose a time zone from the list (an IANA name such as Europe/Brussels).")
    try:
        day = date.fromisoformat(str(form.get("date", "") or "").strip())
    except ValueError:
        raise _invalid("Give the date of the meeting (YYYY-MM-DD).") from None
    raw_time = str(form.get("time", "") or "").strip()
    try:
        at = time.fromisoformat(raw_time)
    except ValueError:
        raise _invalid("Give the time of the meeting (HH:MM).") from None
    local = datetime.combine(day, at.replace(second=0, microsecond=0, tzinfo=None)).replace(tzinfo=tz)
    starts_at = local.astimezone(timezone.utc)
    # A wall time inside a spring-forward gap does not exist: it does not survive the round trip.
    if starts_at.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise _invalid(f"{day.isoformat()} {raw_time} does not exist in {tzname} (the clocks change then); choose another time.")
    if starts_at <= now:
        raise _invalid("The meeting must start in the future.")
    if starts_at > now + timedelta(days=2 * 366):
        raise _invalid("Schedule the meeting within the next two years.")
    raw_minutes = str(form.get("minutes", "") or "").strip()
    if not raw_minutes.isdecimal() or not MIN_MINUTES <= int(raw_minutes) <= MAX_MINUTES:
        raise _invalid(f"The meeting lasts {MIN_MINUTES} to {MAX_MINUTES} minutes.")
    agenda = str(form.get("agenda", "") or "").replace("\r\n", "\n").strip()
    if len(agenda) > AGENDA_MAX:
        raise _invalid(f"The agenda may hold at most {AGENDA_MAX} characters.")
    return {"starts_at": starts_at, "timezone": tzname, "minutes": int(raw_minutes), "agenda": agenda}


def room_url(settings) -> str:
    """A new video room: the configured template with a random, unguessable name (128 bits)."""
    template = getattr(settings, "meeting_url_template", "") or DEFAULT_URL_TEMPLATE
    if "{room}" not in template:
        template = template.rstrip("/") + "/{room}"
    return template.replace("{room}", secrets.token_hex(16))[:300]


def when_text(moment: datetime, tzname: str) -> dict:
    """How a meeting time is shown: in its zone and in UTC."""
    moment = _utc(moment)
    local = moment.astimezone(zone(tzname) or timezone.utc)
    return {
        "local": local.strftime("%Y-%m-%d %H:%M"), "zone": tzname, "offset": local.strftime("UTC%z"),
        "utc": moment.strftime("%Y-%m-%d %H:%M UTC"), "date": local.date().isoformat(), "time": local.strftime("%H:%M"),
        "weekday": local.strftime("%A"),
    }


async def _people(user_ids) -> list[tuple[int, str, str]]:
    """(id, name, e-mail) of active users, by name."""
    from core.identity.tables import User

    ids = sorted({int(u) for u in user_ids if u is not None})
    if not ids:
        return []
    rows = await User.select(User.id, User.name, User.email).where(User.id.is_in(ids) & (User.is_active == True))  # noqa: E712
    return sorted(((r["id"], r["name"], r["email"]) for r in rows), key=lambda r: (r[1].lower(), r[0]))


def _organizer(settings) -> str:
    address = parseaddr(getattr(settings, "smtp_from", "") or "")[1]
    return address or "cpms@localhost"


def meeting_ics(settings, panel: dict, meeting: dict, people: list[tuple[int, str, str]], *, cancel: bool = False) -> str:
    """The calendar event of ``meeting`` (cancelled ones, or ``cancel``, as METHOD:CANCEL)."""
    base = getattr(settings, "base_url", "").rstrip("/")
    when = when_text(meeting["starts_at"], meeting["timezone"])
    description = "\n\n".join(part for part in (
        f"Panel #{panel['id']}: {panel['title']}",
        f"{when['local']} ({when['zone']}), {when['utc']}, {meeting['minutes']} minutes.",
        f"Video room: {meeting['room_url']}" if meeting["room_url"] else "",
        f"Agenda:\n{meeting['agenda']}" if meeting["agenda"] else "",
        f"Panel page: {base}/panels/{panel['id']}#meetings" if base else "",
    ) if part)
    return event_ics(
        uid=meeting["uid"], sequence=meeting["sequence"],
        method="CANCEL" if cancel or meeting.get("cancelled_at") else "REQUEST",
        start_utc=_utc(meeting["starts_at"]), minutes=meeting["minutes"], tzid=meeting["timezone"],
        summary=f"Panel #{panel['id']} meeting: {panel['title']}", description=description,
        location_url=meeting["room_url"], organizer_email=_organizer(settings),
        attendees=[(name, email) for _, name, email in people], dtstamp=_now(),
    )


async def _bump(ctx: PanelCtx) -> None:
    """Move the panel to its next revision, only from the one the form was built from: of two
    concurrent changes the second is refused as stale (409), and its transaction undone."""
    from core.panels.tables import Panel

    changed = await Panel.update({Panel.revision: Panel.revision + 1, Panel.updated_at: _now()}).where(
        (Panel.id == ctx.id) & (Panel.revision == ctx.panel["revision"])
    ).returning(Panel.id)
    if not changed:
        raise HTTPException(status_code=409, detail="This panel changed meanwhile. Reload the page and try again.")


async def _meeting(ctx: PanelCtx, meeting_id: int) -> dict:
    from core.panels.tables import Meeting

    row = await Meeting.select().where((Meeting.id == meeting_id) & (Meeting.panel == ctx.id)).first()
    if row is None:
        raise NotFoundException("No such meeting in this panel.")
    return row


async def _send(request: Request, ctx: PanelCtx, meeting: dict, what: str, *, cancel: bool = False) -> int:
    """Mail the invitation (or cancellation) to the lead, creator and accepted members."""
    settings = request.app.state.settings
    targets = await member_ids(ctx.id)
    people = await _people(targets)
    ics = meeting_ics(settings, ctx.panel, meeting, people, cancel=cancel)
    when = when_text(meeting["starts_at"], meeting["timezone"])
    body = "\n\n".join(part for part in (
        f"{what}.",
        f"Panel: {ctx.panel['title']}",
        f"When: {when['weekday']} {when['local']} ({when['zone']}) = {when['utc']}, {meeting['minutes']} minutes.",
        "" if cancel else f"Video room: {meeting['room_url']}",
        "" if cancel or not meeting["agenda"] else f"Agenda:\n{meeting['agenda']}",
        "The calendar invitation is attached." if not cancel else "The attached file removes the meeting from your calendar.",
    ) if part)
    method = "CANCEL" if cancel else "REQUEST"
    return await notices.tell(
        request, ctx.panel, targets, "panel.meeting", what, anchor="#meetings", body=body,
        attachment=(f"panel-{ctx.id}-meeting.ics", f"text/calendar; method={method}", ics),
    )


def _manage(ctx: PanelCtx, what: str) -> None:
    require(ctx, "lead", "assembler", states=MEETING_STATES, what=what)


def _redirect(ctx: PanelCtx) -> Redirect:
    return Redirect(f"/panels/{ctx.id}#meetings", status_code=303)


@post("/panels/{panel_id:int}/meetings", opt={"permission": "panels.view"}, include_in_schema=False)
async def schedule(request: Request, panel_id: FromPath[int]) -> Redirect:
    from core.panels.tables import Meeting

    ctx = await load_panel(request, panel_id)
    _manage(ctx, "schedule a meeting")
    form = await request.form()
    check_revision(ctx, form)
    values = parse_meeting_form(form)
    actor = request.scope["user"]
    row = Meeting(
        panel=ctx.id, uid=f"{secrets.token_hex(16)}@cpms-panels", room_url=room_url(request.app.state.settings),
        created_by=actor.user_id, sequence=0, **values,
    )
    async with Meeting._meta.db.transaction():
        await _bump(ctx)
        await row.save()
    meeting = await _meeting(ctx, row.id)
    when = when_text(meeting["starts_at"], meeting["timezone"])
    await notices.timeline(ctx.id, "meeting_scheduled", actor.user_id, note=f"{when['local']} {when['zone']} ({when['utc']})")
    await _send(request, ctx, meeting, f"Meeting on {when['local']} ({when['zone']})")
    await notices.emit(request, "panel.meeting_scheduled", ctx.panel, {"meeting": row.id, "change": "scheduled", "sequence": 0})
    await notices.live(request, ctx.id, {"type": "meeting", "id": row.id, "change": "scheduled"})
    return _redirect(ctx)


@post("/panels/{panel_id:int}/meetings/{meeting_id:int}/edit", opt={"permission": "panels.view"}, include_in_schema=False)
async def reschedule(request: Request, panel_id: FromPath[int], meeting_id: FromPath[int]) -> Redirect:
    from core.panels.tables import Meeting

    ctx = await load_panel(request, panel_id)
    _manage(ctx, "change a meeting")
    form = await request.form()
    check_revision(ctx, form)
    meeting = await _meeting(ctx, meeting_id)
    if meeting["cancelled_at"] is not None:
        raise HTTPException(status_code=409, detail="This meeting was cancelled; schedule a new one.")
    if _utc(meeting["starts_at"]) + timedelta(minutes=meeting["minutes"]) <= _now():
        raise HTTPException(status_code=409, detail="This meeting is over; schedule a new one.")
    values = parse_meeting_form(form)
    async with Meeting._meta.db.transaction():
        await _bump(ctx)
        await Meeting.update({**{getattr(Meeting, k): v for k, v in values.items()}, Meeting.sequence: Meeting.sequence + 1}).where(
            Meeting.id == meeting_id
        )
    meeting = await _meeting(ctx, meeting_id)
    when = when_text(meeting["starts_at"], meeting["timezone"])
    actor = request.scope["user"]
    await notices.timeline(ctx.id, "meeting_rescheduled", actor.user_id, note=f"{when['local']} {when['zone']} ({when['utc']})")
    await _send(request, ctx, meeting, f"Meeting moved to {when['local']} ({when['zone']})")
    await notices.emit(request, "panel.meeting_scheduled", ctx.panel, {"meeting": meeting_id, "change": "rescheduled", "sequence": meeting["sequence"]})
    await notices.live(request, ctx.id, {"type": "meeting", "id": meeting_id, "change": "rescheduled"})
    return _redirect(ctx)


@post("/panels/{panel_id:int}/meetings/{meeting_id:int}/cancel", opt={"permission": "panels.view"}, include_in_schema=False)
async def cancel(request: Request, panel_id: FromPath[int], meeting_id: FromPath[int]) -> Redirect:
    from core.panels.tables import Meeting

    ctx = await load_panel(request, panel_id)
    _manage(ctx, "cancel a meeting")
    form = await request.form()
    check_revision(ctx, form)
    meeting = await _meeting(ctx, meeting_id)
    if meeting["cancelled_at"] is not None:
        raise HTTPException(status_code=409, detail="This meeting is already cancelled.")
    if _utc(meeting["starts_at"]) + timedelta(minutes=meeting["minutes"]) <= _now():
        raise HTTPException(status_code=409, detail="This meeting is over; it can no longer be cancelled.")
    async with Meeting._meta.db.transaction():
        await _bump(ctx)
        await Meeting.update({Meeting.cancelled_at: _now(), Meeting.sequence: Meeting.sequence + 1}).where(Meeting.id == meeting_id)
    meeting = await _meeting(ctx, meeting_id)
    when = when_text(meeting["starts_at"], meeting["timezone"])
    actor = request.scope["user"]
    await notices.timeline(ctx.id, "meeting_cancelled", actor.user_id, note=f"{when['local']} {when['zone']} ({when['utc']})")
    await _send(request, ctx, meeting, f"Meeting of {when['local']} ({when['zone']}) cancelled", cancel=True)
    await notices.emit(request, "panel.meeting_scheduled", ctx.panel, {"meeting": meeting_id, "change": "cancelled", "sequence": meeting["sequence"]})
    await notices.live(request, ctx.id, {"type": "meeting", "id": meeting_id, "change": "cancelled"})
    return _redirect(ctx)


@post("/panels/{panel_id:int}/meetings/{meeting_id:int}/attendance", opt={"permission": "panels.view"}, include_in_schema=False)
async def attendance(request: Request, panel_id: FromPath[int], meeting_id: FromPath[int]) -> Redirect:
    """Who was present: one row per expected participant (lead, creator, accepted members)."""
    from core.panels.tables import MeetingAttendance

    ctx = await load_panel(request, panel_id)
    require(ctx, "lead", states=MEETING_STATES, what="record attendance")
    form = await request.form()
    check_revision(ctx, form)
    meeting = await _meeting(ctx, meeting_id)
    if meeting["cancelled_at"] is not None:
        raise HTTPException(status_code=409, detail="This meeting was cancelled.")
    if _utc(meeting["starts_at"]) > _now():
        raise HTTPException(status_code=409, detail="Attendance is recorded once the meeting has started.")
    expected = await member_ids(ctx.id)
    present: set[int] = set()
    for raw in form.getall("present") if hasattr(form, "getall") else []:
        raw = str(raw)
        if not raw.isdecimal() or int(raw) not in expected:
            raise _invalid("Only the panel's members can be marked present; reload the page.")
        present.add(int(raw))
    actor = request.scope["user"]
    async with MeetingAttendance._meta.db.transaction():
        await MeetingAttendance.delete().where(MeetingAttendance.meeting == meeting_id)
        await MeetingAttendance.insert(*[
            MeetingAttendance(meeting=meeting_id, user=u, present=u in present, recorded_by=actor.user_id) for u in sorted(expected)
        ])
    await notices.timeline(ctx.id, "attendance_recorded", actor.user_id, note=f"{len(present)} of {len(expected)} present")
    await audit(request, ctx, "panel.meeting_attendance", {"meeting": meeting_id, "present": sorted(present)})
    await notices.live(request, ctx.id, {"type": "meeting", "id": meeting_id, "change": "attendance"})
    return _redirect(ctx)


@get("/panels/{panel_id:int}/meetings/{name:str}", opt={"permission": "panels.view"}, include_in_schema=False)
async def download_ics(request: Request, panel_id: FromPath[int], name: FromPath[str]) -> Response:
    """``/panels/<id>/meetings/<meeting id>.ics``: the event for one's own calendar."""
    match = _ICS_NAME.match(name)
    if match is None:
        raise NotFoundException("Not found.")
    ctx = await load_panel(request, panel_id)
    meeting = await _meeting(ctx, int(match.group(1)))
    people = await _people(await member_ids(ctx.id))
    body = meeting_ics(request.app.state.settings, ctx.panel, meeting, people)
    method = "CANCEL" if meeting["cancelled_at"] else "REQUEST"
    return Response(
        body.encode("utf-8"), media_type=f"text/calendar; charset=utf-8; method={method}",
        headers={"Content-Disposition": f'attachment; filename="panel-{ctx.id}-meeting-{meeting["id"]}.ics"'},
    )


async def section(request: Request, ctx: PanelCtx) -> dict:
    """What ``panels/_meetings.html`` shows: the meetings (newest first), what the actor may do."""
    from core.panels.tables import Meeting, MeetingAttendance

    rows = await Meeting.select().where(Meeting.panel == ctx.id).order_by(Meeting.starts_at, ascending=False)
    now = _now()
    expected = await _people(await member_ids(ctx.id))
    names = {uid: name for uid, name, _ in expected}
    attendance: dict[int, dict[int, bool]] = {}
    if rows:
        for a in await MeetingAttendance.select().where(MeetingAttendance.meeting.is_in([r["id"] for r in rows])):
            attendance.setdefault(a["meeting"], {})[a["user"]] = a["present"]
    unknown = {u for marks in attendance.values() for u in marks} - set(names)
    if unknown:
        names.update({uid: name for uid, name, _ in await _people(unknown)})
    manage = ctx.has("lead", "assembler") and ctx.panel["status"] in MEETING_STATES
    meetings = []
    for r in rows:
        start = _utc(r["starts_at"])
        end = start + timedelta(minutes=r["minutes"])
        marks = attendance.get(r["id"], {})
        meetings.append({
            **r, "when": when_text(start, r["timezone"]), "ends": when_text(end, r["timezone"]),
            "cancelled": r["cancelled_at"] is not None, "started": start <= now, "over": end <= now,
            "upcoming": r["cancelled_at"] is None and end > now,
            "attendance_recorded": bool(marks),
            "present": [names.get(u, f"user {u}") for u, here in marks.items() if here],
            "absent": [names.get(u, f"user {u}") for u, here in marks.items() if not here],
            "marks": marks,
            "may_change": manage and r["cancelled_at"] is None and end > now,
            "may_record": ctx.has("lead") and ctx.panel["status"] in MEETING_STATES and r["cancelled_at"] is None and start <= now,
        })
    previous = next((r["timezone"] for r in rows if r["created_by"] == getattr(ctx.actor, "user_id", None)), None)
    default_zone = previous or (rows[0]["timezone"] if rows else DEFAULT_ZONE)
    in_use = {r["timezone"] for r in rows} | {default_zone}
    zones = list(ZONES) + sorted(z for z in in_use if z not in ZONES)
    tomorrow = (now + timedelta(days=1)).astimezone(zone(default_zone) or timezone.utc)
    return {
        "meetings": meetings,
        "meeting_may_schedule": manage,
        "meeting_zones": zones,
        "meeting_default_zone": default_zone,
        "meeting_default_date": tomorrow.date().isoformat(),
        "meeting_min_date": now.date().isoformat(),
        "meeting_minutes_range": (MIN_MINUTES, MAX_MINUTES),
        "meeting_agenda_max": AGENDA_MAX,
        "meeting_people": [{"id": uid, "name": name} for uid, name, _ in expected],
    }


ROUTES = [schedule, reschedule, cancel, attendance, download_ics]
