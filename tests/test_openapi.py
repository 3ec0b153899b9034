"""The OpenAPI document (/api/schema) is true: what answers JSON is in it, and what is in it answers as it says.

- The document is valid OpenAPI 3.1 (the 3.1 JSON Schema that schemathesis ships, checked with
  jsonschema-rs), and every schema in it is valid JSON Schema 2020-12.
- Every route of the app (the core's and every plugin's) is either in the document, or left out by
  ``include_in_schema=False`` and then answers no JSON: the enrolling HP walks every GET route of the
  demo with its ids filled in, and every answer in a JSON type comes from a documented route, with a
  status and a content type the document lists for it. Non-GET routes left out are form posts (their
  handlers return pages or redirects), except the two form uploads that also answer their progress
  script in JSON (named below, with the reason).
- Every operation lists its 4xx answers as problems (``application/problem+json`` and the shared
  Problem schema; the FHIR operations' ``OperationOutcome`` in ``application/fhir+json``), its
  security (the session cookie; the CSRF header and cookie for changes), and no 500.
"""

from __future__ import annotations

import re

import pytest

from core.identity import DEMO_PASSWORD
from tests.conftest import enrol_totp, login
from tests.fixtures import session_app
from tests.test_consent_governs import _fill, _ids

JSON_TYPE = re.compile(r"^application/([\w.+-]+\+)?json\b|^application/ld\+json")
#: Form posts that answer JSON to their own progress script (Accept: application/json) and a page or a
#: redirect otherwise. They stay out of the document: programs add images with STOW-RS, which is in it.
FORM_UPLOADS = {("POST", "/dicom/patients/{pseudonym:str}/uploads"), ("POST", "/pathology/patients/{pseudonym:str}/slides")}
#: Form posts that answer a file to save, not a page (ZIP: no JSON): the research export, which is made,
#: recorded and handed over in one request so that what is recorded is what was handed over.
FORM_DOWNLOADS = {("POST", "/research/projects/{project_id:int}/export")}


@pytest.fixture(scope="module")
def document(settings):
    return session_app(settings).openapi_schema.to_schema()


