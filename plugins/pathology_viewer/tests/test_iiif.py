"""The IIIF Image API 3.0 (level 2) through the HTTP app: info.json, regions, sizes, rotation and
mirroring, qualities, formats, clear 400s, the parsers on their own, and the same access rule as tiles."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from plugins.pathology_viewer import iiif
from plugins.pathology_viewer.tests.support import JSON, generic_tiff, home, panel_member, upload


async def uploaded(client) -> tuple[dict, int]:
    s = await home(client)
    r = await upload(client, s, generic_tiff(), headers=JSON)
    assert r.status_code == 201, r.text[:300]
    return s, r.json()["id"]


def img(r) -> Image.Image:
    assert r.status_code == 200, r.text[:300]
    return Image.open(io.BytesIO(r.content))


async def test_info_json(client):
    _, sid = await uploaded(client)
    r = await client.get(f"/pathology/iiif/{sid}/info.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    info = r.json()
    assert info["@context"] == "http://iiif.io/api/image/3/context.json" and info["type"] == "ImageService3"
    assert info["profile"] == "level2" and (info["width"], info["height"]) == (2048, 1536)
    assert info["id"].endswith(f"/pathology/iiif/{sid}")
    assert info["tiles"][0]["scaleFactors"] == [1, 2, 4]
    assert info["service"][0]["physicalScale"] == pytest.approx(0.00025)
    ld = await client.get(f"/pathology/iiif/{sid}/info.json", headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"].startswith("application/ld+json")
    base = await client.get(f"/pathology/iiif/{sid}", follow_redirects=False)
    assert base.status_code == 303 and base.headers["location"].endswith(f"/pathology/iiif/{sid}/info.json")


async def test_regions_sizes_rotation_quality_format(client):
    _, sid = await uploaded(client)
    b = f"/pathology/iiif/{sid}"
    assert img(await client.get(f"{b}/full/max/0/default.jpg")).size == (2048, 1536)
    assert img(await client.get(f"{b}/full/512,/0/default.jpg")).size == (512, 384)
    assert img(await client.get(f"{b}/full/,96/0/default.png")).size == (128, 96)
    assert img(await client.get(f"{b}/full/pct:10/0/default.jpg")).size == (205, 154)
    assert img(await client.get(f"{b}/full/!200,200/0/default.jpg")).size == (200, 150)
    assert img(await client.get(f"{b}/full/300,100/0/default.jpg")).size == (300, 100)  # distorted on purpose
    assert img(await client.get(f"{b}/square/100,/0/default.jpg")).size == (100, 100)
    assert img(await client.get(f"{b}/100,200,300,400/max/0/default.jpg")).size == (300, 400)
    assert img(await client.get(f"{b}/2000,1500,300,400/max/0/default.jpg")).size == (48, 36)  # cropped at the edge
    assert img(await client.get(f"{b}/pct:50,50,50,50/256,/0/default.jpg")).size == (256, 192)
    assert img(await client.get(f"{b}/0,0,100,50/max/90/default.jpg")).size == (50, 100)
    assert img(await client.get(f"{b}/0,0,100,50/max/!270/default.jpg")).size == (50, 100)
    assert img(await client.get(f"{b}/0,0,100,100/^200,/0/default.jpg")).size == (200, 200)
    assert img(await client.get(f"{b}/full/256,/0/gray.png")).mode == "L"
    assert img(await client.get(f"{b}/full/256,/0/bitonal.png")).mode == "1"
    assert img(await client.get(f"{b}/full/256,/0/color.webp")).format == "WEBP"
    r = await client.get(f"{b}/full/256,/0/default.jpg")
    assert r.headers["content-type"] == "image/jpeg" and 'rel="canonical"' in r.headers["link"]
    assert (await client.get(f"{b}/full/256,/0/default.jpg", headers={"If-None-Match": r.headers["etag"]})).status_code == 304


async def test_mirroring_and_rotation_move_the_pixels(client):
    _, sid = await uploaded(client)
    b = f"/pathology/iiif/{sid}/0,0,1024,512"
    plain = img(await client.get(f"{b}/256,/0/default.png")).convert("RGB")
    mirrored = img(await client.get(f"{b}/256,/!0/default.png")).convert("RGB")
    turned = img(await client.get(f"{b}/256,/180/default.png")).convert("RGB")
    assert mirrored.tobytes() == plain.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes() != plain.tobytes()
    assert turned.tobytes() == plain.transpose(Image.Transpose.ROTATE_180).tobytes()


@pytest.mark.parametrize("path, words", [
    ("full/max/45/default.jpg", "90 degrees"),
    ("full/max/0/sepia.jpg", "Quality"),
    ("full/max/0/default.gif", "Format"),
    ("full/max/0/default", "Quality"),
    ("nowhere/max/0/default.jpg", "Region"),
    ("5000,0,10,10/max/0/default.jpg", "outside"),
    ("0,0,0,10/max/0/default.jpg", "no width"),
    ("full/0,/0/default.jpg", "zero"),
    ("full/4000,/0/default.jpg", "^"),
    ("full/^5000,/0/default.jpg", "4096"),
    ("full/big/0/default.jpg", "Size"),
    ("full/max/abc/default.jpg", "Rotation"),
])
async def test_bad_parameters_are_clear_400s(client, path, words):
    _, sid = await uploaded(client)
    r = await client.get(f"/pathology/iiif/{sid}/{path}", headers=JSON)
    assert r.status_code == 400, (path, r.status_code, r.text[:200])
    assert words in r.json()["detail"], r.json()["detail"]


async def test_non_member_gets_404_and_member_gets_the_image(client):
    from tests.conftest import login, make_user

    s, sid = await uploaded(client)
    await make_user("stranger@example.org", hcp="Stranger Hospital")
    await login(client, "stranger@example.org")
    assert (await client.get(f"/pathology/iiif/{sid}/info.json")).status_code == 404
    assert (await client.get(f"/pathology/iiif/{sid}/full/64,/0/default.jpg")).status_code == 404
    await panel_member(client, s)
    assert (await client.get(f"/pathology/iiif/{sid}/info.json")).status_code == 200
    assert img(await client.get(f"/pathology/iiif/{sid}/full/64,/0/default.jpg")).size == (64, 48)


def test_parsers():
    assert iiif.parse_region("square", 300, 200) == (50, 0, 200, 200)
    assert iiif.parse_region("pct:0,0,100,100", 300, 200) == (0, 0, 300, 200)
    assert iiif.parse_size("max", 5000, 100) == (4096, 82)
    assert iiif.parse_size("^max", 100, 50) == (4096, 2048)
    assert iiif.parse_size("!100,100", 300, 200) == (100, 66)
    assert iiif.parse_rotation("!90") == (True, 90)
    req = iiif.parse("full", "max", "0", "default.jpg", 10, 10)
    assert req.canonical() == "0,0,10,10/10,10/0/color.jpg"
