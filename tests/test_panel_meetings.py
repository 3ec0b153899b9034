"""Panel meetings: the iCalendar text itself, scheduling with its rules and refusals,
invitations that reach a real SMTP server as calendar events, changes, cancellation, the
.ics download and attendance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.panels.ical import LINE_OCTETS, escape_text, event_ics, fold, unfold
from tests.conftest import app_client, login, make_settings, make_user, post_form
from tests.panels_support import hcp_of, make_patient, make_panel, revision
from tests.support.smtp import smtp_server  # noqa: F401  (fixture)

NEXT_YEAR = datetime.now(timezone.utc).year + 1
# Brussels is UTC+1 in January, UTC+2 in July.
WINTER = {"date": f"{NEXT_YEAR}-01-20", "time": "14:00", "timezone": "Europe/Brussels", "minutes": "90", "agenda": "Review the MRI; decide on exome"}
WINTER_UTC = f"{NEXT_YEAR}0120T130000Z"
SUMMER = {"date": f"{NEXT_YEAR}-07-21", "time": "09:30", "timezone": "Europe/Brussels", "minutes": "45", "agenda": "Moved: exome results"}
SUMMER_UTC = f"{NEXT_YEAR}0721T073000Z"


# --- reading iCalendar back ---------------------------------------------------------------------------


def _split(line: str) -> tuple[str, dict, str]:
    """NAME;PARAM=V;...:VALUE (colons inside quoted parameter values are not separators)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            head, value = line[:i], line[i + 1:]
            break
    else:
        raise AssertionError(f"no value in {line!r}")
    name, *params = head.split(";")
    return name.upper(), dict(p.split("=", 1) for p in params), value


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append("\n" if nxt in "nN" else nxt)
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def parse_ics(text: str) -> dict[str, list[tuple[dict, str]]]:
    props: dict[str, list[tuple[dict, str]]] = {}
    for line in unfold(text):
        name, params, value = _split(line)
        props.setdefault(name, []).append((params, value))
    return props


def one(props, name: str) -> str:
    [(_, value)] = props[name]
    return value


def _ics(**over) -> str:
    values = dict(
        uid="abc123@cpms-panels", sequence=2, method="REQUEST", start_utc=datetime(2027, 3, 4, 12, 0, tzinfo=timezone.utc),
        minutes=60, tzid="Europe/Brussels", summary="Panel #7 meeting: ataxia", description="Agenda",
        location_url="https://meet.example/cpms-room", organizer_email="cpms@mail.test",
        attendees=[("Dr Ana", "ana@example.org")], dtstamp=datetime(2026, 1, 1, 8, 0, tzinfo=timezone.utc),
    )
    values.update(over)
    return event_ics(**values)


# --- ical.py: pure ------------------------------------------------------------------------------------


def test_ics_structure_crlf_and_utc_times():
    text = _ics()
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")  # no bare line feeds
    lines = text.split("\r\n")[:-1]
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    props = parse_ics(text)
    assert one(props, "PRODID") == "-//CPMS//Panels//EN"
    assert one(props, "VERSION") == "2.0"
    assert one(props, "METHOD") == "REQUEST"
    assert one(props, "UID") == "abc123@cpms-panels"
    assert one(props, "SEQUENCE") == "2"
    assert one(props, "DTSTART") == "20270304T120000Z"
    assert one(props, "DTEND") == "20270304T130000Z"
    assert one(props, "DTSTAMP") == "20260101T080000Z"
    assert one(props, "STATUS") == "CONFIRMED"
    assert one(props, "X-WR-TIMEZONE") == "Europe/Brussels"
    assert "Europe/Brussels" in _unescape(one(props, "COMMENT"))
    assert one(props, "ORGANIZER") == "mailto:cpms@mail.test"
    [(params, value)] = props["ATTENDEE"]
    assert value == "mailto:ana@example.org" and params["CN"] == '"Dr Ana"'
    # METHOD belongs to the calendar, before the event starts.
    assert lines.index("METHOD:REQUEST") < lines.index("BEGIN:VEVENT")


