"""Privacy through the web: what is stored after an upload holds no attribute of the Basic Profile's
list and none of the original identifying values (name, ID, institution ...) anywhere in its bytes,
after decryption; nor does the database; and an instance waiting for the burned-in text review is
unreachable by panel members through every route the app serves (pages, frames, JSON, DICOMweb)."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

from pydicom import dcmread

from plugins.dicom_viewer import synthetic
from plugins.dicom_viewer.tests.support import (
    JSON, cr_path, ct_paths, home, instances, multiframe_path, panel_member, upload, upload_ct, us_path,
)
from plugins.dicom_viewer.tests.test_deid import check_profile
from tests.conftest import login


async def test_stored_files_hold_no_identifying_bytes_and_no_profile_attribute(client, settings):
    from core.storage import Storage

    s = await home(client)
    originals = [*ct_paths(), us_path(), cr_path(), multiframe_path()]
    r = await upload(client, s, [(p.name, p.read_bytes()) for p in originals], headers=JSON)
    assert r.status_code == 201 and r.json()["stored"] == len(originals), r.text[:300]
    uids = set()
    for p in originals:
        o = dcmread(p, stop_before_pixels=True)
        uids |= {str(o.SOPInstanceUID), str(o.StudyInstanceUID), str(o.SeriesInstanceUID)}
    storage = Storage(settings)
    rows = await instances()
    assert len(rows) == len(originals)
    for row in rows:
        encrypted = storage.path(row["file_key"]).read_bytes()
        data = await storage.read_bytes(row["file_key"], row["size"] + 16)
        for marker in synthetic.IDENTIFYING:
            assert marker.encode() not in data and marker.encode() not in encrypted, marker
        for part in ("Markerson", "Zebedee", "ZX-918273"):
            assert part.encode() not in data
        assert not any(u.encode() in data for u in uids)
        assert synthetic.STUDY_DATE.encode() not in data
        ds = dcmread(io.BytesIO(data))
        check_profile(ds)
        assert str(ds.PatientName) == s["patient"]["pseudonym"] and ds.PatientIdentityRemoved == "YES"
    # Nor anything in the database (the SQLite file's bytes), nor the upload folder left behind.
    db = Path(settings.data_dir).glob("*.sqlite3")
    for f in db:
        # Read by another process: open()+close() in this one would drop SQLite's POSIX locks on the
        # file and corrupt later tests' connections (tests/test_patients.py says more).
        raw = subprocess.run(["cat", str(f)], capture_output=True, check=True).stdout
        for marker in synthetic.IDENTIFYING:
            assert marker.encode() not in raw, marker
        for p in originals:
            assert p.name.encode() not in raw  # browser file names are not kept
    incoming = Path(settings.data_dir) / "dicom-incoming"
    assert not any(incoming.iterdir())


def _fill(path: str, ids: dict) -> str:
    def value(m: re.Match) -> str:
        name = m.group(1)
        return str(ids.get(name, 1))
    return re.sub(r"\{([a-z_]+)(?::[a-z]+)?\}", value, path)


async def test_unreviewed_instances_are_unreachable_by_panel_members_through_every_route(client, settings):
    from core.app import create_app
    from plugins.dicom_viewer.tables import Series, Study

    s = await home(client)
    await upload_ct(client, s)
    r = await upload(client, s, [("us.dcm", us_path().read_bytes())], headers=JSON)
    assert r.status_code == 201
    us = [i for i in await instances() if i["needs_review"]][0]
    series = await Series.select().where(Series.id == us["series"]).first()
    study = await Study.select().where(Study.id == series["study"]).first()
    ids = {
        "instance_id": us["id"], "series_id": series["id"], "study_id": study["id"], "pseudonym": s["patient"]["pseudonym"],
        "study": study["study_uid"], "series": series["series_uid"], "sop": us["sop_uid"], "frame": 0, "numbers": "1",
    }
    m = await panel_member(client, s)
    ids["panel_id"] = m["panel"]
    app = create_app(settings)
    paths = sorted({r.path for r in app.routes if r.path.startswith(("/dicom", "/dicomweb"))})
    assert len(paths) >= 20
    checked = 0
    answered: list[str] = []
    for path in paths:
        if "{" not in path:
            continue
        url = _fill(path, ids)
        resp = await client.get(url, headers={"Accept": "*/*"})
        body = resp.content
        if resp.status_code == 200:
            # Lists (panel section, QIDO searches) answer, without the unreviewed instance in them.
            assert us["sop_uid"].encode() not in body, url
            assert f"/dicom/instances/{us['id']}/".encode() not in body, url
            assert f"/dicom/series/{series['id']}/".encode() not in body, url
            answered.append(path)
        else:
            assert resp.status_code in (403, 404, 405), (url, resp.status_code)
        checked += 1
    assert checked >= 20
    # Only listings answer 200 (the panel section, QIDO searches, the patient's study list).
    assert answered and all(p.startswith("/dicom/panels/") or p.endswith(("/studies", "/series", "/instances"))
                            for p in answered), answered
    # Once reviewed, the same panel member sees it.
    await login(client, "home@example.org")
    from tests.conftest import post_form

    ok = await post_form(client, f"/dicom/instances/{us['id']}/review", {"rects": "", "confirm": "yes"})
    assert ok.status_code in (302, 303)
    await login(client, "expert@example.org")
    assert (await client.get(f"/dicom/instances/{us['id']}/frames/0/rendered")).status_code == 200
