"""The imaging pages and routes through the HTTP app: patient section with thumbnails, upload form,
rendered frames (parameters, formats, ETag/304, cache, bad input), series JSON, the review gate with
masking, the panel section, study and report pages, deletion, erasure, GDPR export, audit, demo."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from plugins.dicom_viewer import frames, store
from plugins.dicom_viewer.tests.support import (
    HX, JSON, ct_zip, home, instances, panel_member, rows, stored_files, upload, upload_ct, us_path,
)
from tests.conftest import login, post_form


async def test_patient_section_lists_studies_with_thumbnails_and_upload_form(client):
    s = await home(client)
    await upload_ct(client, s)
    inst = await instances()
    r = await client.get(s["base"], headers=HX)
    assert r.status_code == 200 and "<html" not in r.text
    assert 'id="dicom-upload-form"' in r.text and 'id="dicom-upload-progress"' in r.text and "webkitdirectory" in r.text
    series_id = inst[0]["series"]
    assert f'href="/dicom/series/{series_id}/view"' in r.text
    assert f'/dicom/instances/{inst[2]["id"]}/thumbnail.jpg' in r.text  # the middle image
    assert "4 images" in r.text and "64 × 64" in r.text
    full = await client.get(s["base"])
    assert full.status_code == 200 and "<html" in full.text
    assert (await client.get(s["base"] + "/upload")).status_code == 200
    thumb = await client.get(f'/dicom/instances/{inst[2]["id"]}/thumbnail.jpg')
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (64, 64)


async def test_section_is_offered_on_patient_and_panel_pages(client):
    s = await home(client)
    page = await client.get(f"/patients/{s['patient']['pseudonym']}")
    assert page.status_code == 200 and f"/dicom/patients/{s['patient']['pseudonym']}" in page.text


async def test_rendered_frame_parameters_formats_and_etag(client):
    s = await home(client)
    await upload_ct(client, s)
    iid = (await instances())[0]["id"]
    url = f"/dicom/instances/{iid}/frames/0/rendered"
    png = await client.get(url)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    etag = png.headers["etag"]
    assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 304
    img = np.asarray(Image.open(io.BytesIO(png.content)))
    assert img.shape == (64, 64)
    bone = np.asarray(Image.open(io.BytesIO((await client.get(url + "?preset=bone")).content)))
    narrow = np.asarray(Image.open(io.BytesIO((await client.get(url + "?wc=40&ww=80")).content)))
    inverted = np.asarray(Image.open(io.BytesIO((await client.get(url + "?wc=40&ww=80&invert=1")).content)))
    assert not np.array_equal(bone, narrow)
    assert np.array_equal(inverted.astype(int), 255 - narrow.astype(int))
    for fmt, ctype in (("jpeg", "image/jpeg"), ("webp", "image/webp")):
        r = await client.get(f"{url}?format={fmt}&quality=70")
        assert r.status_code == 200 and r.headers["content-type"] == ctype
        assert r.headers["etag"] != etag
    hits = frames.stats()["hits"]
    again = await client.get(url + "?preset=bone")
    assert again.status_code == 200 and frames.stats()["hits"] == hits + 1


async def test_bad_frame_requests_are_clear_and_never_500(client):
    s = await home(client)
    await upload_ct(client, s)
    iid = (await instances())[0]["id"]
    base = f"/dicom/instances/{iid}/frames"
    cases = {
        f"{base}/0/rendered?wc=40": 422, f"{base}/0/rendered?wc=40&ww=0": 422, f"{base}/0/rendered?ww=abc&wc=1": 422,
        f"{base}/0/rendered?preset=nope": 422, f"{base}/0/rendered?format=gif": 422, f"{base}/0/rendered?invert=maybe": 422,
        f"{base}/0/rendered?format=jpeg&quality=500": 422, f"{base}/1/rendered": 404, f"{base}/-1/rendered": 404,
        f"/dicom/instances/999999/frames/0/rendered": 404, "/dicom/instances/999999/thumbnail.jpg": 404,
        "/dicom/series/999999/instances": 404, "/dicom/studies/999999": 404, "/dicom/studies/999999/report": 404,
        "/dicom/instances/999999/review": 404, "/dicom/uploads/999999": 404, "/dicom/patients/PNOSUCHPATIENT": 404,
    }
    for url, status in cases.items():
        r = await client.get(url, headers=JSON)
        assert r.status_code == status, (url, r.status_code, r.text[:200])


async def test_series_json_lists_instances_for_the_viewer(client):
    s = await home(client)
    await upload_ct(client, s)
    inst = await instances()
    r = await client.get(f"/dicom/series/{inst[0]['series']}/instances")
    assert r.status_code == 200
    body = r.json()
    assert [i["id"] for i in body["instances"]] == [i["id"] for i in sorted(inst, key=lambda i: (i["number"], i["id"]))]
    first = body["instances"][0]
    assert first["rows"] == 64 and first["frames"] == 1 and first["spacing"] and len(first["window"]) == 2
    assert body["presets"]["bone"] == [300, 1500] and body["series"]["modality"] == "CT"


async def _with_us_and_ct(client):
    s = await home(client)
    await upload_ct(client, s)
    r = await upload(client, s, [("us.dcm", us_path().read_bytes())], headers=JSON)
    assert r.status_code == 201
    us = [i for i in await instances() if i["needs_review"]][0]
    return s, us


async def test_review_gate_hides_unreviewed_images_from_panel_members_until_reviewed(client, settings):
    s, us = await _with_us_and_ct(client)
    section = await client.get(s["base"], headers=HX)
    assert f'/dicom/instances/{us["id"]}/review' in section.text and "Waiting for review (1)" in section.text
    m = await panel_member(client, s)
    # A panel member: the CT is visible, the ultrasound is not, through any route.
    ct = [i for i in await instances() if not i["needs_review"]][0]
    assert (await client.get(f"/dicom/instances/{ct['id']}/frames/0/rendered")).status_code == 200
    for url in (f"/dicom/instances/{us['id']}/frames/0/rendered", f"/dicom/instances/{us['id']}/thumbnail.jpg",
                f"/dicom/series/{us['series']}/instances", f"/dicom/instances/{us['id']}/review"):
        assert (await client.get(url)).status_code in (403, 404), url
    panel = await client.get(f"/dicom/panels/{m['panel']}")
    assert panel.status_code == 200 and f"/dicom/series/{ct['series']}/view" in panel.text
    assert f"/dicom/series/{us['series']}/view" not in panel.text
    # Back home: review with a mask over the name banner (5, 5, 115 x 20 in the synthetic image).
    await login(client, "home@example.org")
    bad = await post_form(client, f"/dicom/instances/{us['id']}/review", {"rects": "5 5 115", "confirm": "yes"})
    assert bad.status_code == 422 and "four whole numbers" in bad.text
    outside = await post_form(client, f"/dicom/instances/{us['id']}/review", {"rects": "300 200 100 100", "confirm": "yes"})
    assert outside.status_code == 422 and "leaves the image" in outside.text
    unconfirmed = await post_form(client, f"/dicom/instances/{us['id']}/review", {"rects": "5 5 115 20"})
    assert unconfirmed.status_code == 422
    assert (await instances())[-1]["needs_review"] is True
    ok = await post_form(client, f"/dicom/instances/{us['id']}/review", {"rects": "5 5 115 20", "confirm": "yes"})
    assert ok.status_code in (302, 303), ok.text[:300]
    row = [i for i in await instances() if i["id"] == us["id"]][0]
    assert row["needs_review"] is False and json.loads(row["masked"]) == [[5, 5, 115, 20]]
    assert row["file_key"] != us["file_key"]
    ds = await store.dataset(row, settings)
    assert ds.BurnedInAnnotation == "NO" and "113101" in [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert int(ds.pixel_array[5:25, 5:120].max()) == 0 and int(ds.pixel_array[30:40, 130:140].max()) > 0
    # Now the panel member sees it.
    await login(client, "expert@example.org")
    assert (await client.get(f"/dicom/instances/{us['id']}/frames/0/rendered")).status_code == 200


async def test_review_needs_the_review_permission_and_the_hospital(client):
    s, us = await _with_us_and_ct(client)
    from tests.conftest import make_user

    await make_user("assistant@example.org", roles=(("assistant", "ERN RND"),), hcp="Home Hospital")
    await login(client, "assistant@example.org")
    r = await post_form(client, f"/dicom/instances/{us['id']}/review", {"rects": "", "confirm": "yes"})
    assert r.status_code in (403, 404)
    assert [i for i in await instances() if i["id"] == us["id"]][0]["needs_review"] is True


async def test_study_page_report_and_panel_member_view(client):
    s = await home(client)
    body = await upload_ct(client, s)
    study_url = body["studies"][0]
    page = await client.get(study_url)
    assert page.status_code == 200 and "CT" in page.text and "/report" in page.text
    report = await client.get(study_url + "/report")
    assert report.status_code == 200 and "PatientName" in report.text and "replaced" in report.text
    assert "InstitutionName" in report.text and "AccessionNumber" in report.text
    await panel_member(client, s)
    assert (await client.get(study_url)).status_code == 200
    assert (await client.get(study_url + "/delete")).status_code in (403, 404)
    assert (await client.get(s["base"])).status_code == 404


async def test_outsider_and_invited_but_not_accepted_see_nothing(client):
    s = await home(client)
    body = await upload_ct(client, s)
    iid = (await instances())[0]["id"]
    await panel_member(client, s, accepted=False)
    for url in (body["studies"][0], f"/dicom/instances/{iid}/frames/0/rendered", f"/dicom/instances/{iid}/thumbnail.jpg"):
        assert (await client.get(url)).status_code == 404, url


async def test_delete_study_removes_rows_and_files(client, settings):
    s = await home(client)
    before = set(stored_files(settings))
    body = await upload_ct(client, s)
    study_id = int(body["studies"][0].rsplit("/", 1)[1])
    assert (await client.get(f"/dicom/studies/{study_id}/delete")).status_code == 200
    r = await post_form(client, f"/dicom/studies/{study_id}/delete", {})
    assert r.status_code == 422 and (await rows())["instances"] == 4
    r = await post_form(client, f"/dicom/studies/{study_id}/delete", {"confirm": "yes"})
    assert r.status_code in (302, 303)
    assert (await rows())["instances"] == 0 and set(stored_files(settings)) == before


async def test_erasure_and_gdpr_export(client, settings):
    s = await home(client)
    before = set(stored_files(settings))
    await upload_ct(client, s)
    exported = await store.export_for_gdpr(s["patient"]["id"])
    assert len(exported["studies"]) == 1 and len(exported["studies"][0]["series"][0]["instances"]) == 4
    assert "kid" not in exported["studies"][0]["deidentification_report"]
    json.dumps(exported, default=str)
    assert await store.erase(s["patient"]["pseudonym"]) == 4
    assert await rows() == {"studies": 0, "series": 0, "instances": 0, "uploads": 0}
    assert set(stored_files(settings)) == before


async def test_reads_are_audited(client):
    from core.audit.tables import AuditEntry

    s = await home(client)
    body = await upload_ct(client, s)
    await client.get(body["studies"][0])
    actions = [r["action"] for r in await AuditEntry.select(AuditEntry.action)]
    assert "dicom.upload" in actions and "dicom.study" in actions


async def test_demo_loads_a_ct_series_for_the_first_patient(client, settings):
    from core.patients.tables import Patient
    from plugins.dicom_viewer import demo

    s = await home(client)

    class Ctx:
        extra = {"patients": [s["patient"]["pseudonym"]]}
        users = {"hp": s["hp"]}

    Ctx.settings = settings
    await demo.load(Ctx)
    assert (await rows())["instances"] == demo.SLICES
    assert all(not i["needs_review"] for i in await instances())
    assert await Patient.count() == 1


async def test_deletion_and_erasure_drop_every_cached_frame_and_dataset(client, settings):
    """Rendered frames, thumbnails and decrypted datasets of a deleted study or an erased patient are
    gone from memory at once; other patients' stay."""
    from core.events import Event
    from plugins.dicom_viewer import access, handle_event
    from tests.panels_support import hcp_of, make_patient

    s = await home(client)
    patients = [s["patient"], await make_patient(await hcp_of(s["hp"])), await make_patient(await hcp_of(s["hp"]))]
    by_patient = {}
    for patient in patients:
        r = await upload(client, {"base": f"/dicom/patients/{patient['pseudonym']}"}, [("s.zip", ct_zip(2, 32))],
                         headers=JSON)
        assert r.status_code == 201, r.text[:300]
        by_patient[patient["id"]] = await instances(patient["id"])
        for inst in by_patient[patient["id"]]:
            assert (await client.get(f"/dicom/instances/{inst['id']}/frames/0/rendered?format=jpeg")).status_code == 200
            assert (await client.get(f"/dicom/instances/{inst['id']}/thumbnail.jpg")).status_code == 200
            await store.dataset(inst, settings)
    every = [i for rows_ in by_patient.values() for i in rows_]
    assert {i["id"] for i in every} <= frames.cached_instances()
    assert {i["file_key"] for i in every} <= store.cached_datasets()
    assert access._cache

    def traces(rows_) -> tuple[set, set, list]:
        ids, keys = {i["id"] for i in rows_}, {i["file_key"] for i in rows_}
        rendered = [k for k, (_, i) in frames._rendered.items.items() if i in ids or k[0] in keys]
        return ids & frames.cached_instances(), keys & store.cached_datasets(), rendered

    # Deleting a study (the store's own function, whatever route calls it).
    from plugins.dicom_viewer.tables import Study

    study = await Study.select().where(Study.patient == patients[0]["id"]).first()
    await store.delete_study(settings, study)
    assert traces(by_patient[patients[0]["id"]]) == (set(), set(), [])
    # Erasing a patient (the core's event).
    await handle_event(Event("patient.erased", None, "patient", patients[1]["pseudonym"]))
    assert traces(by_patient[patients[1]["id"]]) == (set(), set(), [])
    assert not access._cache
    # The third patient's entries are still there.
    third = by_patient[patients[2]["id"]]
    assert {i["id"] for i in third} <= frames.cached_instances()
    assert {i["file_key"] for i in third} <= store.cached_datasets()