def test_ics_cancel_and_bad_arguments():
    props = parse_ics(_ics(method="CANCEL", sequence=3))
    assert one(props, "METHOD") == "CANCEL" and one(props, "STATUS") == "CANCELLED" and one(props, "SEQUENCE") == "3"
    with pytest.raises(ValueError):
        _ics(method="PUBLISH")
    with pytest.raises(ValueError):
        _ics(start_utc=datetime(2027, 3, 4, 12, 0))  # naive: which zone?
    with pytest.raises(ValueError):
        _ics(uid="a\r\nX-EVIL:1")


def test_ics_start_given_in_another_zone_is_written_in_utc():
    from zoneinfo import ZoneInfo

    start = datetime(2027, 7, 1, 9, 0, tzinfo=ZoneInfo("Europe/Athens"))  # UTC+3 in summer
    assert one(parse_ics(_ics(start_utc=start, minutes=30)), "DTEND") == "20270701T063000Z"


def test_text_escaping_round_trips():
    raw = "Agenda; items, one\\two\nsecond line\r\nthird"
    assert escape_text(raw) == "Agenda\\; items\\, one\\\\two\\nsecond line\\nthird"
    props = parse_ics(_ics(description=raw, summary="A, B; C"))
    assert _unescape(one(props, "DESCRIPTION")) == raw.replace("\r\n", "\n")
    assert _unescape(one(props, "SUMMARY")) == "A, B; C"
    # A line break in a value can never start a new property.
    injected = parse_ics(_ics(summary="x\r\nATTENDEE:mailto:evil@example.org"))
    assert len(injected["ATTENDEE"]) == 1


def test_long_lines_fold_at_75_octets_without_splitting_characters():
    description = "Schädel-MRT übermorgen – ΣΧΟΛΙΟ 🧬 " * 20
    names = [("Dr Émilie Œuvray-Łukasiewicz " * 3, "emilie@example.org")]
    text = _ics(description=description, attendees=names)
    for physical in text.split("\r\n")[:-1]:
        assert len(physical.encode("utf-8")) <= LINE_OCTETS, physical
        physical.encode("utf-8").decode("utf-8")  # each line is whole UTF-8 on its own
    assert any(line.startswith(" ") for line in text.split("\r\n"))  # something was folded
    props = parse_ics(text)
    assert _unescape(one(props, "DESCRIPTION")) == description
    [(params, _)] = props["ATTENDEE"]
    assert params["CN"] == '"' + names[0][0] + '"'


def test_fold_boundaries():
    assert fold("A" * 75) == "A" * 75
    assert fold("A" * 76) == "A" * 75 + "\r\n " + "A"
    # 74 ASCII octets and a 2-octet letter would make 76: the letter moves to the next line.
    folded = fold("A" * 74 + "é" + "B")
    assert folded == "A" * 74 + "\r\n " + "éB"
    assert unfold(folded + "\r\n") == ["A" * 74 + "éB"]


# --- the HTTP side ------------------------------------------------------------------------------------


async def as_user(client, email: str) -> None:
    client.cookies.clear()
    r = await login(client, email)
    assert r.status_code in (302, 303), r.text


async def cast():
    """The enrolling HP (creator), a lead at another hospital, two accepted members, one invitee."""
    creator = await make_user("creator@example.org", name="Dr Creator")
    lead = await make_user("lead@example.org", hcp="Lead Hospital", name="Dr Lead")
    ana = await make_user("ana@example.org", hcp="Ana Hospital", name="Dr Ana Müller")
    ben = await make_user("ben@example.org", hcp="Ben Hospital", name="Dr Ben")
    invitee = await make_user("invitee@example.org", hcp="Ben Hospital", name="Dr Invitee")
    patient = await make_patient(await hcp_of(creator))
    return {"creator": creator, "lead": lead, "ana": ana, "ben": ben, "invitee": invitee, "patient": patient}


