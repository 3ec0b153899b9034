"""FHIR R4 terminology operations: CodeSystem/$lookup, CodeSystem/$validate-code, ValueSet/$expand,
by GET and by POST with a Parameters body, and their OperationOutcome errors."""

from __future__ import annotations

import pytest

from tests.conftest import csrf_of, login, make_user

ORPHA = "http://www.orpha.net"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
HPO = "http://human-phenotype-ontology.org"
FHIR = "application/fhir+json"


@pytest.fixture
async def hp(client, sample_terminology):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    return client


def params_of(resource: dict) -> dict[str, list]:
    assert resource["resourceType"] == "Parameters"
    out: dict[str, list] = {}
    for p in resource["parameter"]:
        value = p["part"] if "part" in p else next(v for k, v in p.items() if k.startswith("value"))
        out.setdefault(p["name"], []).append(value)
    return out


def parts_of(part: list) -> dict:
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in part}


def properties(resource: dict) -> list[tuple[str, object]]:
    return [(parts["code"], parts["value"]) for parts in map(parts_of, params_of(resource).get("property", []))]


def assert_outcome(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == code
    for secret in ("Traceback", "SELECT", "plugins/", ".py", "coding_concept"):
        assert secret not in r.text
    return issue


async def post(client, url: str, parameters: list[dict], **kw):
    headers = {"content-type": FHIR, "x-csrftoken": csrf_of(client), **kw.pop("headers", {})}
    return await client.post(url, json={"resourceType": "Parameters", "parameter": parameters}, headers=headers, **kw)


# --- $lookup ----------------------------------------------------------------------------------------


async def test_lookup_by_get_gives_name_display_designations_and_properties(hp):
    r = await hp.get("/fhir/CodeSystem/$lookup", params={"system": ORPHA, "code": "95"})
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR)
    out = params_of(r.json())
    assert out["display"] == ["Friedreich ataxia"] and out["name"][0]
    designations = [parts_of(d) for d in out["designation"]]
    frda = next(d for d in designations if d["value"] == "FRDA")
    assert frda["language"] == "en" and frda["use"]["code"] == "900000000000013009"
    assert next(d for d in designations if d["value"] == "Ataxie de Friedreich")["language"] == "fr"
    props = properties(r.json())
    assert ("parent", "183518") in props and ("inactive", False) in props
    r = await hp.get("/fhir/CodeSystem/$lookup", params={"system": ICD10, "code": "G11"})
    props = properties(r.json())
    assert {("child", "G11.1"), ("child", "G11.2"), ("parent", "G10-G14")} <= set(props)


async def test_lookup_answers_with_the_dollar_percent_encoded_and_the_version(hp):
    from plugins.coding import lookup

    version = (await lookup.system("HPO"))["version"]
    r = await hp.get("/fhir/CodeSystem/%24lookup", params={"system": HPO, "code": "HP:0001250", "version": version})
    out = params_of(r.json())
    assert out["display"] == ["Seizure"] and out["version"] == [version]
    r = await hp.get("/fhir/CodeSystem/$lookup", params={"system": HPO, "code": "HP:0001250", "version": "1999-01-01"})
    assert_outcome(r, 404, "not-found")


async def test_lookup_returns_only_the_properties_asked_for(hp):
    r = await hp.get("/fhir/CodeSystem/$lookup", params=[("system", ICD10), ("code", "G11"), ("property", "parent")])
    out = params_of(r.json())
    assert "designation" not in out
    assert [code for code, _ in properties(r.json())] == ["parent"]


async def test_lookup_by_post_with_a_coding(hp):
    r = await post(hp, "/fhir/CodeSystem/$lookup", [{"name": "coding", "valueCoding": {"system": ORPHA, "code": "95"}}])
    assert r.status_code == 200, r.text
    assert params_of(r.json())["display"] == ["Friedreich ataxia"]
    r = await post(hp, "/fhir/CodeSystem/$lookup", [{"name": "system", "valueUri": ORPHA}, {"name": "code", "valueCode": "98756"}])
    assert params_of(r.json())["display"] == ["Spinocerebellar ataxia type 2"]


async def test_a_post_needs_the_csrf_token_as_every_post_in_cpms(hp):
    r = await hp.post(
        "/fhir/CodeSystem/$lookup", json={"resourceType": "Parameters", "parameter": [{"name": "system", "valueUri": ORPHA}, {"name": "code", "valueCode": "95"}]},
        headers={"content-type": FHIR},
    )
    issue = assert_outcome(r, 403, "forbidden")
    assert "Friedreich" not in r.text and "CSRF" in issue["diagnostics"]
    from core.activity.tables import Activity

    [refused] = await Activity.select().where(Activity.action == "security.refused")  # audited as the core does
    assert "lookup" in refused["subject_id"]


