"""Uploads through the HTTP app: streamed and plain form posts, ZIP studies, many files, per-file
results (not DICOM, damaged, duplicate), ZIP path traversal refused, the burned-in gate, one
transaction per upload (a failure leaves no rows and no files), and consistent UIDs and dates."""

from __future__ import annotations

import io
import zipfile

from pydicom import dcmread

from plugins.dicom_viewer import store
from plugins.dicom_viewer.tests.support import (
    HX, JSON, cr_path, ct_paths, ct_zip, home, instances, multiframe_path, rows, stored_files, upload, upload_ct, us_path,
)


async def test_zip_study_is_stored_deidentified_with_per_file_results(client, settings):
    s = await home(client)
    before = set(stored_files(settings))
    body = await upload_ct(client, s)
    assert body["stored"] == 4 and body["counts"] == {"ok": 4}
    assert [r["status"] for r in body["results"]] == ["ok"] * 4
    assert all(r["name"].startswith("STUDY/ct_") for r in body["results"])
    assert await rows() == {"studies": 1, "series": 1, "instances": 4, "uploads": 1}
    assert len(set(stored_files(settings)) - before) == 4
    inst = await instances()
    assert [i["number"] for i in inst] == [1, 2, 3, 4] or len({i["number"] for i in inst}) == 4
    assert all(i["rows"] == 64 and i["columns"] == 64 and i["frames"] == 1 and not i["needs_review"] for i in inst)
    assert all(i["sop_uid"].startswith("2.25.") for i in inst)
    ds = await store.dataset(inst[0], settings)
    assert str(ds.PatientName) == s["patient"]["pseudonym"] == ds.PatientID
    assert ds.PatientIdentityRemoved == "YES"
    original = dcmread(ct_paths()[0], stop_before_pixels=True)
    assert ds.StudyDate != original.StudyDate and len(ds.StudyDate) == 8
    # The stored upload results keep positions and outcomes, never the browser's file names.
    from plugins.dicom_viewer.tables import Upload

    stored = (await Upload.select().first())["results"]
    assert "STUDY/ct_" not in str(stored) and '"n": 1' in str(stored)


async def test_many_files_and_bad_ones_are_reported_without_failing_the_batch(client, settings):
    s = await home(client)
    good = [(p.name, p.read_bytes()) for p in ct_paths()[:2]]
    truncated = ct_paths()[2].read_bytes()[:-2000]
    r = await upload(client, s, [*good, ("notes.txt", b"not an image at all" * 20), ("cut.dcm", truncated),
                                 ("again.dcm", good[0][1])], headers=JSON)
    assert r.status_code == 201, r.text
    by_name = {x["name"]: x["status"] for x in r.json()["results"]}
    assert by_name["notes.txt"] == "not-dicom" and by_name["cut.dcm"] == "corrupt"
    assert by_name[good[1][0]] == "ok"
    # The same instance twice in one upload: one is stored, the other reported as a duplicate.
    assert sorted([by_name[good[0][0]], by_name["again.dcm"]]) == ["duplicate", "ok"]
    assert (await rows())["instances"] == 2


async def test_second_upload_of_the_same_study_is_duplicate_and_joins_the_study(client):
    s = await home(client)
    paths = ct_paths()
    r1 = await upload(client, s, [(paths[0].name, paths[0].read_bytes())], headers=JSON)
    assert r1.status_code == 201
    r2 = await upload(client, s, [(p.name, p.read_bytes()) for p in paths], headers=JSON)
    assert r2.status_code == 201
    assert [x["status"] for x in r2.json()["results"]] == ["duplicate", "ok", "ok", "ok"]
    assert (await rows())["studies"] == 1 and (await rows())["series"] == 1 and (await rows())["instances"] == 4
    r3 = await upload(client, s, [(paths[1].name, paths[1].read_bytes())], headers=JSON)
    assert r3.status_code == 422 and r3.json()["stored"] == 0


