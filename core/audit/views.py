"""The audit pages: a hospital's data-protection officer browses and exports the entries about
that hospital's patients, and nobody else's.

Filters come from the query string and are checked here (not by Litestar's parameter
parsing), so a wrong value gets a 422 page that names the field instead of a bare 400.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any, AsyncIterator, TypedDict
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.response import Stream, Template

from core.audit.chain import entries_in_order
from core.audit.tables import AuditEntry
from core.errors import error_response
from core.events import Event
from core.openapi import operation, problems, query
from core.identity.login import client_address
from core.web import page

PER_PAGE = 50
#: Ids are 32-bit integers in the database; a larger number would make PostgreSQL fail.
MAX_ID = 2**31 - 1
PSEUDONYM_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")
ACTION_RE = re.compile(r"[a-z0-9_.]{1,50}")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FILTER_NAMES = ("pseudonym", "action", "actor", "from", "to")
EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
EXPORT_COLUMNS = (
    "seq", "at", "actor_id", "actor_hcp", "action", "patient_pseudonym", "patient_hcp", "detail",
    "address", "prev_hash", "hash",
)


@dataclass(frozen=True)
class Filters:
    pseudonym: str = ""
    action: str = ""
    actor: int | None = None
    date_from: date | None = None
    date_to: date | None = None

    def params(self) -> dict[str, str]:
        """The filters as query-string values (for links and the activity log)."""
        values = {
            "pseudonym": self.pseudonym, "action": self.action, "actor": "" if self.actor is None else str(self.actor),
            "from": self.date_from.isoformat() if self.date_from else "", "to": self.date_to.isoformat() if self.date_to else "",
        }
        return {k: v for k, v in values.items() if v}

    def where(self, hcp_id: int):
        """Entries about ``hcp_id``'s patients that match; the hospital scope is never optional."""
        condition = AuditEntry.patient_hcp == hcp_id
        if self.pseudonym:
            condition &= AuditEntry.patient_pseudonym == self.pseudonym
        if self.action:
            condition &= AuditEntry.action == self.action
        if self.actor is not None:
            condition &= AuditEntry.actor_id == self.actor
        if self.date_from:
            condition &= AuditEntry.at >= datetime.combine(self.date_from, time.min, tzinfo=timezone.utc)
        if self.date_to:  # the whole "to" day, in UTC like the times shown
            condition &= AuditEntry.at <= datetime.combine(self.date_to, time.max, tzinfo=timezone.utc)
        return condition


# --- reading the query string -------------------------------------------------------------


#: Filters may come with spaces around them (a pasted pseudonym); only these are trimmed, as the
#: export's OpenAPI document says.
SPACES = " \t\r\n"


def _text(query, name: str) -> str:
    return (query.get(name) or "").strip(SPACES)


def _positive_int(raw: str, label: str, errors: list[str]) -> int | None:
    if not raw:
        return None
    if re.fullmatch(r"[0-9]{1,19}", raw) and 0 < int(raw) <= MAX_ID:
        return int(raw)
    errors.append(f"{label}: give a whole number from 1 to {MAX_ID}.")
    return None


def _date(raw: str, label: str, errors: list[str]) -> date | None:
    if not raw:
        return None
    try:
        if DATE_RE.fullmatch(raw):
            return date.fromisoformat(raw)
    except ValueError:
        pass
    errors.append(f"{label}: give a date as YYYY-MM-DD.")
    return None


def parse_filters(query) -> tuple[Filters, list[str]]:
    errors: list[str] = []
    pseudonym, action = _text(query, "pseudonym"), _text(query, "action")
    if pseudonym and not PSEUDONYM_RE.fullmatch(pseudonym):
        errors.append("Pseudonym: letters, digits, - and _ only, at most 40 characters.")
    if action and not ACTION_RE.fullmatch(action):
        errors.append("Action: lower-case letters, digits, dots and _ only, e.g. patient.view.")
    actor = _positive_int(_text(query, "actor"), "Actor id", errors)
    date_from = _date(_text(query, "from"), "From", errors)
    date_to = _date(_text(query, "to"), "To", errors)
    if date_from and date_to and date_from > date_to:
        errors.append("From must not be after To.")
    if errors:
        return Filters(), errors
    return Filters(pseudonym, action, actor, date_from, date_to), []


def parse_cursor(query, errors: list[str]) -> tuple[int | None, int | None]:
    """Keyset pagination: ``before`` shows older entries than that seq, ``after`` newer ones."""
    before = _positive_int(_text(query, "before"), "Page position", errors)
    after = _positive_int(_text(query, "after"), "Page position", errors)
    if before is not None and after is not None:
        errors.append("Page position: give either before or after, not both.")
    return before, after


# --- the page -----------------------------------------------------------------------------


async def page_of_entries(hcp_id: int, filters: Filters, before: int | None, after: int | None) -> tuple[list[dict], bool, bool]:
    """One page, newest first, found by seq (an index range however long the chain):
    (rows, has_newer, has_older)."""
    query = AuditEntry.select().where(filters.where(hcp_id)).limit(PER_PAGE + 1)
    if after is not None:
        rows = await query.where(AuditEntry.seq > after).order_by(AuditEntry.seq)
        return list(reversed(rows[:PER_PAGE])), len(rows) > PER_PAGE, True
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    rows = await query.order_by(AuditEntry.seq, ascending=False)
    return rows[:PER_PAGE], before is not None, len(rows) > PER_PAGE


async def actor_names(rows: list[dict]) -> dict[int, str]:
    from core.identity.tables import User

    ids = {r["actor_id"] for r in rows if r["actor_id"] is not None}
    if not ids:
        return {}
    return {u["id"]: u["name"] for u in await User.select(User.id, User.name).where(User.id.is_in(list(ids)))}


