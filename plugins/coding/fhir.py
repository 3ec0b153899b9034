"""HL7 FHIR R4 terminology operations over the loaded code systems.

``CodeSystem/$lookup``, ``CodeSystem/$validate-code`` and ``ValueSet/$expand`` (implicit value
sets: a system's canonical URL, or ``<url>?fhir_vs`` for all of it), each by GET with query
parameters or POST with a ``Parameters`` resource. Answers are ``application/fhir+json``; every
error, including a refused login or permission, is an ``OperationOutcome`` that names the
parameter at fault and nothing internal.

POST goes through the app's CSRF check like every POST in CPMS: a client using a session cookie
sends the ``csrftoken`` cookie's value in the ``x-csrftoken`` header. GET needs no token.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypedDict

from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException, ValidationException

from core.openapi import operation, problem, query
from plugins.coding import SEARCH

log = logging.getLogger("cpms.coding.fhir")

FHIR_JSON = "application/fhir+json"
#: Codes per expansion page at most; an expansion of a whole large system must be paged.
MAX_COUNT = 1000
#: Hits a text filter is ranked over (the total reported for a filter is exact below this).
FILTER_CAP = 1000
#: Designation uses as codings: SNOMED CT's "Synonym" is what terminology servers use; the rest are CPMS's own.
USE_CODINGS = {
    "preferred": {"system": "http://terminology.hl7.org/CodeSystem/designation-usage", "code": "display", "display": "Display"},
    "synonym": {"system": "http://snomed.info/sct", "code": "900000000000013009", "display": "Synonym"},
}
LOCAL_USE_SYSTEM = "urn:cpms:designation-use"
#: Properties every lookup can return (others come from the concept's own properties).
STANDARD_PROPERTIES = ("parent", "child", "inactive")


class FhirError(Exception):
    """An operation that cannot be answered: an OperationOutcome with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, expression: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.expression = status, code, message, expression


def outcome(status: int, code: str, message: str, expression: str | None = None, headers=None, background=None) -> Response:
    issue = {"severity": "error", "code": code, "diagnostics": message, "details": {"text": message}}
    if expression:
        issue["expression"] = [expression]
    return Response(
        {"resourceType": "OperationOutcome", "issue": [issue]}, status_code=status, media_type=FHIR_JSON,
        headers=headers, background=background,
    )


