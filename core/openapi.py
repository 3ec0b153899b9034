"""The OpenAPI document of CPMS's JSON API (``/api/schema``), kept true by construction.

**What is in it.** Every route that answers JSON, or a JSON kind (``application/problem+json``,
``application/fhir+json``, ``application/dicom+json``, IIIF's ``info.json``), and the downloads that
answer JSON in one of their formats (the GDPR access export, the audit export, the family tree's
FHIR and Phenopackets exports). A route is in the document unless it says
``include_in_schema=False``; the core's and every plugin's routes alike, and a test
(``tests/test_openapi.py``) walks every route to check that what answers JSON is documented and what
is documented answers as the document says.

**What is not, and why.** The HTML side of the app: pages, htmx fragments, form posts and the
uploads posted from forms (whose progress script also reads JSON: the programs' way to add images
is STOW-RS, which is documented), server-sent event streams, and bytes that are no JSON: rendered
DICOM frames, thumbnails, slide tiles and IIIF images, Deep Zoom descriptors (XML), WADO-RS
retrievals (multipart DICOM), PDFs, calendar files, shared documents, static files. The schema
router itself is not listed either.

**How.** Each route declares what only it knows, with Litestar's own means: typed returns
(``Response[SomeTypedDict]``), ``Parameter(...)`` limits on path and query parameters, its own
answers in ``responses=problems(404, 409, ...)``, and, for bodies it parses itself (through
``core.jsonbody``, which Litestar's decoder would not replace: it refuses what ``json.loads`` lets
through), ``operation_class=operation(body=...)``. The core adds, in ``document`` (called for every
route of every plugin when the app is built), what its own machinery answers on any route:

- 401 without a session, 403 when the roles do not allow it or two-step login is not set up yet
  (``core.security.permission_guard``), and 403 when the CSRF token of a POST, PUT or DELETE is
  missing or wrong (Litestar's CSRF middleware: the ``csrftoken`` cookie's value goes in the
  ``x-csrftoken`` header);
- 400 when a parameter or the body does not validate; 404 for an id that names nothing (or that
  the caller may not see, which answers alike), 413 for a body over its limit;
- the security requirement: the session cookie, and the CSRF header for changes.

Every such answer is an RFC 9457 problem (``Problem``, ``application/problem+json``): on a route in
the document, errors are always JSON, never an HTML page or a redirect to the login page
(``is_api_route``, asked by ``core.errors``). A route whose own exception handlers answer in another
format (the FHIR operations answer ``OperationOutcome`` resources) names it in its ``opt``:
``{"error_response": (media_type, type)}``.
"""

from __future__ import annotations

import dataclasses
import re
from http import HTTPStatus
from typing import Annotated, Any, TypedDict

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, Operation, RequestBody, SecurityScheme
from litestar.openapi.spec.media_type import OpenAPIMediaType
from litestar.params import PathParameter

PROBLEM_JSON = "application/problem+json"
#: Row ids are piccolo's Serial: a 32-bit integer on PostgreSQL (which refuses to compare a larger
#: number with it: a 500 once). A larger number in a path names nothing (404, core.security).
MAX_ID = 2**31 - 1
SESSION_COOKIE = "cpms_session"
CSRF_HEADER = "x-csrftoken"
CSRF_COOKIE = "csrftoken"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
#: Signature names Litestar fills from the connection itself, not from the request's parameters.
_RESERVED = {"request", "state", "scope", "socket", "headers", "cookies", "query", "body", "data"}


class _Problem(TypedDict):
    """RFC 9457 problem details, as ``core.errors.problem_response`` writes them."""

    type: str
    title: str
    status: int
    detail: str


class Problem(_Problem, total=False):
    #: One line per field at fault, when the request named several.
    errors: list[str]


#: A row id in a path: what every ``{x:int}`` path parameter of the JSON API is.
Id = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="A row id (a positive 32-bit integer).")]

