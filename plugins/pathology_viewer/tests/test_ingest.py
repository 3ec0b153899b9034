"""Uploading slides through the HTTP app: generated TIFF and SVS, the shared samples (generic TIFF, SVS,
a DICOM WSI series as a ZIP), and bad input — each refusal with a clear message and nothing stored (no
row, no file in the store, no working copy, no leftover temporary folder)."""

from __future__ import annotations

import json
import zipfile

import pytest

from plugins.pathology_viewer.tests import slidegen
from plugins.pathology_viewer.tests.support import (
    JSON, SHARED, generic_tiff, home, needs_shared, scratch, slide_row, stored_state, svs, upload,
)
from tests.conftest import csrf_of

NOTHING = {"rows": 0, "files": 0, "temp": 0, "copies": 0, "incoming": 0}


def delta(before: dict, after: dict) -> dict:
    """What changed (the data folder is shared by the whole run; the database is emptied per test)."""
    return {k: after[k] - before[k] for k in after}


async def test_generic_tiff_upload_stores_encrypted_file_facts_and_working_copy(client, settings):
    from core.audit.tables import AuditEntry
    from core.activity.tables import Activity

    s = await home(client)
    before = await stored_state(settings)
    r = await upload(client, s, generic_tiff(), headers=JSON)
    assert r.status_code == 201, r.text[:500]
    slide_id = r.json()["id"]
    row = await slide_row(slide_id)
    assert (row["vendor"], row["width"], row["height"], row["level_count"]) == ("generic-tiff", 2048, 1536, 4)
    assert row["mpp_x"] == pytest.approx(0.25, rel=1e-3) and row["container"] == "tiff"
    assert row["title"] == "H&E block A2" and row["hcp"] == s["patient"]["hcp"]
    state = await stored_state(settings)
    # the same generated file (and its working copy) may be there from an earlier test: files are named
    # by content
    change = delta(before, state)
    assert (change["rows"], change["temp"], change["incoming"], state["incoming"]) == (1, 0, 0, 0)
    assert change["files"] in (0, 1) and change["copies"] in (0, 1)
    from plugins.pathology_viewer import slides

    assert (slides.cache_root(settings) / slides.copy_name(row["file_key"]) / "slide" / "slide.tiff").is_file()
    # encrypted at rest: the stored file is not the TIFF
    stored = settings.data_dir / "files" / row["file_key"]
    assert stored.read_bytes()[:8] == b"CPMSFILE" and b"II*\x00" not in stored.read_bytes()[:64]
    assert (await stored_state(settings))["copies"] >= 1
    assert await AuditEntry.count().where(AuditEntry.action == "pathology.upload") == 1
    assert await Activity.count().where(Activity.action == "pathology.slide_uploaded") == 1
    # the section lists it with its facts, and the facts page too
    section = await client.get(s["base"], headers={"HX-Request": "true"})
    assert section.status_code == 200 and f'data-slide="{slide_id}"' in section.text and "generic-tiff" in section.text
    assert "0.250 µm/px" in section.text
    page = await client.get(f"/pathology/slides/{slide_id}")
    assert page.status_code == 200 and "2,048 × 1,536" in page.text


async def test_plain_form_post_without_the_csrf_header_works_too(client, settings):
    s = await home(client)
    r = await upload(client, s, generic_tiff(), stream=False)
    assert r.status_code == 303, r.text[:500]
    assert r.headers["location"].startswith("/pathology/slides/")
    assert (await stored_state(settings))["rows"] == 1


async def test_svs_keeps_only_whitelisted_properties(client, settings):
    s = await home(client)
    r = await upload(client, s, svs(), headers=JSON)
    assert r.status_code == 201, r.text[:500]
    row = await slide_row(r.json()["id"])
    assert row["vendor"] == "aperio" and row["objective_power"] == 20 and row["mpp_x"] == pytest.approx(0.499)
    props = json.loads(row["properties"]) if isinstance(row["properties"], str) else row["properties"]
    assert props["aperio.AppMag"] == "20" and props["openslide.vendor"] == "aperio"
    text = json.dumps(dict(row), default=str)
    for secret in (slidegen.NAME, slidegen.BARCODE, slidegen.USER, "Doe_John", "SS1234"):
        assert secret not in text, secret
    assert not any(k.startswith(("tiff.ImageDescription", "openslide.comment", "aperio.Filename")) for k in props)
    assert sorted(json.loads(row["associated"]) if isinstance(row["associated"], str) else row["associated"]) == [
        "label", "macro", "thumbnail"]