async def new_panel(people, status="open"):
    return await make_panel(
        people["patient"], people["creator"], lead=people["lead"], status=status,
        members=[people["ana"], people["ben"]], invited=[people["invitee"]],
    )


async def meetings_of(pid: int) -> list[dict]:
    from core.panels.tables import Meeting

    return await Meeting.select().where(Meeting.panel == pid).order_by(Meeting.id)


async def schedule(client, pid: int, values: dict, rev: str | None = None):
    return await post_form(client, f"/panels/{pid}/meetings", {**values, "revision": rev if rev is not None else await revision(pid)})


async def outbox() -> list[dict]:
    from core.mail.tables import OutboxMail

    return await OutboxMail.select().order_by(OutboxMail.id)


async def test_invitations_changes_and_cancellation_reach_members_by_mail(clean_db, smtp_server):
    from core.activity.tables import Activity
    from core.app import create_app

    people = await cast()
    pid = await new_panel(people)
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=smtp_server.port, smtp_from="CPMS <cpms@mail.test>",
                             meeting_url_template="https://video.example/cpms-{room}")
    async with app_client(create_app(settings)) as client:
        await as_user(client, "lead@example.org")
        before = await revision(pid)
        r = await schedule(client, pid, WINTER)
        assert r.status_code == 303, r.text
        assert r.headers["location"] == f"/panels/{pid}#meetings"
        assert int(await revision(pid)) == int(before) + 1

        [meeting] = await meetings_of(pid)
        assert meeting["timezone"] == "Europe/Brussels" and meeting["minutes"] == 90 and meeting["sequence"] == 0
        assert meeting["starts_at"].astimezone(timezone.utc) == datetime(NEXT_YEAR, 1, 20, 13, 0, tzinfo=timezone.utc)
        assert meeting["room_url"].startswith("https://video.example/cpms-")
        room = meeting["room_url"].rsplit("-", 1)[1]
        assert len(room) >= 32 and room.isalnum()  # 128 random bits

        # The lead acted, so the creator and the two accepted members are told; not the invitee.
        mails = {m["to"]: m for m in smtp_server.messages}
        assert set(mails) == {"creator@example.org", "ana@example.org", "ben@example.org"}
        for address, mail in mails.items():
            assert f"Panel #{pid}" in mail["subject"] and "Meeting on" in mail["subject"]
            assert meeting["room_url"] in mail["body"]
            [(name, mimetype, ics)] = mail["attachments"]
            assert name == f"panel-{pid}-meeting.ics" and mimetype == "text/calendar"
            props = parse_ics(ics)
            assert one(props, "METHOD") == "REQUEST"
            assert one(props, "UID") == meeting["uid"]
            assert one(props, "SEQUENCE") == "0"
            assert one(props, "DTSTART") == WINTER_UTC
            assert one(props, "DTEND") == f"{NEXT_YEAR}0120T143000Z"
            assert one(props, "URL") == meeting["room_url"]
            assert "Review the MRI" in _unescape(one(props, "DESCRIPTION"))
            attendees = {value for _, value in props["ATTENDEE"]}
            assert f"mailto:{address}" in attendees and "mailto:lead@example.org" in attendees
            assert "mailto:invitee@example.org" not in attendees
            assert people["patient"]["pseudonym"] not in ics
        # The MIME part says it is an invitation (iMIP).
        assert {m["attachment_type"] for m in await outbox()} == {"text/calendar; method=REQUEST"}
        assert await Activity.count().where(Activity.action == "panel.meeting_scheduled") == 1

        # Moved: same event (UID), next SEQUENCE, new time, same room.
        smtp_server.messages.clear()
        r = await post_form(client, f"/panels/{pid}/meetings/{meeting['id']}/edit", {**SUMMER, "revision": await revision(pid)})
        assert r.status_code == 303, r.text
        [moved] = await meetings_of(pid)
        assert moved["sequence"] == 1 and moved["uid"] == meeting["uid"] and moved["room_url"] == meeting["room_url"]
        assert moved["minutes"] == 45 and moved["agenda"] == "Moved: exome results"
        assert len(smtp_server.messages) == 3
        for mail in smtp_server.messages:
            assert "Meeting moved" in mail["subject"]
            props = parse_ics(mail["attachments"][0][2])
            assert one(props, "UID") == meeting["uid"] and one(props, "SEQUENCE") == "1"
            assert one(props, "DTSTART") == SUMMER_UTC and one(props, "METHOD") == "REQUEST"

        # Cancelled: METHOD:CANCEL for the same event.
        smtp_server.messages.clear()
        r = await post_form(client, f"/panels/{pid}/meetings/{meeting['id']}/cancel", {"revision": await revision(pid)})
        assert r.status_code == 303, r.text
        [gone] = await meetings_of(pid)
        assert gone["cancelled_at"] is not None and gone["sequence"] == 2
        assert {m["to"] for m in smtp_server.messages} == {"creator@example.org", "ana@example.org", "ben@example.org"}
        for mail in smtp_server.messages:
            assert "cancelled" in mail["subject"]
            props = parse_ics(mail["attachments"][0][2])
            assert one(props, "METHOD") == "CANCEL" and one(props, "STATUS") == "CANCELLED"
            assert one(props, "UID") == meeting["uid"] and one(props, "SEQUENCE") == "2"
        assert (await outbox())[-1]["attachment_type"] == "text/calendar; method=CANCEL"
        assert await Activity.count().where(Activity.action == "panel.meeting_scheduled") == 3

        # A cancelled meeting can be neither changed nor cancelled again.
        r = await post_form(client, f"/panels/{pid}/meetings/{meeting['id']}/edit", {**WINTER, "revision": await revision(pid)})
        assert r.status_code == 409
        r = await post_form(client, f"/panels/{pid}/meetings/{meeting['id']}/cancel", {"revision": await revision(pid)})
        assert r.status_code == 409
        assert (await meetings_of(pid))[0]["sequence"] == 2


