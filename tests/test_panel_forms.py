"""Consultation forms: the template format, reading answers, versions per ERN, and the
coordinators' editor (only in their own ERN)."""

import copy
import json
import re

import pytest

from core.panels import forms
from core.panels.forms import display_answers, missing_required, parse_answers, posted_values, validate_definition
from core.panels.templates_store import DATA_DIR, shipped_definition
from tests.conftest import login, make_user, post_form, text_of

COORD = (("hp", "ERN RND"), ("coordinator", "ERN RND"))


def definition(*fields, title="Test form"):
    return {"title": title, "sections": [{"title": "Only section", "fields": list(fields)}]}


EVERY_TYPE = {
    "title": "Every type",
    "sections": [
        {"title": "Texts", "help": "Free text.", "fields": [
            {"key": "summary", "label": "Summary", "type": "text", "required": True, "max_length": 40},
            {"key": "story", "label": "Story", "type": "longtext", "help": "Tell it."},
        ]},
        {"title": "Measures", "fields": [
            {"key": "ck", "label": "Creatine kinase", "type": "number", "unit": "U/L", "min": 0, "max": 100000,
             "ref_low": 30, "ref_high": 200, "decimals": 0},
            {"key": "weight", "label": "Weight", "type": "number", "unit": "kg", "min": 0.5, "max": 300, "decimals": 1},
            {"key": "seen", "label": "Seen on", "type": "date"},
        ]},
        {"title": "Choices", "fields": [
            {"key": "course", "label": "Course", "type": "choice", "choices": ["Stable", "Progressive"], "required": True},
            {"key": "tests", "label": "Tests", "type": "choice", "choices": ["Exome", "Genome", "Panel"], "multiple": True},
            {"key": "consent", "label": "Patient consented", "type": "choice", "choices": ["Yes"]},
            {"key": "diagnosis", "label": "Diagnosis", "type": "code", "systems": ["ORPHA", "ICD-10"]},
        ]},
    ],
}


class Form(dict):
    """A posted form: several values per name, as Litestar's FormMultiDict."""

    def getall(self, name):
        value = self.get(name, [])
        return value if isinstance(value, list) else [value]


GOOD_POST = Form({
    "f_summary": "  Ataxia  since childhood ", "f_story": "Line one\r\nLine two", "f_ck": "250", "f_weight": "41,5",
    "f_seen": "2026-03-01", "f_course": "Progressive", "f_tests": ["Genome", "Exome"], "f_consent": "Yes",
    "f_diagnosis_label": "Spinocerebellar ataxia type 2", "f_diagnosis_system": "ORPHA", "f_diagnosis_code": "98756",
})


# --- the definition -----------------------------------------------------------------------------------


def test_a_good_definition_has_no_problem():
    assert validate_definition(EVERY_TYPE) == []


@pytest.mark.parametrize("name", ["default_template.json", "ern_rnd_template.json"])
def test_the_shipped_templates_are_valid(name):
    shipped = json.loads((DATA_DIR / name).read_text())
    assert validate_definition(shipped) == []
    types = {f["type"] for f in forms.iter_fields(shipped)}
    assert {"number", "choice", "code", "longtext"} <= types


def test_the_default_template_has_what_a_rare_disease_case_needs():
    default = shipped_definition()
    fields = {f["key"]: f for f in forms.iter_fields(default)}
    assert fields["onset_age"]["type"] == "number" and fields["onset_age"]["unit"] == "years"
    assert fields["family_history"]["type"] == "longtext"
    assert fields["ck"]["unit"] == "U/L" and (fields["ck"]["ref_low"], fields["ck"]["ref_high"]) == (30, 200)
    assert fields["working_diagnosis"]["systems"] == ["ORPHA", "ICD-10"]
    consent = fields["consent_ern"]
    assert consent["label"] == "Patient consented to discussion in the ERN" and consent["choices"] == ["Yes"] and consent["required"]
    rnd = {f["key"]: f for f in forms.iter_fields(shipped_definition("ern_rnd_template.json"))}
    assert (rnd["sara"]["min"], rnd["sara"]["max"]) == (0, 40)
    assert rnd["genetic_testing_done"]["type"] == "choice" and "Dystonia" in rnd["movement_disorder"]["choices"]


