"""The coding plugin's pages, picker fragments and JSON API, through the HTTP app with the sample
terminology (Orphanet pack, ICD-10 ClaML and HPO samples: tests/data)."""

from __future__ import annotations

import html

import pytest

from plugins.coding.tests.test_picker import elements, find, one
from tests.conftest import login, make_user

HP = "hp@example.org"


@pytest.fixture
async def hp(client, sample_terminology):
    await make_user(HP)
    await login(client, HP)
    return client


def options(html: str) -> list[dict]:
    return [e for e in elements(html) if e.get("role") == "option" and e.get("aria-disabled") != "true"]


# --- the terminologies page ---------------------------------------------------------------------


async def test_the_terminologies_page_shows_each_system_with_its_licence(hp):
    from plugins.coding import lookup

    r = await hp.get("/coding")
    assert r.status_code == 200 and "<html" in r.text
    systems = await lookup.systems()
    assert {"ORPHA", "ICD-10", "HPO"} <= {s["key"] for s in systems}
    for s in systems:
        assert f'href="/coding/{s["key"]}"' in r.text
        assert s["licence"] and s["licence"].split("\n")[0][:60] in html.unescape(r.text)
        if s["version"]:
            assert s["version"] in r.text
    assert "Licences and attribution" in r.text
    assert 'href="/coding"' in r.text  # the menu link


