"""The burned-in-text review page in a real browser: upload an ultrasound image that waits for review
(RGB, no Burned In Annotation), open the review page, drag a mask rectangle over the name banner with
the mouse and a second one with a finger (touch pointer events), check that the textarea got the
image-pixel coordinates of the drags (from the displayed scale), that the boxes are drawn over the image
and listed, that a rectangle can be removed (by its button, or by editing the textarea), then mask and
release; a panel member of another hospital, who could not see the image before, now gets it with the
dragged area black. No inline script or style (CSP): the console stays free of errors throughout."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from plugins.dicom_viewer import synthetic
from tests.browser.helpers import enrol_totp, log_in

pytestmark = pytest.mark.browser

ROWS, COLUMNS = 240, 320  # synthetic.us_rgb: a white "name banner" at x 5..119, y 5..24


def watch(page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(f"{page.url}: {msg.text}") if msg.type == "error" else None)
    return errors


def image_box(page) -> dict:
    page.wait_for_function("() => { const i = document.querySelector('#dicom-review-image');"
                           " return i.complete && i.naturalWidth > 0; }")
    return page.locator("#dicom-review-image").bounding_box()


def screen(box: dict, x: float, y: float) -> tuple[float, float]:
    """Image pixel coordinates to page coordinates, at the displayed scale."""
    return box["x"] + x * box["width"] / COLUMNS, box["y"] + y * box["height"] / ROWS


def expected_rect(box: dict, a: tuple[float, float], b: tuple[float, float]) -> list[int]:
    """What the page must write for a drag from a to b (page coordinates): everything under it, in whole
    image pixels."""
    sx, sy = COLUMNS / box["width"], ROWS / box["height"]
    xs = sorted(((a[0] - box["x"]) * sx, (b[0] - box["x"]) * sx))
    ys = sorted(((a[1] - box["y"]) * sy, (b[1] - box["y"]) * sy))
    x0, y0 = math.floor(xs[0]), math.floor(ys[0])
    return [x0, y0, math.ceil(xs[1]) - x0, math.ceil(ys[1]) - y0]


def textarea_rects(page) -> list[list[int]]:
    value = page.locator("#dicom-review-rects").input_value()
    return [[int(v) for v in line.split()] for line in value.splitlines() if line.strip()]


def test_draw_mask_rectangles_and_release_a_masked_image(live_server, browser, tmp_path):
    us = synthetic.us_rgb(tmp_path / "us.dcm", size=(ROWS, COLUMNS))

    context = browser.new_context(viewport={"width": 1280, "height": 900}, has_touch=True)
    page = context.new_page()
    errors = watch(page)
    log_in(page, live_server, "hp@demo.cpms.eu", "demo-hp-2026")
    enrol_totp(page, live_server)
    page.goto(live_server + "/patients")
    page.get_by_role("link", name=re.compile("Mila")).click()
    page.wait_for_url(re.compile(r"/patients/P[A-Z2-9]{11}$"))
    pseudonym = page.url.rsplit("/", 1)[1]

    page.goto(f"{live_server}/dicom/patients/{pseudonym}/upload")
    form = page.locator("#dicom-upload-form")
    form.locator("input[type=file]:not([webkitdirectory])").set_input_files(str(us))
    with page.expect_response(lambda r: r.url.endswith("/uploads") and r.request.method == "POST") as answer:
        form.get_by_role("button", name="Upload").click()
    assert answer.value.status == 201, answer.value.text()
    assert answer.value.json()["stored"] == 1

    # --- the review queue of the patient's imaging section leads to the review page ------------------
    page.goto(f"{live_server}/dicom/patients/{pseudonym}")
    queue = page.locator("#dicom-review-queue")
    expect(queue).to_contain_text("Waiting for review (1)")
    queue.get_by_role("link", name=re.compile(r"320 × 240")).click()
    page.wait_for_url(re.compile(r"/dicom/instances/\d+/review$"))
    instance_id = int(re.search(r"/instances/(\d+)/review", page.url).group(1))
    rendered = f"{live_server}/dicom/instances/{instance_id}/frames/0/rendered?format=png"

    # the enrolling hospital sees the image before review; a panel member of another hospital does not
    other = browser.new_context(viewport={"width": 1024, "height": 768})
    expert = other.new_page()
    expert_errors = watch(expert)
    log_in(expert, live_server, "expert@demo.cpms.eu", "demo-expert-2026")
    enrol_totp(expert, live_server)
    assert expert.request.get(rendered).status == 404

    stage = page.locator("#dicom-review-stage")
    expect(stage).to_have_attribute("data-ready", "true")
    expect(page.locator("#dicom-review-drawn")).to_be_visible()
    box = image_box(page)
    assert box["width"] > COLUMNS * 1.5  # enlarged to the column: the scale is not 1
    assert box["height"] == pytest.approx(box["width"] * ROWS / COLUMNS, abs=1)

    # --- a mouse drag over the name banner, from bottom right to top left ----------------------------
    a, b = screen(box, 121.4, 26.3), screen(box, 4.6, 4.2)
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=4)
    expect(stage.locator(".dicom-review-box.is-draft")).to_have_count(1)  # drawn while dragging
    page.mouse.move(*b, steps=4)
    page.mouse.up()
    first = expected_rect(box, a, b)
    assert first == [4, 4, 118, 23]  # the whole banner (5..119 × 5..24) and a pixel around it
    assert textarea_rects(page) == [first]
    boxes = stage.locator(".dicom-review-box")
    expect(boxes).to_have_count(1)
    expect(page.locator("#dicom-review-status")).to_contain_text("Rectangle added: x 4, y 4, 118 × 23")
    drawn = boxes.first.bounding_box()
    scale = box["width"] / COLUMNS
    assert drawn["x"] == pytest.approx(box["x"] + first[0] * scale, abs=1.5)
    assert drawn["y"] == pytest.approx(box["y"] + first[1] * scale, abs=1.5)
    assert drawn["width"] == pytest.approx(first[2] * scale, abs=1.5)
    assert drawn["height"] == pytest.approx(first[3] * scale, abs=1.5)

    # a click is not a rectangle
    page.mouse.click(*screen(box, 200, 150))
    assert textarea_rects(page) == [first]

    # --- a finger drag (touch pointer events through the DevTools protocol) ---------------------------
    cdp = context.new_cdp_session(page)
    c, d = screen(box, 200.5, 150.5), screen(box, 250.5, 190.5)

    def touch(kind: str, points: list[tuple[float, float]]) -> None:
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y} for x, y in points]})

    touch("touchStart", [c])
    for t in (0.25, 0.5, 0.75, 1.0):
        touch("touchMove", [(c[0] + (d[0] - c[0]) * t, c[1] + (d[1] - c[1]) * t)])
    touch("touchEnd", [])
    second = expected_rect(box, c, d)
    assert second == [200, 150, 51, 41]
    expect(boxes).to_have_count(2)
    assert textarea_rects(page) == [first, second]
    items = page.locator("#dicom-review-list li")
    expect(items).to_have_count(2)
    expect(items.nth(1)).to_contain_text("2: x 200, y 150, 51 × 41")

    # remove it by its button; clearing the textarea clears the drawing, typing brings it back
    items.nth(1).get_by_role("button", name="Remove rectangle 2").click()
    expect(items).to_have_count(1)
    expect(boxes).to_have_count(1)
    assert textarea_rects(page) == [first]
    typed = page.locator("#dicom-review-rects")
    kept = typed.input_value()
    typed.fill("")
    expect(boxes).to_have_count(0)
    expect(items).to_have_count(0)
    typed.fill(kept)
    expect(boxes).to_have_count(1)
    expect(items.first).to_contain_text("1: x 4, y 4, 118 × 23")

    # a post without the confirmation is refused; the page comes back (swapped in by htmx) still drawable
    review = page.locator("#dicom-review-form")
    review.get_by_role("button", name="Reviewed, visible to panels").click()
    expect(page.locator(".form-error")).to_contain_text("Tick the box")
    expect(stage).to_have_attribute("data-ready", "true")
    expect(boxes).to_have_count(1)
    assert textarea_rects(page) == [first]
    # the browser logs the refused post itself (a 422, twice: the network and htmx); nothing else
    assert errors and all("422" in e for e in errors), errors
    errors.clear()
    box = image_box(page)
    e, f = screen(box, 280.5, 200.5), screen(box, 300.5, 220.5)
    page.mouse.move(*e)
    page.mouse.down()
    page.mouse.move(*f, steps=4)
    page.mouse.up()
    assert textarea_rects(page) == [first, [280, 200, 21, 21]]
    page.locator("#dicom-review-list").get_by_role("button", name="Remove rectangle 2").click()
    assert textarea_rects(page) == [first]

    # --- mask and release ------------------------------------------------------------------------------
    review.get_by_label(re.compile("No identifying text remains visible")).check()
    review.get_by_role("button", name="Reviewed, visible to panels").click()
    page.wait_for_url(re.compile(rf"/dicom/patients/{pseudonym}$"))
    expect(page.locator("#dicom-review-queue")).to_have_count(0)

    # the image is released: the panel member gets it now, masked where it was dragged
    for who in (page, expert):
        answer = who.request.get(rendered)
        assert answer.status == 200, (who, answer.status)
        pixels = np.asarray(Image.open(io.BytesIO(answer.body())).convert("RGB")).astype(int)
        assert pixels.shape == (ROWS, COLUMNS, 3)
        x, y, w, h = first
        assert (pixels[y:y + h, x:x + w] == 0).all()
        assert (pixels[y + h:y + h + 5, x:x + w, 2] > 190).all()  # not masked below it (blue is 200)
        assert pixels[150, 200].tolist() == pytest.approx([200, 150, 200], abs=3)  # the removed one: not masked
    assert errors == [], errors
    assert expert_errors == [], expert_errors
    other.close()
    context.close()