def _problems(*fields, **kw):
    return validate_definition(definition(*fields, **kw))


@pytest.mark.parametrize("bad, expected", [
    ([{"key": "a", "label": "A", "type": "text"}, {"key": "a", "label": "B", "type": "date"}], "used twice"),
    ([{"key": "a", "label": "A", "type": "slider"}], "unknown type 'slider'"),
    ([{"key": "a", "label": "A", "type": "choice", "choices": []}], "choices missing"),
    ([{"key": "a", "label": "A", "type": "choice"}], "choices missing"),
    ([{"key": "a", "label": "A", "type": "choice", "choices": ["x", "x"]}], "unique"),
    ([{"key": "Bad-Key", "label": "A", "type": "text"}], "slug"),
    ([{"key": "9lives", "label": "A", "type": "text"}], "slug"),
    ([{"key": "x" * 41, "label": "A", "type": "text"}], "slug"),
    ([{"key": "a", "label": "", "type": "text"}], "label missing"),
    ([{"key": "a", "label": "L" * 201, "type": "text"}], "label too long"),
    ([{"key": "weight", "label": "W", "type": "number", "unit": "kilograms per square metre"}], "section 1, field 'weight': unit too long"),
    ([{"key": "a", "label": "A", "type": "number", "min": 10, "max": 1}], "min is above max"),
    ([{"key": "a", "label": "A", "type": "number", "ref_low": 10, "ref_high": 1}], "ref_low is above ref_high"),
    ([{"key": "a", "label": "A", "type": "number", "min": "0"}], "min must be a number"),
    ([{"key": "a", "label": "A", "type": "number", "decimals": 1.5}], "decimals"),
    ([{"key": "a", "label": "A", "type": "text", "requried": True}], "unknown attribute 'requried'"),
    ([{"key": "a", "label": "A", "type": "text", "required": "yes"}], "required must be true or false"),
    ([{"key": "a", "label": "A", "type": "date", "unit": "days"}], "unknown attribute 'unit' for a date field"),
    ([{"key": "a", "label": "A", "type": "code", "systems": ["ORPHA code!"]}], "every system"),
    ([{"key": "a", "label": "A", "type": "text", "max_length": 0}], "max_length"),
    ([{"key": "dx", "label": "D", "type": "code"}, {"key": "dx_code", "label": "C", "type": "text"}], "clashes with the code field 'dx'"),
    (["not an object"], "field 1: must be an object"),
])
def test_bad_definitions_are_explained(bad, expected):
    problems = _problems(*bad)
    assert any(expected in p for p in problems), problems


def test_limits_and_shape_of_the_whole_template():
    assert validate_definition([]) == ["The template must be a JSON object with a title and sections."]
    assert any("title: missing" in p for p in validate_definition({"sections": EVERY_TYPE["sections"]}))
    assert any("sections: missing" in p for p in validate_definition({"title": "T", "sections": []}))
    many_sections = {"title": "T", "sections": [{"title": f"S{i}", "fields": [{"key": f"k{i}", "label": "L", "type": "text"}]} for i in range(31)]}
    assert any("at most 30" in p for p in validate_definition(many_sections))
    many_fields = {"title": "T", "sections": [{"title": f"S{s}", "fields": [{"key": f"k{s}_{i}", "label": "L", "type": "text"} for i in range(21)]} for s in range(10)]}
    assert any("210 fields in all, at most 200" in p for p in validate_definition(many_fields))
    empty_section = {"title": "T", "sections": [{"title": "S", "fields": []}]}
    assert any("section 1: fields missing" in p for p in validate_definition(empty_section))
    # The second section's field is named in the path.
    two = {"title": "T", "sections": [EVERY_TYPE["sections"][0], {"title": "S2", "fields": [{"key": "weight", "label": "W", "type": "number", "unit": "u" * 30}]}]}
    assert validate_definition(two) == ["section 2, field 'weight': unit too long (at most 20 characters)"]


