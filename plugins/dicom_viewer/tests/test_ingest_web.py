"""Uploads through the HTTP app: streamed and plain form posts, ZIP studies, many files, per-file
results (not DICOM, damaged, duplicate), ZIP path traversal refused, the burned-in gate, one
transaction per upload (a failure leaves no rows and no files), and consistent UIDs and dates."""

from __future__ import annotations

import io
import json
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


# --- the upload folders (original, identifying files) never outlive their upload --------------------


def _age(path, seconds: float) -> None:
    """Make ``path`` and everything in it look untouched for ``seconds``."""
    import os
    import time

    then = time.time() - seconds
    for p in [*path.rglob("*"), path]:
        os.utime(p, (then, then), follow_symlinks=False)


async def test_upload_folders_left_by_a_killed_process_are_swept(client, settings):
    incoming = settings.data_dir / "dicom-incoming"
    incoming.mkdir(exist_ok=True)
    stale = incoming / f"{store.INCOMING}0123456789abcdef"
    (stale / "in" / "CD").mkdir(parents=True)
    (stale / "in" / "CD" / "Fenwick^Quirinus.dcm").write_bytes(ct_paths()[0].read_bytes())
    _age(stale, 2 * 3600)
    # A long upload in progress: its folder is old, but a file deep inside was written just now.
    live = incoming / f"{store.INCOMING}fedcba9876543210"
    (live / "in").mkdir(parents=True)
    (live / "in" / "big.zip").write_bytes(b"PK")
    _age(live, 2 * 3600)
    (live / "in" / "big.zip").write_bytes(b"PK\3\4")
    young = incoming / f"{store.INCOMING}00000000ffffffff"
    (young / "in").mkdir(parents=True)
    _age(young, 600)
    try:
        s = await home(client)
        await upload_ct(client, s, 2, 32)
        assert not stale.exists()
        assert live.exists() and young.exists()
        assert sorted(p.name for p in incoming.iterdir()) == sorted([live.name, young.name])
        assert store.sweep_incoming(settings, older_than=0) == 2
        assert not any(incoming.iterdir())
    finally:
        for folder in (stale, live, young):
            store.discard(folder)


async def test_a_cancelled_upload_leaves_no_folder_behind(client, settings):
    import anyio

    s = await home(client)
    incoming = settings.data_dir / "dicom-incoming"
    before = set(incoming.iterdir()) if incoming.exists() else set()
    from tests.conftest import csrf_of

    boundary = "cpmsboundary7f3a"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"Fenwick_Quirinus.dcm\"\r\n"
            f"Content-Type: application/dicom\r\n\r\n").encode()
    data = ct_paths()[0].read_bytes()
    seen = []

    with anyio.CancelScope() as scope:
        async def body():
            yield head + data[:4000]
            # The server asks for more: it has made the upload's folder and begun the file. Then the
            # request is cancelled (the client went away, the server stops) while it waits.
            seen.extend(p for p in incoming.glob(f"{store.INCOMING}*/in/*") if p.parent.parent not in before)
            scope.cancel()
            await anyio.sleep_forever()
            yield b""  # pragma: no cover

        await client.post(f"{s['base']}/uploads", content=body(), headers={
            **JSON, "x-csrftoken": csrf_of(client), "content-type": f"multipart/form-data; boundary={boundary}"})
    assert scope.cancelled_caught
    assert seen, "the upload had begun"
    assert set(incoming.iterdir()) == before
    assert await rows() == {"studies": 0, "series": 0, "instances": 0, "uploads": 0}


# --- stored results name no file -------------------------------------------------------------------

SECRET = "Fenwick^Quirinus_MRN-4471"
SECRET_PARTS = ("Fenwick", "Quirinus", "4471")


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


