"""iCalendar (RFC 5545) text for panel meetings, as sent with iTIP (RFC 5546) invitations.

A pure function of its arguments: no database, no clock. Times are written in UTC ("Z"),
which every calendar converts to its owner's zone; the zone the organiser scheduled in is
named in ``X-WR-TIMEZONE`` and in a comment, for people reading the file.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

PRODID = "-//CPMS//Panels//EN"
METHODS = ("REQUEST", "CANCEL")
#: Octets a content line may hold, without its CRLF (RFC 5545 section 3.1).
LINE_OCTETS = 75
CRLF = "\r\n"

# Control characters have no place in a content line (TAB excepted); line breaks in TEXT
# values are escaped before this is applied.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def escape_text(value: str) -> str:
    """A TEXT value (RFC 5545 section 3.3.11): backslash, semicolon, comma and line breaks escaped."""
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")
    return _CONTROL.sub("", text)


def _param(value: str) -> str:
    """A parameter value, always quoted; DQUOTE cannot be escaped there, so it is dropped."""
    return '"' + _CONTROL.sub("", str(value).replace("\r", " ").replace("\n", " ")).replace('"', "'") + '"'


def _address(email: str) -> str:
    return "mailto:" + "".join(str(email).split()).replace('"', "")


def fold(line: str) -> str:
    """One content line folded to ``LINE_OCTETS`` octets per physical line, never inside a
    UTF-8 character; continuation lines start with one space (which counts)."""
    parts: list[str] = []
    current, size, limit = [], 0, LINE_OCTETS
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            parts.append("".join(current))
            current, size, limit = [], 0, LINE_OCTETS - 1
        current.append(char)
        size += width
    parts.append("".join(current))
    return (CRLF + " ").join(parts)


def unfold(text: str) -> list[str]:
    """The logical content lines of iCalendar text (folds joined; CRLF or bare LF accepted)."""
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    return lines


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("iCalendar times must be timezone-aware")
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def event_ics(
    *, uid: str, sequence: int, method: str, start_utc: datetime, minutes: int, tzid: str, summary: str,
    description: str, location_url: str, organizer_email: str, attendees: list[tuple[str, str]], dtstamp: datetime,
) -> str:
    """A VCALENDAR with one VEVENT: an invitation (``REQUEST``) or its cancellation (``CANCEL``).

    ``sequence`` must grow with every change of the same ``uid``, so calendars replace the
    event they hold. ``attendees`` are (name, e-mail) pairs.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if not uid or any(c in uid for c in "\r\n"):
        raise ValueError("a UID must be a non-empty single line")
    if int(sequence) < 0 or int(minutes) <= 0:
        raise ValueError("sequence must be >= 0 and minutes > 0")
    end = start_utc + timedelta(minutes=int(minutes))
    cancelled = method == "CANCEL"
    lines = [
        "BEGIN:VCALENDAR",
        f"PRODID:{PRODID}",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        f"METHOD:{method}",
        f"X-WR-TIMEZONE:{escape_text(tzid)}",
        "BEGIN:VEVENT",
        f"UID:{escape_text(uid)}",
        f"SEQUENCE:{int(sequence)}",
        f"DTSTAMP:{_stamp(dtstamp)}",
        f"DTSTART:{_stamp(start_utc)}",
        f"DTEND:{_stamp(end)}",
        f"SUMMARY:{escape_text(summary)}",
    ]
    if description:
        lines.append(f"DESCRIPTION:{escape_text(description)}")
    if location_url:
        lines.append(f"LOCATION:{escape_text(location_url)}")
        lines.append(f"URL:{''.join(location_url.split())}")
    lines.append(f"COMMENT:{escape_text(f'Scheduled in the time zone {tzid}; times in this file are UTC.')}")
    lines.append(f"ORGANIZER;CN={_param('CPMS panels')}:{_address(organizer_email)}")
    for name, email in attendees:
        if not email:
            continue
        lines.append(
            f"ATTENDEE;CN={_param(name or email)};CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;"
            f"PARTSTAT=NEEDS-ACTION;RSVP=FALSE:{_address(email)}"
        )
    lines += [
        f"STATUS:{'CANCELLED' if cancelled else 'CONFIRMED'}",
        "TRANSP:OPAQUE",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(fold(line) + CRLF for line in lines)