# --- answers ----------------------------------------------------------------------------------------------


def test_every_type_is_read_into_json_safe_values():
    values, errors = parse_answers(EVERY_TYPE, GOOD_POST)
    assert errors == {}
    assert values == {
        "summary": "Ataxia since childhood", "story": "Line one\nLine two", "ck": 250, "weight": 41.5, "seen": "2026-03-01",
        "course": "Progressive", "tests": ["Exome", "Genome"], "consent": "Yes",
        "diagnosis": {"label": "Spinocerebellar ataxia type 2", "system": "ORPHA", "code": "98756"},
    }
    assert isinstance(values["ck"], int) and isinstance(values["weight"], float)
    assert json.loads(json.dumps(values)) == values


def test_empty_optional_answers_are_absent_and_required_ones_refused():
    values, errors = parse_answers(EVERY_TYPE, Form({"f_summary": "x", "f_course": "Stable", "f_ck": " ", "f_tests": [], "f_diagnosis_label": ""}))
    assert errors == {} and values == {"summary": "x", "course": "Stable"}
    values, errors = parse_answers(EVERY_TYPE, Form({}))
    assert errors == {"summary": "Required.", "course": "Required."} and values == {}


def test_a_draft_skips_required_but_not_malformed_values():
    values, errors = parse_answers(EVERY_TYPE, Form({"f_ck": "12"}), require=False)
    assert errors == {} and values == {"ck": 12}
    values, errors = parse_answers(EVERY_TYPE, Form({"f_ck": "lots", "f_seen": "01/03/2026"}), require=False)
    assert set(errors) == {"ck", "seen"} and values == {}


@pytest.mark.parametrize("raw, error", [
    ("-1", "At least 0 U/L."), ("100001", "At most 100000 U/L."), ("12.5", "Enter a whole number."), ("abc", "Enter a number"),
    ("1e999", "Enter a number"), ("nan", "Enter a number"), ("12..5", "Enter a number"),
])
def test_numbers_outside_the_hard_limits_or_malformed_are_refused(raw, error):
    values, errors = parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_ck": raw}))
    assert "ck" not in values and errors["ck"].startswith(error), errors


def test_decimals_are_limited():
    assert parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_weight": "41.25"}))[1] == {"weight": "At most 1 decimal."}
    assert parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_weight": "41.0"}))[0]["weight"] == 41
    assert parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_weight": "0.4"}))[1] == {"weight": "At least 0.5 kg."}


def test_values_outside_the_reference_range_are_flagged_not_refused():
    values, errors = parse_answers(EVERY_TYPE, GOOD_POST)
    assert errors == {} and values["ck"] == 250
    rows = {r["key"]: r for s in display_answers(EVERY_TYPE, values) for r in s["rows"]}
    assert rows["ck"]["flag"] == "high" and rows["ck"]["text"] == "250 U/L" and rows["ck"]["reference"] == "30–200 U/L"
    assert rows["weight"]["flag"] == "" and rows["weight"]["text"] == "41.5 kg"
    low = {r["key"]: r for s in display_answers(EVERY_TYPE, {**values, "ck": 12}) for r in s["rows"]}
    assert low["ck"]["flag"] == "low"
    normal = {r["key"]: r for s in display_answers(EVERY_TYPE, {**values, "ck": 150}) for r in s["rows"]}
    assert normal["ck"]["flag"] == ""