async def test_stored_results_and_the_results_page_carry_no_file_name(client, settings):
    from plugins.dicom_viewer.tables import Upload

    s = await home(client)
    ct = [p.read_bytes() for p in ct_paths()]
    study = _zip({f"{SECRET}/IM-{SECRET}-1.dcm": ct[0], f"{SECRET}/IM-{SECRET}-1-copy.dcm": ct[0],
                  f"{SECRET}/notes-{SECRET}.txt": b"not an image" * 10}, zipfile.ZIP_STORED)
    # A member whose bytes were damaged: zipfile's error quotes its name.
    damaged = _zip({f"{SECRET}/ok.dcm": ct[1], f"{SECRET}/damaged-{SECRET}.dcm": ct[2]}, zipfile.ZIP_STORED)
    at = damaged.find(f"damaged-{SECRET}.dcm".encode()) + 200
    damaged = damaged[:at] + bytes([damaged[at] ^ 0xFF]) + damaged[at + 1:]
    refused = _zip({f"ok-{SECRET}.dcm": ct[3], f"../{SECRET}.dcm": ct[3]})
    items = [(f"{SECRET}.zip", study), (f"damaged-{SECRET}.zip", damaged), (f"evil-{SECRET}.zip", refused),
             (f"{SECRET}.dcm", ct[3]), (f"copy of {SECRET}.dcm", ct[3]), (f"again-{SECRET}.dcm", ct[0]),
             (f"{SECRET}-cut.dcm", ct[2][:-3000])]
    for stream in (True, False):
        r = await upload(client, s, items, stream=stream, headers=JSON)
        assert r.status_code in (201, 422), r.text[:500]
        results = r.json()["results"]
        by_status = [x["status"] for x in results]
        if stream:  # the first time: 3 stored (ct0, ct1, ct3), the rest reported
            assert r.json()["stored"] == 3
            assert by_status.count("duplicate") == 3 and "refused" in by_status and "corrupt" in by_status
            messages = [x["message"] for x in results]
            # duplicates say which file by position
            assert "same SOP Instance UID as file 1" in messages
            assert any(m.startswith("same SOP Instance UID as file ") and m != "same SOP Instance UID as file 1"
                       for m in messages)
            assert any(m.startswith("ZIP refused: member 2 escapes") for m in messages)
            assert any("Bad CRC-32" in m for m in messages)
        for x in results:  # shown now with their names, but the messages quote none
            assert not any(part in x["message"] for part in SECRET_PARTS), x
    stored = [u["results"] for u in await Upload.select(Upload.results).order_by(Upload.id)]
    assert len(stored) == 2
    text = " ".join(json.dumps(u) if not isinstance(u, str) else u for u in stored)
    assert "same SOP Instance UID as file" in text and "ZIP refused" in text
    for part in (*SECRET_PARTS, ".zip", ".dcm", ".txt"):
        assert part not in text, part
    for u in await Upload.select(Upload.id):
        page = await client.get(f"/dicom/uploads/{u['id']}")
        assert page.status_code == 200 and "same SOP Instance UID as file" in page.text
        for part in SECRET_PARTS:
            assert part not in page.text, part
    section = await client.get(s["base"])
    assert section.status_code == 200 and not any(part in section.text for part in SECRET_PARTS)


async def test_instances_are_never_committed_without_their_audit_entry(client, settings, monkeypatch):
    """Rows of an upload and its audit entry share one transaction: if the audit entry cannot be
    written, no study, series, instance or upload row stays, and the stored files are removed."""
    from tests.support.failing import break_audit_trail, stored_file_names
    from plugins.dicom_viewer.tests.support import ct_zip, home, rows, upload

    s = await home(client)
    break_audit_trail(monkeypatch)
    files_before = stored_file_names(settings)
    try:
        await upload(client, s, [("study.zip", ct_zip(3, 32))])
    except RuntimeError:
        pass
    assert all(n == 0 for n in (await rows()).values()), await rows()
    # nothing new stays (a file of earlier tests with the same content, no row using it, may go too)
    assert stored_file_names(settings) <= files_before
    monkeypatch.undo()
    r = await upload(client, s, [("study.zip", ct_zip(3, 32))])
    assert r.status_code in (201, 303) and (await rows())["instances"] == 3