SECURITY_SCHEMES = {
    "session": SecurityScheme(
        type="apiKey", name=SESSION_COOKIE, security_scheme_in="cookie",
        description="The session cookie set by logging in at /login (and /login/2fa, for roles that see patient "
                    "data). Sessions end after CPMS_SESSION_IDLE_TIMEOUT of inactivity.",
    ),
    "csrf": SecurityScheme(
        type="apiKey", name=CSRF_HEADER, security_scheme_in="header",
        description="Every POST, PUT and DELETE carries the value of the `csrftoken` cookie (set on any GET) in "
                    "this header; without it, or with another value, the answer is 403.",
    ),
    "csrfCookie": SecurityScheme(
        type="apiKey", name=CSRF_COOKIE, security_scheme_in="cookie",
        description="The `csrftoken` cookie itself, which any GET sets: the header must repeat its value.",
    ),
}


def components() -> Components:
    return Components(security_schemes=dict(SECURITY_SCHEMES))


def _title(status: int) -> str:
    from core.errors import TITLES

    return TITLES.get(status) or HTTPStatus(status).phrase


def problem(status: int, description: str | None = None, *, media_type: str = PROBLEM_JSON,
            container: Any = Problem) -> ResponseSpec:
    """One documented error answer (a problem, unless the route answers errors in its own format)."""
    return ResponseSpec(data_container=container, media_type=media_type, generate_examples=False,
                        description=description or _title(status))


def problems(*statuses: int, **described: str) -> dict[int, ResponseSpec]:
    """Error answers of a route: ``problems(404, 409)``, or with descriptions,
    ``problems(s404="No such slide, or you may not see it.")``."""
    out = {status: problem(status) for status in statuses}
    for key, text in described.items():
        out[int(key.lstrip("s"))] = problem(int(key.lstrip("s")), text)
    return out


# --- JSON Schema of bodies the handlers parse themselves -----------------------------------------------


def json_schema(tp: Any, *, closed: bool = False) -> dict:
    """The JSON Schema (2020-12, as OpenAPI 3.1 uses) of a type, by msgspec, with its ``$defs`` inlined:
    a schema placed inside the OpenAPI document may not point at ``#/$defs`` (that is the document's root).

    ``closed`` (request bodies): objects list their properties only (``additionalProperties: false``).
    The handlers ignore other keys, but the document does not invite them: ``core.jsonbody`` refuses
    some JSON everywhere in a body (a 30-digit integer, nesting beyond 32 levels), which an open
    object's free-form values could hold."""
    schema = msgspec.json.schema(tp)
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = dict(defs[ref.removeprefix("#/$defs/")])
                target.pop("title", None)
                return inline({**target, **{k: v for k, v in node.items() if k != "$ref"}})
            out = {k: inline(v) for k, v in node.items()}
            if closed and "properties" in out and "additionalProperties" not in out:
                out["additionalProperties"] = False
            return out
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(schema)


def unknown_fields(value: Any, schema: dict, at: str = "") -> list[str]:
    """Fields of a body that its (closed) schema does not list, by path: a route that documents its body
    with ``json_schema(..., closed=True)`` refuses them, so the document and the route agree."""
    found: list[str] = []
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        props = schema["properties"]
        if schema.get("additionalProperties") is False:
            found += [f"{at}{key}"[:80] for key in value if key not in props]
        for key, sub in props.items():
            if key in value and isinstance(sub, dict):
                found += unknown_fields(value[key], sub, f"{at}{key}.")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value[:10_000]):
            found += unknown_fields(item, schema["items"], f"{at}{i}.")
    for alternative in schema.get("anyOf", []):
        if isinstance(alternative, dict) and (alternative.get("type") == "object") == isinstance(value, dict):
            found += unknown_fields(value, alternative, at)
    return found


def _media(value: Any, *, closed: bool = False) -> OpenAPIMediaType:
    if value is None:
        return OpenAPIMediaType(schema={})  # type: ignore[arg-type]
    if isinstance(value, dict):
        return OpenAPIMediaType(schema=value)  # type: ignore[arg-type]
    return OpenAPIMediaType(schema=json_schema(value, closed=closed))  # type: ignore[arg-type]


