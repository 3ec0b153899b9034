"""The code picker's markup: an ARIA 1.2 combobox posting the names the core's forms read."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from plugins.coding.picker import render_picker
from tests.conftest import login, make_user


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._open: list[dict] = []

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, **{k: ("" if v is None else v) for k, v in attrs}, "_text": ""}
        self.elements.append(element)
        if tag not in ("input", "link", "br", "meta", "img"):
            self._open.append(element)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for element in self._open:
            element["_text"] += data


def elements(html: str) -> list[dict]:
    """Every start tag of ``html`` as a dict of its attributes (plus "tag" and the inner "_text")."""
    parser = _Collector()
    parser.feed(str(html))
    return parser.elements


def find(html: str, **attrs) -> list[dict]:
    return [e for e in elements(html) if all(e.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())]


def one(html: str, **attrs) -> dict:
    found = find(html, **attrs)
    assert len(found) == 1, (attrs, found)
    return found[0]


def test_a_new_entry_is_an_accessible_combobox_with_prefixed_names():
    html = render_picker("diagnoses", "f_dx_", {})
    box = one(html, role="combobox")
    assert box["tag"] == "input" and box["name"] == "f_dx_label" and box["value"] == ""
    assert box["aria-autocomplete"] == "list" and box["aria-expanded"] == "false"
    assert box["autocomplete"] == "off"
    listbox = one(html, id=box["aria-controls"])
    assert listbox["role"] == "listbox" and listbox["tag"] == "ul" and "hidden" in listbox and listbox.get("aria-label")
    assert one(html, tag="label", for_=box["id"])["_text"].strip() == "Label"
    assert one(html, id=box["aria-describedby"])["_text"].strip().startswith("Type a name")
    status = one(html, role="status")
    assert status["aria-live"] == "polite" and status["id"] == listbox["id"] + "-status"  # the search answers into it
    assert one(html, name="f_dx_system")["type"] == "hidden" and one(html, name="f_dx_code")["type"] == "hidden"
    assert find(html, name="f_dx_codings") == []  # nothing to add before a pick
    # htmx active search: the typed text, the ticked systems, stale answers dropped
    assert box["hx-get"] == "/coding/search" and box["hx-trigger"] == "input changed delay:150ms, search"
    assert box["hx-target"] == "#" + listbox["id"] and box["hx-sync"] == "this:replace"
    systems = one(html, id=box["hx-include"].lstrip("#"))
    assert systems["tag"] == "fieldset"
    boxes = [e for e in elements(html) if e.get("type") == "checkbox"]
    assert [b["value"] for b in boxes] == ["ORPHA", "ICD-10", "ICD-10-CM", "OMIM"]
    assert all("checked" in b and b["name"] == "system" for b in boxes)
    # The checkboxes belong to no form: the record form posts its own "system" (the picked code's).
    assert all(b["form"] and not find(html, id=b["form"]) for b in boxes)
    assert '"prefix": "f_dx_"' in box["hx-vals"] and f'"list": "{listbox["id"]}"' in box["hx-vals"]
    picked = one(html, **{"data-cp-picked": ""})
    assert "hidden" in picked
    assert one(html, tag="script")["src"] == "/static/coding/picker.js" and "defer" in one(html, tag="script")
    assert one(html, tag="link")["href"] == "/static/coding/picker.css"


def test_phenotype_searches_hpo_and_a_form_may_name_its_systems():
    html = render_picker("phenotype", "", {})
    assert [b["value"] for b in elements(html) if b.get("type") == "checkbox"] == ["HPO"]
    assert one(html, role="combobox")["name"] == "label"
    html = render_picker("diagnoses", "f_q_", {"systems": ["ORPHA", "OMIM", "not a system!"]})
    assert [b["value"] for b in elements(html) if b.get("type") == "checkbox"] == ["ORPHA", "OMIM"]


def test_an_entry_being_edited_shows_its_code_picked_and_its_other_codes_ticked():
    value = {
        "label": 'Friedreich ataxia "classic" <b>', "system": "ORPHA", "code": "95",
        "codings": '[{"system": "ICD-10", "code": "G11.1", "display": "Early-onset cerebellar ataxia"}]',
    }
    html = render_picker("diagnoses", "", value)
    assert "<b>" not in html  # escaped
    box = one(html, role="combobox")
    assert box["value"] == 'Friedreich ataxia "classic" <b>'
    assert one(html, name="system", type="hidden")["value"] == "ORPHA" and one(html, name="code")["value"] == "95"
    root = one(html, **{"data-code-picker": ""})
    assert root["data-picked-label"] == box["value"]
    picked = one(html, **{"data-cp-picked": ""})
    assert "hidden" not in picked and "ORPHA:95" in picked["_text"]
    assert one(html, **{"data-cp-clear": ""})["aria-label"] == "Remove the code ORPHA:95"
    extra = one(html, name="codings")
    assert extra["value"] == "ICD-10|G11.1|Early-onset cerebellar ataxia" and "checked" in extra


def test_free_text_without_a_code_is_not_shown_as_picked():
    html = render_picker("diagnoses", "", {"label": "Unclear ataxia", "system": "ORPHA", "code": ""})
    assert one(html, role="combobox")["value"] == "Unclear ataxia"
    assert one(html, name="system", type="hidden")["value"] == ""  # a system without a code is no pick
    assert "hidden" in one(html, **{"data-cp-picked": ""})
    assert "data-picked-label" not in one(html, **{"data-code-picker": ""})


def test_each_picker_has_its_own_ids_and_a_bad_prefix_is_refused():
    first, second = render_picker("diagnoses", "", {}), render_picker("diagnoses", "", {})
    ids = {e["id"] for e in elements(first) if "id" in e}
    assert ids and not ids & {e["id"] for e in elements(second) if "id" in e}
    with pytest.raises(ValueError):
        render_picker("diagnoses", 'x" onfocus="alert(1)', {})


def test_the_hook_gives_no_picker_to_someone_without_the_search_permission():
    from core.permissions import Actor
    from plugins.coding import code_picker

    assert code_picker("diagnoses", "", {}, None) is None
    nobody = Actor(1, "a@example.org", "A", None, (), {})
    assert code_picker("diagnoses", "", {}, nobody) is None
    searcher = Actor(1, "a@example.org", "A", None, (("hp", 1),), {"coding.search": frozenset({None})})
    assert 'role="combobox"' in code_picker("diagnoses", "", {}, searcher)


async def test_the_patient_record_uses_the_picker_and_its_files_are_served(client):
    from tests.test_patients import enrol

    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    page = (await client.get(f"/patients/{pseudonym}")).text
    boxes = find(page, role="combobox")
    assert {b["name"] for b in boxes} == {"label"} and len(boxes) >= 2  # diagnoses and phenotype forms
    checkboxes = {e["value"] for e in elements(page) if e.get("type") == "checkbox" and e.get("name") == "system"}
    assert {"ORPHA", "HPO"} <= checkboxes
    js = await client.get("/static/coding/picker.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and "window.cpmsCodePicker" in js.text
    css = await client.get("/static/coding/picker.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
