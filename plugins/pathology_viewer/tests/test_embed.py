"""Share links and the embeddable viewer through the HTTP app: managing links (enrolling hospital only,
bad input), the page and its tiles without a session, forged/expired/revoked/gone tokens, the per-route
content-security policy (framable here, 'none' everywhere else), label and macro unreachable, audit."""

from __future__ import annotations

import html as html_lib
import io
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image

from plugins.pathology_viewer.tests import slidegen
from plugins.pathology_viewer.tests.support import JSON, home, svs, upload
from tests.conftest import login, make_user, post_form
from tests.panels_support import make_panel

MAX_LEVEL = 11  # a 2048 x 1536 slide: Deep Zoom levels 0 (1 px) to 11 (full resolution)


async def shared_slide(client) -> dict:
    s = await home(client)
    r = await upload(client, s, svs(), headers=JSON)  # an SVS with label and macro images
    assert r.status_code == 201, r.text[:300]
    s["slide"] = r.json()["id"]
    s["links"] = f"/pathology/slides/{s['slide']}/share-links"
    return s


async def make_link(client, s: dict, days: int = 7, note: str = "tumour board", with_annotations: bool = False) -> str:
    data = {"note": note, "days": str(days)}
    if with_annotations:
        data["with_annotations"] = "1"
    r = await post_form(client, s["links"], data)
    assert r.status_code == 303, r.text[:500]
    page = await client.get(r.headers["location"])
    assert page.status_code == 200
    urls = re.findall(r'value="(http[^"]+/pathology/embed/[^"]+)"', page.text)
    assert urls, page.text[:2000]
    return html_lib.unescape(urls[0]).split("/pathology/embed/")[1]


def frame_ancestors(response) -> str:
    csp = response.headers["content-security-policy"]
    return re.search(r"frame-ancestors ([^;]+)", csp).group(1).strip()


async def audit(action: str) -> list[dict]:
    from core.audit.tables import AuditEntry

    return await AuditEntry.select().where(AuditEntry.action == action).order_by(AuditEntry.seq)


async def test_a_share_link_shows_the_slide_without_a_session_and_may_be_framed(client):
    s = await shared_slide(client)
    token = await make_link(client, s)
    assert [json.loads(e["detail"])["days"] for e in await audit("pathology.share_link_created")] == [7]
    client.cookies.clear()  # no session from here on

    r = await client.get(f"/pathology/embed/{token}")
    assert r.status_code == 200 and "<html" in r.text
    assert frame_ancestors(r) == "*" and "x-frame-options" not in r.headers
    # the rest of the policy is unchanged: still no inline scripts or foreign sources
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "<script>" not in r.text and " style=" not in r.text
    cfg = json.loads(html_lib.unescape(re.search(r'data-config="([^"]*)"', r.text).group(1)))
    assert cfg["dzi"] == f"/pathology/embed/{token}/image.dzi" and cfg["mode"] == "embed"
    assert json.loads(html_lib.unescape(re.search(r'data-annotations="([^"]*)"', r.text).group(1))) == []
    assert "topbar" not in r.text and "Log out" not in r.text  # no site chrome
    views = await audit("pathology.embed_view")
    assert len(views) == 1 and views[0]["actor_id"] is None
    assert json.loads(views[0]["detail"])["slide"] == s["slide"]

    dzi = await client.get(f"/pathology/embed/{token}/image.dzi")
    assert dzi.status_code == 200 and 'Width="2048"' in dzi.text
    tile = await client.get(f"/pathology/embed/{token}/image_files/{MAX_LEVEL}/3_2.jpeg")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(tile.content))
    assert image.size[0] > 200 and slidegen.marker_pixels(image) == 0
    again = await client.get(f"/pathology/embed/{token}/image_files/{MAX_LEVEL}/3_2.jpeg",
                             headers={"If-None-Match": tile.headers["etag"]})
    assert again.status_code == 304
    assert (await client.get(f"/pathology/embed/{token}/image_files/{MAX_LEVEL}/99_99.jpeg")).status_code == 404
    assert (await client.get(f"/pathology/embed/{token}/image_files/{MAX_LEVEL}/0_0.png")).status_code == 400
    assert (await client.get(f"/pathology/embed/{token}/image_files/{MAX_LEVEL}/label.jpeg")).status_code == 404

    # the whole pyramid, level by level, never shows the label's magenta or the macro's green
    for level in range(0, MAX_LEVEL + 1, 2):
        t = await client.get(f"/pathology/embed/{token}/image_files/{level}/0_0.jpeg")
        assert t.status_code == 200 and slidegen.marker_pixels(Image.open(io.BytesIO(t.content))) == 0
    # label, macro, properties, IIIF and the session routes are not reachable with a token
    for path in ("associated/label", "associated/macro", "associated/label.jpeg", "label.jpg", "macro",
                 "thumbnail.jpg", "properties", "info.json", "annotations", "image_files/../associated/label"):
        r = await client.get(f"/pathology/embed/{token}/{path}")
        assert r.status_code in (403, 404), (path, r.status_code)
        assert not r.headers.get("content-type", "").startswith("image/")
    for path in (f"/pathology/slides/{s['slide']}/associated/label", f"/pathology/slides/{s['slide']}/view",
                 f"/pathology/slides/{s['slide']}/image_files/{MAX_LEVEL}/0_0.jpeg", f"/pathology/iiif/{s['slide']}/info.json"):
        r = await client.get(path, follow_redirects=False)
        assert r.status_code in (302, 303, 401), (path, r.status_code)  # a token is no session

    # only the embed page relaxes frame-ancestors
    for path in ("/login", f"/pathology/embed/{token}/image.dzi", "/static/pathology_viewer/embed.js"):
        r = await client.get(path)
        assert frame_ancestors(r) == "'none'" and r.headers["x-frame-options"] == "DENY", path


