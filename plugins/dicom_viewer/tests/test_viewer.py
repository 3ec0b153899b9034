"""The viewer page and the tag browser through the HTTP app, with real uploads: the page's configuration
(instances, addresses, presets, no inline script or style), reopening a cited view or annotation, bad
views refused with a clear page, citing a view in the panel discussion (a link there), the de-identified
tags (no identifying value, no pixel data), and who sees what (panel members, outsiders, the burned-in
gate)."""

from __future__ import annotations

import html as html_lib
import json
import re

from plugins.dicom_viewer import synthetic
from plugins.dicom_viewer.tests.support import JSON, home, instances, panel_member, upload, upload_ct, us_path
from plugins.dicom_viewer.viewer import parse_view, view_url
from tests.conftest import csrf_of, login, make_user, post_form


def config_of(text: str) -> dict:
    raw = re.search(r'data-config="([^"]*)"', text).group(1)
    return json.loads(html_lib.unescape(raw))


async def as_user(client, email: str) -> None:
    client.cookies.clear()
    r = await login(client, email)
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.text[:300]


async def ct_series(client, s) -> tuple[int, list[dict]]:
    await upload_ct(client, s)
    rows = await instances()
    return rows[0]["series"], sorted(rows, key=lambda i: i["number"])


async def annotate(client, instance_id: int, kind: str, points, text: str = "", frame: int = 1) -> dict:
    r = await client.post(f"/dicom/instances/{instance_id}/annotations",
                          json={"kind": kind, "frame": frame, "geometry": {"points": points}, "text": text},
                          headers={**JSON, "x-csrftoken": csrf_of(client)})
    assert r.status_code == 201, r.text
    return r.json()


async def test_viewer_page_carries_its_configuration_and_nothing_inline(client):
    s = await home(client)
    sid, rows = await ct_series(client, s)
    a = await annotate(client, rows[1]["id"], "length", [[10, 10], [40, 50]], "look <here>")
    r = await client.get(f"/dicom/series/{sid}/view")
    assert r.status_code == 200, r.text[:500]
    cfg = config_of(r.text)
    assert [i["id"] for i in cfg["instances"]] == [i["id"] for i in rows]
    assert all(i["rows"] == 64 and i["columns"] == 64 and i["frames"] == 1 and i["spacing"] == [0.7, 0.7] for i in cfg["instances"])
    assert cfg["view"]["instance"] == rows[0]["id"] and cfg["view"]["frame"] == 1 and cfg["view"]["zoom"] is None
    assert cfg["defaultWindow"] == [40, 400]  # the file's own window, where a drag starts
    assert cfg["renderedUrl"] == "/dicom/instances/{instance}/frames/{frame}/rendered" and cfg["mayAnnotate"] is True
    presets = {p[0]: (p[1], p[2]) for p in cfg["presets"]}
    assert presets["Brain"] == (40, 80) and presets["Bone"] == (300, 1500) and presets["Lung"] == (-400, 1600)
    assert presets["Abdomen"] == (60, 400) and presets["Chest"] == (40, 400) and presets["Angio"] == (300, 600)
    assert {"Subdural", "Stroke", "Liver", "Soft tissue"} <= set(presets)
    for name in ("Brain", "Bone", "Lung"):
        assert f'data-preset="{name}"' in r.text
    assert "<script>" not in r.text and " style=" not in r.text  # CSP: nothing inline
    assert '<script src="/static/dicom_viewer/viewer.js" defer></script>' in r.text
    # the list beside the viewer, with the measurement and the note escaped
    item = re.search(r'<li class="dv-annotation".*?</li>', r.text, re.S).group(0)
    assert "35 mm" in item and "look &lt;here&gt;" in item and f'data-instance="{rows[1]["id"]}"' in item
    assert [x["id"] for x in json.loads(html_lib.unescape(re.search(r'data-annotations="([^"]*)"', r.text).group(1)))] == [a["id"]]
    # the list fragment the script reloads
    frag = await client.get(f"/dicom/series/{sid}/annotations/list", headers={"HX-Request": "true"})
    assert frag.status_code == 200 and "35 mm" in frag.text and "<html" not in frag.text
    # the static files are served
    for name in ("viewer.js", "viewer.css"):
        assert (await client.get(f"/static/dicom_viewer/{name}")).status_code == 200
    from core.audit.tables import AuditEntry

    assert await AuditEntry.count().where(AuditEntry.action == "dicom.view") == 1