def fhir_exception_handler(request: Request, exc: Exception) -> Response:
    """Every failure of a FHIR route as an OperationOutcome (a FHIR client reads nothing else)."""
    from core.errors import CSRF_FAILED, http_exception_handler, sends_to_login

    if isinstance(exc, FhirError):
        return outcome(exc.status, exc.code, exc.message, exc.expression)
    if isinstance(exc, ValidationException):
        return outcome(400, "invalid", "Some parameters are missing or not valid.")
    if isinstance(exc, NotAuthorizedException):
        if sends_to_login(request):
            return http_exception_handler(request, exc)  # a person in a browser: the login page
        return outcome(401, "login", "Log in first.")
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        core = http_exception_handler(request, exc)  # keeps the core's side effects (a forged request is audited)
        if isinstance(exc, PermissionDeniedException) or exc.status_code == 403:
            text = "The CSRF token is missing or wrong." if exc.detail == CSRF_FAILED else "Your roles do not allow this."
            return outcome(403, "forbidden", text, background=core.background)
        if exc.status_code == 405:
            return outcome(405, "not-supported", "Use GET or POST.")
        return outcome(exc.status_code, "processing", exc.detail if isinstance(exc.detail, str) else "The request was refused.")
    incident = secrets.token_hex(6)
    log.error("incident %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
    return outcome(500, "exception", f"The error was logged as incident {incident}.")


# --- parameters -----------------------------------------------------------------------------------


@dataclass
class Params:
    """Operation parameters by name, from a query string or a Parameters resource."""

    values: dict[str, list] = field(default_factory=dict)

    def all(self, name: str) -> list:
        return self.values.get(name, [])

    def one(self, name: str, *, required: bool = False, max_length: int = 1000) -> str | None:
        found = self.all(name)
        if len(found) > 1:
            raise FhirError(400, "invalid", f"The parameter {name} is given more than once.", name)
        if not found or found[0] in (None, ""):
            if required:
                raise FhirError(400, "required", f"The parameter {name} is required.", name)
            return None
        value = found[0]
        if not isinstance(value, str):
            raise FhirError(400, "invalid", f"The parameter {name} must be a text value.", name)
        if len(value) > max_length:
            raise FhirError(400, "too-long", f"The parameter {name} is longer than {max_length} characters.", name)
        return value

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        found = self.all(name)
        if not found:
            return default
        value = found[0]
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 10.0 is ten; 2.5 is refused below
        try:
            number = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
        except (TypeError, ValueError, OverflowError):
            number = None
        if number is None or not low <= number <= high:
            raise FhirError(400, "invalid", f"The parameter {name} must be a whole number from {low} to {high}.", name)
        return number

    def boolean(self, name: str, default: bool) -> bool:
        found = self.all(name)
        if not found:
            return default
        value = found[0]
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise FhirError(400, "invalid", f"The parameter {name} must be true or false.", name)

    def coding(self) -> dict | None:
        found = self.all("coding")
        if not found:
            return None
        if len(found) > 1 or not isinstance(found[0], dict):
            raise FhirError(400, "invalid", "The parameter coding must be one Coding.", "coding")
        return found[0]


def _from_query(request: Request) -> Params:
    values: dict[str, list] = {}
    for name, value in request.query_params.multi_items():
        if name == "coding":
            raise FhirError(400, "not-supported", "Give a coding in a POST body (Parameters); by GET use system and code.", "coding")
        values.setdefault(name, []).append(value)
    return Params(values)


async def _from_body(request: Request) -> Params:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (FHIR_JSON, "application/json"):
        raise FhirError(415, "not-supported", "Send a Parameters resource as application/fhir+json.")
    from core.jsonbody import JsonRejected, parse

    try:
        body = parse(await request.body())
    except JsonRejected as exc:
        raise FhirError(exc.status, "structure" if exc.status == 400 else "too-costly", exc.detail) from None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(400, "structure", "The body must be a Parameters resource.")
    items = body.get("parameter", [])
    if not isinstance(items, list):
        raise FhirError(400, "structure", "Parameters.parameter must be a list.")
    values: dict[str, list] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise FhirError(400, "structure", "Each parameter needs a name.")
        value_keys = [k for k in item if k.startswith("value")]
        if len(value_keys) != 1:
            raise FhirError(400, "structure", f"The parameter {item['name'][:50]} needs exactly one value[x].", item["name"][:50])
        values.setdefault(item["name"], []).append(item[value_keys[0]])
    return Params(values)


async def _params(request: Request) -> Params:
    return await _from_body(request) if request.method == "POST" else _from_query(request)


async def _system(uri: str, name: str) -> dict:
    """A loaded code system by its canonical URL (its CPMS key is accepted too)."""
    from plugins.coding import lookup

    found = await lookup.system(uri)
    if found is None:
        raise FhirError(404, "not-found", f"The code system {uri[:200]} is not loaded here.", name)
    return found


def _check_version(system: dict, version: str | None, name: str = "version") -> None:
    if version and version != (system.get("version") or ""):
        raise FhirError(
            404, "not-found",
            f"Version {version[:100]} of {system['uri']} is not loaded (loaded: {system.get('version') or 'unversioned'}).", name,
        )


def _system_and_code(params: Params, system_name: str) -> tuple[str, str, str | None, str | None]:
    """(system uri, code, version, display) from the parameters or a coding."""
    coding = params.coding()
    if coding is not None:
        if params.all("code") or params.all(system_name):
            raise FhirError(400, "invalid", f"Give either a coding or {system_name} and code, not both.", "coding")
        uri, code = coding.get("system"), coding.get("code")
        if not isinstance(uri, str) or not uri or not isinstance(code, str) or not code:
            raise FhirError(400, "required", "The coding needs a system and a code.", "coding")
        version = coding.get("version") if isinstance(coding.get("version"), str) else None
        display = coding.get("display") if isinstance(coding.get("display"), str) else None
        return uri, code, version or params.one("version", max_length=100), display or params.one("display")
    uri = params.one(system_name, required=True, max_length=300)
    code = params.one("code", required=True, max_length=64)
    return uri, code, params.one("version", max_length=100), params.one("display")


def _use_coding(use: str) -> dict:
    return USE_CODINGS.get(use) or {"system": LOCAL_USE_SYSTEM, "code": use or "synonym"}


def _property_value(value) -> dict:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, float):
        return {"valueDecimal": value}
    return {"valueString": value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}


def _fhir(resource: dict, status: int = 200) -> Response:
    return Response(resource, status_code=status, media_type=FHIR_JSON)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- CodeSystem/$lookup ---------------------------------------------------------------------------