async def test_the_terminologies_page_searches_chosen_systems(hp):
    r = await hp.get("/coding", params={"q": "friedreich", "system": "ORPHA"})
    assert 'href="/coding/ORPHA/95"' in r.text
    assert "/coding/ICD-10/" not in r.text  # ICD-10 has "Friedreich ataxia" as an inclusion term, but was not chosen
    both = await hp.get("/coding", params=[("q", "friedreich"), ("system", "ORPHA"), ("system", "ICD-10")])
    assert 'href="/coding/ORPHA/95"' in both.text and 'href="/coding/ICD-10/G11.1"' in both.text
    assert one(both.text, type="checkbox", value="ICD-10").get("checked") is not None
    # the active search asks for the results only
    fragment = await hp.get("/coding", params={"q": "FRDA"}, headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and 'href="/coding/ORPHA/95"' in fragment.text
    assert "FRDA" in fragment.text and "found by" in fragment.text  # the synonym that matched
    none = await hp.get("/coding", params={"q": "zzqx nothing like it"})
    assert "0 codes" in none.text


# --- picker fragments -----------------------------------------------------------------------------


async def test_picker_search_answers_options_for_the_listbox(hp):
    r = await hp.get("/coding/search", params=[("q", "friedr"), ("system", "ORPHA"), ("system", "ICD-10"), ("list", "cp-1-list")])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and "<html" not in r.text
    found = options(r.text)
    orpha = next(o for o in found if o["data-system"] == "ORPHA")
    assert orpha["tag"] == "li" and orpha["data-code"] == "95" and orpha["data-display"] == "Friedreich ataxia"
    assert orpha["aria-selected"] == "false" and orpha["id"].startswith("cp-1-list-")
    assert len({o["id"] for o in found}) == len(found)
    assert "ORPHA" in orpha["_text"] and "95" in orpha["_text"]
    icd = next(o for o in found if o["data-system"] == "ICD-10")
    assert "Friedreich ataxia (autosomal recessive)" in icd["_text"]  # the inclusion term that matched, shown with the label
    status = one(r.text, id="cp-1-list-status")
    assert status["hx-swap-oob"] == "innerHTML" and "found" in status["_text"]
    assert {o["data-system"] for o in found} <= {"ORPHA", "ICD-10"}


async def test_picker_search_reads_the_prefixed_label_and_kind_defaults(hp):
    # htmx sends the picker's input under its form name
    r = await hp.get("/coding/search", params={"f_dx_label": "friedr", "prefix": "f_dx_", "kind": "diagnoses", "list": "x-list"})
    assert "95" in {o["data-code"] for o in options(r.text) if o["data-system"] == "ORPHA"}
    # phenotype pickers search HPO when no system is ticked
    r = await hp.get("/coding/search", params={"q": "ataxia", "kind": "phenotype"})
    found = options(r.text)
    assert found and {o["data-system"] for o in found} == {"HPO"}
    assert "HP:0001251" in {o["data-code"] for o in found}
    # a synonym match shows the synonym beside the label
    r = await hp.get("/coding/search", params={"q": "epileptic seizure", "system": "HPO"})
    seizure = next(o for o in options(r.text) if o["data-code"] == "HP:0001250")
    assert seizure["data-display"] == "Seizure" and "Epileptic seizure" in seizure["_text"]


async def test_picker_search_says_when_nothing_matches(hp):
    r = await hp.get("/coding/search", params={"q": "zzqx nothing like it", "system": "ORPHA", "list": "cp-2-list"})
    assert options(r.text) == []
    empty = one(r.text, tag="li")
    assert empty["aria-disabled"] == "true" and "No code matches" in empty["_text"]
    assert "No code matches" in one(r.text, id="cp-2-list-status")["_text"]
    r = await hp.get("/coding/search", params={"q": "", "list": "cp-2-list"})
    assert find(r.text, tag="li") == [] and one(r.text, id="cp-2-list-status")["_text"] == ""
    # systems that are not loaded are ignored, not an error
    r = await hp.get("/coding/search", params={"q": "ataxia", "system": "MedDRA"})
    assert r.status_code == 200 and options(r.text) == []


async def test_picker_search_refuses_bad_parameters(hp):
    for params in ({"q": "x" * 201}, {"q": "a", "limit": "0"}, {"q": "a", "limit": "many"}, {"q": "a", "list": 'x" onclick="'},
                   {"q": "a", "prefix": "<b>"}):
        r = await hp.get("/coding/search", params=params)
        assert r.status_code == 400, params
        assert "onclick" not in r.text and "<b>" not in r.text


async def test_equivalents_are_checkboxes_ticked_for_equivalent_codes_only(hp):
    r = await hp.get("/coding/equivalents", params={"system": "ORPHA", "code": "95", "prefix": "f_dx_"})
    assert r.status_code == 200 and "<html" not in r.text
    boxes = {b["value"]: b for b in find(r.text, type="checkbox")}
    icd = boxes["ICD-10|G11.1|Early-onset cerebellar ataxia"]
    assert icd["name"] == "f_dx_codings" and "checked" in icd
    omim = boxes["OMIM|229300|Friedreich ataxia 1"]
    assert "checked" in omim
    label = next(e for e in elements(r.text) if e["tag"] == "label" and "G11.1" in e["_text"])
    assert "ICD-10" in label["_text"] and "Early-onset cerebellar ataxia" in label["_text"] and "equivalent" in label["_text"]
    # ORPHA 98756 (SCA2) maps to the broader ICD-10 G11.2: suggested, not ticked
    r = await hp.get("/coding/equivalents", params={"system": "ORPHA", "code": "98756"})
    g112 = next(b for b in find(r.text, type="checkbox") if b["value"].startswith("ICD-10|G11.2|"))
    assert "checked" not in g112 and g112["name"] == "codings"
    assert "broader" in next(e for e in elements(r.text) if e["tag"] == "label" and "G11.2" in e["_text"])["_text"]
    r = await hp.get("/coding/equivalents", params={"system": "ORPHA", "code": "399999"})
    assert find(r.text, type="checkbox") == [] and "No codes of other systems" in r.text
    r = await hp.get("/coding/equivalents", params={"system": "ORPHA", "code": "95", "prefix": "a b"})
    assert r.status_code == 400


# --- browsing and code pages ----------------------------------------------------------------------


async def test_browse_a_system_as_a_tree(hp):
    r = await hp.get("/coding/ORPHA")
    assert r.status_code == 200
    assert 'href="/coding/ORPHA/98006"' in r.text
    node = one(r.text, tag="details")  # the one root with children opens them in place
    assert node["hx-get"] == "/coding/ORPHA/children?code=98006" and node["hx-trigger"] == "toggle once"
    children = await hp.get("/coding/ORPHA/children", params={"code": "98006"}, headers={"HX-Request": "true"})
    assert children.status_code == 200 and "<html" not in children.text
    assert 'href="/coding/ORPHA/183518"' in children.text
    deeper = await hp.get("/coding/ORPHA/children", params={"code": "183518"})
    assert 'href="/coding/ORPHA/95"' in deeper.text and find(deeper.text, tag="details") == []  # leaves
    hpo = await hp.get("/coding/HPO")
    assert 'href="/coding/HPO/HP:0000001"' in hpo.text


async def test_a_code_page_shows_labels_hierarchy_mappings_and_licence(hp):
    from plugins.coding import lookup

    r = await hp.get("/coding/ORPHA/95")
    assert r.status_code == 200
    text = r.text
    assert "Friedreich ataxia" in text and "FRDA" in text and "Ataxie de Friedreich" in text
    assert 'href="/coding/ORPHA/183518"' in text  # parent
    assert 'href="/coding/ICD-10/G11.1"' in text  # mapping to a loaded code: a link
    assert 'href="/coding/OMIM/229300"' in text and "Friedreich ataxia 1" in text
    sca1 = await hp.get("/coding/ORPHA/98755")
    assert "164400" in sca1.text and 'href="/coding/OMIM/164400"' not in sca1.text  # not among the loaded OMIM names
    assert "not in the loaded terminologies" in sca1.text
    orpha = await lookup.system("ORPHA")
    assert orpha["licence"][:40] in html.unescape(text)
    icd = await hp.get("/coding/ICD-10/G11.1")
    assert 'href="/coding/ORPHA/95"' in icd.text  # mapped from ORPHA
    assert 'href="/coding/ICD-10/G11"' in icd.text and "Friedreich ataxia (autosomal recessive)" in icd.text
    seizure = await hp.get("/coding/HPO/HP:0001250")
    assert seizure.status_code == 200 and "Epileptic seizure" in seizure.text


async def test_unknown_systems_and_codes_are_the_apps_404_page(hp):
    for url in ("/coding/NOPE", "/coding/NOPE/1", "/coding/ORPHA/424242", "/coding/ORPHA/children?code=424242",
                "/coding/NOPE/children?code=1"):
        r = await hp.get(url)
        assert r.status_code == 404, url
        assert "text/html" in r.headers["content-type"] and "Not found" in r.text


# --- JSON API -------------------------------------------------------------------------------------


async def test_api_lists_systems_searches_and_returns_a_concept(hp):
    r = await hp.get("/api/coding/systems")
    assert r.status_code == 200
    systems = {s["key"]: s for s in r.json()}
    assert systems["ORPHA"]["uri"] == "http://www.orpha.net" and systems["ORPHA"]["concepts"] > 0
    r = await hp.get("/api/coding/search", params={"q": "frda", "system": "ORPHA"})
    body = r.json()
    assert body["query"] == "frda"
    first = body["hits"][0]
    assert set(first) == {"system", "code", "display", "matched", "match"}
    assert (first["system"], first["code"], first["display"], first["matched"]) == ("ORPHA", "95", "Friedreich ataxia", "FRDA")
    r = await hp.get("/api/coding/search", params=[("q", "G11.1"), ("system", "ICD-10"), ("limit", "1")])
    assert [(h["code"], h["match"]) for h in r.json()["hits"]] == [("G11.1", "code")]
    r = await hp.get("/api/coding/ORPHA/95")
    concept = r.json()
    assert concept["code"] == "95" and concept["display"] == "Friedreich ataxia"
    assert {(m["system"], m["code"], m["relation"]) for m in concept["mappings"]} >= {("ICD-10", "G11.1", "equivalent"), ("OMIM", "229300", "equivalent")}
    assert (await hp.get("/api/coding/HPO/HP:0001250")).json()["display"] == "Seizure"


async def test_api_refuses_bad_parameters_as_problem_json(hp):
    for params in ({}, {"q": ""}, {"q": "a", "limit": "0"}, {"q": "a", "limit": "101"}, {"q": "a", "limit": "x"},
                   {"q": "x" * 201}, {"q": "ataxia", "system": "NOPE"}):
        r = await hp.get("/api/coding/search", params=params)
        assert r.status_code == 400, params
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["status"] == 400
    r = await hp.get("/api/coding/ORPHA/424242")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert (await hp.get("/api/coding/NOPE/1")).status_code == 404


async def test_the_json_api_is_in_the_openapi_schema(hp):
    paths = (await hp.get("/api/schema/openapi.json")).json()["paths"]
    assert {"/api/coding/systems", "/api/coding/search"} <= set(paths)
    assert not any(p.startswith("/coding") for p in paths)


# --- who may use it -------------------------------------------------------------------------------

ROUTES = [
    "/coding", "/coding/search?q=ataxia", "/coding/equivalents?system=ORPHA&code=95", "/coding/ORPHA",
    "/coding/ORPHA/children?code=98006", "/coding/ORPHA/95", "/api/coding/systems", "/api/coding/search?q=ataxia",
    "/api/coding/ORPHA/95",
]


async def test_a_user_without_the_permission_gets_403(client, sample_terminology):
    await make_user("norole@example.org", roles=(), hcp=None, mfa=False)
    await login(client, "norole@example.org")
    for url in ROUTES:
        r = await client.get(url)
        assert r.status_code == 403, url
        assert "Friedreich" not in r.text


async def test_anonymous_visitors_are_sent_to_log_in(client, sample_terminology):
    for url in ROUTES:
        r = await client.get(url, follow_redirects=False)
        if url.startswith("/api/"):
            assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json"), url
        else:
            assert r.status_code in (302, 303) and r.headers["location"].startswith("/login"), url
        assert "Friedreich" not in r.text
    r = await client.get("/coding/search?q=ataxia", headers={"HX-Request": "true"})
    assert r.headers.get("hx-redirect", "").startswith("/login")
