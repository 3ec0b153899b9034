"""Annotations through the HTTP app, real uploads and the real database: each kind with its measurement
computed on the server from the stored (de-identified) dataset (length in mm from Pixel Spacing, angle,
ellipse mean/SD in HU), frames of a multi-frame instance, bad input refused with a problem and nothing
stored, who sees, adds and deletes (panel members, outsiders, the burned-in gate), and the audit trail."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plugins.dicom_viewer import geometry as geo
from plugins.dicom_viewer import synthetic
from plugins.dicom_viewer.tests.support import (
    JSON, cr_path, home, instances, multiframe_path, panel_member, upload, upload_ct, us_path,
)
from tests.conftest import csrf_of, login, make_user


async def create(client, instance_id: int, kind: str, points, text: str = "", frame=None, raw: bytes | None = None):
    if not csrf_of(client):
        await client.get("/")
    headers = {**JSON, "x-csrftoken": csrf_of(client), "Content-Type": "application/json"}
    url = f"/dicom/instances/{instance_id}/annotations"
    if raw is not None:
        return await client.post(url, content=raw, headers=headers)
    body = {"kind": kind, "geometry": {"points": points}, "text": text}
    if frame is not None:
        body["frame"] = frame
    return await client.post(url, json=body, headers=headers)


async def remove(client, instance_id: int, aid: int):
    return await client.delete(f"/dicom/instances/{instance_id}/annotations/{aid}",
                               headers={**JSON, "x-csrftoken": csrf_of(client)})


async def stored() -> list[dict]:
    from plugins.dicom_viewer.tables import Annotation

    return await Annotation.select().order_by(Annotation.id)


async def audit_actions() -> list[str]:
    from core.audit.tables import AuditEntry

    return [r["action"] for r in await AuditEntry.select(AuditEntry.action).order_by(AuditEntry.seq)]


async def as_user(client, email: str) -> None:
    client.cookies.clear()
    r = await login(client, email)
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.text[:300]


async def first_ct(client, s) -> dict:
    """Upload the 4-slice 64 x 64 CT (0.7 mm pixels) and return the instance of slice 1."""
    await upload_ct(client, s)
    return next(i for i in await instances() if i["number"] == 1)


# --- each kind, with its measurement -----------------------------------------------------------


async def test_each_kind_is_stored_with_measurements_computed_on_the_server(client):
    s = await home(client)
    inst = await first_ct(client, s)
    iid = inst["id"]

    # 30 x 40 pixels of 0.7 mm: 50 px = 35 mm
    r = await create(client, iid, "length", [[10, 10], [40, 50]], "cyst diameter")
    assert r.status_code == 201, r.text
    length = r.json()
    assert length["measurement"]["pixels"] == 50 and length["measurement"]["mm"] == pytest.approx(35.0)
    assert length["measurement"]["label"] == "35 mm" and length["measurement"]["source"] == "PixelSpacing"
    assert length["frame"] == 1 and length["instance"] == iid and length["text"] == "cyst diameter"
    assert length["may_change"] is True and length["author"]["id"] == s["hp"]
    assert r.headers["location"].endswith(f"/view?annotation={length['id']}")

    r = await create(client, iid, "angle", [[40, 10], [10, 10], [30, 30]])
    assert r.status_code == 201, r.text
    assert r.json()["measurement"]["degrees"] == pytest.approx(45.0) and r.json()["measurement"]["label"] == "45.0°"

    # an ellipse inside the water disc of slice 1: statistics of the pixel centres inside, in HU
    r = await create(client, iid, "ellipse", [[36, 18], [26, 8]], "water")
    assert r.status_code == 201, r.text
    ellipse = r.json()
    assert ellipse["geometry"]["points"] == [[26, 8], [36, 18]]  # corners normalised
    hu = synthetic.ct_pixels(64, 0).astype(np.float64) - 1024
    yy, xx = np.mgrid[0:64, 0:64]
    inside = ((xx + 0.5 - 31) / 5) ** 2 + ((yy + 0.5 - 13) / 5) ** 2 <= 1
    m = ellipse["measurement"]
    assert m["unit"] == "HU" and m["count"] == int(inside.sum())
    assert m["mean"] == pytest.approx(hu[inside].mean(), abs=1e-3) and m["sd"] == pytest.approx(hu[inside].std(), abs=1e-3)
    assert abs(m["mean"]) < 8 and m["sd"] > 1  # water with the phantom's texture, not air (-1000)
    assert m["area_mm2"] == pytest.approx(inside.sum() * 0.49, rel=1e-6)
    assert m["label"].startswith("mean ") and " HU · SD " in m["label"] and m["label"].endswith(" mm²")

    r = await create(client, iid, "arrow", [[5, 5], [20, 20]], "look here")
    assert r.status_code == 201 and r.json()["measurement"] == {}
    r = await create(client, iid, "text", [[12.345, 6.789]], "  calcification\r\n ")
    assert r.status_code == 201
    assert r.json()["text"] == "calcification" and r.json()["geometry"]["points"] == [[12.35, 6.79]]

    rows = await stored()
    assert [x["kind"] for x in rows] == ["length", "angle", "ellipse", "arrow", "text"]
    assert all(x["frame"] == 0 for x in rows)  # stored from 0; the API numbers frames from 1
    listed = (await client.get(f"/dicom/instances/{iid}/annotations", headers=JSON)).json()
    assert [a["id"] for a in listed["annotations"]] == [x["id"] for x in rows]
    assert listed["annotations"][0]["measurement"]["mm"] == pytest.approx(35.0)
    actions = await audit_actions()
    assert actions.count("dicom.annotation_created") == 5 and "dicom.annotations_read" in actions


async def test_frames_of_a_multiframe_instance_and_images_without_spacing(client):
    s = await home(client)
    r = await upload(client, s, [("mf.dcm", multiframe_path().read_bytes()), ("cr.dcm", cr_path().read_bytes())], headers=JSON)
    assert r.status_code == 201, r.text
    rows = await instances()
    mf = next(i for i in rows if i["frames"] == 6)
    cr = next(i for i in rows if i["frames"] == 1)
    # frame 3 (from 1) holds the value 300 everywhere but two corner pixels
    r = await create(client, mf["id"], "ellipse", [[8, 8], [24, 24]], frame=3)
    assert r.status_code == 201, r.text
    m = r.json()["measurement"]
    assert r.json()["frame"] == 3 and m["mean"] == 300 and m["sd"] == 0 and m["unit"] == ""
    assert (await stored())[-1]["frame"] == 2
    # no pixel spacing at all: the length in pixels
    r = await create(client, mf["id"], "length", [[0, 0], [18, 24]], frame=6)
    assert r.json()["measurement"]["mm"] is None and r.json()["measurement"]["label"] == "30 px"
    for frame in (0, 7, "2", True, 1.5):
        r = await create(client, mf["id"], "arrow", [[1, 1], [2, 2]], frame=frame)
        assert r.status_code == 422 and "frame" in r.json()["detail"], (frame, r.text)
    # a radiograph: Imager Pixel Spacing, said so in the note
    r = await create(client, cr["id"], "length", [[0, 0], [0, 60]])
    m = r.json()["measurement"]
    assert m["mm"] == pytest.approx(9.0) and m["source"] == "ImagerPixelSpacing" and "detector" in m["note"]
    assert len(await stored()) == 3


async def test_bad_input_is_refused_with_a_problem_and_nothing_is_stored(client):
    s = await home(client)
    inst = await first_ct(client, s)
    iid = inst["id"]
    cases = [
        ("circle", [[1, 1]], "", None, 422, "kind must be one of"),
        ("length", [[1, 1]], "", None, 422, "takes 2 points"),
        ("angle", [[1, 1], [2, 2]], "", None, 422, "takes 3 points"),
        ("length", [[1, 1], [65, 1]], "", None, 422, "lie on the image"),
        ("length", [[1, 1], [1, -0.5]], "", None, 422, "lie on the image"),
        ("length", [[3, 3], [3, 3]], "", None, 422, "two different points"),
        ("angle", [[1, 1], [1, 1], [5, 5]], "", None, 422, "apart from its vertex"),
        ("ellipse", [[10, 10], [10.2, 30]], "", None, 422, "width and a height"),
        ("arrow", [[1, True], [2, 2]], "", None, 422, "[x, y]"),
        ("arrow", [[1, "2"], [2, 2]], "", None, 422, "[x, y]"),
        ("arrow", [[1, 2, 3], [2, 2]], "", None, 422, "[x, y]"),
        ("text", [[1, 1]], "   ", None, 422, "needs its text"),
        ("text", [[1, 1]], "x" * 501, None, 422, "at most 500"),
        ("text", [[1, 1]], "bell\x07", None, 422, "control characters"),
        ("arrow", [[1, 1], [2, 2]], "", 2, 422, "frame number from 1 to 1"),
    ]
    for kind, points, text, frame, status, words in cases:
        r = await create(client, iid, kind, points, text, frame=frame)
        assert r.status_code == status, (kind, points, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert words in r.json()["detail"], (words, r.json())
    for raw, status in ((b"not json", 400), (b"[1, 2]", 422), (b'{"kind": "length", "geometry": {"points": [[NaN, 1], [2, 2]]}}', 400),
                        (b'{"kind": "length", "geometry": {"points": [[1e999, 1], [2, 2]]}}', 400),
                        (b"[" * 5000 + b"]" * 5000, 400), (b'{"a":' * 2000 + b"1" + b"}" * 2000, 400),
                        (b'{"kind": "length", "geometry": [[1, 1], [2, 2]]}', 422), (b"{" + b" " * 300_000 + b"}", 413)):
        r = await create(client, iid, "", [], raw=raw)
        assert r.status_code == status, (raw[:40], r.text)
    # an instance that does not exist, or a deletion of nothing
    assert (await create(client, 999999, "arrow", [[1, 1], [2, 2]])).status_code == 404
    assert (await remove(client, iid, 424242)).status_code == 404
    assert await stored() == []
    assert "dicom.annotation_created" not in await audit_actions()


def test_validate_and_measure_without_the_web():
    kind, g, text, frame = geo.validate("ellipse", {"points": [[9, 2], [1, 8]]}, None, columns=10, rows=10)
    assert (kind, g, text, frame) == ("ellipse", {"points": [[1, 2], [9, 8]]}, "", 0)
    assert geo.ellipse_of(g) == (5, 5, 4, 3)
    with pytest.raises(geo.GeometryError, match="frame"):
        geo.validate("arrow", {"points": [[1, 1], [2, 2]]}, "", columns=10, rows=10, frame=3, frames=2)
    with pytest.raises(geo.GeometryError, match="finite"):
        geo.validate("arrow", {"points": [[math.inf, 1], [2, 2]]}, "", columns=10, rows=10)
    assert geo._num(41.234) == "41.2" and geo._num(0.5) == "0.5" and geo._num(123.4) == "123" and geo._num(-1000) == "-1000"
    # non-square pixels: the angle is measured in mm, not in pixels
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PixelSpacing = [2.0, 1.0]  # rows 2 mm apart, columns 1 mm apart
    m = geo.measure("angle", {"points": [[10, 0], [0, 0], [10, 5]]}, ds, 0)
    assert m["degrees"] == pytest.approx(45.0)  # 5 rows = 10 mm down, 10 columns = 10 mm across
    m = geo.measure("length", {"points": [[0, 0], [3, 2]]}, ds, 0)
    assert m["mm"] == pytest.approx(5.0) and m["label"] == "5 mm" and m["pixels"] == pytest.approx(math.hypot(3, 2), abs=0.01)


# --- who sees, adds and deletes ----------------------------------------------------------------


async def test_panel_members_see_and_add_outsiders_get_404_and_only_authors_or_editors_delete(client):
    s = await home(client)
    inst = await first_ct(client, s)
    iid = inst["id"]
    mine = (await create(client, iid, "length", [[10, 10], [40, 50]], "home")).json()

    m = await panel_member(client, s)  # logged in as the expert of another hospital
    listed = (await client.get(f"/dicom/instances/{iid}/annotations", headers=JSON)).json()["annotations"]
    assert [a["id"] for a in listed] == [mine["id"]] and listed[0]["may_change"] is False
    theirs = (await create(client, iid, "arrow", [[5, 5], [20, 20]], "expert view")).json()
    assert theirs["may_change"] is True
    r = await remove(client, iid, mine["id"])
    assert r.status_code == 403 and "author" in r.json()["detail"]
    assert len(await stored()) == 2
    # the audit trail names the panel the expert saw the image through
    from core.audit.tables import AuditEntry

    import json

    created = await AuditEntry.select().where(AuditEntry.action == "dicom.annotation_created").order_by(AuditEntry.seq)
    assert json.loads(created[-1]["detail"])["panel"] == m["panel"]
    assert json.loads(created[-1]["detail"])["annotation"] == theirs["id"]

    # someone of a third hospital, in no panel: exactly like a missing instance
    await make_user("outsider@example.org", hcp="Third Hospital")
    await as_user(client, "outsider@example.org")
    assert (await client.get(f"/dicom/instances/{iid}/annotations", headers=JSON)).status_code == 404
    assert (await create(client, iid, "arrow", [[1, 1], [2, 2]])).status_code == 404
    assert (await remove(client, iid, theirs["id"])).status_code == 404

    # the enrolling hospital's editor deletes the expert's annotation; the expert deletes nothing more
    await as_user(client, "home@example.org")
    assert (await remove(client, iid, theirs["id"])).status_code == 204
    assert [a["id"] for a in await stored()] == [mine["id"]]
    assert "dicom.annotation_deleted" in await audit_actions()


async def test_images_waiting_for_the_burned_in_review_are_not_annotated_by_panels(client):
    s = await home(client)
    r = await upload(client, s, [("us.dcm", us_path().read_bytes())], headers=JSON)
    assert r.status_code == 201, r.text
    us = (await instances())[0]
    assert us["needs_review"]
    # the enrolling hospital annotates it (colour image: the ellipse keeps no statistics)
    r = await create(client, us["id"], "ellipse", [[10, 10], [50, 40]])
    assert r.status_code == 201 and r.json()["measurement"]["label"].startswith("no statistics")
    await panel_member(client, s)
    assert (await client.get(f"/dicom/instances/{us['id']}/annotations", headers=JSON)).status_code == 404
    assert (await create(client, us["id"], "arrow", [[1, 1], [2, 2]])).status_code == 404
    assert len(await stored()) == 1