def _url(path: str, params: dict[str, Any]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


@get("/audit", opt={"permission": "audit.view"}, include_in_schema=False)
async def audit_list(request: Request) -> Template:
    actor = request.scope["user"]
    query = request.query_params
    filters, errors = parse_filters(query)
    before, after = parse_cursor(query, errors)
    context: dict[str, Any] = {
        "values": {name: _text(query, name) for name in FILTER_NAMES}, "errors": errors, "rows": [], "names": {},
        "no_hcp": actor.hcp_id is None, "newer_url": "", "older_url": "",
        "export_query": urlencode(filters.params()),
    }
    if errors:  # nothing is shown for a query that could not be understood
        return page(request, "audit/list.html", context, fragment="audit/_rows.html", status_code=422)
    if actor.hcp_id is not None:
        rows, has_newer, has_older = await page_of_entries(actor.hcp_id, filters, before, after)
        params = filters.params()
        context.update(
            rows=rows, names=await actor_names(rows),
            newer_url=_url("/audit", {**params, "after": rows[0]["seq"]}) if has_newer and rows else "",
            older_url=_url("/audit", {**params, "before": rows[-1]["seq"]}) if has_older and rows else "",
        )
    return page(request, "audit/list.html", context, fragment="audit/_rows.html")


# --- the export ---------------------------------------------------------------------------


def _detail_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:  # a tampered row: export what is stored
        return text


def export_record(row: dict) -> dict[str, Any]:
    record = {name: row[name] for name in EXPORT_COLUMNS}
    record["at"] = row["at"].astimezone(timezone.utc).isoformat()
    return record


def _csv_cell(value: Any) -> Any:
    # A cell starting like a formula would run in a spreadsheet (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


async def csv_chunks(batches: AsyncIterator[list[dict]]) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    yield buffer.getvalue()
    async for rows in batches:
        buffer.seek(0)
        buffer.truncate()
        for row in rows:
            record = export_record(row)
            writer.writerow([_csv_cell(record[name]) for name in EXPORT_COLUMNS])
        yield buffer.getvalue()


async def json_chunks(batches: AsyncIterator[list[dict]]) -> AsyncIterator[str]:
    separator = "\n"
    yield "["
    async for rows in batches:
        items = []
        for row in rows:
            record = export_record(row)
            record["detail"] = _detail_value(record["detail"])
            items.append(json.dumps(record, ensure_ascii=False))
        yield separator + ",\n".join(items)
        separator = ",\n"
    yield "\n]\n"


async def _export_batches(hcp_id: int | None, filters: Filters) -> AsyncIterator[list[dict]]:
    """Oldest first, read in batches as the download is sent: never the whole trail in memory."""
    if hcp_id is None:  # a DPO attached to no hospital sees nobody's entries
        return
    async for rows in entries_in_order(where=filters.where(hcp_id)):
        yield rows


def _filter(pattern: str) -> dict:
    """A filter's value as the export reads it: trimmed of SPACES, empty meaning no filter."""
    return {"type": "string", "pattern": f"^[ \\t\\r\\n]*(?:{pattern})?[ \\t\\r\\n]*$"}


class AuditRecord(TypedDict):
    seq: int
    at: str
    actor_id: int | None
    actor_hcp: int | None
    action: str
    patient_pseudonym: str | None
    patient_hcp: int | None
    detail: Any
    address: str | None
    prev_hash: str
    hash: str


EXPORT_DOC = operation(
    parameters=[
        query("format", {"enum": ["csv", "json"], "default": "csv"}, "csv (default) or json; anything else: 422."),
        query("pseudonym", _filter(PSEUDONYM_RE.pattern), "Entries about this patient."),
        query("action", _filter(ACTION_RE.pattern), "Entries of this action, e.g. patient.view."),
        query("actor", _filter("[0-9]{1,19}"), f"Entries by this user id (1 to {MAX_ID})."),
        query("from", _filter("[0-9]{4}-[0-9]{2}-[0-9]{2}"), "Entries from this day (YYYY-MM-DD, UTC)."),
        query("to", _filter("[0-9]{4}-[0-9]{2}-[0-9]{2}"), "Entries to this day, inclusive; not before from."),
    ],
    content={200: {"application/json": list[AuditRecord], "text/csv": None}},
)


@get("/audit/export", opt={"permission": "audit.view"}, operation_id="exportAudit", tags=["audit"],
     operation_class=EXPORT_DOC,
     responses=problems(s422="A filter or the format is not valid (an id out of range, no such date, from after to); "
                             "the messages name each."))
async def audit_export(request: Request) -> Response[list[AuditRecord]]:
    """The audit trail of the hospital's patients, oldest first, as a CSV or JSON download (the same filters
    as the page's); the export itself goes to the activity log."""
    actor = request.scope["user"]
    query = request.query_params
    filters, errors = parse_filters(query)
    fmt = _text(query, "format") or "csv"
    if fmt not in EXPORT_TYPES:
        errors.append("Format: csv or json.")
    if errors:
        return error_response(request, 422, "The export was refused: some filters are not valid.", errors)
    # Reading the audit is not itself a patient-data access: it goes to the activity log.
    await request.app.state.host.events.emit(
        Event("audit.exported", actor.user_id, "hcp", str(actor.hcp_id or ""), {"format": fmt, **filters.params()}, client_address(request))
    )
    batches = _export_batches(actor.hcp_id, filters)
    body = csv_chunks(batches) if fmt == "csv" else json_chunks(batches)
    filename = f"cpms-audit-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.{fmt}"
    return Stream(body, media_type=EXPORT_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{filename}"'})


ROUTES = [audit_list, audit_export]
