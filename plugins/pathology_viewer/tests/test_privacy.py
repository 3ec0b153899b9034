"""The label and macro images and identifying properties never leave the enrolling hospital.

An Aperio-style slide is uploaded under a file name that is the patient's "name"; its description
carries that name, a barcode and a user name; its label is magenta and its macro green with the name
written on them. Then EVERY route of the plugin (taken from the app's own route table, so a route added
later is walked too, and an unknown path parameter fails the test) is requested as an accepted panel
member from another hospital, with every method, and through a share link: no response may hold an
identifying string, and no image may hold a label/macro pixel. Every Deep Zoom tile of the slide, at
every level, is checked the same way. A positive control proves the checks would see a leak.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

from PIL import Image

from plugins.pathology_viewer.tests import slidegen
from plugins.pathology_viewer.tests.support import JSON, home, panel_member, svs, upload
from tests.conftest import csrf_of

SECRETS = (slidegen.NAME, slidegen.BARCODE, slidegen.USER, "Doe_John", "Doe%5FJohn", "SS1234", "ScanScope")


def leaks(response) -> list[str]:
    """What identifying content a response carries (strings in any body; marker pixels in images)."""
    found = []
    body = response.content
    for secret in SECRETS:
        if secret.encode() in body or secret.lower().encode() in body.lower():
            found.append(secret)
    for name, value in response.headers.items():
        if any(secret.lower() in value.lower() for secret in SECRETS):
            found.append(f"header {name}")
    if response.headers.get("content-type", "").startswith("image/") and response.status_code == 200:
        try:
            image = Image.open(io.BytesIO(body))
            image.load()
        except Exception:
            return found + ["undecodable image"]
        if slidegen.marker_pixels(image):
            found.append(f"{slidegen.marker_pixels(image)} label/macro pixels")
    return found


async def setup(client) -> dict:
    from plugins.pathology_viewer.tables import Annotation, ShareLink

    s = await home(client)
    r = await upload(client, s, svs(), name="Doe_John_123.svs", title="H&E", headers=JSON)
    assert r.status_code == 201, r.text[:300]
    sid = r.json()["id"]
    note = Annotation(slide=sid, author=s["hp"], kind="rect", geometry={"points": [[10, 10], [200, 100]]}, text="region")
    await note.save()
    link = ShareLink(slide=sid, nonce="n" * 24, created_by=s["hp"], note="board",
                     expires_at=datetime.now(timezone.utc) + timedelta(days=2))
    await link.save()
    return {**s, "slide": sid, "annotation": note.id, "link": link.id, "link_row": link}


def values(param: str, ctx: dict, settings, handler: str) -> list[str]:
    """Path parameter values to try, per parameter name (an unknown one fails: walk it explicitly)."""
    if param == "slide_id":
        return [str(ctx["slide"])]
    if param == "pseudonym":
        return [ctx["patient"]["pseudonym"]]
    if param == "panel_id":
        return [str(ctx["panel"])]
    if param == "annotation_id":
        return [str(ctx["annotation"])]
    if param == "link_id":
        return [str(ctx["link"])]
    if param == "token":
        from plugins.pathology_viewer.embed import make_token

        row = ctx["link_row"]
        return [make_token(settings, row.id, row.nonce, row.expires_at)]
    if param == "level":
        return ["0", "8", "11"]
    if param == "name" and handler in ("tile", "embed_tile"):
        return ["0_0.jpeg", "0_0.webp"]
    if param == "name" and handler == "associated_image":
        return ["label.jpg", "macro.jpg", "thumbnail.jpg", "label"]
    if param == "name" and handler == "image":
        return ["default.png", "default.jpg", "color.webp"]
    if param in ("region",):
        return ["full", "0,0,2048,1536"]
    if param == "size":
        return ["max", "!512,512"]
    if param == "rotation":
        return ["0"]
    raise AssertionError(f"the privacy walk does not know the path parameter {param!r} of {handler}: add it")


def expand(path: str, ctx: dict, settings, handler: str) -> list[str]:
    import itertools
    import re

    params = re.findall(r"\{(\w+):\w+\}", path)
    if not params:
        return [path]
    urls = []
    for combo in itertools.product(*(values(p, ctx, settings, handler) for p in params)):
        url = path
        for p, v in zip(params, combo):
            url = re.sub(r"\{" + p + r":\w+\}", v, url, count=1)
        urls.append(url)
    return urls


async def test_every_route_as_panel_member_and_through_the_share_link(client, settings):
    from core.app import create_app

    ctx = await setup(client)
    # positive control: the enrolling hospital sees the label, and the checks see it
    label = await client.get(f"/pathology/slides/{ctx['slide']}/associated/label.jpg")
    assert label.status_code == 200 and any("label/macro pixels" in x for x in leaks(label))
    own_page = await client.get(f"/pathology/slides/{ctx['slide']}")
    assert "/associated/label.jpg" in own_page.text
    member = await panel_member(client, ctx)
    ctx["panel"] = member["panel"]
    app = create_app(settings)
    walked: dict[str, int] = {}
    problems = []
    static_root = None
    for route in app.routes:
        if not route.path.startswith(("/pathology", "/static/pathology_viewer")):
            continue
        for handler in route.route_handlers:
            methods = set(handler.http_methods) - {"OPTIONS", "HEAD"}
            name = getattr(handler, "handler_name", "") or handler.fn.__name__
            if route.path.startswith("/static/"):
                static_root = route
                continue
            for method in sorted(methods):
                for url in expand(route.path, ctx, settings, name):
                    headers = {"x-csrftoken": csrf_of(client)}
                    kw = {}
                    if method in ("POST", "PUT"):
                        kw["json" if "annotations" in url else "data"] = (
                            {"kind": "point", "geometry": {"points": [[1, 1]]}, "text": "x"} if "annotations" in url
                            else {"title": "t", "hidden": "0", "confirm": "no", "note": "n", "days": "1"})
                    r = await client.request(method, url, headers=headers, follow_redirects=False, **kw)
                    walked[f"{method} {route.path}"] = walked.get(f"{method} {route.path}", 0) + 1
                    assert r.status_code < 500, (method, url, r.status_code, r.text[:300])
                    if found := leaks(r):
                        problems.append((method, url, r.status_code, found))
    assert not problems, problems
    # the walk reached the routes that serve pixels and facts, and they served them to the member
    for must in ("GET /pathology/slides/{slide_id:int}/image_files/{level:int}/{name:str}",
                 "GET /pathology/iiif/{slide_id:int}/{region:str}/{size:str}/{rotation:str}/{name:str}",
                 "GET /pathology/slides/{slide_id:int}/thumbnail.jpg", "GET /pathology/slides/{slide_id:int}",
                 "GET /pathology/slides/{slide_id:int}/associated/{name:str}", "GET /pathology/panels/{panel_id:int}",
                 "GET /pathology/embed/{token:str}/image_files/{level:int}/{name:str}"):
        assert walked.get(must), must
    assert len(walked) >= 25, sorted(walked)
    for url in (f"/pathology/slides/{ctx['slide']}/image_files/11/0_0.jpeg", f"/pathology/slides/{ctx['slide']}",
                f"/pathology/iiif/{ctx['slide']}/full/max/0/default.png", f"/pathology/panels/{ctx['panel']}"):
        assert (await client.get(url)).status_code == 200, url
    # label and macro: 404 for the member, as if there were none
    assert (await client.get(f"/pathology/slides/{ctx['slide']}/associated/label.jpg")).status_code == 404
    facts = await client.get(f"/pathology/slides/{ctx['slide']}")
    assert "associated/" not in facts.text and "aperio.AppMag" in facts.text
    # static files of the plugin: no patient data can be in them, but walk them too
    if static_root is not None:
        from plugins.pathology_viewer import __file__ as pkg

        from pathlib import Path

        for f in (Path(pkg).parent / "static").rglob("*"):
            if f.is_file() and f.suffix in (".js", ".css", ".html", ".json"):
                r = await client.get("/static/pathology_viewer/" + str(f.relative_to(Path(pkg).parent / "static")))
                assert r.status_code == 200 and not leaks(r), f


async def test_every_tile_of_every_level_is_free_of_label_and_macro(client, settings):
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    ctx = await setup(client)
    await panel_member(client, ctx)
    dz = DeepZoomGenerator(openslide.OpenSlide(str(svs())), 254, 1)
    count = 0
    for level in range(dz.level_count):
        cols, rows = dz.level_tiles[level]
        for col in range(cols):
            for row in range(rows):
                r = await client.get(f"/pathology/slides/{ctx['slide']}/image_files/{level}/{col}_{row}.jpeg")
                assert r.status_code == 200 and not leaks(r), (level, col, row)
                count += 1
    assert count == dz.tile_count


async def test_properties_shown_are_whitelisted_even_if_the_row_holds_more(client, settings):
    """Defence in depth: a row written before the whitelist narrowed is filtered again when shown."""
    from plugins.pathology_viewer.tables import Slide

    ctx = await setup(client)
    await Slide.update({Slide.properties: {"aperio.Filename": slidegen.NAME, "aperio.AppMag": "20",
                                           "openslide.comment": slidegen.BARCODE}}).where(Slide.id == ctx["slide"])
    await panel_member(client, ctx)
    for url in (f"/pathology/slides/{ctx['slide']}", f"/pathology/panels/{(await _panel_of(ctx))}",
                f"/pathology/iiif/{ctx['slide']}/info.json"):
        r = await client.get(url)
        assert r.status_code == 200 and not leaks(r), url


async def _panel_of(ctx) -> int:
    from core.panels.tables import Panel

    return (await Panel.select(Panel.id).where(Panel.patient == ctx["patient"]["id"]).first())["id"]


def test_safe_properties_whitelist():
    from plugins.pathology_viewer.slides import safe_properties

    props = {"openslide.vendor": "aperio", "openslide.mpp-x": "0.499", "aperio.AppMag": "20",
             "aperio.Filename": "Doe", "aperio.Barcode": "1", "openslide.comment": "x", "tiff.ImageDescription": "y",
             "dicom.PatientName": "Doe^John", "hamamatsu.Reference": "r", "openslide.quickhash-1": "ab" * 32,
             "openslide.level[0].width": "2048", "openslide.objective-power": "Doe John",
             "mirax.GENERAL.SLIDE_NAME": "Doe", "openslide.associated.label.width": "400"}
    assert safe_properties(props) == {"openslide.vendor": "aperio", "openslide.mpp-x": "0.499", "aperio.AppMag": "20",
                                      "openslide.level[0].width": "2048"}
