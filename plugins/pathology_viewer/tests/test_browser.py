"""The pathology viewer in a real browser: upload a slide through the form (progress bar), open the
viewer, zoom to full resolution, rotate with the keyboard, draw and save an annotation, reopen the cited
view, make a share link, and see the slide inside a plain HTML page served from another port."""

from __future__ import annotations

import functools
import http.server
import re
import threading

import pytest
from playwright.sync_api import expect

from plugins.pathology_viewer.tests import slidegen
from tests.browser.helpers import enrol_totp, log_in

pytestmark = pytest.mark.browser

FULL_LEVEL = 11  # Deep Zoom level of full resolution for a 2048 x 1536 slide


@pytest.fixture
def other_site(tmp_path):
    """A plain static web server on another loopback port (another origin than CPMS)."""
    folder = tmp_path / "other-site"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


def canvas_is_drawn(frame) -> bool:
    """Whether OpenSeadragon's canvas holds more than one colour (tiles were drawn)."""
    return frame.evaluate("""() => {
        const v = window.cpmsPathologyViewer;
        const c = v && v.drawer && v.drawer.canvas;
        if (!c || !c.width) return false;
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < data.length; i += 4 * 97) {
            seen.add((data[i] >> 4) + ',' + (data[i + 1] >> 4) + ',' + (data[i + 2] >> 4));
            if (seen.size > 8) return true;
        }
        return false;
    }""")