async def test_plain_form_post_redirects_to_the_results_page(client):
    s = await home(client)
    r = await upload(client, s, [("study.zip", ct_zip())], stream=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/dicom/uploads/")
    page = await client.get(r.headers["location"])
    assert page.status_code == 200 and page.text.count("stored (de-identified)") == 4
    # htmx post gets the re-rendered section with the results
    paths = ct_paths(2, 32)
    r = await upload(client, s, [(p.name, p.read_bytes()) for p in paths], headers=HX)
    assert r.status_code == 200 and 'id="dicom-section"' in r.text and 'id="dicom-results"' in r.text


async def test_zip_with_path_traversal_is_refused_and_nothing_is_stored(client, settings):
    s = await home(client)
    before = set(stored_files(settings))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../evil.dcm", ct_paths()[0].read_bytes())
        zf.writestr("ok.dcm", ct_paths()[1].read_bytes())
    r = await upload(client, s, [("evil.zip", buf.getvalue())], headers=JSON)
    assert r.status_code == 422
    assert r.json()["results"][0]["status"] == "refused" and ".." in r.json()["results"][0]["message"]
    assert (await rows())["instances"] == 0 and set(stored_files(settings)) == before


async def test_empty_and_malformed_uploads_are_clear_errors(client):
    s = await home(client)
    r = await upload(client, s, [("empty.dcm", b"")], headers=JSON)
    assert r.status_code == 400 and "Choose" in r.json()["detail"]
    r = await client.post(f"{s['base']}/uploads", content=b"xx", headers={**JSON, "x-csrftoken": client.cookies.get("csrftoken", ""),
                                                                           "content-type": "text/plain"})
    assert r.status_code in (400, 403)
    assert await rows() == {"studies": 0, "series": 0, "instances": 0, "uploads": 0}


async def test_a_failure_while_writing_rows_leaves_no_rows_and_no_files(client, settings, monkeypatch):
    s = await home(client)
    before = set(stored_files(settings))
    from plugins.dicom_viewer.tables import Upload

    async def broken_save(self, *a, **kw):
        raise RuntimeError("disk full")

    # The last write of the transaction fails: the studies, series and instances written before roll back.
    monkeypatch.setattr(Upload, "save", broken_save)
    r = await upload(client, s, [("study.zip", ct_zip(3, 48))], headers=JSON)
    assert r.status_code == 500
    monkeypatch.undo()
    assert await rows() == {"studies": 0, "series": 0, "instances": 0, "uploads": 0}
    assert set(stored_files(settings)) == before
    assert not any((settings.data_dir / "dicom-incoming").iterdir())


async def test_burned_in_gate_and_other_modalities(client, settings):
    s = await home(client)
    r = await upload(client, s, [("us.dcm", us_path().read_bytes()), ("mf.dcm", multiframe_path().read_bytes()),
                                 ("cr.dcm", cr_path().read_bytes())], headers=JSON)
    assert r.status_code == 201, r.text
    inst = {i["sop_class"]: i for i in await instances()}
    assert inst["1.2.840.10008.5.1.4.1.1.6.1"]["needs_review"] is True  # ultrasound, no BurnedInAnnotation
    mf = inst["1.2.840.10008.5.1.4.1.1.7.3"]
    from plugins.dicom_viewer import deid

    assert mf["frames"] == 6 and mf["needs_review"] is deid.needs_pixel_review(dcmread(multiframe_path()))
    assert inst["1.2.840.10008.5.1.4.1.1.1"]["needs_review"] is False  # CR
    assert (await rows())["studies"] == 3


async def test_uids_and_dates_are_consistent_per_patient_and_differ_between_patients(client, settings):
    s = await home(client)
    await upload_ct(client, s)
    first = await instances(s["patient"]["id"])
    from tests.panels_support import hcp_of, make_patient

    other = await make_patient(await hcp_of(s["hp"]))
    r = await upload(client, {"base": f"/dicom/patients/{other['pseudonym']}"}, [("study.zip", ct_zip())], headers=JSON)
    assert r.status_code == 201
    second = await instances(other["id"])
    # Same site key: the same original UIDs map to the same new ones, across patients too.
    assert {i["sop_uid"] for i in first} == {i["sop_uid"] for i in second}
    a = await store.dataset(first[0], settings)
    b = await store.dataset(second[0], settings)
    assert a.StudyInstanceUID == b.StudyInstanceUID
    # ... but each patient's dates shift by their own offset.
    assert store.day_offset(store.site_key(settings)[1], s["patient"]["pseudonym"]) != store.day_offset(
        store.site_key(settings)[1], other["pseudonym"]) or a.StudyDate == b.StudyDate


async def test_upload_needs_the_permission_and_the_hospital(client):
    s = await home(client)
    from tests.conftest import login, make_user

    await make_user("far@example.org", hcp="Faraway Hospital")
    await login(client, "far@example.org")
    r = await upload(client, s, [("study.zip", ct_zip())], headers=JSON)
    assert r.status_code == 404
    assert (await rows())["instances"] == 0