async def test_timeline_and_inbox_record_the_meeting(client):
    from core.notify.tables import Notification
    from core.panels.tables import PanelTransition

    people = await cast()
    pid = await new_panel(people)
    await as_user(client, "lead@example.org")
    assert (await schedule(client, pid, WINTER)).status_code == 303
    actions = [t["action"] for t in await PanelTransition.select().where(PanelTransition.panel == pid)]
    assert actions == ["meeting_scheduled"]
    inbox = await Notification.select().where(Notification.kind == "panel.meeting")
    assert {n["user"] for n in inbox} == {people["creator"], people["ana"], people["ben"]}
    assert all(n["link"] == f"/panels/{pid}#meetings" for n in inbox)


async def test_assembler_may_schedule_while_assembling(client):
    people = await cast()
    await make_user("coord@example.org", roles=(("coordinator", "ERN RND"),), hcp="Coord Hospital", name="Coordinator")
    pid = await new_panel(people, status="assembling")
    await as_user(client, "coord@example.org")
    r = await schedule(client, pid, WINTER)
    assert r.status_code == 303, r.text
    assert len(await meetings_of(pid)) == 1


async def test_who_may_not_schedule(client):
    people = await cast()
    pid = await new_panel(people)
    await make_user("outsider@example.org", hcp="Far Hospital", name="Dr Outsider")
    await make_user("researcher@example.org", roles=(("researcher", "ERN RND"),), hcp=None, name="Researcher")
    # Someone outside the panel does not even learn that it exists.
    await as_user(client, "outsider@example.org")
    assert (await schedule(client, pid, WINTER)).status_code == 404
    # A member who is not the lead may not.
    await as_user(client, "ana@example.org")
    assert (await schedule(client, pid, WINTER)).status_code == 403
    # The creator (enrolling HP) is not the lead here either.
    await as_user(client, "creator@example.org")
    assert (await schedule(client, pid, WINTER)).status_code == 403
    # Researchers hold no panel permission at all.
    await as_user(client, "researcher@example.org")
    assert (await schedule(client, pid, WINTER)).status_code == 403
    # An invitee who has not accepted yet sees only the invitation.
    await as_user(client, "invitee@example.org")
    assert (await schedule(client, pid, WINTER)).status_code == 403
    assert await meetings_of(pid) == []
    assert await outbox() == []


