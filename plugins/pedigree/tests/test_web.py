"""The pedigree plugin through the HTTP app and the real database: building a family by clicks (posts),
versions and undo, optimistic locking, bad input, who sees what (hospital isolation, panel members), exports."""

from __future__ import annotations

import io
import json
import re
import zlib
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import login, make_user, post_form, text_of
from tests.panels_support import hcp_of, make_panel, make_patient

HX = {"HX-Request": "true"}
SVG_NS = "{http://www.w3.org/2000/svg}"


async def home_setup(client) -> dict:
    hp = await make_user("home@example.org", hcp="Home Hospital")
    patient = await make_patient(await hcp_of(hp))
    r = await login(client, "home@example.org")
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login")
    return {"hp": hp, "patient": patient, "base": f"/pedigree/patients/{patient['pseudonym']}"}


async def stored(patient_id: int) -> tuple[dict | None, int]:
    """(current JSON, number of version rows)."""
    from plugins.pedigree.tables import PedigreeRecord, PedigreeVersion

    row = await PedigreeRecord.select().where(PedigreeRecord.patient == patient_id).first()
    if row is None:
        return None, 0
    return json.loads(row["data"]) | {"_version": row["version"]}, await PedigreeVersion.count().where(
        PedigreeVersion.pedigree == row["id"])


async def version_of(patient_id: int) -> int:
    data, _ = await stored(patient_id)
    return data["_version"] if data else 0


async def add(client, s: dict, kind: str, of: str, **extra):
    data = {"kind": kind, "of": of, "version": await version_of(s["patient"]["id"]), **extra}
    return await post_form(client, s["base"] + "/add", data, headers=HX)


def individuals(svg_html: str) -> dict[str, ET.Element]:
    start = svg_html.index("<svg")
    root = ET.fromstring(svg_html[start:svg_html.index("</svg>") + 6])
    return {g.get("data-label"): g for g in root.iter(f"{SVG_NS}g") if "individual" in (g.get("class") or "").split()}


async def three_generations(client, s: dict) -> None:
    """Proband i1 (female); parents i2, i3; a brother i4; paternal grandparents i5, i6; a partner i7
    and a son i8 of the proband: four generations of rows, three above the son."""
    for kind, of, extra in [("parents", "i1", {}), ("sibling", "i1", {"sex": "male"}), ("parents", "i2", {}),
                            ("partner", "i1", {}), ("child", "i1", {"sex": "male"})]:
        r = await add(client, s, kind, of, **extra)
        assert r.status_code == 200, r.text[:500]


async def test_section_starts_with_the_patient_as_proband_and_stores_nothing(client):
    s = await home_setup(client)
    r = await client.get(s["base"], headers=HX)
    assert r.status_code == 200
    people = individuals(r.text)
    assert list(people) == ["I-1"] and "proband" in people["I-1"].get("class")
    assert people["I-1"].get("hx-get") == s["base"] + "/individuals/i1"  # a click on the symbol opens the side form
    assert "<html" not in r.text  # the htmx fragment, not the page
    assert (await stored(s["patient"]["id"]))[0] is None
    page = await client.get(s["base"])
    assert page.status_code == 200 and "<html" in page.text and 'id="pedigree-editor"' in page.text
    # the coding plugin (enabled in the tests) draws the condition input: its picker posts cond_system/cond_code
    assert 'name="cond_label"' in r.text and "data-cp-code" in r.text and 'name="cond_code"' in r.text


async def test_build_a_family_by_clicks_versions_audit_and_event(client):
    from core.activity.tables import Activity
    from core.audit.tables import AuditEntry

    s = await home_setup(client)
    await three_generations(client, s)
    data, versions = await stored(s["patient"]["id"])
    assert data["_version"] == 5 and versions == 6  # the starting point (0) and five changes
    assert len(data["individuals"]) == 8
    r = await client.get(s["base"], headers=HX)
    people = individuals(r.text)
    assert {label.split("-")[0] for label in people} == {"I", "II", "III", "IV"}
    # I: the paternal grandparents; II: the parents; III: proband, brother, partner; IV: the son
    assert [len([p for p in people if p.split("-")[0] == g]) for g in ("I", "II", "III", "IV")] == [2, 2, 3, 1]
    assert re.search(r"<td>add child \(III-\d\)</td>", r.text)  # the versions list names the change and who had it
    changes = await AuditEntry.count().where(AuditEntry.action == "pedigree.change")
    assert changes == 5
    assert await AuditEntry.count().where(AuditEntry.action == "pedigree.view") >= 1
    events = await Activity.select(Activity.subject_id, Activity.data).where(Activity.action == "pedigree.changed")
    assert len(events) == 5 and {e["subject_id"] for e in events} == {s["patient"]["pseudonym"]}