@pytest.mark.parametrize("raw", ["2026-02-30", "01/03/2026", "20260301", "2026-3-1", "1850-01-01", "tomorrow"])
def test_malformed_dates_are_refused(raw):
    values, errors = parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_seen": raw}))
    assert "seen" in errors and "seen" not in values


def test_choices_must_come_from_the_list():
    assert "course" in parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_course": "Improving"}))[1]
    assert "tests" in parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_tests": ["Exome", "Karyotype"]}))[1]
    assert "consent" in parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_consent": "No"}))[1]
    assert parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_course": ["Stable", "Progressive"]}))[1] == {"course": "Choose only one."}
    # Several answers keep the template's order and drop repeats.
    assert parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_tests": ["Panel", "Exome", "Panel"]}))[0]["tests"] == ["Exome", "Panel"]


def test_codes_are_label_system_and_code():
    post = Form({**GOOD_POST, "f_diagnosis_label": "ORPHA:95 Friedreich ataxia", "f_diagnosis_system": "", "f_diagnosis_code": ""})
    assert parse_answers(EVERY_TYPE, post)[0]["diagnosis"] == {"label": "Friedreich ataxia", "system": "ORPHA", "code": "95"}
    free = Form({**GOOD_POST, "f_diagnosis_label": "Unclear ataxia", "f_diagnosis_system": "", "f_diagnosis_code": ""})
    assert parse_answers(EVERY_TYPE, free)[0]["diagnosis"] == {"label": "Unclear ataxia", "system": "", "code": ""}
    lower = Form({**GOOD_POST, "f_diagnosis_system": "icd-10", "f_diagnosis_code": "G11.1"})
    assert parse_answers(EVERY_TYPE, lower)[0]["diagnosis"]["system"] == "ICD-10"
    for bad in ({"f_diagnosis_system": "OMIM"}, {"f_diagnosis_code": ""}, {"f_diagnosis_system": ""}, {"f_diagnosis_label": ""}, {"f_diagnosis_code": "has space"}):
        assert "diagnosis" in parse_answers(EVERY_TYPE, Form({**GOOD_POST, **bad}))[1], bad


def test_texts_are_limited():
    values, errors = parse_answers(EVERY_TYPE, Form({**GOOD_POST, "f_summary": "x" * 41}))
    assert errors == {"summary": "At most 40 characters (41 entered)."}
    long_default = definition({"key": "t", "label": "T", "type": "text"}, {"key": "l", "label": "L", "type": "longtext"})
    assert set(parse_answers(long_default, Form({"f_t": "x" * 501, "f_l": "y" * 5001}))[1]) == {"t", "l"}
    assert parse_answers(long_default, Form({"f_t": "x" * 500, "f_l": "y" * 5000}))[1] == {}


def test_missing_required_names_the_fields():
    assert missing_required(EVERY_TYPE, {}) == ["Summary", "Course"]
    assert missing_required(EVERY_TYPE, {"summary": "x", "course": "Stable"}) == []
    required_code = definition({"key": "dx", "label": "Diagnosis", "type": "code", "required": True},
                               {"key": "t", "label": "Tests", "type": "choice", "choices": ["a"], "multiple": True, "required": True})
    assert missing_required(required_code, {"dx": {"label": "", "system": "", "code": ""}, "t": []}) == ["Diagnosis", "Tests"]
    assert missing_required(shipped_definition(), {}) == ["The panel is asked about", "Context of the question", "Presenting symptoms and course", "Patient consented to discussion in the ERN"]


def test_display_answers_by_section():
    values, _ = parse_answers(EVERY_TYPE, GOOD_POST)
    shown = display_answers(EVERY_TYPE, values)
    assert [s["title"] for s in shown] == ["Texts", "Measures", "Choices"]
    rows = {r["label"]: r for s in shown for r in s["rows"]}
    assert rows["Tests"]["text"] == "Exome, Genome"
    assert rows["Diagnosis"]["text"] == "Spinocerebellar ataxia type 2 (ORPHA:98756)"
    assert rows["Seen on"]["text"] == "2026-03-01"
    empty = {r["label"]: r for s in display_answers(EVERY_TYPE, {}) for r in s["rows"]}
    assert empty["Summary"] == {**empty["Summary"], "text": "", "flag": "", "answered": False}