async def test_a_cited_view_or_annotation_reopens_exactly(client):
    s = await home(client)
    sid, rows = await ct_series(client, s)
    third = rows[2]["id"]
    query = f"instance={third}&wc=-400&ww=1600&zoom=2.5&x=20&y=30.5&rot=-90&flip=h&invert=1"
    r = await client.get(f"/dicom/series/{sid}/view?{query}")
    assert r.status_code == 200
    view = config_of(r.text)["view"]
    assert view == {"instance": third, "frame": 1, "wc": -400, "ww": 1600, "zoom": 2.5, "x": 20, "y": 30.5, "rot": 270,
                    "flipH": True, "flipV": False, "invert": True}
    link = view_url(sid, view)
    assert link == f"/dicom/series/{sid}/view?instance={third}&wc=-400&ww=1600&zoom=2.5&x=20&y=30.5&rot=270&flip=h&invert=1"
    assert f'value="{html_lib.escape(link)}"' in r.text  # the cite link starts as this view
    assert config_of((await client.get(link)).text)["view"] == view

    a = await annotate(client, third, "arrow", [[5, 5], [20, 20]], "here")
    r = await client.get(f"/dicom/series/{sid}/view?annotation={a['id']}")
    cfg = config_of(r.text)
    assert cfg["focus"] == a["id"] and cfg["view"]["instance"] == third
    assert f'value="/dicom/series/{sid}/view?annotation={a["id"]}"' in r.text


async def test_bad_views_get_a_clear_page_and_foreign_objects_404(client):
    s = await home(client)
    sid, rows = await ct_series(client, s)
    other = await make_user("other@example.org", hcp="Other Hospital")
    assert other
    for query, status in (("wc=40", 400), ("ww=400", 400), ("wc=40&ww=0", 400), ("wc=a&ww=1", 400), ("wc=nan&ww=1", 400),
                          ("zoom=0", 400), ("zoom=1000", 400), ("zoom=2&x=10", 400), ("zoom=2&x=65&y=1", 400),
                          ("rot=45", 400), ("rot=ninety", 400), ("flip=x", 400), ("invert=2", 400), ("frame=0", 400),
                          ("frame=2", 400), ("instance=abc", 400), ("instance=999999", 404), ("annotation=999999", 404),
                          ("annotation=x", 400)):
        r = await client.get(f"/dicom/series/{sid}/view?{query}")
        assert r.status_code == status, (query, r.status_code)
        assert "<h1" in r.text and "Traceback" not in r.text  # a clear page, not a traceback
    assert (await client.get("/dicom/series/999999/view")).status_code == 404
    # pure parsing: defaults, reductions
    inst = [{"id": 7, "frames": 3, "rows": 10, "columns": 20}]
    assert parse_view({}, inst) == {"instance": 7, "frame": 1, "wc": None, "ww": None, "zoom": None, "x": None, "y": None,
                                    "rot": 0, "flipH": False, "flipV": False, "invert": False}
    v = parse_view({"frame": "3", "rot": "450", "flip": "vh", "x": "20", "y": "0"}, inst)
    assert (v["frame"], v["rot"], v["flipH"], v["flipV"], v["x"], v["y"]) == (3, 90, True, True, 20, 0)
    assert view_url(1, v, frames=3) == "/dicom/series/1/view?instance=7&frame=3&rot=90&flip=hv"