async def lookup_operation(params: Params) -> dict:
    from plugins.coding import lookup

    uri, code, version, _ = _system_and_code(params, "system")
    system = await _system(uri, "system")
    _check_version(system, version)
    concept = await lookup.concept(system["key"], code)
    if concept is None:
        raise FhirError(404, "not-found", f"The code {code} is not in {system['uri']} version {system.get('version') or '-'}.", "code")
    wanted = [p for p in params.all("property") if isinstance(p, str)]
    out = [
        {"name": "name", "valueString": system["name"]},
        *([{"name": "version", "valueString": system["version"]}] if system.get("version") else []),
        {"name": "display", "valueString": concept["display"]},
    ]
    if not wanted or "designation" in wanted:
        for d in concept.get("designations", []):
            parts = [
                {"name": "language", "valueCode": d.get("language") or "en"},
                {"name": "use", "valueCoding": _use_coding(d.get("use", ""))},
                {"name": "value", "valueString": d["term"]},
            ]
            out.append({"name": "designation", "part": parts})

    def prop(name: str, value: dict) -> dict:
        return {"name": "property", "part": [{"name": "code", "valueCode": name}, {"name": "value", **value}]}

    def asked(name: str) -> bool:
        return not wanted or name in wanted

    if asked("parent"):
        out += [prop("parent", {"valueCode": p["code"]}) for p in concept.get("parents", [])]
    if asked("child"):
        out += [prop("child", {"valueCode": c["code"]}) for c in concept.get("children", [])]
    if asked("inactive"):
        out.append(prop("inactive", {"valueBoolean": not concept.get("active", True)}))
    # The system's own properties (LOINC axes, MedDRA currency...) when asked for by name.
    for name, value in (concept.get("properties") or {}).items():
        if name in wanted and name not in STANDARD_PROPERTIES:
            values = value if isinstance(value, list) else [value]
            out += [prop(name, _property_value(v)) for v in values]
    return {"resourceType": "Parameters", "parameter": out}


# --- CodeSystem/$validate-code --------------------------------------------------------------------


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


async def validate_operation(params: Params) -> dict:
    from plugins.coding import lookup

    if params.all("url") and params.all("system"):
        raise FhirError(400, "invalid", "Give the code system as url or as system, not both.", "url")
    name = "system" if params.all("system") else "url"
    uri, code, version, display = _system_and_code(params, name)
    system = await _system(uri, name)
    _check_version(system, version)
    concept = await lookup.concept(system["key"], code)

    def result(ok: bool, message: str | None = None, shown: str | None = None) -> dict:
        out = [{"name": "result", "valueBoolean": ok}]
        if message:
            out.append({"name": "message", "valueString": message})
        if shown:
            out.append({"name": "display", "valueString": shown})
        return {"resourceType": "Parameters", "parameter": out}

    if concept is None:
        return result(False, f"Unknown code '{code}' in the code system '{system['uri']}' version '{system.get('version') or '-'}'.")
    terms = [concept["display"], *[d["term"] for d in concept.get("designations", [])]]
    if display and not any(_same_text(display, t) for t in terms):
        return result(
            False, f"The display '{display}' is not a display of the code {code}; it should be '{concept['display']}'.", concept["display"],
        )
    message = None if concept.get("active", True) else f"The code {code} is inactive in this version of {system['uri']}."
    return result(True, message, concept["display"])


# --- ValueSet/$expand -----------------------------------------------------------------------------


async def _concepts_page(system_id: int, offset: int, count: int, active_only: bool) -> tuple[int, list[dict]]:
    from plugins.coding.tables import Concept

    where = Concept.system == system_id
    if active_only:
        where = where & (Concept.active == True)  # noqa: E712 - a piccolo expression
    total = await Concept.count().where(where)
    if not count:
        return total, []
    # The release's own order (ICD: chapter, block, categories), the same on SQLite and PostgreSQL,
    # where ordering by code would follow each database's collation.
    rows = await Concept.select(Concept.code, Concept.display, Concept.active).where(where).order_by(Concept.id).offset(offset).limit(count)
    return total, rows