async def test_duplicate_for_the_same_patient_is_refused(client, settings):
    s = await home(client)
    assert (await upload(client, s, generic_tiff(), headers=JSON)).status_code == 201
    before = await stored_state(settings)
    r = await upload(client, s, generic_tiff(), headers=JSON)
    assert r.status_code == 409 and "already" in r.json()["detail"]
    assert await stored_state(settings) == before


@needs_shared
@pytest.mark.parametrize("name, vendor", [("boxes.tiff", "generic-tiff"), ("small.svs", "aperio")])
async def test_shared_samples(client, settings, name, vendor):
    s = await home(client)
    r = await upload(client, s, SHARED / name, headers=JSON)
    assert r.status_code == 201, r.text[:500]
    assert (await slide_row(r.json()["id"]))["vendor"] == vendor


@needs_shared
async def test_dicom_series_as_zip(client, settings):
    s = await home(client)
    archive = slidegen.zip_of(scratch("dicom.zip"), {"series/boxes_0.dcm": SHARED / "boxes_0.dcm",
                                                     "series/boxes_1.dcm": SHARED / "boxes_1.dcm"})
    r = await upload(client, s, archive, headers=JSON)
    assert r.status_code == 201, r.text[:500]
    row = await slide_row(r.json()["id"])
    assert row["vendor"] == "dicom" and row["container"] == "dcm"
    assert not any(k.startswith("dicom.") for k in json.loads(row["properties"]))
    tile = await client.get(f"/pathology/slides/{row['id']}/image_files/0/0_0.jpeg")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
    # the stored original is the ZIP: without a working copy it is decrypted and unpacked again
    from plugins.pathology_viewer import slides

    slides.files_for(settings).remove_copy(row["file_key"])
    again = await client.get(f"/pathology/slides/{row['id']}/image_files/4/0_0.jpeg")
    assert again.status_code == 200
    copy = slides.cache_root(settings) / slides.copy_name(row["file_key"]) / "slide" / "series"
    assert sorted(p.name for p in copy.iterdir()) == ["boxes_0.dcm", "boxes_1.dcm"]


async def _refused(client, settings, s, *, status: int, words: str, **kw):
    before = await stored_state(settings)
    r = await upload(client, s, headers=JSON, **kw)
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.json()["detail"], r.json()["detail"]
    after = await stored_state(settings)
    assert delta(before, after) == NOTHING and after["rows"] == 0 and after["incoming"] == 0
    return r