@dataclasses.dataclass
class CoreOperation(Operation):
    """Every operation of the document: Litestar's, with what it cannot say itself put right."""

    def __post_init__(self) -> None:
        for status in ("204", "304"):  # no content, whatever the handler's annotation
            if self.responses and status in self.responses:
                self.responses[status].content = None
        for parameter in self.parameters or []:
            schema = getattr(parameter, "schema", None)
            if getattr(schema, "maximum", None) == float(MAX_ID):
                schema.maximum = MAX_ID  # type: ignore[assignment]  (Litestar writes limits as floats)


def query(name: str, schema: dict, description: str, *, repeated: bool = False, required: bool = False) -> dict:
    """A query parameter the handler reads and checks itself (``operation(parameters=...)``): for names
    Python cannot spell, or that may be repeated, or whose refusal the route words itself."""
    if repeated:
        schema = {"type": "array", "items": schema}
    return {"name": name, "schema": schema, "description": description, "repeated": repeated, "required": required}


def operation(*, body: Any = None, body_media_types: tuple[str, ...] = ("application/json",),
              body_required: bool = True, body_description: str | None = None,
              content: dict[int, dict[str, Any]] | None = None, parameters: list[dict] | None = None,
              parameter_schemas: dict[str, dict] | None = None) -> type[Operation]:
    """An ``operation_class`` for a route that reads its body or some query parameters itself, or that
    answers one status in several media types (a download in several formats). ``body`` is a type (a
    TypedDict with ``msgspec.Meta`` limits) or a JSON Schema; ``content`` maps a status to
    ``{media type: type, schema or None}``, added to what Litestar documents for that status (None: bytes
    that are no JSON); ``parameters`` are ``query(...)`` items; ``parameter_schemas`` adds to the schema
    Litestar wrote for a parameter of the signature what the handler checks itself, with its own answer
    (an enum whose other values get a 404 or a 422 worded by the route)."""
    from litestar.openapi.spec import Parameter as SpecParameter

    body_content = {mt: _media(body, closed=True) for mt in body_media_types} if body is not None else None
    extra = [
        SpecParameter(name=p["name"], param_in="query", schema=p["schema"], description=p["description"],  # type: ignore[arg-type]
                      required=p["required"], style="form" if p["repeated"] else None, explode=True if p["repeated"] else None)
        for p in parameters or []
    ]

    @dataclasses.dataclass
    class DocumentedOperation(CoreOperation):
        def __post_init__(self) -> None:
            for parameter in self.parameters or []:
                more = (parameter_schemas or {}).get(getattr(parameter, "name", None))
                if more:
                    schema = parameter.schema.to_schema() if hasattr(parameter.schema, "to_schema") else dict(parameter.schema)
                    schema.pop("type", None) if "enum" in more else None
                    parameter.schema = {**schema, **more}
            if extra:
                self.parameters = [*(self.parameters or []), *extra]
            if body_content is not None:
                self.request_body = RequestBody(content=dict(body_content), required=body_required,
                                                description=body_description)
            for status, types in (content or {}).items():
                response = (self.responses or {}).get(str(status))
                if response is None:
                    continue
                merged = dict(response.content or {})
                merged.update({mt: _media(tp) for mt, tp in types.items()})
                response.content = merged
            super().__post_init__()

    DocumentedOperation.has_body = body is not None  # type: ignore[attr-defined]
    DocumentedOperation.has_parameters = bool(extra)  # type: ignore[attr-defined]
    return DocumentedOperation


# --- what the core answers on every route ----------------------------------------------------------


def _has_parameters(handler) -> bool:
    names = set(handler.parsed_fn_signature.parameters) - _RESERVED
    return bool(names) or "{" in (handler.paths and next(iter(handler.paths)) or "")