def test_posted_values_keep_what_was_typed():
    posted = posted_values(EVERY_TYPE, Form({**GOOD_POST, "f_ck": "lots"}))
    assert posted["ck"] == "lots" and posted["tests"] == ["Genome", "Exome"] and posted["diagnosis"]["code"] == "98756"


# --- the store --------------------------------------------------------------------------------------------


async def _ern(acronym="ERN RND"):
    from core.orgs.tables import Ern

    return (await Ern.select(Ern.id).where(Ern.acronym == acronym).first())["id"]


async def test_the_default_is_seeded_once_and_erns_get_their_own_versions(clean_db):
    from core.panels import templates_store as store
    from core.panels.tables import ConsultationTemplate

    rnd = await _ern()
    first = await store.current_template(rnd)
    assert first["ern"] is None and first["version"] == 1 and first["label"] == "Default form v1"
    assert first["definition"] == shipped_definition()
    again = await store.current_template(None)
    assert again["id"] == first["id"] and await ConsultationTemplate.count() == 1
    uid = await make_user("coord@example.org", roles=COORD)
    saved = await store.save_version(rnd, shipped_definition("ern_rnd_template.json"), "RND", uid)
    assert saved["version"] == 1 and saved["label"] == "ERN RND form v1"
    changed = copy.deepcopy(saved["definition"])
    changed["title"] = "RND v2"
    second = await store.save_version(rnd, changed, "RND v2", uid)
    current = await store.current_template(rnd)
    assert (second["version"], current["id"], current["label"], current["title"]) == (2, second["id"], "ERN RND form v2", "RND v2")
    other = await store.current_template(await _ern("ERKNet"))
    assert other["label"] == "Default form v1"
    history = await store.versions(rnd)
    assert [v["version"] for v in history] == [2, 1] and history[0]["author"] == "Test User"
    assert (await store.template_version(rnd, 1))["title"] == "RND"
    with pytest.raises(ValueError):
        await store.save_version(rnd, {"title": "broken"}, "broken", uid)
    assert await store.install_shipped(rnd, "ern_rnd_template.json") is None


async def test_a_racing_second_default_seed_is_harmless(clean_db):
    import asyncio

    from core.panels import templates_store as store

    results = await asyncio.gather(*[store.current_template(None) for _ in range(4)])
    assert {(r["version"], r["label"]) for r in results} == {(1, "Default form v1")}
    # However many rows the race left, every reader now gets the same one.
    settled = {(await store.current_template(None))["id"] for _ in range(3)}
    assert len(settled) == 1 and settled <= {r["id"] for r in results} | settled


# --- the editor over HTTP ---------------------------------------------------------------------------------


async def _versions(ern_id):
    from core.panels.tables import ConsultationTemplate

    return sorted(r["version"] for r in await ConsultationTemplate.select(ConsultationTemplate.version).where(ConsultationTemplate.ern == ern_id))


def _textarea(page):
    import html

    return html.unescape(re.search(r'<textarea id="definition"[^>]*>\n?(.*?)</textarea>', page, re.S).group(1))


async def _save(client, ern_id, text, **extra):
    await client.get(f"/panels/templates/{ern_id}/edit")
    return await post_form(client, f"/panels/templates/{ern_id}/edit", {"definition": text, **extra})