async def test_other_pages_keep_frame_ancestors_none(client):
    s = await shared_slide(client)
    for path in (f"/pathology/slides/{s['slide']}/view", s["links"], f"/pathology/slides/{s['slide']}", "/patients"):
        r = await client.get(path)
        assert r.status_code == 200, path
        assert frame_ancestors(r) == "'none'" and r.headers["x-frame-options"] == "DENY", path


async def test_forged_expired_revoked_and_gone_links_are_refused(client, settings):
    from plugins.pathology_viewer import embed
    from plugins.pathology_viewer.tables import ShareLink, Slide

    s = await shared_slide(client)
    token = await make_link(client, s)
    link_id = int(token.split(".")[0])

    def refused(r, status: int, words: str):
        assert r.status_code == status, (r.status_code, r.text[:300])
        assert words in html_lib.unescape(r.text)

    # forged: any altered part, a made-up token, another key
    head, mac = token.rsplit(".", 1)
    altered = head + "." + ("A" if mac[0] != "A" else "B") + mac[1:]
    other_id = f"{link_id + 1}." + token.split(".", 1)[1]
    later = token.split(".")
    later[2] = str(int(later[2]) + 86400)
    for bad in (altered, other_id, ".".join(later), "not-a-token", "1.abc.2.3.4", token + "x", token[:-1]):
        r = await client.get(f"/pathology/embed/{bad}")
        refused(r, 403, "not valid")
        assert frame_ancestors(r) == "*"  # the refusal shows inside the embedding page
        t = await client.get(f"/pathology/embed/{bad}/image_files/{MAX_LEVEL}/0_0.jpeg")
        assert t.status_code == 403 and t.headers["content-type"].startswith("application/problem+json")

    # expired: a link whose time is up (made directly with a past expiry)
    past = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=1)
    old = ShareLink(slide=s["slide"], nonce="n" * 24, note="old", expires_at=past)
    await old.save()
    expired = embed.make_token(settings, old.id, "n" * 24, past)
    refused(await client.get(f"/pathology/embed/{expired}"), 410, "expired")
    assert (await client.get(f"/pathology/embed/{expired}/image.dzi")).status_code == 410
    page = await client.get(s["links"])
    assert re.search(rf'data-link-id="{old.id}" data-status="expired"', page.text)

    # the valid link works (and is remembered), until it is revoked: then at once refused
    assert (await client.get(f"/pathology/embed/{token}/image_files/{MAX_LEVEL}/0_0.jpeg")).status_code == 200
    r = await post_form(client, f"{s['links']}/{link_id}/revoke")
    assert r.status_code == 303
    refused(await client.get(f"/pathology/embed/{token}"), 410, "revoked")
    assert (await client.get(f"/pathology/embed/{token}/image_files/{MAX_LEVEL}/0_0.jpeg")).status_code == 410
    assert len(await audit("pathology.share_link_revoked")) == 1
    page = await client.get(s["links"])
    assert re.search(rf'data-link-id="{link_id}" data-status="revoked"', page.text)
    assert token not in page.text  # a revoked link is no longer shown

    # gone: the slide was deleted (its links with it)
    fresh = await make_link(client, s)
    await Slide.delete().where(Slide.id == s["slide"])
    embed.forget()
    refused(await client.get(f"/pathology/embed/{fresh}"), 404, "no longer leads to a slide")
    assert await audit("pathology.embed_view") == []


