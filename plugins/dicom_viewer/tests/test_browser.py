"""The DICOM viewer in a real browser: upload a CT study (a ZIP) through the form with its progress bar,
open the viewer, zoom, rotate, window by preset and by dragging, scroll the series, measure a length and
save it; reopen the cited view; then a panel member of another hospital (a second browser context, as
another user) opens the viewer and sees the measurement, on the canvas and in the list."""

from __future__ import annotations

import json
import re
import zipfile

import pytest
from playwright.sync_api import expect

from plugins.dicom_viewer import synthetic
from tests.browser.helpers import enrol_totp, log_in

pytestmark = pytest.mark.browser

SLICES, SIZE, SPACING = 6, 128, 0.7


def view_state(page) -> dict:
    return json.loads(page.locator("#dv-viewer").get_attribute("data-view"))


def canvas_is_drawn(page) -> bool:
    """Whether the viewer's canvas holds more than a few grey levels (a frame was drawn)."""
    return page.evaluate("""() => {
        const c = document.querySelector('#dv-viewer canvas');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const seen = new Set();
        for (let i = 0; i < data.length; i += 4 * 53) { seen.add(data[i] >> 3); if (seen.size > 6) return true; }
        return false;
    }""")


def watch(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(f"{page.url}: {msg.text}") if msg.type == "error" else None)
    return errors