async def test_a_coordinator_edits_the_ern_template_into_new_versions(client):
    from core.activity.tables import Activity
    from core.panels import templates_store as store

    rnd = await _ern()
    await make_user("coord@example.org", roles=COORD)
    await login(client, "coord@example.org")
    listing = await client.get("/panels/templates")
    assert listing.status_code == 200 and "ERN RND" in listing.text and "Default form v1" in listing.text
    assert "ERKNet" not in listing.text
    edit = await client.get(f"/panels/templates/{rnd}/edit")
    assert edit.status_code == 200
    prefilled = _textarea(edit.text)
    assert json.loads(prefilled) == shipped_definition()
    assert '\n  "title"' in prefilled  # pretty-printed

    r = await _save(client, rnd, json.dumps(shipped_definition("ern_rnd_template.json")), base_version="0")
    assert r.status_code == 303 and r.headers["location"] == f"/panels/templates/{rnd}"
    changed = shipped_definition("ern_rnd_template.json")
    changed["title"] = "ERN RND case, revised"
    changed["sections"][1]["fields"].append({"key": "tremor_hz", "label": "Tremor frequency", "type": "number", "unit": "Hz", "min": 0, "max": 30})
    r = await _save(client, rnd, json.dumps(changed), base_version="1")
    assert r.status_code == 303
    assert await _versions(rnd) == [1, 2]
    current = await store.current_template(rnd)
    assert current["version"] == 2 and current["label"] == "ERN RND form v2" and current["title"] == "ERN RND case, revised"
    page = await client.get(f"/panels/templates/{rnd}")
    assert page.status_code == 200
    assert "ERN RND form v2" in page.text and "ERN RND form v1" in page.text and "Tremor frequency" in page.text
    older = await client.get(f"/panels/templates/{rnd}?version=1")
    assert older.status_code == 200 and "older version" in older.text and "Tremor frequency" not in older.text
    assert (await client.get(f"/panels/templates/{rnd}?version=9")).status_code == 404
    events = await Activity.select().where(Activity.action == "panel.template_saved")
    assert len(events) == 2
    # A stale form (someone saved meanwhile) is refused.
    r = await _save(client, rnd, json.dumps(changed), base_version="1")
    assert r.status_code == 409 and "Someone saved version 2" in r.text and await _versions(rnd) == [1, 2]
    # Preview: checked and shown, not saved.
    r = await _save(client, rnd, json.dumps(changed), base_version="2", action="preview")
    assert r.status_code == 200 and "nothing was saved" in r.text and "Tremor frequency" in r.text and await _versions(rnd) == [1, 2]


@pytest.mark.parametrize("text, message", [
    ('{"title": "x", "sections": [', "not valid JSON"),
    ("", "empty"),
    ('{"title": "a", "title": "b", "sections": []}', "appears twice"),
    ('{"title": "x", "sections": [{"title": "S", "fields": [{"key": "n", "label": "N", "type": "number", "max": NaN}]}]}', "NaN"),
    ('{"title": "x", "sections": [{"title": "S", "fields": [{"key": "a", "label": "A", "type": "choice", "choices": []}]}]}', "choices missing"),
    ("[1, 2]", "JSON object"),
])
async def test_bad_templates_are_refused_with_422_and_nothing_saved(client, text, message):
    rnd = await _ern()
    await make_user("coord@example.org", roles=COORD)
    await login(client, "coord@example.org")
    r = await _save(client, rnd, text)
    assert r.status_code == 422, r.status_code
    assert message in r.text and "Nothing was saved" in r.text
    assert await _versions(rnd) == []
    assert _textarea(r.text) == text  # kept for correction


async def test_a_too_large_template_is_refused(client):
    rnd = await _ern()
    await make_user("coord@example.org", roles=COORD)
    await login(client, "coord@example.org")
    big = shipped_definition()
    big["sections"][0]["help"] = "x" * 1000
    text = json.dumps(big) + " " * 200_001
    r = await _save(client, rnd, text)
    assert r.status_code == 413 and "at most 200 kB" in r.text
    r = await _save(client, rnd, "x" * 700_000)
    assert r.status_code == 413
    assert await _versions(rnd) == []