async def test_an_image_that_cannot_be_shown_cannot_be_released(client, settings):
    """A 12-bit JPEG Extended secondary capture (pydicom's JPEG-lossy.dcm): waiting for review, but no
    decoder here, so the reviewer cannot see it: the review page says so and offers to keep it private
    or delete the study; releasing it is refused (409), masked or not."""
    from pydicom.data import get_testdata_file

    s = await home(client)
    r = await upload(client, s, [("sc.dcm", open(get_testdata_file("JPEG-lossy.dcm"), "rb").read()),
                                 ("us.dcm", us_path().read_bytes())], headers=JSON)
    assert r.status_code == 201 and r.json()["stored"] == 2, r.text[:300]
    sc = [i for i in await instances() if i["transfer_syntax"] == "1.2.840.10008.1.2.4.51"][0]
    us = [i for i in await instances() if i["id"] != sc["id"]][0]
    assert sc["needs_review"] and us["needs_review"]
    page = await client.get(f"/dicom/instances/{sc['id']}/review")
    assert page.status_code == 200
    assert "cannot be shown here" in page.text and "JPEG Extended" in page.text
    assert 'id="dicom-keep-private"' in page.text
    from plugins.dicom_viewer.tables import Series

    study_id = (await Series.select(Series.study).where(Series.id == sc["series"]).first())["study"]
    assert 'id="dicom-delete-study"' in page.text and f'href="/dicom/studies/{study_id}/delete"' in page.text
    assert (await client.get(f"/dicom/studies/{study_id}/delete")).status_code == 200
    assert 'id="dicom-review-form"' not in page.text and "frames/0/rendered" not in page.text
    for form in ({"rects": "", "confirm": "yes"}, {"rects": "0 0 10 10", "confirm": "yes"}, {"rects": ""}):
        refused = await post_form(client, f"/dicom/instances/{sc['id']}/review", form)
        assert refused.status_code == 409, (form, refused.status_code)
        assert "Not released to panels" in refused.text and "cannot be shown" in refused.text
    row = [i for i in await instances() if i["id"] == sc["id"]][0]
    assert row["needs_review"] is True and row["file_key"] == sc["file_key"] and row["reviewed_by"] is None
    # the store refuses too, whoever calls it
    import pytest

    with pytest.raises(store.Unviewable):
        await store.review(settings, sc, [], None)
    # An image that can be shown is reviewed as before.
    ok_page = await client.get(f"/dicom/instances/{us['id']}/review")
    assert ok_page.status_code == 200 and 'id="dicom-review-form"' in ok_page.text and "cannot be shown" not in ok_page.text
    ok = await post_form(client, f"/dicom/instances/{us['id']}/review", {"rects": "", "confirm": "yes"})
    assert ok.status_code in (302, 303)
    # Panel members never see the one that could not be shown.
    await panel_member(client, s)
    assert (await client.get(f"/dicom/instances/{sc['id']}/frames/0/rendered")).status_code == 404
    assert (await client.get(f"/dicom/instances/{us['id']}/frames/0/rendered")).status_code == 200