async def test_only_the_enrolling_hospitals_editors_manage_links(client):
    from plugins.pathology_viewer.tables import ShareLink

    s = await shared_slide(client)
    for data, words in (({"days": "91"}, "1 to 90 days"), ({"days": "0"}, "1 to 90 days"), ({"days": "x"}, "1 to 90 days"),
                        ({"days": "5", "note": "n" * 201}, "at most 200"), ({"days": "5", "note": "a\nb"}, "one line")):
        r = await post_form(client, s["links"], data)
        assert r.status_code == 422 and words in html_lib.unescape(r.text), (data, r.status_code)
    assert await ShareLink.count() == 0
    token = await make_link(client, s)

    member = await make_user("member@example.org", hcp="Other Hospital")
    await make_user("outsider@example.org", hcp="Fourth Hospital")
    await make_panel(s["patient"], s["hp"], members=(member,))
    client.cookies.clear()
    await login(client, "member@example.org")
    assert (await client.get(f"/pathology/slides/{s['slide']}/view")).status_code == 200  # sees the slide
    assert "share-links" not in (await client.get(f"/pathology/slides/{s['slide']}/view")).text
    assert (await client.get(s["links"])).status_code == 403  # but does not manage its links
    assert (await post_form(client, s["links"], {"days": "5"})).status_code == 403
    assert (await post_form(client, f"{s['links']}/{token.split('.')[0]}/revoke")).status_code == 403
    client.cookies.clear()
    await login(client, "outsider@example.org")
    assert (await client.get(s["links"])).status_code == 404
    assert (await post_form(client, s["links"], {"days": "5"})).status_code == 404
    assert await ShareLink.count() == 1 and (await ShareLink.select().first())["revoked_at"] is None


async def test_annotations_travel_only_when_chosen_and_without_authors(client):
    s = await shared_slide(client)
    await client.get("/")
    from tests.conftest import csrf_of

    r = await client.post(f"/pathology/slides/{s['slide']}/annotations", json={
        "kind": "rect", "geometry": {"points": [[10, 10], [410, 210]]}, "text": "invasion front"},
        headers={"Accept": "application/json", "x-csrftoken": csrf_of(client)})
    assert r.status_code == 201
    without = await make_link(client, s)
    with_them = await make_link(client, s, with_annotations=True)
    client.cookies.clear()

    def annotations_of(page) -> list:
        return json.loads(html_lib.unescape(re.search(r'data-annotations="([^"]*)"', page.text).group(1)))

    assert annotations_of(await client.get(f"/pathology/embed/{without}")) == []
    shown = annotations_of(await client.get(f"/pathology/embed/{with_them}"))
    assert [a["text"] for a in shown] == ["invasion front"] and "author" not in shown[0]
    assert shown[0]["measurement"]["label"].endswith("mm²") or shown[0]["measurement"]["label"].endswith("µm²")


async def test_snippet_and_token_unit(settings):
    from plugins.pathology_viewer import embed

    expires = datetime(2030, 1, 1, tzinfo=timezone.utc)
    token = embed.make_token(settings, 42, "abcdefghijklmnopqrstuvwx", expires)
    assert embed.read_token(settings, token) == (42, "abcdefghijklmnopqrstuvwx", int(expires.timestamp()))
    assert re.fullmatch(r"[A-Za-z0-9._-]+", token)
    with pytest.raises(embed.LinkRefused) as info:
        embed.read_token(settings, token.replace(".42.", ".43.") if ".42." in token else "43" + token[2:])
    assert info.value.status_code == 403


async def test_the_snippet_is_served(client):
    r = await client.get("/static/pathology_viewer/embed.js")
    assert r.status_code == 200 and "data-cpms-slide" in r.text and "iframe" in r.text
    r = await client.get("/static/pathology_viewer/vendor/openseadragon.min.js")
    assert r.status_code == 200 and "OpenSeadragon" in r.text[:5000]
    r = await client.get("/static/pathology_viewer/vendor/images/zoomin_rest.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert (await client.get("/static/pathology_viewer/vendor/openseadragon.LICENSE.txt")).status_code == 200


def test_frame_ancestors_opt_is_checked():
    from core.security import frame_ancestors_of

    class H:
        def __init__(self, opt):
            self.opt = opt

    assert frame_ancestors_of({"route_handler": H({"frame_ancestors": "*"})}) == "*"
    assert frame_ancestors_of({"route_handler": H({"frame_ancestors": "https://a.example.org 'self'"})}) == "https://a.example.org 'self'"
    assert frame_ancestors_of({"route_handler": H({})}) is None
    assert frame_ancestors_of({}) is None
    # a value that would smuggle in another directive is ignored (the page stays unframable)
    assert frame_ancestors_of({"route_handler": H({"frame_ancestors": "*; script-src *"})}) is None