def core_answers(handler) -> dict[int, str]:
    """The answers the core's guard, middleware and validation give on this route, by status."""
    opt = handler.opt
    unsafe = bool(set(handler.http_methods) & UNSAFE)
    has_body = bool(getattr(handler.operation_class, "has_body", False))
    public = bool(opt.get("public"))
    out: dict[int, str] = {}
    if _has_parameters(handler) or has_body:
        out[400] = "A parameter or the body is missing or not valid."
    if "{" in next(iter(handler.paths), ""):
        out[404] = "There is nothing at this address, or you may not see it (the two answer alike)."
    if not public:
        out[401] = "Not logged in: no session, or it ended."
        out[403] = "Your roles do not allow this, or your roles see patient data and two-step login is not set up yet."
    if unsafe:
        out[403] = (out.get(403, "") + " " if not public else "") + "The CSRF token is missing or wrong (a change needs " \
            "the `csrftoken` cookie's value in the `x-csrftoken` header)."
    if has_body:
        out[413] = "The body is larger than this route takes."
    return out


LOGIN_REDIRECT = ResponseSpec(
    data_container=None, description="A browser (a GET with Accept: text/html) that is not logged in is sent to the "
                                     "login page (Location: /login?next=...); a program gets the 401.")


def security_of(handler) -> list[dict[str, list[str]]] | None:
    opt = handler.opt
    if "security" in opt:
        return opt["security"]
    unsafe = bool(set(handler.http_methods) & UNSAFE)
    needs = ([] if opt.get("public") else ["session"]) + (["csrf", "csrfCookie"] if unsafe else [])
    return [{name: [] for name in needs}] if needs else None


def document(handler) -> None:
    """Complete a route's documentation with the answers the core gives on it (idempotent: handlers are
    module-level objects, and a process may build several apps)."""
    from litestar.handlers import HTTPRouteHandler

    if not isinstance(handler, HTTPRouteHandler) or handler.include_in_schema is False:
        return
    media_type, container = handler.opt.get("error_response", (PROBLEM_JSON, Problem))
    own = dict(handler.responses or {})
    auto = {status: problem(status, text, media_type=media_type, container=container)
            for status, text in core_answers(handler).items() if status not in own}
    if not handler.opt.get("public") and "GET" in handler.http_methods and 302 not in own:
        auto[302] = LOGIN_REDIRECT
    handler.responses = {**auto, **own}
    handler.security = security_of(handler)
    if not issubclass(handler.operation_class, CoreOperation):
        handler.operation_class = CoreOperation


def is_api_route(scope) -> bool:
    """Is the request's route in the OpenAPI document? Its errors are then problem JSON, always.

    A request that matches no route (an id that is no integer: ``/dicom/instances/1.5/annotations``)
    or none of its methods has no handler: it counts as the API's when its path has the shape of a
    documented path, any segment standing for each parameter."""
    handler = scope.get("route_handler")
    if handler is not None and hasattr(handler, "resolve_include_in_schema"):
        try:
            return bool(handler.resolve_include_in_schema())
        except Exception:  # noqa: BLE001 - a handler not yet attached to the app: not an API answer
            return False
    app = scope.get("app")
    if app is None:
        return False
    shapes = getattr(app.state, "api_path_shapes", None)
    if shapes is None:
        shapes = app.state.api_path_shapes = _api_path_shapes(app)
    return bool(shapes.fullmatch(scope.get("path", "")))


def _api_path_shapes(app) -> re.Pattern:
    import re as _re

    from litestar.routes import HTTPRoute

    shapes = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute) and any(h.resolve_include_in_schema() for h in route.route_handlers):
            parts = _re.split(r"\{[^}]+\}", route.path)
            shapes.add("[^/]+".join(_re.escape(p) for p in parts) if not route.path.endswith(":path}") else
                       ".+".join(_re.escape(p) for p in parts))
    return _re.compile("|".join(sorted(shapes)) or "(?!)")