async def test_truncated_slide_is_refused_and_nothing_stays(client, settings):
    s = await home(client)
    data = svs().read_bytes()
    await _refused(client, settings, s, data=data[: len(data) // 3], name="cut.svs", status=422, words="OpenSlide")


async def test_non_slide_renamed_svs_is_refused(client, settings):
    s = await home(client)
    await _refused(client, settings, s, data=b"%PDF-1.7\n" + b"x" * 5000, name="report.svs", status=422,
                   words="OpenSlide")


async def test_plain_photo_tiff_is_refused(client, settings):
    """A TIFF that is not tiled (a photo): not a slide OpenSlide opens."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 10)).save(out, "TIFF")
    s = await home(client)
    await _refused(client, settings, s, data=out.getvalue(), name="photo.tif", status=422, words="OpenSlide")


@needs_shared
async def test_unopenable_tiff_is_refused(client, settings):
    s = await home(client)
    r = await _refused(client, settings, s, path=SHARED / "unopenable.tiff", status=422, words="OpenSlide cannot open")
    assert "/" not in r.json()["detail"].split("open this slide:")[1]  # no server paths in the message


@needs_shared
async def test_unreadable_svs_is_refused(client, settings):
    s = await home(client)
    await _refused(client, settings, s, path=SHARED / "unreadable.svs", status=422, words="OpenSlide")


async def test_zip_with_path_traversal_is_refused(client, settings):
    s = await home(client)
    bad = scratch("traversal.zip")
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("slide.mrxs", b"[GENERAL]\n")
        zf.writestr("../../escaped.txt", b"owned")
    await _refused(client, settings, s, path=bad, status=422, words="outside")
    assert not (settings.data_dir / "escaped.txt").exists()
    assert not list(settings.data_dir.parent.glob("escaped.txt"))


async def test_zip_bomb_is_refused(client, settings):
    s = await home(client)
    bomb = scratch("bomb.zip")
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("slide.svs", b"\0" * (64 * 1024**2))
    await _refused(client, settings, s, path=bomb, status=422, words="zip bomb")


async def test_zip_without_a_slide_is_refused(client, settings):
    s = await home(client)
    z = slidegen.zip_of(scratch("notes.zip"), {"a.txt": b"hello", "b.txt": b"world"})
    await _refused(client, settings, s, path=z, status=422, words="no slide")


async def test_empty_upload_and_missing_file(client, settings):
    s = await home(client)
    await _refused(client, settings, s, data=b"", name="empty.svs", status=400, words="Choose a slide file")


async def test_bad_upload_renders_the_form_with_the_error(client, settings):
    s = await home(client)
    before = await stored_state(settings)
    r = await upload(client, s, data=b"not a slide at all" * 20, name="x.svs")
    assert r.status_code == 422 and 'id="slide-upload-form"' in r.text and "OpenSlide" in r.text
    assert delta(before, await stored_state(settings)) == NOTHING


async def test_upload_limit_is_counted_while_streaming(client, settings, monkeypatch):
    from plugins.pathology_viewer import slides

    s = await home(client)
    cfg = slides.config(settings)
    small = slides.Config(**{**cfg.__dict__, "max_upload_bytes": 1024**2})
    monkeypatch.setitem(slides._configs, id(settings), (settings, small))
    await _refused(client, settings, s, path=generic_tiff(), status=413, words="larger than the limit")


async def test_other_hospital_and_panel_members_cannot_upload(client, settings):
    from tests.conftest import login, make_user

    s = await home(client)
    await make_user("other@example.org", hcp="Other Hospital")
    await login(client, "other@example.org")
    before = await stored_state(settings)
    r = await upload(client, s, generic_tiff(), headers=JSON)
    assert r.status_code == 404
    assert delta(before, await stored_state(settings)) == NOTHING


async def test_a_slide_larger_than_the_site_form_limit_is_accepted_both_ways(client, settings):
    """The site's body limit (CPMS_MAX_BODY_SIZE, 10 MB) is for forms; slides have their own."""
    big = slidegen.write_generic_tiff(scratch("big-raw.tiff"), 2600, 2600, compression=None)
    assert big.stat().st_size > settings.max_body_size
    s = await home(client)
    r = await upload(client, s, big, headers=JSON)
    assert r.status_code == 201, r.text[:300]
    assert (await slide_row(r.json()["id"]))["size"] == big.stat().st_size
    await client.post(f"/pathology/slides/{r.json()['id']}/delete", data={"confirm": "yes", "_csrf_token": csrf_of(client)})
    r = await upload(client, s, big, stream=False)
    assert r.status_code == 303, r.text[:300]


async def test_a_slide_is_never_committed_without_its_audit_entry(client, settings, monkeypatch):
    """The row and its audit entry share one transaction: when writing the audit entry fails (a
    crash at that point), the slide row is rolled back and its stored file removed."""
    from tests.support.failing import break_audit_trail, stored_file_names
    from plugins.pathology_viewer.tables import Slide
    from plugins.pathology_viewer.tests.support import home, svs, upload

    s = await home(client)
    break_audit_trail(monkeypatch)
    files_before = stored_file_names(settings)
    try:
        await upload(client, s, svs(), name="slide.svs")
    except RuntimeError:
        pass  # the in-process client lets the server's exception through
    assert await Slide.count() == 0
    # nothing new stays (a file of earlier tests with the same content, no row using it, may go too)
    assert stored_file_names(settings) <= files_before
    monkeypatch.undo()
    r = await upload(client, s, svs(), name="slide.svs")
    assert r.status_code in (201, 303) and await Slide.count() == 1