async def test_plain_post_redirects_to_the_section_page(client):
    s = await home_setup(client)
    r = await post_form(client, s["base"] + "/add", {"kind": "parents", "of": "i1", "version": 0})
    assert r.status_code == 303 and r.headers["location"] == s["base"]
    assert await version_of(s["patient"]["id"]) == 1


async def test_edit_a_person_then_undo_walks_back(client):
    s = await home_setup(client)
    base = s["base"]
    assert (await add(client, s, "parents", "i1")).status_code == 200
    r = await post_form(client, base + "/conditions", {"version": 1, "cond_label": "Hereditary ataxia",
                                                       "cond_system": "ORPHA", "cond_code": "183518"}, headers=HX)
    assert r.status_code == 200, r.text[:400]
    form = {"version": 2, "sex": "male", "deceased": "1", "age": "61", "birth_year": "1950", "death_year": "2011",
            "cond_c1": "affected", "note": "onset in his forties", "g_gene": ["FXN", ""], "g_variant": ["c.-1G>A", ""],
            "g_zygosity": ["heterozygous", ""], "g_result": ["pathogenic", ""], "g_date": ["2010-05-01", ""]}
    r = await post_form(client, base + "/individuals/i2", form, headers=HX)
    assert r.status_code == 200, r.text[:400]
    data, _ = await stored(s["patient"]["id"])
    father = next(i for i in data["individuals"] if i["id"] == "i2")
    assert father["deceased"] and father["age"] == 61 and father["conditions"] == {"c1": "affected"}
    assert father["genotypes"] == [{"gene": "FXN", "variant": "c.-1G>A", "zygosity": "heterozygous",
                                    "result": "pathogenic", "date": "2010-05-01"}]
    drawn = {g.get("data-id"): g for g in individuals(r.text).values()}
    assert "deceased" in drawn["i2"].get("class").split() and "deceased" not in drawn["i3"].get("class").split()

    r = await post_form(client, base + "/undo", {"version": 3}, headers=HX)
    assert r.status_code == 200
    data, versions = await stored(s["patient"]["id"])
    father = next(i for i in data["individuals"] if i["id"] == "i2")
    assert data["_version"] == 4 and versions == 5 and not father["deceased"] and father["conditions"] == {}
    assert [c["label"] for c in data["conditions"]] == ["Hereditary ataxia"]
    # undo again: the condition goes, then the parents; then there is nothing left to undo
    assert (await post_form(client, base + "/undo", {"version": 4}, headers=HX)).status_code == 200
    assert (await stored(s["patient"]["id"]))[0]["conditions"] == []
    assert (await post_form(client, base + "/undo", {"version": 5}, headers=HX)).status_code == 200
    data, versions = await stored(s["patient"]["id"])
    assert [i["id"] for i in data["individuals"]] == ["i1"] and versions == 7
    r = await post_form(client, base + "/undo", {"version": 6}, headers=HX)
    assert r.status_code == 422 and "no change to undo" in r.text
    assert (await stored(s["patient"]["id"]))[1] == 7


async def test_stale_version_is_refused_and_changes_nothing(client):
    s = await home_setup(client)
    assert (await add(client, s, "parents", "i1")).status_code == 200
    before = await stored(s["patient"]["id"])
    r = await post_form(client, s["base"] + "/add", {"kind": "sibling", "of": "i1", "version": 0}, headers=HX)
    assert r.status_code == 409 and "changed since you opened it" in r.text
    r = await post_form(client, s["base"] + "/undo", {"version": 0}, headers=HX)
    assert r.status_code == 409
    assert await stored(s["patient"]["id"]) == before