@pytest.mark.parametrize("who, roles", [
    ("hp", (("hp", "ERN RND"),)),
    ("other-coordinator", (("hp", "ERKNet"), ("coordinator", "ERKNet"))),
    ("dispatcher", (("hp", "ERN RND"), ("dispatcher", "ERN RND"))),
])
async def test_without_the_permission_in_that_ern_everything_is_404(client, who, roles):
    rnd = await _ern()
    await make_user(f"{who}@example.org", roles=roles)
    await login(client, f"{who}@example.org")
    for url in (f"/panels/templates/{rnd}", f"/panels/templates/{rnd}/edit"):
        assert (await client.get(url)).status_code == 404, url
    await client.get("/")
    r = await post_form(client, f"/panels/templates/{rnd}/edit", {"definition": json.dumps(shipped_definition())})
    assert r.status_code == 404
    assert await _versions(rnd) == []
    listing = await client.get("/panels/templates")
    if who == "other-coordinator":
        assert listing.status_code == 200 and "ERKNet" in listing.text and f'/panels/templates/{rnd}"' not in listing.text
    else:
        assert listing.status_code == 403


async def test_a_missing_ern_is_404(client):
    await make_user("coord@example.org", roles=COORD)
    await login(client, "coord@example.org")
    assert (await client.get("/panels/templates/999999")).status_code == 404


async def test_anonymous_is_sent_to_login(client):
    rnd = await _ern()
    for url in ("/panels/templates", f"/panels/templates/{rnd}", f"/panels/templates/{rnd}/edit"):
        r = await client.get(url, follow_redirects=False)
        assert r.status_code in (302, 303) and r.headers["location"].startswith("/login"), url
    await client.get("/login")
    r = await post_form(client, f"/panels/templates/{rnd}/edit", {"definition": json.dumps(shipped_definition())})
    assert r.status_code in (302, 303, 401, 403)
    assert await _versions(rnd) == []


async def test_the_preview_renders_every_field_type(clean_db):
    """The core's own inputs: the coding plugin (whose picker replaces the coded field's inputs)
    is disabled, and the example plugin's simple code search is used instead."""
    from core.app import create_app
    from core.panels import templates_store as store
    from tests.conftest import app_client, make_settings

    rnd = await _ern()
    uid = await make_user("coord@example.org", roles=COORD)
    await store.save_version(rnd, EVERY_TYPE, EVERY_TYPE["title"], uid)
    async with app_client(create_app(make_settings(disabled_plugins=("coding",)))) as client:
        await login(client, "coord@example.org")
        r = await client.get(f"/panels/templates/{rnd}")
    assert r.status_code == 200
    _check_preview(r.text)


async def test_a_code_picker_plugin_draws_the_coded_field(client):
    """With the coding plugin, the coded field is its picker, posting the same names."""
    from core.panels import templates_store as store

    rnd = await _ern()
    uid = await make_user("coord@example.org", roles=COORD)
    await store.save_version(rnd, EVERY_TYPE, EVERY_TYPE["title"], uid)
    await login(client, "coord@example.org")
    body = (await client.get(f"/panels/templates/{rnd}")).text
    assert 'role="combobox"' in body and 'name="f_diagnosis_label"' in body
    assert 'name="f_diagnosis_system"' in body and 'name="f_diagnosis_code"' in body
    assert 'hx-get="/panels/code-search/diagnoses"' not in body
    ids = re.findall(r'\bid="([^"]+)"', body)
    assert len(ids) == len(set(ids))
    for target in re.findall(r'<label[^>]* for="([^"]+)"', body):
        assert target in ids, target