async def test_lookup_errors_are_operation_outcomes(hp):
    issue = assert_outcome(await hp.get("/fhir/CodeSystem/$lookup", params={"system": ORPHA}), 400, "required")
    assert issue["expression"] == ["code"]
    assert_outcome(await hp.get("/fhir/CodeSystem/$lookup", params={"code": "95"}), 400, "required")
    assert_outcome(await hp.get("/fhir/CodeSystem/$lookup", params=[("system", ORPHA), ("code", "95"), ("code", "100")]), 400, "invalid")
    issue = assert_outcome(await hp.get("/fhir/CodeSystem/$lookup", params={"system": "http://example.org/nope", "code": "1"}), 404, "not-found")
    assert "http://example.org/nope" in issue["diagnostics"]
    assert_outcome(await hp.get("/fhir/CodeSystem/$lookup", params={"system": ORPHA, "code": "424242"}), 404, "not-found")
    assert_outcome(await hp.get("/fhir/CodeSystem/$lookup", params={"system": ORPHA, "code": "x" * 65}), 400, "too-long")
    bad = [
        (b"{not json", FHIR, 400, "structure"),
        (b'{"resourceType": "Patient"}', FHIR, 400, "structure"),
        (b'{"resourceType": "Parameters", "parameter": [{"name": "code"}]}', FHIR, 400, "structure"),
        (b'{"resourceType": "Parameters", "parameter": [{"name": "coding", "valueCoding": {"code": "95"}}]}', FHIR, 400, "required"),
        (b"system=x&code=1", "application/x-www-form-urlencoded", 415, "not-supported"),
    ]
    for body, content_type, status, code in bad:
        r = await hp.post("/fhir/CodeSystem/$lookup", content=body, headers={"content-type": content_type, "x-csrftoken": csrf_of(hp)})
        assert_outcome(r, status, code)


# --- $validate-code ---------------------------------------------------------------------------------


async def test_validate_code_with_url_or_system_and_display(hp):
    r = await hp.get("/fhir/CodeSystem/$validate-code", params={"url": ORPHA, "code": "95"})
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR)
    out = params_of(r.json())
    assert out["result"] == [True] and out["display"] == ["Friedreich ataxia"]
    out = params_of((await hp.get("/fhir/CodeSystem/$validate-code", params={"system": ORPHA, "code": "95", "display": "frda"})).json())
    assert out["result"] == [True]  # a synonym is a valid display, whatever its case
    out = params_of((await hp.get("/fhir/CodeSystem/$validate-code", params={"url": ORPHA, "code": "95", "display": "Huntington disease"})).json())
    assert out["result"] == [False] and "Huntington disease" in out["message"][0] and out["display"] == ["Friedreich ataxia"]
    out = params_of((await hp.get("/fhir/CodeSystem/$validate-code", params={"url": ORPHA, "code": "424242"})).json())
    assert out["result"] == [False] and "424242" in out["message"][0]


async def test_validate_code_by_post_and_its_errors(hp):
    r = await post(hp, "/fhir/CodeSystem/$validate-code", [
        {"name": "coding", "valueCoding": {"system": ICD10, "code": "G11.1", "display": "Early-onset cerebellar ataxia"}},
    ])
    assert params_of(r.json())["result"] == [True]
    r = await post(hp, "/fhir/CodeSystem/$validate-code", [{"name": "url", "valueUri": ICD10}, {"name": "code", "valueCode": "G11.1"},
                                                          {"name": "display", "valueString": "Late-onset cerebellar ataxia"}])
    assert params_of(r.json())["result"] == [False]
    assert_outcome(await hp.get("/fhir/CodeSystem/$validate-code", params={"url": "http://example.org/nope", "code": "1"}), 404, "not-found")
    assert_outcome(await hp.get("/fhir/CodeSystem/$validate-code", params={"url": ORPHA}), 400, "required")
    assert_outcome(await hp.get("/fhir/CodeSystem/$validate-code", params={"url": ORPHA, "system": ORPHA, "code": "95"}), 400, "invalid")


# --- $expand ----------------------------------------------------------------------------------------


async def test_expand_a_whole_system_in_pages(hp):
    from plugins.coding import lookup

    size = (await lookup.system("ICD-10"))["concepts"]
    r = await hp.get("/fhir/ValueSet/$expand", params={"url": f"{ICD10}?fhir_vs"})
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR)
    vs = r.json()
    assert vs["resourceType"] == "ValueSet" and vs["url"] == f"{ICD10}?fhir_vs"
    expansion = vs["expansion"]
    assert expansion["total"] == size == len(expansion["contains"]) and expansion["timestamp"].endswith("Z")
    codes = [c["code"] for c in expansion["contains"]]
    assert len(set(codes)) == len(codes) and "G11.1" in codes
    assert all(c["system"] == ICD10 for c in expansion["contains"])
    page = (await hp.get("/fhir/ValueSet/$expand", params={"url": ICD10, "count": "3", "offset": "2"})).json()["expansion"]
    assert page["total"] == size and page["offset"] == 2 and [c["code"] for c in page["contains"]] == codes[2:5]