def test_upload_view_annotate_and_embed_elsewhere(live_server, browser, other_site, tmp_path):
    slide_file = slidegen.write_generic_tiff(tmp_path / "tissue-block-a2.tiff")  # 2048 x 1536, 0.25 µm per pixel
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(f"{page.url}: {msg.text} @ {msg.location}") if msg.type == "error" else None)
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    upload_headers: list[dict] = []
    page.on("request", lambda req: upload_headers.append(req.headers) if req.method == "POST" and req.url.endswith("/slides") else None)

    log_in(page, live_server, "hp@demo.cpms.eu", "demo-hp-2026")
    enrol_totp(page, live_server)
    page.goto(live_server + "/patients")
    page.get_by_role("link", name=re.compile("Aylin")).click()
    page.wait_for_url(re.compile(r"/patients/P[A-Z2-9]{11}$"))
    pseudonym = page.url.rsplit("/", 1)[1]

    # --- upload through the form: sent by XMLHttpRequest with a progress bar ---------------------
    page.goto(f"{live_server}/pathology/patients/{pseudonym}/upload")
    form = page.locator("#slide-upload-form")
    form.locator("input[type=file]").set_input_files(str(slide_file))
    form.get_by_label(re.compile("^Title")).fill("H&E block A2")
    with page.expect_navigation(url=re.compile(r"/pathology/slides/\d+$")):
        form.get_by_role("button", name="Upload").click()
        expect(page.locator("#slide-upload-progress")).to_be_visible()
    assert upload_headers and upload_headers[0].get("accept") == "application/json"  # the script sent it
    slide_id = int(page.url.rsplit("/", 1)[1])

    # --- the viewer: full resolution, scale bar, rotation by keyboard -----------------------------
    page.goto(f"{live_server}/pathology/slides/{slide_id}/view")
    viewer = page.locator("#pv-viewer")
    expect(viewer).to_have_attribute("data-ready", "open", timeout=20000)
    expect(page.locator(".pv-scalebar-text")).to_have_text(re.compile(r"^\d+(\.\d+)? (µm|mm)$"))
    whole = page.locator(".pv-scalebar-text").inner_text()
    page.get_by_role("button", name="1:1").click()
    expect(page.locator(".pv-scalebar")).to_have_attribute("data-zoom", re.compile(r"^(0\.99\d*|1\.00\d*|1)$"), timeout=10000)
    # 0.25 µm per pixel at one image pixel per screen pixel: ~120 px of bar is 30 µm, shown as 20 µm
    expect(page.locator(".pv-scalebar-text")).to_have_text("20 µm")
    assert whole != "20 µm"
    page.wait_for_function("""(level) => performance.getEntriesByType('resource')
        .some(e => e.name.includes('/image_files/' + level + '/'))""", arg=FULL_LEVEL, timeout=15000)
    full_res = [u for u in requests if f"/pathology/slides/{slide_id}/image_files/{FULL_LEVEL}/" in u]
    assert full_res, "no full-resolution tile was requested"
    # and to the viewer's own maximum, beyond one screen pixel per image pixel
    page.evaluate("() => { const v = window.cpmsPathologyViewer; v.viewport.zoomTo(v.viewport.getMaxZoom(), null, true); }")
    max_zoom = float(page.evaluate("() => { const v = window.cpmsPathologyViewer; return v.viewport.viewportToImageZoom(v.viewport.getZoom(true)); }"))
    assert max_zoom >= 1.9
    page.get_by_role("button", name="1:1").click()
    expect(page.locator(".pv-scalebar")).to_have_attribute("data-zoom", re.compile(r"^(0\.99\d*|1\.00\d*|1)$"), timeout=10000)

    # --- draw a rectangle and save it --------------------------------------------------------------
    page.locator("#pv-note").fill("invasion front")
    page.get_by_role("button", name="Rectangle").click()
    box = viewer.bounding_box()
    x0, y0 = box["x"] + box["width"] / 2 - 100, box["y"] + box["height"] / 2 - 50
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 100, y0 + 50, steps=5)
    page.mouse.move(x0 + 200, y0 + 100, steps=5)
    page.mouse.up()
    item = page.locator("#pv-annotation-list li.pv-annotation")
    expect(item).to_have_count(1, timeout=10000)
    expect(item).to_contain_text("Rectangle")
    expect(item).to_contain_text("invasion front")
    # 200 x 100 screen pixels at 1:1 are 200 x 100 image pixels: 50 µm x 25 µm
    expect(item.locator("[data-measure]")).to_have_text(re.compile(r"^(49\.\d|50|50\.\d) µm × (24\.\d|25|25\.\d) µm · \d+ µm²$"))
    expect(page.locator("#pv-status")).to_contain_text("Saved: Rectangle")
    expect(page.locator(".pv-overlay .pv-annotation-shape rect")).to_have_count(1)
    page.get_by_role("button", name="Pan").click()  # (the reopened view below lists it again: it is stored)

    # rotate with the keyboard (R), then reopen exactly this view from the cite link
    viewer.locator(".openseadragon-canvas[tabindex='0']").focus()  # the main canvas, not the navigator's
    page.keyboard.press("r")
    page.wait_for_function("() => window.cpmsPathologyViewer.viewport.getRotation() === 90")
    expect(page.locator("#pv-link")).to_have_value(re.compile(r"rotation=90"), timeout=10000)
    link = page.locator("#pv-link").input_value()
    assert re.search(r"/pathology/slides/\d+/view\?x=\d+&y=\d+&zoom=[0-9.]+&rotation=90$", link), link
    centre = page.evaluate("""() => { const vp = window.cpmsPathologyViewer.viewport;
        const c = vp.viewportToImageCoordinates(vp.getCenter(true)); return [c.x, c.y]; }""")
    page.goto(link)
    expect(page.locator("#pv-viewer")).to_have_attribute("data-ready", "open", timeout=20000)
    state = page.evaluate("""() => { const vp = window.cpmsPathologyViewer.viewport;
        const c = vp.viewportToImageCoordinates(vp.getCenter(true));
        return {x: c.x, y: c.y, zoom: vp.viewportToImageZoom(vp.getZoom(true)), rotation: vp.getRotation()}; }""")
    assert state["rotation"] == 90
    assert abs(state["zoom"] - 1) < 0.01, state
    assert abs(state["x"] - centre[0]) < 2 and abs(state["y"] - centre[1]) < 2, (state, centre)
    expect(page.locator("#pv-annotation-list li.pv-annotation")).to_have_count(1)
    expect(page.locator(".pv-overlay .pv-annotation-shape")).to_have_count(1)

    # --- cite a view in the panel discussion (the demo slide of the patient with an open panel) -----
    page.goto(live_server + "/panels")
    href = page.get_by_role("link", name=re.compile("Progressive ataxia with an ATXN2 variant")).first.get_attribute("href")
    panel_url = live_server + href.split("#")[0]
    page.goto(panel_url)
    # the Slides section loads by htmx; its link opens the viewer by a boosted navigation
    page.locator("#section-pathology").get_by_role("link", name="Open viewer").first.click()
    page.wait_for_url(re.compile(r"/pathology/slides/\d+/view$"))
    expect(page.locator("#pv-viewer")).to_have_attribute("data-ready", "open", timeout=20000)
    page.get_by_role("button", name="1:1").click()
    expect(page.locator(".pv-scalebar")).to_have_attribute("data-zoom", re.compile(r"^(0\.99\d*|1\.00\d*|1)$"), timeout=10000)
    expect(page.locator("#pv-link")).to_have_value(re.compile(r"zoom=1(&|$)"), timeout=10000)
    page.get_by_label("Message").fill("Please look at the molecular layer here.")
    page.get_by_role("button", name="Cite in the panel discussion").click()
    page.wait_for_url(re.compile(re.escape(panel_url) + r"#msg-\d+$"))
    message = page.locator("li.message").filter(has_text="Please look at the molecular layer here.").last
    cited = message.locator("a[href*='/pathology/slides/']")
    expect(cited).to_have_count(1)
    assert re.fullmatch(r"/pathology/slides/\d+/view\?x=\d+&y=\d+&zoom=1", cited.get_attribute("href")), cited.get_attribute("href")
    cited.click()
    expect(page.locator("#pv-viewer")).to_have_attribute("data-ready", "open", timeout=20000)
    zoom = page.evaluate("() => { const vp = window.cpmsPathologyViewer.viewport; return vp.viewportToImageZoom(vp.getZoom(true)); }")
    assert abs(zoom - 1) < 0.01, zoom

    # --- a share link, embedded by a page on another origin ----------------------------------------
    page.goto(f"{live_server}/pathology/slides/{slide_id}/share-links")
    page.get_by_label(re.compile("^Where it will be used")).fill("browser test")
    page.get_by_label(re.compile("^Valid for")).fill("7")
    page.get_by_label("Show the slide's annotations").check()
    page.get_by_role("button", name="Create a share link").click()
    share = page.locator("tr.pv-new input[data-share-url]")
    expect(share).to_have_count(1)
    url = share.input_value()
    assert url.startswith(live_server + "/pathology/embed/")
    assert errors == [], errors
    context.close()

    folder, other = other_site
    (folder / "index.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>Tumour board</title>'
        '<link rel="icon" href="data:,"></head><body><h1>Case of the week</h1>'
        f'<div data-cpms-slide="{url}" data-height="500"></div>'
        f'<script src="{live_server}/static/pathology_viewer/embed.js"></script></body></html>')
    outside = browser.new_context()  # no CPMS session at all
    host = outside.new_page()
    host_errors: list[str] = []
    host.on("pageerror", lambda exc: host_errors.append(str(exc)))
    host.on("console", lambda msg: host_errors.append(msg.text) if msg.type == "error" else None)
    tiles: list[int] = []
    host.on("response", lambda r: tiles.append(r.status) if "/pathology/embed/" in r.url and "/image_files/" in r.url else None)
    host.goto(other + "/index.html")
    expect(host.locator("iframe")).to_have_count(1)
    assert host.locator("iframe").get_attribute("src") == url
    frame = host.frame_locator("iframe")
    expect(frame.locator("#pv-viewer")).to_have_attribute("data-ready", "open", timeout=20000)
    embedded = next(f for f in host.frames if "/pathology/embed/" in f.url)
    embedded.wait_for_function("() => window.cpmsPathologyViewer.world.getItemAt(0).getFullyLoaded()", timeout=20000)
    assert tiles and all(s in (200, 304) for s in tiles), tiles
    assert canvas_is_drawn(embedded)
    expect(frame.locator(".pv-overlay .pv-annotation-shape")).to_have_count(1)  # made with annotations
    expect(frame.locator(".pv-scalebar-text")).to_have_text(re.compile(r"(µm|mm)$"))
    assert host_errors == [], host_errors
    outside.close()