def _check_preview(body: str) -> None:
    assert '<input type="text" id="preview-f_summary" name="f_summary"' in body and 'maxlength="40"' in body
    assert '<label for="preview-f_summary">Summary <abbr title="required" class="required">*</abbr></label>' in body
    assert '<textarea id="preview-f_story" name="f_story"' in body and 'aria-describedby="preview-f_story-help"' in body
    ck = re.search(r'<input type="number" id="preview-f_ck"[^>]*>', body).group(0)
    assert 'step="1"' in ck and 'min="0"' in ck and 'max="100000"' in ck
    assert 'step="0.1"' in re.search(r'<input type="number" id="preview-f_weight"[^>]*>', body).group(0)
    assert '<span class="unit" aria-hidden="true">U/L</span>' in body and "Reference range: 30–200 U/L." in body
    assert '<input type="date" id="preview-f_seen" name="f_seen"' in body
    assert '<select id="preview-f_course" name="f_course"' in body and "<option>Progressive</option>" in body
    assert body.count('type="checkbox" name="f_tests"') == 3
    assert '<input type="checkbox" id="preview-f_consent" name="f_consent" value="Yes"' in body
    assert 'name="f_diagnosis_label"' in body and '<select id="preview-f_diagnosis_system" name="f_diagnosis_system"' in body
    assert 'name="f_diagnosis_code"' in body
    # The example plugin offers a diagnosis code search: the coded field asks it as one types.
    assert 'hx-get="/panels/code-search/diagnoses"' in body and '<datalist id="preview-f_diagnosis-codes">' in body
    ids = re.findall(r'\bid="([^"]+)"', body)
    assert len(ids) == len(set(ids))
    for target in re.findall(r'aria-describedby="([^"]+)"', body):
        for ref in target.split():
            assert ref in ids, ref
    for target in re.findall(r'<label[^>]* for="([^"]+)"', body):
        assert target in ids, target


async def test_the_code_search_asks_the_plugin_with_the_typed_label(client):
    await make_user("coord@example.org", roles=COORD)
    await login(client, "coord@example.org")
    r = await client.get("/panels/code-search/diagnoses", params={"f_working_diagnosis_label": "ataxia"}, follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/example/codes?label=ataxia"
    r = await client.get("/panels/code-search/phenotype", params={"f_x_label": "ataxia"})
    assert r.status_code == 200 and r.text == ""
    assert (await client.get("/panels/code-search/other")).status_code == 404


async def test_the_macros_show_answers_errors_and_flags(clean_db, settings):
    """The macros as another page would use them: a refused post shown again, then the answers."""
    from jinja2 import Environment, FileSystemLoader

    from core.panels.templates_store import DATA_DIR as data

    env = Environment(loader=FileSystemLoader(str(data.parent / "templates")), autoescape=True)
    macros = env.get_template("panels/_form_fields.html").module
    post = Form({**GOOD_POST, "f_ck": "lots", "f_summary": "<b>bold</b>"})
    values, errors = parse_answers(EVERY_TYPE, post)
    html = str(macros.form_fields(EVERY_TYPE, posted_values(EVERY_TYPE, post), errors, {}))
    assert 'value="lots"' in html and 'aria-invalid="true"' in html
    assert '<span class="field-error" id="f_ck-error">Enter a number (e.g. 12.5).</span>' in html
    assert 'aria-describedby="f_ck-help f_ck-error"' in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert 'value="Genome" checked' in html and 'value="Panel" checked' not in html
    assert "hx-get" not in html  # no code-search plugin given: a free-text label
    values, errors = parse_answers(EVERY_TYPE, GOOD_POST)
    stored = str(macros.form_fields(EVERY_TYPE, values, {}, {}))
    assert 'value="250"' in stored and 'value="98756"' in stored and "<option selected>ORPHA</option>" in stored
    table = text_of(str(macros.answers_table(display_answers(EVERY_TYPE, {**values, "ck": 250, "weight": None}))))
    assert "Creatine kinase 250 U/L ↑ above reference (reference 30–200 U/L)" in table
    assert "Weight not answered" in table
    low = text_of(str(macros.answers_table(display_answers(EVERY_TYPE, {"ck": 10}))))
    assert "↓ below reference" in low