def test_upload_view_measure_and_a_panel_member_sees_it(live_server, browser, tmp_path):
    folder = tmp_path / "ct"
    paths = synthetic.ct_series(folder, n=SLICES, size=SIZE)
    archive = tmp_path / "ct-study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, f"DICOM/{p.name}")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = watch(page)
    rendered: list[str] = []
    page.on("request", lambda req: rendered.append(req.url) if "/rendered" in req.url else None)

    log_in(page, live_server, "hp@demo.cpms.eu", "demo-hp-2026")
    enrol_totp(page, live_server)
    page.goto(live_server + "/patients")
    page.get_by_role("link", name=re.compile("Mila")).click()
    page.wait_for_url(re.compile(r"/patients/P[A-Z2-9]{11}$"))
    pseudonym = page.url.rsplit("/", 1)[1]

    # --- upload through the form: XMLHttpRequest with a progress bar, per-file results -------------
    page.goto(f"{live_server}/dicom/patients/{pseudonym}/upload")
    form = page.locator("#dicom-upload-form")
    form.locator("input[type=file]:not([webkitdirectory])").set_input_files(str(archive))
    with page.expect_response(lambda r: r.url.endswith("/uploads") and r.request.method == "POST") as answer:
        form.get_by_role("button", name="Upload").click()
    assert answer.value.status == 201, answer.value.text()
    body = answer.value.json()
    assert body["stored"] == SLICES
    expect(page.locator("#dicom-upload-progress")).to_have_attribute("data-done", "true")
    expect(page.locator("#dicom-upload-status")).to_contain_text(f"Stored {SLICES} images")
    study_url = body["studies"][0]

    # --- the viewer, opened from the study page ----------------------------------------------------
    page.goto(live_server + study_url)
    page.get_by_role("link", name="Open viewer").first.click()
    page.wait_for_url(re.compile(r"/dicom/series/\d+/view$"))
    series_id = int(re.search(r"/series/(\d+)/view", page.url).group(1))
    viewer = page.locator("#dv-viewer")
    expect(viewer).to_have_attribute("data-ready", "open", timeout=20000)
    page.wait_for_function("() => document.querySelector('#dv-viewer').hasAttribute('data-view')")
    assert canvas_is_drawn(page)
    start = view_state(page)
    assert start["fitted"] and start["index"] == 0 and start["wc"] is None

    # zoom twice by the button, rotate a quarter turn
    page.get_by_role("button", name="Zoom in").click()
    page.get_by_role("button", name="Zoom in").click()
    page.get_by_role("button", name="⟳ Rotate right").click()
    page.wait_for_function("() => JSON.parse(document.querySelector('#dv-viewer').dataset.view).rot === 90")
    state = view_state(page)
    assert not state["fitted"] and state["zoom"] == pytest.approx(start["zoom"] * 1.5625, rel=1e-3)

    # window: the lung preset, then a drag with the window tool (right: wider, down: higher level)
    page.get_by_role("button", name="Lung", exact=True).click()
    page.wait_for_function("() => JSON.parse(document.querySelector('#dv-viewer').dataset.view).wc === -400")
    page.wait_for_function("() => performance.getEntriesByType('resource').some(e => e.name.includes('wc=-400&ww=1600'))")
    page.get_by_role("button", name="Window", exact=True).click()
    box = viewer.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 25, cy + 12, steps=3)
    page.mouse.move(cx + 50, cy + 25, steps=3)
    page.mouse.up()
    page.wait_for_function("() => JSON.parse(document.querySelector('#dv-viewer').dataset.view).ww === 1920")
    state = view_state(page)
    assert (state["wc"], state["ww"]) == (-240, 1920)  # 6.4 units per pixel at a width of 1600
    page.wait_for_function("() => performance.getEntriesByType('resource').some(e => e.name.includes('wc=-240&ww=1920&format=png'))")
    assert any("format=jpeg" in u for u in rendered)  # while dragging, lighter frames

    # scroll through the series: the wheel, then a key
    page.get_by_role("button", name="Pan", exact=True).click()
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => JSON.parse(document.querySelector('#dv-viewer').dataset.view).index === 2")
    page.keyboard.press("ArrowUp")
    page.wait_for_function("() => JSON.parse(document.querySelector('#dv-viewer').dataset.view).index === 1")
    expect(page.locator("#dv-position")).to_have_text(f"2 / {SLICES}")

    # --- measure a length: 120 screen pixels at this zoom, whatever the rotation -----------------
    state = view_state(page)
    page.locator("#dv-note").fill("lesion, long axis")
    page.get_by_role("button", name="Length", exact=True).click()
    page.mouse.move(cx - 60, cy - 20)
    page.mouse.down()
    page.mouse.move(cx, cy - 20, steps=4)
    page.mouse.move(cx + 60, cy - 20, steps=4)
    page.mouse.up()
    item = page.locator("#dv-annotation-list li.dv-annotation")
    expect(item).to_have_count(1, timeout=10000)
    expect(item).to_contain_text("Length")
    expect(item).to_contain_text("lesion, long axis")
    expect(page.locator("#dv-status")).to_contain_text("Saved: Length")
    label = item.locator("[data-measure]").inner_text()
    mm = float(re.fullmatch(r"([\d.]+) mm", label).group(1))
    assert mm == pytest.approx(120 / state["zoom"] * SPACING, rel=0.03), (label, state)
    annotation_id = int(item.get_attribute("data-annotation-id"))

    # the cite link reopens exactly this view
    page.get_by_role("button", name="Pan", exact=True).click()
    expect(page.locator("#dv-link")).to_have_value(re.compile(r"rot=90"), timeout=5000)
    link = page.locator("#dv-link").input_value()
    assert re.search(r"/dicom/series/\d+/view\?instance=\d+&wc=-240&ww=1920&zoom=[\d.]+&x=[\d.]+&y=[\d.]+&rot=90$", link), link
    before = view_state(page)
    page.goto(link)
    expect(page.locator("#dv-viewer")).to_have_attribute("data-ready", "open", timeout=20000)
    page.wait_for_function("() => document.querySelector('#dv-viewer').hasAttribute('data-view')")
    after = view_state(page)
    for key in ("instance", "index", "wc", "ww", "rot", "flipH", "flipV", "invert"):
        assert after[key] == before[key], key
    assert after["zoom"] == pytest.approx(before["zoom"], rel=1e-3)
    assert abs(after["x"] - before["x"]) < 0.1 and abs(after["y"] - before["y"]) < 0.1
    expect(page.locator("#dv-annotation-list li.dv-annotation")).to_have_count(1)

    # flip and invert by keys and buttons, cine, the tag browser, reset
    page.locator("#dv-viewer canvas").focus()
    page.keyboard.press("h")
    page.get_by_role("button", name="Invert").click()
    page.wait_for_function("() => { const v = JSON.parse(document.querySelector('#dv-viewer').dataset.view); return v.flipH && v.invert; }")
    page.wait_for_function("() => performance.getEntriesByType('resource').some(e => e.name.includes('invert=1'))")
    expect(page.locator("#dv-link")).to_have_value(re.compile(r"flip=h&invert=1$"), timeout=5000)
    page.get_by_role("button", name="Cine ▶").click()
    seen_frames = set()
    for _ in range(40):
        seen_frames.add(view_state(page)["index"])
        if len(seen_frames) >= 3:
            break
        page.wait_for_timeout(100)
    page.get_by_role("button", name="Cine ▶").click()
    assert len(seen_frames) >= 3, seen_frames
    page.locator("#dv-tags summary").click()
    expect(page.locator("#dv-tag-rows tr")).not_to_have_count(0)
    page.locator("#dv-tag-filter").fill("PatientName")
    visible = page.locator("#dv-tag-rows tr:not([hidden])")
    expect(visible).to_have_count(1)
    expect(visible).to_contain_text(pseudonym)
    page.locator("#dv-viewer canvas").focus()
    page.keyboard.press("x")
    page.wait_for_function("() => { const v = JSON.parse(document.querySelector('#dv-viewer').dataset.view); return v.fitted && v.rot === 0 && v.wc === null && !v.invert; }")
    assert errors == [], errors
    context.close()

    # --- a panel member of another hospital, in a new browser context -----------------------------
    other = browser.new_context(viewport={"width": 1024, "height": 768})
    expert = other.new_page()
    expert_errors = watch(expert)
    log_in(expert, live_server, "expert@demo.cpms.eu", "demo-expert-2026")
    enrol_totp(expert, live_server)
    expert.goto(f"{live_server}/dicom/series/{series_id}/view?annotation={annotation_id}")
    expect(expert.locator("#dv-viewer")).to_have_attribute("data-ready", "open", timeout=20000)
    seen = expert.locator("#dv-annotation-list li.dv-annotation")
    expect(seen).to_have_count(1)
    expect(seen.locator("[data-measure]")).to_have_text(label)
    expect(seen).to_contain_text("lesion, long axis")
    expect(seen.get_by_role("button", name="Delete")).to_have_count(0)  # not theirs to delete
    expert.wait_for_function("() => document.querySelector('#dv-viewer').hasAttribute('data-view')")
    assert view_state(expert)["instance"] == after["instance"]  # the annotation's image is shown
    # drawn on the canvas: yellow-red (the focused annotation's colour) pixels exist
    red = expert.evaluate("""() => {
        const c = document.querySelector('#dv-viewer canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] < 100 && d[i + 2] < 130) n++;
        return n;
    }""")
    assert red > 50, red
    assert expert_errors == [], expert_errors
    other.close()
