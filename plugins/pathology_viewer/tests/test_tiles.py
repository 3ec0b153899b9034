"""The Deep Zoom tile server through the HTTP app: the descriptor, tiles that decode to the right size,
ETag revalidation, bad addresses and formats, the thumbnail, the working copy made again from the
encrypted store, and the unit pieces (geometry equal to DeepZoomGenerator's, the hot-tile LRU bound)."""

from __future__ import annotations

import io
import math
import shutil
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from plugins.pathology_viewer import slides, tiles
from plugins.pathology_viewer.tests.support import JSON, generic_tiff, home, svs, upload

DZ = "{http://schemas.microsoft.com/deepzoom/2008}"


async def uploaded(client, path=None) -> tuple[dict, int]:
    s = await home(client)
    r = await upload(client, s, path or generic_tiff(), headers=JSON)
    assert r.status_code == 201, r.text[:300]
    return s, r.json()["id"]


async def test_dzi_descriptor(client):
    _, sid = await uploaded(client)
    r = await client.get(f"/pathology/slides/{sid}/image.dzi")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.text)
    assert root.tag == f"{DZ}Image"
    assert (root.get("Format"), root.get("TileSize"), root.get("Overlap")) == ("jpeg", "254", "1")
    size = root.find(f"{DZ}Size")
    assert (size.get("Width"), size.get("Height")) == ("2048", "1536")
    assert r.headers["cache-control"].startswith("private") and r.headers["etag"]
    again = await client.get(f"/pathology/slides/{sid}/image.dzi", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


async def test_tiles_decode_at_the_right_size_every_level(client):
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    _, sid = await uploaded(client)
    dz = DeepZoomGenerator(openslide.OpenSlide(str(generic_tiff())), 254, 1)
    assert dz.level_count == 12
    for level in (0, 5, 9, 10, 11):
        cols, rows = dz.level_tiles[level]
        for col, row in {(0, 0), (cols - 1, rows - 1), (cols // 2, rows // 2)}:
            r = await client.get(f"/pathology/slides/{sid}/image_files/{level}/{col}_{row}.jpeg")
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", (level, col, row, r.text[:200])
            image = Image.open(io.BytesIO(r.content))
            assert image.format == "JPEG" and image.size == dz.get_tile_dimensions(level, (col, row))
    # and the pixels are those of the slide (mean colour close to OpenSlide's own tile)
    r = await client.get(f"/pathology/slides/{sid}/image_files/11/3_2.jpeg")
    ours = Image.open(io.BytesIO(r.content)).convert("RGB").resize((32, 32))
    ref = dz.get_tile(11, (3, 2)).resize((32, 32))
    diff = sum(abs(a - b) for a, b in zip(ours.tobytes(), ref.tobytes())) / (32 * 32 * 3)
    assert diff < 6


async def test_webp_and_etag_revalidation(client):
    _, sid = await uploaded(client)
    url = f"/pathology/slides/{sid}/image_files/10/1_1.webp"
    r = await client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(r.content)).format == "WEBP"
    assert r.headers["cache-control"] == "private, max-age=3600"
    etag = r.headers["etag"]
    r304 = await client.get(url, headers={"If-None-Match": etag})
    assert r304.status_code == 304 and r304.headers["etag"] == etag and not r304.content
    other = await client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == r.content  # from the hot-tile cache


async def test_bad_tile_addresses(client):
    _, sid = await uploaded(client)
    base = f"/pathology/slides/{sid}/image_files"
    assert (await client.get(f"{base}/12/0_0.jpeg")).status_code == 404  # levels 0..11
    assert (await client.get(f"{base}/11/9_0.jpeg")).status_code == 404  # 9 columns: 0..8
    assert (await client.get(f"{base}/11/0_7.jpeg")).status_code == 404
    assert (await client.get(f"{base}/11/0_0.gif")).status_code == 400
    assert (await client.get(f"{base}/11/zero_0.jpeg")).status_code == 404
    assert (await client.get(f"{base}/-1/0_0.jpeg")).status_code in (400, 404)
    r = await client.get(f"{base}/11/0_0.png", headers={"Accept": "application/json"})
    assert r.status_code == 400 and "jpeg or webp" in r.json()["detail"]
    assert (await client.get(f"/pathology/slides/{sid + 999}/image_files/0/0_0.jpeg")).status_code == 404


async def test_thumbnail(client):
    _, sid = await uploaded(client)
    r = await client.get(f"/pathology/slides/{sid}/thumbnail.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (256, 192)


async def test_working_copy_is_made_again_from_the_encrypted_store(client, settings):
    from plugins.pathology_viewer.tests.support import slide_row

    _, sid = await uploaded(client)
    row = await slide_row(sid)
    files = slides.files_for(settings)
    files.remove_copy(row["file_key"])
    assert not (slides.cache_root(settings) / slides.copy_name(row["file_key"])).exists()
    r = await client.get(f"/pathology/slides/{sid}/image_files/8/0_0.jpeg")
    assert r.status_code == 200
    copy = slides.cache_root(settings) / slides.copy_name(row["file_key"])
    assert copy.is_dir() and (copy / "slide" / "slide.tiff").read_bytes() == generic_tiff().read_bytes()
    assert (copy / "tiles" / "254-1-75" / "8" / "0_0.jpeg").read_bytes() == r.content
    assert oct(slides.cache_root(settings).stat().st_mode & 0o777) == "0o700"


async def test_a_tile_on_disk_is_served_without_the_slide(client, settings):
    """What another app process made is in the slide's tiles folder: served from there."""
    from plugins.pathology_viewer.tests.support import slide_row

    _, sid = await uploaded(client)
    url = f"/pathology/slides/{sid}/image_files/9/1_1.jpeg"
    first = await client.get(url)
    files = slides.files_for(settings)
    name = slides.copy_name((await slide_row(sid))["file_key"])
    files._tiles.clear()
    files.drop_handle((await slide_row(sid))["file_key"])
    shutil.rmtree(slides.cache_root(settings) / name / "slide")  # no slide file to read any more
    again = await client.get(url)
    assert again.status_code == 200 and again.content == first.content
    files.remove_copy((await slide_row(sid))["file_key"])


async def test_svs_tiles_and_thumbnail(client):
    _, sid = await uploaded(client, svs())
    r = await client.get(f"/pathology/slides/{sid}/image_files/11/0_0.jpeg")
    assert r.status_code == 200
    assert (await client.get(f"/pathology/slides/{sid}/thumbnail.jpg")).status_code == 200


def test_geometry_matches_deepzoom_generator():
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    for path in (generic_tiff(), svs()):
        osr = openslide.OpenSlide(str(path))
        for size in (254, 510, 126):
            dz = DeepZoomGenerator(osr, size, 1)
            assert tiles.geometry(*osr.dimensions, size) == tuple(dz.level_tiles)
    assert tiles.geometry(1, 1, 254) == ((1, 1),)
    assert len(tiles.geometry(100_001, 3, 254)) == math.ceil(math.log2(100_001)) + 1


def test_hot_tile_cache_is_bounded_by_bytes(settings, tmp_path):
    from dataclasses import replace

    files = slides.SlideFiles(settings)
    files.cfg = replace(files.cfg, tile_cache_bytes=10_000)
    for i in range(50):
        files.tile_put(("x", i), bytes(1000))
    assert files._tile_bytes <= 10_000 and len(files._tiles) == 10
    assert files.tile_get(("x", 0)) is None and files.tile_get(("x", 49)) == bytes(1000)
    files.tile_put(("big",), bytes(5000))  # more than an eighth of the budget: not kept
    assert files.tile_get(("big",)) is None


def test_working_copies_are_evicted_least_recently_used_first(settings, tmp_path):
    import os
    import time
    from dataclasses import replace

    files = slides.SlideFiles(replace(settings, data_dir=tmp_path))
    files.cfg = replace(files.cfg, cache_bytes=64 * 1024**2)
    now = time.time()
    for i, age in enumerate((3600, 1800, 120, 10)):
        folder = files.root / f"{i:064x}"
        folder.mkdir()
        (folder / "slide.tiff").write_bytes(bytes(20 * 1024**2))
        os.utime(folder, (now - age, now - age))
    files._evict_for(20 * 1024**2)
    left = sorted(p.name[-1] for p in files.root.iterdir())
    # 4 x 20 MB + 20 MB incoming > 64 MB: the two oldest go; the one used 10 s ago stays (another
    # process may be reading it), so does the one from 2 minutes ago once the budget is met
    assert left == ["2", "3"]
    shutil.rmtree(files.root)


@pytest.mark.parametrize("value", ["abc", "5", "99999"])
def test_bad_tile_size_setting_is_refused(settings, value):
    from dataclasses import replace

    from core.settings import SettingsError

    with pytest.raises(SettingsError):
        slides.config(replace(settings, extra={"pathology_tile_size": value}))


def test_settings_are_read(settings):
    from dataclasses import replace

    cfg = slides.config(replace(settings, extra={"pathology_tile_size": "510", "pathology_quality": "90"}))
    assert (cfg.tile_size, cfg.quality, cfg.overlap) == (510, 90, 1)