async def expand_operation(params: Params) -> dict:
    from plugins.coding import search
    from plugins.coding.tables import CodeSystem

    if params.all("valueSet"):
        raise FhirError(400, "not-supported", "Only implicit value sets are expanded here: give a url.", "valueSet")
    url = params.one("url", required=True, max_length=400)
    uri, _, query = url.partition("?")
    if query and query != "fhir_vs":
        raise FhirError(400, "not-supported", "Only whole code systems are expanded: <system url> or <system url>?fhir_vs.", "url")
    system = await _system(uri, "url")
    for pinned in params.all("system-version"):  # "uri|version" for the systems of the value set
        if isinstance(pinned, str) and pinned.partition("|")[0] == system["uri"]:
            _check_version(system, pinned.partition("|")[2], "system-version")
    text = params.one("filter", max_length=200)
    offset = params.integer("offset", 0, 0, 10_000_000)
    count = params.integer("count", None, 0, MAX_COUNT)
    active_only = params.boolean("activeOnly", False)
    contains: list[dict]
    version = system.get("version") or None

    def entry(code: str, display: str, active: bool) -> dict:
        item = {"system": system["uri"], **({"version": version} if version else {}), "code": code, "display": display}
        if not active:
            item["inactive"] = True
        return item

    if text and text.strip():
        hits = await search.search(text, [system["key"]], limit=FILTER_CAP, include_inactive=not active_only)
        total = len(hits) if len(hits) < FILTER_CAP else None
        page = hits[offset:offset + (count if count is not None else MAX_COUNT)]
        contains = [entry(h.code, h.display, h.active) for h in page]
    else:
        row = await CodeSystem.select(CodeSystem.id).where(CodeSystem.key == system["key"]).first()
        total, rows = await _concepts_page(row["id"], offset, count if count is not None else MAX_COUNT, active_only)
        if count is None and total - offset > MAX_COUNT:
            raise FhirError(
                422, "too-costly",
                f"The expansion has {total} codes: ask for a page (count, at most {MAX_COUNT}, and offset) or give a filter.", "count",
            )
        contains = [entry(r["code"], r["display"], r["active"]) for r in rows]
    parameters = [{"name": "offset", "valueInteger": offset}]
    if count is not None:
        parameters.append({"name": "count", "valueInteger": count})
    if text:
        parameters.append({"name": "filter", "valueString": text})
    if active_only:
        parameters.append({"name": "activeOnly", "valueBoolean": True})
    if version:
        parameters.append({"name": "version", "valueUri": f"{system['uri']}|{version}"})
    expansion = {"identifier": f"urn:uuid:{uuid.uuid4()}", "timestamp": _now(), **({"total": total} if total is not None else {}),
                 "offset": offset, "parameter": parameters, "contains": contains}
    return {
        "resourceType": "ValueSet", "url": url, "status": "active", "name": f"All codes of {system['name']}"[:200],
        **({"version": version} if version else {}), "expansion": expansion,
    }


# --- routes and their OpenAPI document (core/openapi.py) ----------------------------------------------


class _Issue(TypedDict):
    severity: Literal["error"]
    code: str
    diagnostics: str
    details: dict[str, str]


class Issue(_Issue, total=False):
    #: The parameter at fault.
    expression: list[str]


class OperationOutcome(TypedDict):
    """Every failure of a FHIR operation, a refused login or permission included."""

    resourceType: Literal["OperationOutcome"]
    issue: list[Issue]


class ParametersOut(TypedDict):
    resourceType: Literal["Parameters"]
    parameter: list[dict[str, Any]]


class _ValueSetOut(TypedDict):
    resourceType: Literal["ValueSet"]
    url: str
    status: str
    name: str
    #: identifier, timestamp, total (exact below 1,000 filtered hits), offset, parameter, contains.
    expansion: dict[str, Any]


class ValueSetOut(_ValueSetOut, total=False):
    version: str


#: A Parameters resource (POST): each parameter a name and exactly one value[x] (valueString,
#: valueCode, valueUri, valueInteger, valueBoolean, valueCoding...), as the GET query names them.
PARAMETERS_BODY = {
    "type": "object", "required": ["resourceType"],
    "properties": {
        "resourceType": {"const": "Parameters"},
        "parameter": {"type": "array", "items": {
            "type": "object", "required": ["name"], "properties": {"name": {"type": "string"}},
            "description": "name and exactly one value[x]; the values the GET parameters take, or a Coding as valueCoding.",
        }},
    },
}


def _outcome(status: int, description: str):
    return problem(status, description, media_type=FHIR_JSON, container=OperationOutcome)