@pytest.mark.parametrize("change, status", [
    ({"date": "2020-01-20"}, 422),                      # in the past
    ({"timezone": "Mars/Olympus_Mons"}, 422),           # no such zone
    ({"timezone": "../../etc/passwd"}, 422),            # not a zone name at all
    ({"timezone": ""}, 422),
    ({"date": f"{NEXT_YEAR}-02-30"}, 422),              # no such day
    ({"time": "25:00"}, 422),
    ({"minutes": "10"}, 422),
    ({"minutes": "241"}, 422),
    ({"minutes": "sixty"}, 422),
    ({"agenda": "x" * 5001}, 422),
    # The last Sunday of March, 02:30 in Brussels: the clocks jump from 02:00 to 03:00.
    ({"date": f"{NEXT_YEAR}-03-{31 - (datetime(NEXT_YEAR, 3, 31).weekday() + 1) % 7:02d}", "time": "02:30"}, 422),
])
async def test_invalid_meetings_store_nothing(client, change, status):
    people = await cast()
    pid = await new_panel(people)
    await as_user(client, "lead@example.org")
    before = await revision(pid)
    r = await schedule(client, pid, {**WINTER, **change})
    assert r.status_code == status, r.text
    assert await meetings_of(pid) == []
    assert await outbox() == []
    assert await revision(pid) == before


async def test_stale_form_and_closed_panel_are_refused(client):
    people = await cast()
    pid = await new_panel(people)
    await as_user(client, "lead@example.org")
    stale = str(int(await revision(pid)) - 1)
    assert (await schedule(client, pid, WINTER, rev=stale)).status_code == 409
    assert (await schedule(client, pid, WINTER, rev="")).status_code == 409
    assert await meetings_of(pid) == []

    closed = await new_panel(people, status="closed")
    assert (await schedule(client, closed, WINTER)).status_code == 409
    draft = await new_panel(people, status="draft")
    assert (await schedule(client, draft, WINTER)).status_code == 409
    assert await meetings_of(closed) == [] and await meetings_of(draft) == []
    assert await outbox() == []


async def test_ics_download_for_full_viewers_only(client):
    people = await cast()
    pid = await new_panel(people)
    await as_user(client, "lead@example.org")
    assert (await schedule(client, pid, WINTER)).status_code == 303
    [meeting] = await meetings_of(pid)

    await as_user(client, "ben@example.org")
    r = await client.get(f"/panels/{pid}/meetings/{meeting['id']}.ics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/calendar")
    assert f'filename="panel-{pid}-meeting-{meeting["id"]}.ics"' in r.headers["content-disposition"]
    props = parse_ics(r.text)
    assert one(props, "UID") == meeting["uid"] and one(props, "DTSTART") == WINTER_UTC and one(props, "METHOD") == "REQUEST"
    assert (await client.get(f"/panels/{pid}/meetings/{meeting['id'] + 1000}.ics")).status_code == 404
    assert (await client.get(f"/panels/{pid}/meetings/{meeting['id']}.txt")).status_code == 404

    # The enrolling hospital sees the panel too.
    await as_user(client, "creator@example.org")
    assert (await client.get(f"/panels/{pid}/meetings/{meeting['id']}.ics")).status_code == 200
    # The meeting is not reachable through another panel's address.
    other = await new_panel(people)
    assert (await client.get(f"/panels/{other}/meetings/{meeting['id']}.ics")).status_code == 404

    await as_user(client, "invitee@example.org")
    assert (await client.get(f"/panels/{pid}/meetings/{meeting['id']}.ics")).status_code == 403
    await make_user("outsider@example.org", hcp="Far Hospital")
    await as_user(client, "outsider@example.org")
    assert (await client.get(f"/panels/{pid}/meetings/{meeting['id']}.ics")).status_code == 404


