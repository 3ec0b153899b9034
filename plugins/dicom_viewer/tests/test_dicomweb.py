"""DICOMweb with the real ``dicomweb_client.api.DICOMwebClient`` against the app served by uvicorn on
loopback (in the test's event loop), authenticated with the CPMS session cookie (and the CSRF header
for STOW-RS): QIDO-RS searches, WADO-RS retrieval (instances, metadata, frames, rendered), STOW-RS
through the de-identification pipeline, and the same permissions as the pages (panel members see
reviewed instances only, outsiders nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket

import httpx
import numpy as np
import pytest
import requests
from anyio import to_thread
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import dcmread

from plugins.dicom_viewer.tests.support import ct_paths, instances, multiframe_path, rows, us_path
from tests.conftest import login, make_user
from tests.panels_support import hcp_of, make_panel, make_patient


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def served(settings):
    import uvicorn

    from core.app import create_app

    app = create_app(settings)
    for hook in app.on_startup:
        await hook(app)
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        for hook in app.on_shutdown:
            await hook(app)


async def web_client(base: str, email: str, pseudonym: str) -> DICOMwebClient:
    """A DICOMwebClient on the patient's service root, with a logged-in session (cookie) and the CSRF
    header, exactly what a browser-based viewer on the same site would send."""
    async with httpx.AsyncClient(base_url=base) as c:
        r = await login(c, email)
        assert r.status_code in (302, 303), r.text[:200]
        cookies = dict(c.cookies)
    session = requests.Session()
    for k, v in cookies.items():
        session.cookies.set(k, v)
    session.headers["x-csrftoken"] = cookies.get("csrftoken", "")
    return DICOMwebClient(url=f"{base}/dicomweb/patients/{pseudonym}", session=session)


@pytest.fixture
async def world(clean_db, settings):
    hp = await make_user("home@example.org", hcp="Home Hospital")
    patient = await make_patient(await hcp_of(hp))
    async with served(settings) as base:
        yield {"hp": hp, "patient": patient, "base": base, "settings": settings}


async def _stow(w, datasets):
    client = await web_client(w["base"], "home@example.org", w["patient"]["pseudonym"])
    return client, await to_thread.run_sync(lambda: client.store_instances(datasets=datasets))


async def test_stow_qido_wado_roundtrip_with_dicomweb_client(world):
    w = world
    originals = [dcmread(p) for p in ct_paths()]
    client, response = await _stow(w, originals)
    refs = response.ReferencedSOPSequence
    assert len(refs) == 4 and "FailedSOPSequence" not in response
    new_uids = {str(r.ReferencedSOPInstanceUID) for r in refs}
    assert not new_uids & {str(d.SOPInstanceUID) for d in originals}  # de-identified: remapped UIDs
    assert (await rows())["instances"] == 4

    studies = await to_thread.run_sync(client.search_for_studies)
    assert len(studies) == 1
    study = studies[0]
    study_uid = study["0020000D"]["Value"][0]
    assert study["00100010"]["Value"][0]["Alphabetic"] == w["patient"]["pseudonym"]
    assert study["00201208"]["Value"] == [4] and study["00080061"]["Value"] == ["CT"]
    series = await to_thread.run_sync(lambda: client.search_for_series(study_uid))
    assert len(series) == 1 and series[0]["00080060"]["Value"] == ["CT"]
    series_uid = series[0]["0020000E"]["Value"][0]
    found = await to_thread.run_sync(lambda: client.search_for_instances(study_uid, series_uid))
    assert {i["00080018"]["Value"][0] for i in found} == new_uids
    limited = await to_thread.run_sync(lambda: client.search_for_instances(study_uid, series_uid, limit=2, offset=1))
    assert len(limited) == 2
    assert await to_thread.run_sync(lambda: client.search_for_studies(search_filters={"Modality": "MR"})) == []
    by_uid = await to_thread.run_sync(lambda: client.search_for_studies(search_filters={"StudyInstanceUID": study_uid}))
    assert len(by_uid) == 1

    sop = sorted(new_uids)[0]
    ds = await to_thread.run_sync(lambda: client.retrieve_instance(study_uid, series_uid, sop))
    assert str(ds.SOPInstanceUID) == sop and str(ds.PatientName) == w["patient"]["pseudonym"]
    assert ds.PatientIdentityRemoved == "YES" and "InstitutionName" not in ds
    whole = await to_thread.run_sync(lambda: client.retrieve_study(study_uid))
    assert len(whole) == 4 and {str(d.SOPInstanceUID) for d in whole} == new_uids
    in_series = await to_thread.run_sync(lambda: client.retrieve_series(study_uid, series_uid))
    assert len(in_series) == 4

    meta = await to_thread.run_sync(lambda: client.retrieve_study_metadata(study_uid))
    assert len(meta) == 4 and all("7FE00010" not in m for m in meta)
    assert all(m["00100020"]["Value"] == [w["patient"]["pseudonym"]] for m in meta)
    one = await to_thread.run_sync(lambda: client.retrieve_instance_metadata(study_uid, series_uid, sop))
    assert one["00080018"]["Value"] == [sop]

    frames = await to_thread.run_sync(lambda: client.retrieve_instance_frames(study_uid, series_uid, sop, frame_numbers=[1]))
    assert len(frames) == 1
    pixels = np.frombuffer(frames[0], dtype=ds.pixel_array.dtype).reshape(ds.Rows, ds.Columns)
    assert np.array_equal(pixels, ds.pixel_array)

    jpeg = await to_thread.run_sync(lambda: client.retrieve_instance_rendered(study_uid, series_uid, sop))
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    png = await to_thread.run_sync(lambda: client.retrieve_instance_frames_rendered(
        study_uid, series_uid, sop, frame_numbers=[1], media_types=("image/png",), params={"window": "40,80"}))
    assert Image.open(io.BytesIO(png)).format == "PNG"


async def test_stow_reports_duplicates_and_multiframe_frames(world):
    w = world
    client, first = await _stow(w, [dcmread(ct_paths()[0])])
    assert len(first.ReferencedSOPSequence) == 1
    # The same instance again and a new multi-frame: 202 with one failure (duplicate, 0x0111).
    mf = dcmread(multiframe_path())
    second = await to_thread.run_sync(lambda: client.store_instances(datasets=[dcmread(ct_paths()[0]), mf]))
    assert len(second.ReferencedSOPSequence) == 1 and len(second.FailedSOPSequence) == 1
    assert second.FailedSOPSequence[0].FailureReason == 0x0111
    ref = second.ReferencedSOPSequence[0]
    url = str(ref.RetrieveURL)
    study_uid, series_uid, sop = url.split("/studies/")[1].split("/series/")[0], url.split("/series/")[1].split("/instances/")[0], url.rsplit("/", 1)[1]
    got = await to_thread.run_sync(lambda: client.retrieve_instance_frames(study_uid, series_uid, sop, frame_numbers=[2, 5]))
    values = [np.frombuffer(f, dtype=np.uint16).reshape(32, 32)[5, 5] for f in got]
    assert values == [200, 500]  # the synthetic multi-frame holds 100 * frame number


async def test_dicomweb_follows_the_same_permissions(world):
    w = world
    client, _ = await _stow(w, [dcmread(p) for p in ct_paths()[:2]] + [dcmread(us_path())])
    assert len(await to_thread.run_sync(client.search_for_instances)) == 3
    us = [i for i in await instances() if i["needs_review"]][0]

    expert = await make_user("expert@example.org", hcp="Faraway Hospital")
    await make_panel(w["patient"], w["hp"], members=(expert,))
    member = await web_client(w["base"], "expert@example.org", w["patient"]["pseudonym"])
    seen = await to_thread.run_sync(member.search_for_instances)
    assert len(seen) == 2 and us["sop_uid"] not in {i["00080018"]["Value"][0] for i in seen}
    study_of_us = await to_thread.run_sync(lambda: client.search_for_instances(search_filters={"SOPInstanceUID": us["sop_uid"]}))
    st, se = study_of_us[0]["0020000D"]["Value"][0], study_of_us[0]["0020000E"]["Value"][0]
    with pytest.raises(requests.HTTPError) as exc:
        await to_thread.run_sync(lambda: member.retrieve_instance(st, se, us["sop_uid"]))
    assert exc.value.response.status_code == 404
    # A panel member may not add images.
    with pytest.raises(requests.HTTPError) as exc:
        await to_thread.run_sync(lambda: member.store_instances(datasets=[dcmread(ct_paths()[3])]))
    assert exc.value.response.status_code in (403, 404)

    await make_user("outsider@example.org", hcp="Elsewhere Hospital")
    outsider = await web_client(w["base"], "outsider@example.org", w["patient"]["pseudonym"])
    with pytest.raises(requests.HTTPError) as exc:
        await to_thread.run_sync(outsider.search_for_studies)
    assert exc.value.response.status_code == 404


async def test_bad_dicomweb_requests_are_clear_errors(world):
    w = world
    client, _ = await _stow(w, [dcmread(ct_paths()[0])])
    session = client._session
    root = f"{w['base']}/dicomweb/patients/{w['patient']['pseudonym']}"
    inst = (await instances())[0]
    found = await to_thread.run_sync(client.search_for_instances)
    st, se = found[0]["0020000D"]["Value"][0], found[0]["0020000E"]["Value"][0]
    base = f"{root}/studies/{st}/series/{se}/instances/{inst['sop_uid']}"

    def get(url, **kw):
        return session.get(url, headers={"Accept": kw.pop("accept", "*/*")}, **kw).status_code

    checks = await to_thread.run_sync(lambda: [
        get(f"{root}/studies?StudyInstanceUID=abc"), get(f"{root}/studies?limit=x"),
        get(f"{base}/frames/0"), get(f"{base}/frames/2"), get(f"{base}/frames/a,b"),
        get(f"{base}/frames/1", accept="image/jpeg"), get(f"{base}/rendered?window=40"),
        get(f"{root}/studies/1.2.3"), get(f"{base}/rendered", accept="application/pdf"),
    ])
    assert checks == [400, 400, 404, 404, 400, 406, 400, 404, 406]
    bad = await to_thread.run_sync(lambda: session.post(f"{root}/studies", data=b"hello",
                                                        headers={"Content-Type": "application/json"}))
    assert bad.status_code == 415
    junk = await to_thread.run_sync(lambda: session.post(
        f"{root}/studies", data=b"--XX\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--XX--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=XX'}))
    assert junk.status_code == 409 and junk.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC122]
    assert (await rows())["instances"] == 1


async def test_qido_uid_lists(world):
    w = world
    client, response = await _stow(w, [dcmread(p) for p in ct_paths()[:2]] + [dcmread(multiframe_path()),
                                                                             dcmread(us_path())])
    assert len(response.ReferencedSOPSequence) == 4
    studies = await to_thread.run_sync(client.search_for_studies)
    assert len(studies) == 3
    uids = sorted(s["0020000D"]["Value"][0] for s in studies)
    a, b = uids[:2]
    # dicomweb-client sends a list as the key repeated
    both = await to_thread.run_sync(lambda: client.search_for_studies(search_filters={"StudyInstanceUID": [a, b]}))
    assert sorted(s["0020000D"]["Value"][0] for s in both) == [a, b]
    session = client._session
    root = f"{w['base']}/dicomweb/patients/{w['patient']['pseudonym']}"

    def get(query: str):
        return session.get(f"{root}/{query}", headers={"Accept": "application/dicom+json"})

    for query in (f"studies?StudyInstanceUID={a},{b}", f"studies?0020000D={a}%2C{b}", f"studies?StudyInstanceUID={a}%5C{b}",
                  f"studies?StudyInstanceUID={a}&StudyInstanceUID={b}"):
        got = await to_thread.run_sync(lambda: get(query))
        assert got.status_code == 200, (query, got.text[:200])
        assert sorted(s["0020000D"]["Value"][0] for s in got.json()) == [a, b], query
    sops = [i["sop_uid"] for i in await instances()][:3]
    got = await to_thread.run_sync(lambda: get(f"instances?SOPInstanceUID={','.join(sops)}"))
    assert got.status_code == 200 and sorted(i["00080018"]["Value"][0] for i in got.json()) == sorted(sops)
    # every element is checked
    for query in (f"studies?StudyInstanceUID={a},abc", f"studies?StudyInstanceUID={a},{b}*", "series?SeriesInstanceUID=1.2,x"):
        bad = await to_thread.run_sync(lambda: get(query))
        assert bad.status_code == 400, query


def _damaged_two_frame_jpeg():
    """A real JPEG baseline instance made two-frame, its second frame cut short: the first decodes,
    the second cannot."""
    from pydicom.data import get_testdata_file
    from pydicom.encaps import encapsulate, generate_frames

    ds = dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame, frame[:200] + b"\0" * 50])
    ds.NumberOfFrames = 2
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1234567890.2"
    return ds


async def test_wado_frames_that_cannot_be_decoded_are_a_clear_error_before_any_part(world):
    from pydicom.data import get_testdata_file

    w = world
    jpeg12 = dcmread(get_testdata_file("JPEG-lossy.dcm"))  # 12-bit JPEG Extended: no decoder here
    client, response = await _stow(w, [jpeg12, _damaged_two_frame_jpeg()])
    assert len(response.ReferencedSOPSequence) == 2, response
    inst = {i["frames"]: i for i in await instances()}
    session = client._session
    root = f"{w['base']}/dicomweb/patients/{w['patient']['pseudonym']}"
    # (the RetrieveURL's host is the one the client sent: keep its path only)
    by_sop = {str(ref.ReferencedSOPInstanceUID): root + "/studies/" + str(ref.RetrieveURL).split("/studies/", 1)[1]
              for ref in response.ReferencedSOPSequence}
    single, double = by_sop[inst[1]["sop_uid"]], by_sop[inst[2]["sop_uid"]]
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'

    def get(url):
        return session.get(url, headers={"Accept": accept})

    for url, frame in ((f"{single}/frames/1", 1), (f"{double}/frames/1,2", 2), (f"{double}/frames/2", 2)):
        got = await to_thread.run_sync(lambda: get(url))
        assert got.status_code == 406, (url, got.status_code, got.content[:200])
        assert got.headers["content-type"].startswith("application/problem+json")
        problem = got.json()
        assert problem["frame"] == frame and f"Frame {frame} " in problem["detail"], problem
    # the frame that decodes is served as before
    ok = await to_thread.run_sync(lambda: get(f"{double}/frames/1"))
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("multipart/related")
    # and dicomweb-client sees an error, not a short list of frames
    st, se, sop = double.split("/studies/")[1].split("/series/")[0], double.split("/series/")[1].split("/instances/")[0], double.rsplit("/", 1)[1]
    with pytest.raises(requests.HTTPError) as exc:
        await to_thread.run_sync(lambda: client.retrieve_instance_frames(st, se, sop, frame_numbers=[1, 2]))
    assert exc.value.response.status_code == 406
    got = await to_thread.run_sync(lambda: client.retrieve_instance_frames(st, se, sop, frame_numbers=[1]))
    assert len(got) == 1 and len(got[0]) == 100 * 100 * 3