async def test_expand_with_a_text_filter(hp):
    r = await hp.get("/fhir/ValueSet/$expand", params={"url": f"{ORPHA}?fhir_vs", "filter": "spinocerebellar"})
    expansion = r.json()["expansion"]
    codes = {c["code"] for c in expansion["contains"]}
    assert {"98755", "98756", "98757"} <= codes and "95" not in codes
    assert expansion["total"] == len(expansion["contains"])
    assert {"name": "filter", "valueString": "spinocerebellar"} in expansion["parameter"]
    r = await post(hp, "/fhir/ValueSet/$expand", [{"name": "url", "valueUri": ORPHA}, {"name": "filter", "valueString": "spinocerebellar"},
                                                   {"name": "count", "valueInteger": 1}])
    assert r.status_code == 200, r.text
    assert len(r.json()["expansion"]["contains"]) == 1


async def test_expand_errors(hp, monkeypatch):
    from plugins.coding import fhir

    assert_outcome(await hp.get("/fhir/ValueSet/$expand"), 400, "required")
    assert_outcome(await hp.get("/fhir/ValueSet/$expand", params={"url": "http://example.org/vs"}), 404, "not-found")
    assert_outcome(await hp.get("/fhir/ValueSet/$expand", params={"url": f"{ICD10}?fhir_vs=isa/G11"}), 400, "not-supported")
    for bad in ({"count": "-1"}, {"count": "lots"}, {"offset": "-3"}, {"activeOnly": "perhaps"}):
        assert_outcome(await hp.get("/fhir/ValueSet/$expand", params={"url": ICD10, **bad}), 400, "invalid")
    # A whole large system without paging is refused, saying what to do.
    monkeypatch.setattr(fhir, "MAX_COUNT", 5)
    issue = assert_outcome(await hp.get("/fhir/ValueSet/$expand", params={"url": ICD10}), 422, "too-costly")
    assert "count" in issue["diagnostics"]


# --- failures and who may call ----------------------------------------------------------------------


async def test_an_internal_failure_is_an_outcome_with_an_incident_only(hp, monkeypatch):
    from plugins.coding import lookup

    async def broken(*args, **kwargs):
        raise RuntimeError("SELECT secret FROM coding_concept in /srv/plugins/coding/lookup.py")

    monkeypatch.setattr(lookup, "concept", broken)
    issue = assert_outcome(await hp.get("/fhir/CodeSystem/$lookup", params={"system": ORPHA, "code": "95"}), 500, "exception")
    assert "incident" in issue["diagnostics"] and "secret" not in issue["diagnostics"]


async def test_fhir_operations_need_the_search_permission(client, sample_terminology):
    anonymous = await client.get("/fhir/CodeSystem/$lookup", params={"system": ORPHA, "code": "95"}, headers={"accept": FHIR})
    assert_outcome(anonymous, 401, "login")
    browser = await client.get("/fhir/CodeSystem/$lookup", params={"system": ORPHA, "code": "95"}, headers={"accept": "text/html"}, follow_redirects=False)
    assert browser.status_code in (302, 303) and browser.headers["location"].startswith("/login")
    await make_user("norole@example.org", roles=(), hcp=None, mfa=False)
    await login(client, "norole@example.org")
    for url in ("/fhir/CodeSystem/$lookup", "/fhir/CodeSystem/$validate-code", "/fhir/ValueSet/$expand"):
        r = await client.get(url, params={"system": ORPHA, "url": ORPHA, "code": "95"})
        assert_outcome(r, 403, "forbidden")
        assert "Friedreich" not in r.text


async def test_hostile_json_and_numbers_get_an_operation_outcome_not_a_crash(hp):
    """Thousands of brackets, Infinity, 1e999, NaN and fractions in a Parameters body: 400 with an
    OperationOutcome, never a 500 (RecursionError, OverflowError)."""
    headers = {"content-type": FHIR, "x-csrftoken": csrf_of(hp)}
    expand = '{"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": "%s"}, {"name": "count", "valueInteger": %s}]}'
    bodies = [
        b"[" * 5000 + b"]" * 5000,
        b'{"resourceType": "Parameters", "parameter": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        (expand % (ORPHA, "Infinity")).encode(), (expand % (ORPHA, "-Infinity")).encode(), (expand % (ORPHA, "NaN")).encode(),
        (expand % (ORPHA, "1e999")).encode(), (expand % (ORPHA, "1" * 5000)).encode(), (expand % (ORPHA, "2.5")).encode(),
        (expand % (ORPHA, "1e300")).encode(),
    ]
    for body in bodies:
        for op in ("/fhir/ValueSet/$expand", "/fhir/CodeSystem/$lookup", "/fhir/CodeSystem/$validate-code"):
            r = await hp.post(op, content=body, headers=headers)
            assert r.status_code == 400, (op, body[:60], r.status_code, r.text[:200])
            assert r.headers["content-type"].startswith(FHIR) and r.json()["resourceType"] == "OperationOutcome"
    # an integral float is still a whole number
    r = await hp.post("/fhir/ValueSet/$expand", content=(expand % (ORPHA, "2.0")).encode(), headers=headers)
    assert r.status_code == 200 and len(r.json()["expansion"]["contains"]) == 2