async def test_attendance_by_the_lead_once_started(client):
    from core.panels.tables import Meeting, MeetingAttendance

    people = await cast()
    pid = await new_panel(people)
    await as_user(client, "lead@example.org")
    assert (await schedule(client, pid, WINTER)).status_code == 303
    [meeting] = await meetings_of(pid)
    url = f"/panels/{pid}/meetings/{meeting['id']}/attendance"

    r = await post_form(client, url, {"present": [str(people["ana"])], "revision": await revision(pid)})
    assert r.status_code == 409  # not started yet
    assert await MeetingAttendance.count() == 0

    # The meeting began ten minutes ago.
    await Meeting.update({Meeting.starts_at: datetime.now(timezone.utc) - timedelta(minutes=10)}).where(Meeting.id == meeting["id"])

    await as_user(client, "ana@example.org")
    assert (await post_form(client, url, {"present": [str(people["ana"])], "revision": await revision(pid)})).status_code == 403
    assert await MeetingAttendance.count() == 0

    await as_user(client, "lead@example.org")
    outsider = await make_user("outsider@example.org", hcp="Far Hospital")
    r = await post_form(client, url, {"present": [str(people["ana"]), str(outsider)], "revision": await revision(pid)})
    assert r.status_code == 422
    assert await MeetingAttendance.count() == 0

    r = await post_form(client, url, {"present": [str(people["ana"]), str(people["lead"])], "revision": await revision(pid)})
    assert r.status_code == 303, r.text
    marks = {a["user"]: a["present"] for a in await MeetingAttendance.select().where(MeetingAttendance.meeting == meeting["id"])}
    assert marks == {people["lead"]: True, people["ana"]: True, people["ben"]: False, people["creator"]: False}

    # Recorded again: replaced, not added to.
    r = await post_form(client, url, {"present": [str(people["ben"])], "revision": await revision(pid)})
    assert r.status_code == 303
    marks = {a["user"]: a["present"] for a in await MeetingAttendance.select().where(MeetingAttendance.meeting == meeting["id"])}
    assert marks == {people["lead"]: False, people["ana"]: False, people["ben"]: True, people["creator"]: False}

    # An ongoing meeting can no longer be moved into the past, nor can a finished one be cancelled.
    await Meeting.update({Meeting.starts_at: datetime.now(timezone.utc) - timedelta(hours=5)}).where(Meeting.id == meeting["id"])
    r = await post_form(client, f"/panels/{pid}/meetings/{meeting['id']}/cancel", {"revision": await revision(pid)})
    assert r.status_code == 409
    assert (await meetings_of(pid))[0]["cancelled_at"] is None


async def test_section_shows_times_in_the_zone_and_utc(client):
    """The section's data and template, rendered as the panel page includes them."""
    people = await cast()
    pid = await new_panel(people)
    await as_user(client, "lead@example.org")
    assert (await schedule(client, pid, SUMMER)).status_code == 303
    r = await client.get(f"/panels/{pid}")
    assert r.status_code == 200, r.text[:2000]
    assert f"{NEXT_YEAR}-07-21 09:30" in r.text and "Europe/Brussels" in r.text
    assert f"{NEXT_YEAR}-07-21 07:30 UTC" in r.text
    [meeting] = await meetings_of(pid)
    assert f"/panels/{pid}/meetings/{meeting['id']}.ics" in r.text
    assert f'action="/panels/{pid}/meetings/{meeting["id"]}/edit"' in r.text  # the lead may change it
    assert f'action="/panels/{pid}/meetings"' in r.text

    await as_user(client, "ana@example.org")
    r = await client.get(f"/panels/{pid}")
    assert r.status_code == 200
    assert f"{NEXT_YEAR}-07-21 07:30 UTC" in r.text and meeting["room_url"] in r.text
    assert f'action="/panels/{pid}/meetings"' not in r.text and "/edit\"" not in r.text.split('id="meetings"')[1].split("</section>")[0]