async def test_cite_a_view_in_the_panel_discussion_renders_a_link(client):
    s = await home(client)
    sid, rows = await ct_series(client, s)
    m = await panel_member(client, s)
    panel = m["panel"]
    link = f"/dicom/series/{sid}/view?instance={rows[1]['id']}&wc=40&ww=80&zoom=2"
    page = await client.get(link)
    assert page.status_code == 200
    assert f'action="/panels/{panel}/messages"' in page.text  # the member may post there
    r = await post_form(client, f"/panels/{panel}/messages", {"body": f"Look at the left lobe.\nCT: {link}"})
    assert r.status_code == 303
    panel_page = await client.get(f"/panels/{panel}")
    body = re.search(r'<div class="message-body prewrap">(.*?)</div>', panel_page.text, re.S).group(1)
    href = link.replace("&", "&amp;")
    assert f'<a href="{href}">{href}</a>' in body
    assert config_of((await client.get(link)).text)["view"]["wc"] == 40
    # a closed panel offers no posting, only the link to copy
    from core.panels.tables import Panel

    await Panel.update({Panel.status: "closed"}).where(Panel.id == panel)
    page = await client.get(f"/dicom/series/{sid}/view")
    assert "/messages" not in page.text and 'id="dv-link"' in page.text


async def test_tags_are_the_deidentified_elements_without_pixel_data(client):
    s = await home(client)
    sid, rows = await ct_series(client, s)
    r = await client.get(f"/dicom/instances/{rows[0]['id']}/tags", headers=JSON)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    elements = r.json()["elements"]
    by_kw = {e["keyword"]: e for e in elements}
    assert elements[0]["tag"].startswith("(0002,")  # file meta first
    assert by_kw["PatientName"]["value"] == s["patient"]["pseudonym"] == by_kw["PatientID"]["value"]
    assert by_kw["PatientIdentityRemoved"]["value"] == "YES"
    assert by_kw["PixelSpacing"]["value"] == "0.7\\0.7" and by_kw["PixelSpacing"]["vr"] == "DS"
    assert by_kw["PixelData"]["value"].startswith("pixel data") and "not shown" in by_kw["PixelData"]["value"]
    text = r.text
    assert len(text) < 50_000  # 64 x 64 x 2 bytes of pixels would be more as any encoding
    for marker in synthetic.IDENTIFYING:
        assert marker not in text, marker
    seq = [e for e in elements if e["vr"] == "SQ"]
    assert all(isinstance(e.get("items", []), list) for e in seq)
    from core.audit.tables import AuditEntry

    assert await AuditEntry.count().where(AuditEntry.action == "dicom.tags_read") == 1
    assert (await client.get("/dicom/instances/999999/tags", headers=JSON)).status_code == 404


async def test_panel_members_see_reviewed_series_only_and_outsiders_nothing(client):
    s = await home(client)
    sid, rows = await ct_series(client, s)
    r = await upload(client, s, [("us.dcm", us_path().read_bytes())], headers=JSON)
    assert r.status_code == 201, r.text
    us = next(i for i in await instances() if i["needs_review"])
    assert (await client.get(f"/dicom/series/{us['series']}/view")).status_code == 200  # the hospital sees it

    await panel_member(client, s)
    r = await client.get(f"/dicom/series/{sid}/view")
    assert r.status_code == 200 and config_of(r.text)["mayAnnotate"] is True
    assert (await client.get(f"/dicom/series/{us['series']}/view")).status_code == 404
    assert (await client.get(f"/dicom/series/{sid}/view?instance={us['id']}")).status_code == 404
    assert (await client.get(f"/dicom/instances/{us['id']}/tags", headers=JSON)).status_code == 404

    await make_user("outsider@example.org", hcp="Third Hospital")
    await as_user(client, "outsider@example.org")
    assert (await client.get(f"/dicom/series/{sid}/view")).status_code == 404
    assert (await client.get(f"/dicom/instances/{rows[0]['id']}/tags", headers=JSON)).status_code == 404
    assert (await client.get(f"/dicom/series/{sid}/annotations/list")).status_code == 404