def _operations(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                yield path, method, op


def test_the_document_is_valid_openapi_3_1(document):
    import jsonschema_rs
    from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

    assert document["openapi"].startswith("3.1")
    errors = [f"{e.instance_path}: {e.message}" for e in OPENAPI_31_VALIDATOR.iter_errors(document)]
    assert not errors, errors[:10]
    schemas = list(document["components"]["schemas"].items())
    for path, method, op in _operations(document):
        for name, media in (op.get("requestBody") or {}).get("content", {}).items():
            schemas.append((f"{method} {path} body {name}", media["schema"]))
        for p in op.get("parameters", []):
            schemas.append((f"{method} {path} parameter {p['name']}", p["schema"]))
    for where, schema in schemas:
        assert jsonschema_rs.meta.is_valid(schema), where
    assert len(schemas) > 100


def test_every_operation_documents_its_refusals_and_its_security(document):
    problem = {"$ref": "#/components/schemas/Problem"}
    schemes = document["components"]["securitySchemes"]
    assert schemes["session"] == {"type": "apiKey", "name": "cpms_session", "in": "cookie",
                                  "description": schemes["session"]["description"]}
    assert schemes["csrf"]["in"] == "header" and schemes["csrf"]["name"] == "x-csrftoken"
    count = 0
    for path, method, op in _operations(document):
        count += 1
        where = f"{method.upper()} {path}"
        responses = op["responses"]
        assert "500" not in responses and not any(s.startswith("5") for s in responses if s != "503"), where
        assert any(s.startswith("2") for s in responses), where
        errors = {s: r for s, r in responses.items() if s.startswith("4")}
        assert errors or path == "/healthz", where  # healthz: public, no parameter, nothing to refuse
        fhir = path.startswith("/fhir/")
        for status, answer in errors.items():
            content = answer.get("content") or {}
            if fhir:
                assert list(content) == ["application/fhir+json"], (where, status)
                assert content["application/fhir+json"]["schema"] == {"$ref": "#/components/schemas/OperationOutcome"}
            elif path.startswith("/api/beacon/") and status == "400":
                # The Beacon's own refusals in the Beacon v2 format; the core's (401, 403, 413) stay problems.
                assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/BeaconErrorAnswer"}, where
            else:
                assert list(content) == ["application/problem+json"], (where, status)
                assert content["application/problem+json"]["schema"] == problem, (where, status)
        public = path in ("/healthz",) or path.startswith("/login/")
        if not public:
            assert {"401", "403"} <= set(responses), where
            assert op["security"][0].keys() >= {"session"}, where
        if method != "get":
            assert op["security"][0].keys() >= {"csrf", "csrfCookie"} and "403" in responses, where
        if "{" in path:
            assert "404" in responses and "400" in responses, where
        if "requestBody" in op:
            assert "413" in responses, where
    assert count >= 39


def test_the_routes_left_out_answer_no_json(settings):
    """Non-GET routes: a route left out of the document is a form post (a page or a redirect), or one of
    the form uploads or downloads named above; a route in it is an operation of the document."""
    from litestar.routes import HTTPRoute

    app = session_app(settings)
    documented = app.openapi_schema.to_schema()["paths"]
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(("/static/", "/api/schema")):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for handler in route.route_handlers:
            for method in handler.http_methods - {"OPTIONS", "HEAD"}:
                if handler.resolve_include_in_schema():
                    assert method.lower() in documented.get(path, {}), (method, route.path)
                    continue
                if method == "GET" or (method, route.path) in FORM_UPLOADS:
                    continue
                if (method, route.path) in FORM_DOWNLOADS:
                    assert "Response[bytes]" in str(handler.parsed_fn_signature.return_type.annotation), route.path
                    continue
                returns = str(handler.parsed_fn_signature.return_type.annotation)
                assert re.search(r"Template|Redirect|None", returns) and "Response[" not in returns, (method, route.path, returns)


async def test_every_get_route_answering_json_is_documented_and_answers_as_documented(client, demo, settings):
    """The enrolling HP walks every GET route of the app with the demo patient's ids."""
    app = session_app(settings)
    document = app.openapi_schema.to_schema()
    await enrol_totp(demo.users["hp"])
    r = await login(client, "hp@demo.cpms.eu", DEMO_PASSWORD.format(role="hp"))
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login")
    ids = await _ids(settings)
    ids.update({"system": "ORPHA", "code": "98756", "fmt": "phenopacket"})
    json_answers, documented_answers = 0, 0
    from litestar.routes import HTTPRoute

    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path.startswith(("/static/", "/api/schema")) or "/live" in route.path:
            continue
        if route.path == "/example/boom":  # the example plugin's deliberate failure (tests/test_web_shell.py)
            continue
        for handler in route.route_handlers:
            if "GET" not in handler.http_methods:
                continue
            url = _fill(route.path, ids, handler.handler_name)
            answer = await client.get(url, follow_redirects=False)
            assert answer.status_code < 500, (url, answer.status_code)
            content_type = answer.headers.get("content-type", "").split(";")[0].strip()
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
            operation = document["paths"].get(path, {}).get("get")
            if operation is None:
                # Left out of the document: a page, a fragment, an image, a file; never JSON (a redirect has no body).
                assert not JSON_TYPE.match(content_type), (url, content_type)
                continue
            documented_answers += 1
            json_answers += bool(JSON_TYPE.match(content_type))
            listed = operation["responses"].get(str(answer.status_code))
            assert listed is not None, (url, answer.status_code, sorted(operation["responses"]))
            if listed.get("content"):
                types = [t.split(";")[0] for t in listed["content"]]
                assert content_type in types, (url, answer.status_code, content_type, types)
    assert documented_answers >= 25 and json_answers >= 20, (documented_answers, json_answers)


async def test_ids_beyond_a_row_id_and_digits_int_cannot_read_are_refused_not_500(client, demo, settings):
    """Found while documenting the API: a path id past 32 bits reached PostgreSQL (500: an int4 column
    compared with a larger number), and ``str.isdigit()`` let "²" through to ``int()`` (500)."""
    for url in ("/dicom/series/2147483648/instances", "/pathology/slides/99999999999999999999999/annotations",
                "/admin/users/9223372036854775806", "/panels/2147483648"):
        r = await client.get(url, follow_redirects=False)
        assert r.status_code == 404, (url, r.status_code)
    api = await client.get("/dicom/series/2147483648/instances")
    assert api.headers["content-type"].startswith("application/problem+json")
    await enrol_totp(demo.users["dpo"])
    await login(client, "dpo@demo.cpms.eu", DEMO_PASSWORD.format(role="dpo"))
    r = await client.get("/audit/export", params={"format": "json", "actor": "²"})
    assert r.status_code == 422 and "Actor id" in r.text