ERRORS = {
    400: _outcome(400, "A parameter is missing, repeated, too long or not valid (the issue's expression names it)."),
    404: _outcome(404, "The code system (or that version of it) is not loaded, or the code is not in it."),
    405: _outcome(405, "Use GET or POST."),
}
POST_ERRORS = {
    **ERRORS,
    413: _outcome(413, "The body is larger than 1 MB."),
    415: _outcome(415, "Send a Parameters resource as application/fhir+json (or application/json)."),
}
SYSTEM, CODE = {"type": "string", "maxLength": 300}, {"type": "string", "maxLength": 64}
VERSION, DISPLAY = {"type": "string", "maxLength": 100}, {"type": "string", "maxLength": 1000}
LOOKUP_QUERY = [
    query("system", SYSTEM, "The code system's canonical URL (or its CPMS key).", required=True),
    query("code", CODE, "The code.", required=True),
    query("version", VERSION, "The loaded version, if given (else 404)."),
    query("display", DISPLAY, "Accepted and ignored."),
    query("property", {"type": "string"}, "Properties wanted (parent, child, inactive, designation, or the system's own).",
          repeated=True),
]
VALIDATE_QUERY = [
    query("url", SYSTEM, "The code system's canonical URL (or give it as system; one of the two is required)."),
    query("system", SYSTEM, "The code system's canonical URL (or give it as url)."),
    query("code", CODE, "The code.", required=True),
    query("version", VERSION, "The loaded version, if given (else 404)."),
    query("display", DISPLAY, "A display to check against the code's terms."),
]
EXPAND_QUERY = [
    query("url", {"type": "string", "maxLength": 400}, "An implicit value set: the system's URL, or <url>?fhir_vs.", required=True),
    query("filter", {"type": "string", "maxLength": 200}, "Words or a code to filter by."),
    query("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000}, "Codes to skip."),
    query("count", {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
          f"Codes per page (at most {MAX_COUNT}; without it a system over {MAX_COUNT} codes is a 422)."),
    query("activeOnly", {"type": "boolean"}, "Leave inactive codes out."),
    query("system-version", {"type": "string"}, "uri|version pins for the value set's systems.", repeated=True),
]


def _doc(operation_id: str, out: type, *, get_query: list | None = None, post: bool = False) -> dict:
    errors = POST_ERRORS if post else ERRORS
    extra = {422: _outcome(422, "The expansion is too large: ask for a page (count, offset) or give a filter.")} \
        if out is ValueSetOut else {}
    doc_class = operation(body=PARAMETERS_BODY, body_media_types=(FHIR_JSON, "application/json")) if post \
        else operation(parameters=get_query)
    return dict(operation_id=operation_id, responses={**errors, **extra}, operation_class=doc_class)


OPT = {"permission": SEARCH, "error_response": (FHIR_JSON, OperationOutcome)}
HANDLERS = {HTTPException: fhir_exception_handler, FhirError: fhir_exception_handler, Exception: fhir_exception_handler}
COMMON = dict(opt=OPT, exception_handlers=HANDLERS, tags=["coding", "FHIR"], media_type=FHIR_JSON)


async def _run(request: Request, operation) -> Response:
    return _fhir(await operation(await _params(request)))


@get("/fhir/CodeSystem/$lookup", **_doc("fhirCodeSystemLookup", ParametersOut, get_query=LOOKUP_QUERY), **COMMON)
async def lookup_get(request: Request) -> Response[ParametersOut]:
    """FHIR CodeSystem/$lookup: a code's name, version, display, designations and properties."""
    return await _run(request, lookup_operation)


@post("/fhir/CodeSystem/$lookup", status_code=200, **_doc("fhirCodeSystemLookupPost", ParametersOut, post=True), **COMMON)
async def lookup_post(request: Request) -> Response[ParametersOut]:
    """FHIR CodeSystem/$lookup with a Parameters body."""
    return await _run(request, lookup_operation)


@get("/fhir/CodeSystem/$validate-code", **_doc("fhirCodeSystemValidateCode", ParametersOut, get_query=VALIDATE_QUERY), **COMMON)
async def validate_get(request: Request) -> Response[ParametersOut]:
    """FHIR CodeSystem/$validate-code: is the code (and its display) valid in the system?"""
    return await _run(request, validate_operation)


@post("/fhir/CodeSystem/$validate-code", status_code=200, **_doc("fhirCodeSystemValidateCodePost", ParametersOut, post=True),
      **COMMON)
async def validate_post(request: Request) -> Response[ParametersOut]:
    """FHIR CodeSystem/$validate-code with a Parameters body."""
    return await _run(request, validate_operation)


@get("/fhir/ValueSet/$expand", **_doc("fhirValueSetExpand", ValueSetOut, get_query=EXPAND_QUERY), **COMMON)
async def expand_get(request: Request) -> Response[ValueSetOut]:
    """FHIR ValueSet/$expand of an implicit value set (a whole system), with a text filter and paging."""
    return await _run(request, expand_operation)


@post("/fhir/ValueSet/$expand", status_code=200, **_doc("fhirValueSetExpandPost", ValueSetOut, post=True), **COMMON)
async def expand_post(request: Request) -> Response[ValueSetOut]:
    """FHIR ValueSet/$expand with a Parameters body."""
    return await _run(request, expand_operation)


ROUTES = [lookup_get, lookup_post, validate_get, validate_post, expand_get, expand_post]
