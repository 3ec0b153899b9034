"""Annotations through the HTTP app and the real database: each kind with its measurements for a known
calibration, bad input refused with a problem and nothing stored, who sees and annotates (panel
members, outsiders), who deletes, the audit trail; the viewer page and citing a view in the discussion."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.conftest import csrf_of, login, make_user, post_form
from tests.panels_support import hcp_of, make_panel, make_patient

HX = {"HX-Request": "true"}
JSON_HEADERS = {"Accept": "application/json"}


async def make_slide(patient: dict, *, width=10000, height=8000, mpp_x=0.25, mpp_y=0.25, hidden=False, title="H&E block A2") -> dict:
    """A slide row (the annotation API never opens the file, so no file is needed here)."""
    from plugins.pathology_viewer.tables import Slide

    row = Slide(patient=patient["id"], hcp=patient["hcp"], title=title, file_key="k" * 40, sha256="0" * 64,
                container="tiff", vendor="generic-tiff", width=width, height=height, level_count=3,
                mpp_x=mpp_x, mpp_y=mpp_y, hidden_from_panels=hidden)
    await row.save()
    return {"id": row.id, "width": width, "height": height}


async def setup(client) -> dict:
    hp = await make_user("home@example.org", hcp="Home Hospital", name="Dr. Hanna Home")
    patient = await make_patient(await hcp_of(hp))
    slide = await make_slide(patient)
    r = await login(client, "home@example.org")
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login")
    return {"hp": hp, "patient": patient, "slide": slide, "base": f"/pathology/slides/{slide['id']}/annotations"}


async def as_user(client, email: str) -> None:
    client.cookies.clear()
    r = await login(client, email)
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.text[:300]


async def create(client, base: str, kind: str, points, text: str = "", **geometry):
    # a page visit first gives the CSRF cookie a value the header can repeat
    if not csrf_of(client):
        await client.get("/")
    body = {"kind": kind, "geometry": {"points": points, **geometry}, "text": text}
    return await client.post(base, json=body, headers={**JSON_HEADERS, "x-csrftoken": csrf_of(client)})


async def remove(client, base: str, aid: int):
    return await client.delete(f"{base}/{aid}", headers={**JSON_HEADERS, "x-csrftoken": csrf_of(client)})


async def stored() -> list[dict]:
    from plugins.pathology_viewer.tables import Annotation

    return await Annotation.select().order_by(Annotation.id)


async def audit_actions() -> list[str]:
    from core.audit.tables import AuditEntry

    return [r["action"] for r in await AuditEntry.select(AuditEntry.action).order_by(AuditEntry.seq)]


# --- each kind, with its measurement -----------------------------------------------------------


async def test_each_kind_is_stored_with_measurements_from_the_calibration(client):
    s = await setup(client)
    base = s["base"]
    # 0.25 µm per pixel: 400 x 800 px = 100 µm x 200 µm
    r = await create(client, base, "rect", [[500, 1000], [100, 200]], "tumour front")
    assert r.status_code == 201, r.text
    rect = r.json()
    assert rect["geometry"]["points"] == [[100, 200], [500, 1000]]  # corners normalised
    m = rect["measurement"]
    assert (m["width_um"], m["height_um"], m["length_um"], m["area_um2"]) == (100, 200, 600, 20000)
    assert m["label"] == "100 µm × 200 µm · 0.02 mm²"
    assert rect["author"] == {"id": s["hp"], "name": "Dr. Hanna Home"} and rect["may_change"] is True
    assert r.headers["location"] == f"{base}/{rect['id']}"

    # a 3-4-5 triangle: sides 1000, 750 and 1250 µm; area 375,000 µm² = 0.375 mm²
    poly = (await create(client, base, "polygon", [[0, 0], [4000, 0], [0, 3000]])).json()
    assert poly["measurement"]["length_um"] == 3000 and poly["measurement"]["area_um2"] == 375000
    assert poly["measurement"]["label"] == "3 mm · 0.375 mm²"

    # an open freehand line has a length only; a closed one an area too
    line = (await create(client, base, "freehand", [[0, 0], [400, 0], [400, 300]])).json()
    assert line["measurement"]["length_um"] == 175 and "area_um2" not in line["measurement"]
    assert line["geometry"]["closed"] is False
    loop = (await create(client, base, "freehand", [[0, 0], [400, 0], [400, 300]], closed=True)).json()
    assert loop["measurement"]["length_um"] == 300 and loop["measurement"]["area_um2"] == 3750
    assert loop["measurement"]["label"] == "300 µm · 3750 µm²"

    point = (await create(client, base, "point", [[10.123, 20.456]])).json()
    assert point["measurement"] is None and point["geometry"]["points"] == [[10.12, 20.46]]
    text = (await create(client, base, "text", [[5000, 4000]], "  mitosis here  ")).json()
    assert text["text"] == "mitosis here"

    rows = await stored()
    assert [r["kind"] for r in rows] == ["rect", "polygon", "freehand", "freehand", "point", "text"]
    listed = (await client.get(base, headers=JSON_HEADERS)).json()["annotations"]
    assert [a["id"] for a in listed] == [r["id"] for r in rows]
    assert listed[1]["measurement"] == poly["measurement"]
    actions = await audit_actions()
    assert actions.count("pathology.annotation_created") == 6 and "pathology.annotations_read" in actions


async def test_unequal_pixel_sides_and_no_calibration(client):
    s = await setup(client)
    from plugins.pathology_viewer import access
    from plugins.pathology_viewer.tables import Slide

    # 0.5 µm wide, 2 µm high pixels: a 100 x 100 px square is 50 µm x 200 µm
    await Slide.update({Slide.mpp_x: 0.5, Slide.mpp_y: 2.0}).where(Slide.id == s["slide"]["id"])
    access.forget()  # the access decision (with the row) is remembered for a while
    m = (await create(client, s["base"], "rect", [[0, 0], [100, 100]])).json()["measurement"]
    assert (m["width_um"], m["height_um"], m["area_um2"]) == (50, 200, 10000)
    await Slide.update({Slide.mpp_x: None, Slide.mpp_y: None}).where(Slide.id == s["slide"]["id"])
    access.forget()
    m = (await create(client, s["base"], "rect", [[0, 0], [100, 50]])).json()["measurement"]
    assert m["unit"] == "px" and m["area_px2"] == 5000 and m["label"] == "100 px × 50 px · 5000 px²"


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,points,text,extra,words", [
    ("rect", [[0, 0], [10001, 10]], "", {}, "on the slide"),
    ("point", [[-1, 5]], "", {}, "on the slide"),
    ("polygon", [[0, 0], [1, 1]], "", {}, "3 to 1000 points"),
    ("polygon", [[i % 100, i // 100] for i in range(1001)], "", {}, "3 to 1000 points"),
    ("polygon", [[0, 0], [10, 10], [20, 20]], "", {}, "area"),
    ("freehand", [[0, 0]] * 5001, "", {}, "2 to 5000 points"),
    ("freehand", [[0, 0], [5, 5]], "", {"closed": "yes"}, "closed"),
    ("rect", [[5, 5], [5, 50]], "", {}, "width and a height"),
    ("text", [[5, 5]], "", {}, "needs its text"),
    ("point", [[5, 5]], "x" * 501, {}, "500 characters"),
    ("point", [["5", 5]], "", {}, "[x, y]"),
    ("point", [[True, 5]], "", {}, "[x, y]"),
    ("circle", [[5, 5]], "", {}, "kind must be"),
])
async def test_bad_geometry_is_refused_and_nothing_stored(client, kind, points, text, extra, words):
    s = await setup(client)
    r = await create(client, s["base"], kind, points, text, **extra)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"]
    assert await stored() == []
    assert "pathology.annotation_created" not in await audit_actions()


async def test_malformed_bodies_get_problems(client):
    s = await setup(client)
    await client.get("/")
    headers = {**JSON_HEADERS, "x-csrftoken": csrf_of(client), "content-type": "application/json"}
    r = await client.post(s["base"], content=b"{not json", headers=headers)
    assert r.status_code == 400 and r.json()["detail"] == "An annotation is not valid JSON."
    for hostile in (b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000,
                    b'{"kind": "point", "geometry": {"points": [[Infinity, 1]]}}', b'{"kind": "point", "geometry": {"points": [[1e999, 1]]}}'):
        r = await client.post(s["base"], content=hostile, headers=headers)
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json"), (hostile[:30], r.status_code)
    r = await client.post(s["base"], content=b"[1, 2]", headers=headers)
    assert r.status_code == 422
    r = await client.post(s["base"], content=json.dumps({"kind": "point", "geometry": {"points": [[1, 1]]},
                                                         "text": "x" * 300_000}).encode(), headers=headers)
    assert r.status_code == 413
    r = await client.post(s["base"], content=json.dumps({"kind": "point", "geometry": {"points": [[float("nan"), 1]]}}).encode(),
                          headers=headers)
    assert r.status_code == 400
    assert await stored() == []
    # without the CSRF header the post is refused before the handler
    r = await client.post(s["base"], json={"kind": "point", "geometry": {"points": [[1, 1]]}}, headers=JSON_HEADERS)
    assert r.status_code == 403 and await stored() == []


# --- who sees, annotates and deletes ------------------------------------------------------------


async def test_panel_members_see_and_annotate_outsiders_get_404(client):
    s = await setup(client)
    member = await make_user("member@example.org", hcp="Other Hospital", name="Dr. Mia Member")
    guest = await make_user("guest@example.org", roles=(("guest", "ERN RND"),), hcp=None, name="Gus Guest")
    invitee = await make_user("invitee@example.org", hcp="Third Hospital")
    await make_user("outsider@example.org", hcp="Fourth Hospital")
    await make_panel(s["patient"], s["hp"], members=(member, guest), invited=(invitee,))
    hp_note = (await create(client, s["base"], "point", [[10, 10]], "seen by the home hospital")).json()

    await as_user(client, "member@example.org")
    listed = (await client.get(s["base"], headers=JSON_HEADERS)).json()["annotations"]
    assert [a["text"] for a in listed] == ["seen by the home hospital"] and listed[0]["may_change"] is False
    r = await create(client, s["base"], "rect", [[0, 0], [40, 40]], "second opinion")
    assert r.status_code == 201
    mine = r.json()
    # the member may not delete the hospital's annotation, but their own
    r = await remove(client, s["base"], hp_note["id"])
    assert r.status_code == 403 and r.json()["status"] == 403
    assert len(await stored()) == 2

    await as_user(client, "guest@example.org")  # a guest in the panel annotates too
    assert (await create(client, s["base"], "point", [[20, 20]], "guest view")).status_code == 201

    for email in ("outsider@example.org", "invitee@example.org"):
        await as_user(client, email)
        r = await client.get(s["base"], headers=JSON_HEADERS)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
        assert (await create(client, s["base"], "point", [[1, 1]])).status_code == 404
        assert (await remove(client, s["base"], mine["id"])).status_code == 404
        assert (await client.get(f"/pathology/slides/{s['slide']['id']}/view")).status_code == 404
    assert len(await stored()) == 3

    # the enrolling hospital's editor deletes anybody's annotation; audited
    await as_user(client, "home@example.org")
    r = await remove(client, s["base"], mine["id"])
    assert r.status_code == 204
    assert [a["text"] for a in await stored()] == ["seen by the home hospital", "guest view"]
    assert "pathology.annotation_deleted" in await audit_actions()
    assert (await remove(client, s["base"], mine["id"])).status_code == 404


async def test_author_deletes_and_changes_own_and_hidden_slides_are_closed_to_members(client):
    from plugins.pathology_viewer import access
    from plugins.pathology_viewer.tables import Slide

    s = await setup(client)
    member = await make_user("member@example.org", hcp="Other Hospital")
    await make_panel(s["patient"], s["hp"], members=(member,))
    await as_user(client, "member@example.org")
    a = (await create(client, s["base"], "point", [[1, 1]], "first")).json()
    r = await client.put(f"{s['base']}/{a['id']}", json={"text": "changed", "geometry": {"points": [[2, 2]]}},
                         headers={**JSON_HEADERS, "x-csrftoken": csrf_of(client)})
    assert r.status_code == 200 and r.json()["text"] == "changed" and r.json()["geometry"]["points"] == [[2, 2]]
    r = await client.put(f"{s['base']}/{a['id']}", json={"geometry": {"points": [[2, 99999]]}},
                         headers={**JSON_HEADERS, "x-csrftoken": csrf_of(client)})
    assert r.status_code == 422 and (await stored())[0]["text"] == "changed"
    assert (await remove(client, s["base"], a["id"])).status_code == 204
    assert await stored() == []

    await Slide.update({Slide.hidden_from_panels: True}).where(Slide.id == s["slide"]["id"])
    access.forget(s["slide"]["id"])
    assert (await client.get(s["base"], headers=JSON_HEADERS)).status_code == 404
    assert (await create(client, s["base"], "point", [[1, 1]])).status_code == 404


async def test_researchers_may_not_annotate(client):
    s = await setup(client)
    await make_user("research@example.org", roles=(("researcher", "ERN RND"),), hcp="Home Hospital")
    await as_user(client, "research@example.org")
    r = await create(client, s["base"], "point", [[1, 1]])
    assert r.status_code == 403 and await stored() == []


# --- the viewer page -----------------------------------------------------------------------------


def config_of(html: str) -> dict:
    import html as html_lib

    raw = re.search(r'data-config="([^"]*)"', html).group(1)
    return json.loads(html_lib.unescape(raw))


async def test_viewer_page_reopens_a_cited_view_or_annotation(client):
    s = await setup(client)
    sid = s["slide"]["id"]
    a = (await create(client, s["base"], "rect", [[100, 200], [500, 1000]], "look <here>")).json()
    r = await client.get(f"/pathology/slides/{sid}/view")
    assert r.status_code == 200
    cfg = config_of(r.text)
    assert cfg["dzi"] == f"/pathology/slides/{sid}/image.dzi" and cfg["mppX"] == 0.25 and cfg["view"] is None
    assert cfg["width"] == 10000 and cfg["mayAnnotate"] is True
    assert "<script>" not in r.text and " style=" not in r.text  # CSP: nothing inline
    assert "/static/pathology_viewer/vendor/openseadragon.min.js" in r.text
    # the list beside the viewer: author and measurement; the text escaped
    item = re.search(r'<li class="pv-annotation".*?</li>', r.text, re.S).group(0)
    assert "Dr. Hanna Home" in item and "100 µm × 200 µm · 0.02 mm²" in item and "look &lt;here&gt;" in item

    r = await client.get(f"/pathology/slides/{sid}/view?x=5000&y=4000&zoom=0.5&rotation=-90")
    assert config_of(r.text)["view"] == {"x": 5000, "y": 4000, "zoom": 0.5, "rotation": 270}
    assert 'value="/pathology/slides/%d/view?x=5000&amp;y=4000&amp;zoom=0.5&amp;rotation=270"' % sid in r.text
    r = await client.get(f"/pathology/slides/{sid}/view?annotation={a['id']}")
    cfg = config_of(r.text)
    assert cfg["focus"] == a["id"] and cfg["focusBounds"] == [100, 200, 400, 800]

    for query, status in (("x=5000&y=4000", 400), ("x=5000&y=4000&zoom=0", 400), ("x=20000&y=1&zoom=1", 400),
                          ("x=a&y=1&zoom=1", 400), ("x=1&y=1&zoom=nan", 400), ("annotation=999999", 404),
                          ("annotation=x", 400)):
        r = await client.get(f"/pathology/slides/{sid}/view?{query}")
        assert r.status_code == status, (query, r.status_code)
        assert "<h1" in r.text  # a clear page, not a traceback
    from core.audit.tables import AuditEntry

    assert await AuditEntry.count().where(AuditEntry.action == "pathology.view") >= 3


async def test_cite_a_view_in_the_panel_discussion_renders_a_link(client):
    s = await setup(client)
    sid = s["slide"]["id"]
    member = await make_user("member@example.org", hcp="Other Hospital", name="Dr. Mia Member")
    panel = await make_panel(s["patient"], s["hp"], members=(member,))
    await as_user(client, "member@example.org")
    page = await client.get(f"/pathology/slides/{sid}/view?x=5000&y=4000&zoom=0.5")
    assert f'action="/panels/{panel}/messages"' in page.text  # the member may post there
    link = f"/pathology/slides/{sid}/view?x=5000&y=4000&zoom=0.5"
    r = await post_form(client, f"/panels/{panel}/messages", {"body": f"Look at the invasion front.\nH&E block A2: {link}"})
    assert r.status_code == 303
    panel_page = await client.get(f"/panels/{panel}")
    body = re.search(r'<div class="message-body prewrap">(.*?)</div>', panel_page.text, re.S).group(1)
    href = link.replace("&", "&amp;")
    assert f'<a href="{href}">{href}</a>' in body
    assert "H&amp;E block A2: " in body
    # the link reopens exactly that view
    cfg = config_of((await client.get(link)).text)
    assert cfg["view"] == {"x": 5000, "y": 4000, "zoom": 0.5, "rotation": 0}

    # a closed panel offers no posting, only the link to copy
    from core.panels.tables import Panel

    await Panel.update({Panel.status: "closed"}).where(Panel.id == panel)
    page = await client.get(f"/pathology/slides/{sid}/view")
    assert "/messages" not in page.text and 'id="pv-link"' in page.text


def test_measurement_formatting():
    from plugins.pathology_viewer import geometry as geo

    assert geo.format_length(999.4) == "999 µm" and geo.format_length(1000) == "1 mm" and geo.format_length(12345) == "12.3 mm"
    assert geo.format_area(9999) == "9999 µm²" and geo.format_area(10000) == "0.01 mm²"
    assert geo.format_length(0.5) == "0.5 µm"
    m = geo.measure("polygon", {"points": [[0, 0], [10, 0], [10, 10], [0, 10]]}, 1.0, None)
    assert math.isclose(m.area, 100) and math.isclose(m.length, 40)