@pytest.mark.parametrize("url, data, message", [
    ("/add", {"kind": "cousin", "of": "i1"}, "Unknown addition"),
    ("/add", {"kind": "parents", "of": "i9"}, "not in the pedigree"),
    ("/add", {"kind": "parents", "of": "i4"}, "already has parents"),
    ("/add", {"kind": "sibling", "of": "i1", "sex": "robot"}, "Sex must be one of"),
    ("/add", {"kind": "sibling", "of": "<script>"}, "Choose a person"),
    ("/individuals/i1/delete", {}, "proband cannot be deleted"),
    ("/individuals/i2/delete", {}, "would cut"),
    ("/individuals/i2", {"sex": "male", "age": "200"}, "Age must be a whole number"),
    ("/individuals/i2", {"sex": "male", "birth_year": "2010"}, "is older than their parent"),
    ("/individuals/i2", {"sex": "male", "death_year": "2000"}, "not marked deceased"),
    ("/individuals/i2", {"sex": "male", "g_gene": "", "g_variant": "c.1A>G"}, "the gene is missing"),
    ("/individuals/i2", {"sex": "male", "g_gene": "FXN", "g_date": "yesterday"}, "YYYY-MM-DD"),
    ("/conditions", {"cond_label": ""}, "needs a name"),
    ("/conditions", {"cond_label": "X", "cond_system": "ORPHA"}, "both a code system and a code"),
    ("/add", {"kind": "parents", "of": "i1", "version": "abc"}, "lacks its version"),
])
async def test_bad_input_gets_422_and_changes_nothing(client, url, data, message):
    s = await home_setup(client)
    for kind, of, extra in [("parents", "i1", {}), ("sibling", "i1", {"sex": "male"})]:
        assert (await add(client, s, kind, of, **extra)).status_code == 200
    # the proband was born in 2000: a parent born in 2010 would be younger than their child
    r = await post_form(client, s["base"] + "/individuals/i1", {"version": 2, "sex": "female", "birth_year": "2000"}, headers=HX)
    assert r.status_code == 200
    before = await stored(s["patient"]["id"])
    r = await post_form(client, s["base"] + url, {"version": 3, **data}, headers=HX)
    assert r.status_code == 422, r.text[:300]
    assert message in r.text
    assert "<script>" not in r.text
    assert await stored(s["patient"]["id"]) == before


async def test_delete_a_married_in_partner_takes_nobody_else_and_refuses_to_cut_off(client):
    s = await home_setup(client)
    for kind, of in [("parents", "i1"), ("partner", "i1"), ("child", "i1"), ("parents", "i4")]:
        assert (await add(client, s, kind, of)).status_code == 200
    # i4 is the proband's partner, with parents i6, i7 of their own: deleting i4 would strand them
    r = await post_form(client, s["base"] + "/individuals/i4/delete", {"version": 4}, headers=HX)
    assert r.status_code == 422 and "would cut" in r.text
    # the partner's father goes, and the mother with him (left with nobody); then the partner can go too
    assert (await post_form(client, s["base"] + "/individuals/i6/delete", {"version": 4}, headers=HX)).status_code == 200
    data, _ = await stored(s["patient"]["id"])
    assert sorted(i["id"] for i in data["individuals"]) == ["i1", "i2", "i3", "i4", "i5"]


async def test_other_hospital_gets_404_and_roles_are_checked(client):
    s = await home_setup(client)
    assert (await add(client, s, "parents", "i1")).status_code == 200
    before = await stored(s["patient"]["id"])
    await make_user("other@example.org", hcp="Other Hospital")
    await make_user("dispatch@example.org", roles=(("dispatcher", "ERN RND"),), hcp="Home Hospital")
    await make_user("research@example.org", roles=(("researcher", "ERN RND"),), hcp="Home Hospital")

    client.cookies.clear()
    await login(client, "other@example.org")
    for url in ("", "/individuals/i1", "/export/svg", "/export/ped"):
        assert (await client.get(s["base"] + url)).status_code == 404
    r = await post_form(client, s["base"] + "/add", {"kind": "sibling", "of": "i1", "version": 1}, headers=HX)
    assert r.status_code == 404

    client.cookies.clear()
    await login(client, "dispatch@example.org")
    r = await client.get(s["base"], headers=HX)
    assert r.status_code == 200 and "/add" not in r.text  # sees the tree, no editor
    r = await post_form(client, s["base"] + "/add", {"kind": "sibling", "of": "i1", "version": 1}, headers=HX)
    assert r.status_code == 403

    client.cookies.clear()
    await login(client, "research@example.org")
    assert (await client.get(s["base"])).status_code == 403
    assert await stored(s["patient"]["id"]) == before


async def test_panel_member_sees_the_tree_read_only(client):
    s = await home_setup(client)
    for kind, of in [("parents", "i1"), ("sibling", "i1")]:
        assert (await add(client, s, kind, of)).status_code == 200
    member = await make_user("member@example.org", hcp="Other Hospital")
    invitee = await make_user("invitee@example.org", hcp="Third Hospital")
    await make_user("outsider@example.org", hcp="Fourth Hospital")
    panel = await make_panel(s["patient"], s["hp"], members=(member,), invited=(invitee,))

    client.cookies.clear()
    await login(client, "member@example.org")
    r = await client.get(f"/pedigree/panels/{panel}", headers=HX)
    assert r.status_code == 200
    assert set(individuals(r.text)) == {"I-1", "I-2", "II-1", "II-2"}
    assert "<form" not in r.text and "/add" not in r.text
    svg = await client.get(f"/pedigree/panels/{panel}/export/svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    png = await client.get(f"/pedigree/panels/{panel}/export/png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n")
    # the patient's own pages stay closed to members: they are not the enrolling hospital
    assert (await client.get(s["base"])).status_code == 404
    r = await post_form(client, s["base"] + "/add", {"kind": "sibling", "of": "i1", "version": 2}, headers=HX)
    assert r.status_code == 404

    client.cookies.clear()
    await login(client, "invitee@example.org")  # not accepted yet: knows the panel, sees no clinical data
    assert (await client.get(f"/pedigree/panels/{panel}")).status_code == 403
    assert (await client.get(f"/pedigree/panels/{panel}/export/svg")).status_code == 403

    client.cookies.clear()
    await login(client, "outsider@example.org")
    assert (await client.get(f"/pedigree/panels/{panel}")).status_code == 404
    assert (await client.get(f"/pedigree/panels/{panel}/export/pdf")).status_code == 404
    assert await version_of(s["patient"]["id"]) == 2


async def test_exports_svg_pdf_ped_and_privacy(client):
    from plugins.pedigree.ped import import_ped

    s = await home_setup(client)
    await three_generations(client, s)
    r = await post_form(client, s["base"] + "/individuals/i2", {"version": 5, "sex": "male", "age": "67",
                                                                 "note": "NOTE-MARKER"}, headers=HX)
    assert r.status_code == 200
    svg = await client.get(s["base"] + "/export/svg")
    assert svg.status_code == 200 and "attachment" in svg.headers["content-disposition"]
    root = ET.fromstring(svg.text)
    assert root.tag == f"{SVG_NS}svg" and "NOTE-MARKER" in svg.text and "67" in svg.text
    minimal = await client.get(s["base"] + "/export/svg?privacy=minimal")
    assert minimal.status_code == 200 and "NOTE-MARKER" not in minimal.text and 'data-privacy="minimal"' in minimal.text
    assert (await client.get(s["base"] + "/export/svg?privacy=everything")).status_code == 422
    pdf = await client.get(s["base"] + "/export/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    drawn = b"".join(zlib.decompress(m) for m in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf.content, re.S)
                     if m[:1] == b"x")  # the page's content streams (zlib), where fpdf2 draws the SVG
    assert all(f"({label}) Tj".encode() in drawn for label in ("I-1", "II-2", "III-3", "IV-1"))
    ped = await client.get(s["base"] + "/export/ped")
    assert ped.status_code == 200 and ped.text.startswith("# lossy:")
    assert ped.headers["content-type"] == "text/plain; charset=utf-8"  # once, not repeated
    family = import_ped(ped.text)[0]
    assert len(family.individuals) == 8 and all("-" in i for i in family.individuals)  # labels, not internal ids
    section = await client.get(s["base"], headers=HX)
    assert "PED is lossy" in section.text
    family = await client.get(s["base"] + "/export/phenopacket")
    proband = next(g.get("data-label") for g in root.iter(f"{SVG_NS}g") if "proband" in (g.get("class") or "").split())
    assert family.status_code == 200 and family.json()["proband"]["subject"]["id"] == proband
    assert len(family.json()["pedigree"]["persons"]) == 8
    assert (await client.get(s["base"] + "/export/gif")).status_code == 404


def _png(content: bytes):
    from PIL import Image

    img = Image.open(io.BytesIO(content))
    img.load()  # a truncated or corrupt file fails here
    return img.convert("L")


def _dark(img, box) -> int:
    """How many pixels of ``box`` (left, top, right, bottom) are dark."""
    return sum(1 for v in img.crop(box).tobytes() if v < 100)


async def test_png_export_draws_the_tree_like_the_svg(client):
    s = await home_setup(client)
    await three_generations(client, s)
    r = await post_form(client, s["base"] + "/conditions", {"version": 5, "cond_label": "SCA2"}, headers=HX)
    assert r.status_code == 200
    # the father (i2) affected, with a note; the mother (i3) is not
    r = await post_form(client, s["base"] + "/individuals/i2", {"version": 6, "sex": "male", "cond_c1": "affected",
                                                                 "note": "onset at 40"}, headers=HX)
    assert r.status_code == 200, r.text[:400]
    svg = await client.get(s["base"] + "/export/svg")
    root = ET.fromstring(svg.text)
    centres = {g.get("data-id"): tuple(float(v) for v in re.findall(r"[-\d.]+", g.get("transform")))
               for g in root.iter(f"{SVG_NS}g") if "individual" in (g.get("class") or "").split()}
    note_y = next(float(t.get("y")) for t in root.iter(f"{SVG_NS}text") if t.get("class") == "note")

    png = await client.get(s["base"] + "/export/png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert 'filename="' in png.headers["content-disposition"] and ".png" in png.headers["content-disposition"]
    img = _png(png.content)
    # twice the SVG's pixel size (sharp text when printed)
    assert img.size == (round(float(root.get("width")) * 2), round(float(root.get("height")) * 2))

    def around(pid, dy=0.0, half=6, high=None):  # a box of PNG pixels around a point of the SVG
        x, y = centres[pid]
        high = half if high is None else high
        return (round(2 * x) - half, round(2 * (y + dy)) - high, round(2 * x) + half, round(2 * (y + dy)) + high)

    note = ("i2", note_y - 3, 24, 6)  # the note's glyphs, clear of the label line above

    assert _dark(img, around("i2")) == 144  # the affected father: shaded through
    assert _dark(img, around("i3")) == 0  # the unaffected mother: white inside
    assert _dark(img, around(*note)) > 10  # the note under the father

    minimal = _png((await client.get(s["base"] + "/export/png?privacy=minimal")).content)
    assert minimal.size[0] <= img.size[0]
    assert _dark(minimal, around("i2")) == 144 and _dark(minimal, around(*note)) == 0
    assert (await client.get(s["base"] + "/export/png?privacy=everything")).status_code == 422


async def test_canrisk_export_through_the_app(client):
    s = await home_setup(client)
    await three_generations(client, s)
    r = await post_form(client, s["base"] + "/conditions", {"version": 5, "cond_label": "Breast cancer",
                                                            "cond_system": "ICD-10", "cond_code": "C50.9"}, headers=HX)
    assert r.status_code == 200, r.text[:400]
    r = await post_form(client, s["base"] + "/individuals/i3", {"version": 6, "sex": "female", "age": "58",
                                                                 "cond_c1": "affected", "g_gene": "BRCA2",
                                                                 "g_result": "pathogenic"}, headers=HX)
    assert r.status_code == 200, r.text[:400]
    labels = {g.get("data-id"): label for label, g in individuals(r.text).items()}
    assert "The CanRisk file is lossy" in r.text  # the section says what the file leaves out

    got = await client.get(s["base"] + "/export/canrisk")
    assert got.status_code == 200 and ".canrisk.txt" in got.headers["content-disposition"]
    lines = got.text.splitlines()
    assert lines[0] == "##CanRisk 2.0" and lines[1].startswith("##FamID\tName\tTarget\tIndivID")
    columns = lines[1][2:].split("\t")
    people = {row["IndivID"]: row for row in (dict(zip(columns, line.split("\t"))) for line in lines[2:])}
    assert set(people) == set(labels.values())  # everyone, by label: no internal ids
    mother = people[labels["i3"]]
    assert (mother["BC1"], mother["BRCA2"], mother["Age"], mother["Sex"]) == ("AU", "T:P", "58", "F")
    assert people[labels["i1"]]["Target"] == "1" and people[labels["i1"]]["MothID"] == labels["i3"]
    assert "AU" in got.headers["x-pedigree-warnings"]
    minimal = await client.get(s["base"] + "/export/canrisk?privacy=minimal")
    assert minimal.status_code == 200 and "\t58\t" in got.text and "\t58\t" not in minimal.text


async def test_gdpr_export_holds_every_version_and_erasure_removes_them(client, settings):
    from core.events import Event
    from plugins.pedigree.tables import PedigreeRecord, PedigreeVersion

    s = await home_setup(client)
    for kind, of in [("parents", "i1"), ("sibling", "i1")]:
        assert (await add(client, s, kind, of)).status_code == 200
    r = await client.get(f"/patients/{s['patient']['pseudonym']}/export?format=json")
    assert r.status_code == 200
    mine = r.json()["plugins"]["pedigree"]
    assert mine["version"] == 2 and len(mine["pedigree"]["individuals"]) == 4
    assert [v["version"] for v in mine["versions"]] == [0, 1, 2]
    assert [v["action"] for v in mine["versions"]] == ["start", "add parents (I-1)", "add sibling (II-1)"]
    # the core erases its tables and announces it; the plugin removes the family tree with its versions
    await client._transport.app.state.host.events.emit(
        Event("patient.erased", s["hp"], "patient", s["patient"]["pseudonym"], {"kind": "erasure"}))
    assert await PedigreeRecord.count() == 0 and await PedigreeVersion.count() == 0


async def test_fhir_export_imports_back_and_ped_import_rekeys(client):
    from plugins.pedigree.fhir import import_bundle

    s = await home_setup(client)
    await three_generations(client, s)
    r = await client.get(s["base"] + "/export/fhir")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    three_gen = r.content
    assert len(import_bundle(r.json()).individuals) == 8
    # a PED file whose ids are names: imported under new ids, the named person as proband
    ped = "F1 grandpa 0 0 1 1\nF1 grandma 0 0 2 1\nF1 Alice grandpa grandma 2 2\n"
    r = await post_form(client, s["base"] + "/import", {"version": 5, "format": "ped", "proband": "Alice"},
                        files={"file": ("family.ped", ped.encode(), "text/plain")}, headers=HX)
    assert r.status_code == 200, r.text[:400]
    assert "family id became FAM1" in text_of(r.text)  # what the import changed is said
    data, _ = await stored(s["patient"]["id"])
    assert sorted(i["id"] for i in data["individuals"]) == ["i1", "i2", "i3"] and "Alice" not in json.dumps(data)
    assert next(i for i in data["individuals"] if i["proband"])["id"] == "i3"
    # the FHIR file exported before brings the three generations back, exactly
    before = await client.get(s["base"] + "/export/fhir")
    r = await post_form(client, s["base"] + "/import", {"version": 6, "format": "fhir"},
                        files={"file": ("tree.json", three_gen)}, headers=HX)
    assert r.status_code == 200
    assert (await client.get(s["base"] + "/export/fhir")).json()["entry"][1:] == json.loads(three_gen)["entry"][1:]
    assert before.json() != json.loads(three_gen)
    bad = await post_form(client, s["base"] + "/import", {"version": 7, "format": "ped", "proband": "x"},
                          files={"file": ("bad.ped", b"F1 a 0 0 1\n")}, headers=HX)
    assert bad.status_code == 422 and "expected at least 6 columns" in bad.text
    assert (await version_of(s["patient"]["id"])) == 7
    assert (await post_form(client, s["base"] + "/undo", {"version": 7}, headers=HX)).status_code == 200
    assert [i["id"] for i in (await stored(s["patient"]["id"]))[0]["individuals"]] == ["i1", "i2", "i3"]


async def test_second_partner_half_siblings_and_consanguinity(client):
    s = await home_setup(client)
    for kind, of, extra in [("parents", "i1", {}), ("partner", "i2", {})]:  # the father's second partner: i4
        assert (await add(client, s, kind, of, **extra)).status_code == 200
    r = await add(client, s, "child", "i2", partner="i4", sex="female")  # a half-sister of the proband
    assert r.status_code == 200, r.text[:300]
    data, _ = await stored(s["patient"]["id"])
    couples = {(p["a"], p["b"]): p for p in data["partnerships"]}
    assert couples[("i2", "i3")]["children"] == ["i1"] and couples[("i2", "i4")]["children"] == ["i5"]
    r = await post_form(client, s["base"] + "/partnerships", {"version": 3, "a": "i2", "b": "i3", "consanguineous": "1"}, headers=HX)
    assert r.status_code == 200
    assert 'class="line consanguinity"' in r.text  # the double line
    data, _ = await stored(s["patient"]["id"])
    assert {(p["a"], p["b"]): p["consanguineous"] for p in data["partnerships"]} == {("i2", "i3"): True, ("i2", "i4"): False}
    r = await post_form(client, s["base"] + "/partnerships", {"version": 4, "a": "i3", "b": "i4"}, headers=HX)
    assert r.status_code == 422 and "not partners" in r.text
    r = await add(client, s, "child", "i1", partner="i4")
    assert r.status_code == 422 and (await version_of(s["patient"]["id"])) == 4


async def test_two_saves_on_the_same_version_one_wins(clean_db):
    """The compare-and-set in the store, under the form check: a racing second save changes nothing."""
    from plugins.pedigree import edit, store

    hp = await make_user("home@example.org", hcp="Home Hospital")
    patient = await make_patient(await hcp_of(hp))
    for first in (True, False):  # the first change creates the row; later ones update it
        current = await store.load(patient)
        one, two = edit.clone(current.pedigree), edit.clone(current.pedigree)
        edit.add(one, "sibling", "i1", "male")
        edit.add(two, "sibling", "i1", "female")
        assert await store.save(patient, current, current.version, one, "one", hp) == current.version + 1
        before = await stored(patient["id"])
        with pytest.raises(store.Stale):
            await store.save(patient, current, current.version, two, "two", hp)
        assert await stored(patient["id"]) == before


async def test_restricted_record_is_shown_but_not_changed(client):
    from core.patients.tables import Patient

    s = await home_setup(client)
    assert (await add(client, s, "parents", "i1")).status_code == 200
    await Patient.update({Patient.restricted: True}).where(Patient.id == s["patient"]["id"])
    r = await client.get(s["base"], headers=HX)
    assert r.status_code == 200 and "/add" not in r.text and "Undo last change" not in r.text
    r = await post_form(client, s["base"] + "/add", {"kind": "sibling", "of": "i1", "version": 1}, headers=HX)
    assert r.status_code == 409 and await version_of(s["patient"]["id"]) == 1


async def test_demo_data_gives_the_first_patient_a_three_generation_dominant_family(client, demo):
    from core.identity import DEMO_PASSWORD
    from tests.conftest import enrol_totp

    first, second = demo.patients[:2]
    await enrol_totp(demo.users["hp"])
    r = await login(client, "hp@demo.cpms.eu", DEMO_PASSWORD.format(role="hp"))
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login")
    r = await client.get(f"/pedigree/patients/{first}", headers=HX)
    assert r.status_code == 200
    people = individuals(r.text)
    affected = {label.split("-")[0] for label, g in people.items() if "affected" in g.get("class").split()}
    assert affected == {"I", "II", "III"}  # affected in every generation: autosomal dominant
    proband = next(g for g in people.values() if "proband" in g.get("class").split())
    assert proband.get("data-id") == "i1" and "affected" in proband.get("class").split()
    assert "Spinocerebellar ataxia type 2" in r.text and "demo family" in r.text  # legend; versions list
    # only the first patient has a family; the others start from themselves
    assert list(individuals((await client.get(f"/pedigree/patients/{second}", headers=HX)).text)) == ["I-1"]


async def test_a_legend_condition_is_renamed_recoded_and_removed(client):
    s = await home_setup(client)
    base, pid = s["base"], s["patient"]["id"]
    for label in ("Ataxia", "Epilepsy"):
        r = await post_form(client, base + "/conditions", {"version": await version_of(pid), "cond_label": label},
                            headers=HX)
        assert r.status_code == 200, r.text[:300]
    r = await post_form(client, base + "/individuals/i1", {"version": await version_of(pid), "sex": "female",
                                                          "cond_c1": "affected", "cond_c2": "carrier"}, headers=HX)
    assert r.status_code == 200, r.text[:300]
    assert 'action="' + base + '/conditions/c1"' in r.text  # the legend form is offered

    # rename and code it: everyone's status for it stays
    r = await post_form(client, base + "/conditions/c1", {"version": await version_of(pid), "cond_label": "Spinocerebellar ataxia 2",
                                                         "cond_system": "orpha", "cond_code": "98756"}, headers=HX)
    assert r.status_code == 200, r.text[:300]
    data, _ = await stored(pid)
    assert {c["id"]: (c["label"], c.get("system"), c.get("code")) for c in data["conditions"]}["c1"] == (
        "Spinocerebellar ataxia 2", "ORPHA", "98756")
    assert data["individuals"][0]["conditions"] == {"c1": "affected", "c2": "carrier"}
    assert "Spinocerebellar ataxia 2" in r.text

    # bad changes: a duplicate name, an unknown entry, half a code; nothing stored
    before = await stored(pid)
    for url, form, message in [("/conditions/c2", {"cond_label": "spinocerebellar ataxia 2"}, "already in the legend"),
                               ("/conditions/c9", {"cond_label": "X"}, "not in the legend"),
                               ("/conditions/c2", {"cond_label": "X", "cond_code": "1"}, "both a code system and a code"),
                               ("/conditions/c9/delete", {}, "not in the legend")]:
        r = await post_form(client, base + url, {"version": await version_of(pid), **form}, headers=HX)
        assert r.status_code == 422 and message in r.text, (url, r.status_code)
    assert await stored(pid) == before

    # remove: out of the legend and out of everyone's statuses; undo brings both back
    r = await post_form(client, base + "/conditions/c2/delete", {"version": await version_of(pid)}, headers=HX)
    assert r.status_code == 200, r.text[:300]
    data, _ = await stored(pid)
    assert [c["id"] for c in data["conditions"]] == ["c1"] and data["individuals"][0]["conditions"] == {"c1": "affected"}
    svg = r.text[r.text.index("<svg"):r.text.index("</svg>")]
    assert "Epilepsy" not in svg and "Spinocerebellar ataxia 2" in svg  # the drawing's legend
    r = await post_form(client, base + "/undo", {"version": await version_of(pid)}, headers=HX)
    data, _ = await stored(pid)
    assert [c["id"] for c in data["conditions"]] == ["c1", "c2"] and data["individuals"][0]["conditions"]["c2"] == "carrier"


async def test_a_plink_genotype_file_imports_with_what_it_left_out_said(client):
    """A LINKAGE/PLINK file with genotype columns, one known parent and a cousin marriage: one
    condition (not one per allele column), the missing parent added, the couple marked, and the
    page says all of it. The file picker offers .fam files too."""
    s = await home_setup(client)
    section = await client.get(s["base"], headers=HX)
    assert 'accept=".json,.ped,.fam,.txt"' in section.text
    ped = (
        "FAMX gf 0 0 1 1 A A\nFAMX gm 0 0 2 1 A C\nFAMX s1 gf gm 1 1 A C\nFAMX s2 gf gm 2 1 C C\n"
        "FAMX c1 s1 0 1 1 A A\nFAMX c2 0 s2 2 1 A C\nFAMX kid c1 c2 1 2 A C\n"
    )
    r = await post_form(client, s["base"] + "/import", {"version": 0, "format": "ped", "proband": "kid"},
                        files={"file": ("family.fam", ped.encode(), "text/plain")}, headers=HX)
    assert r.status_code == 200, r.text[:400]
    said = text_of(r.text)
    assert "genotypes for 1 marker(s)" in said and "added as people of unknown status" in said
    assert "share an ancestor: marked consanguineous" in said
    data, _ = await stored(s["patient"]["id"])
    assert [c["id"] for c in data["conditions"]] == ["phenotype"]
    assert sum(1 for p in data["partnerships"] if p["consanguineous"]) == 1
    assert len(data["individuals"]) == 9  # seven in the file, two parents added

