"""A three-generation family built from the proband in a real browser, with clicks only, then exported."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import enrol_totp, log_in

pytestmark = pytest.mark.browser


def test_build_a_family_with_clicks_and_export(live_server, browser):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server, "hp@demo.cpms.eu", "demo-hp-2026")
    enrol_totp(page, live_server)
    page.goto(live_server + "/patients")
    # Aylin: a demo patient with no family tree yet, so the test builds one from the proband alone.
    page.get_by_role("link", name=re.compile("Aylin")).click()
    page.wait_for_url(re.compile(r"/patients/P[A-Z2-9]{11}$"))
    editor = page.locator("#section-pedigree #pedigree-editor")
    expect(editor).to_be_visible()
    start = int(editor.get_attribute("data-version"))

    # rows keep the internal id (i1 is the proband) while their labels change with each generation added
    assert start == 0, "the chosen demo patient must start without a family tree"
    clicks = [("i1", "Parents"), ("i2", "Parents"), ("i1", "Brother"), ("i1", "Son")]
    for n, (who, button) in enumerate(clicks, start=1):
        page.locator(f"#pedigree-editor tr[data-id='{who}']").get_by_role("button", name=button, exact=True).click()
        expect(page.locator("#pedigree-editor")).to_have_attribute("data-version", str(n))
    rows = page.locator("#pedigree-editor svg g.individual")
    expect(rows).to_have_count(8)  # proband, parents, grandparents, brother, partner, son

    # a click on the father's symbol opens his side form; he is marked deceased at 70
    page.locator("#pedigree-editor svg g.individual[data-id='i2']").click()
    side = page.locator("#pedigree-editor aside.pedigree-side")
    expect(side).to_be_visible()
    side.get_by_label("Deceased").check()
    side.get_by_label("Age (or age at death)").fill("70")
    side.get_by_role("button", name=re.compile("^Save")).click()
    expect(page.locator("#pedigree-editor")).to_have_attribute("data-version", "5")
    expect(page.locator("#pedigree-editor svg g.individual[data-id='i2']")).to_have_class(re.compile(r"\bdeceased\b"))

    # undo the father's edit, with one click
    page.get_by_role("button", name="Undo last change").click()
    expect(page.locator("#pedigree-editor")).to_have_attribute("data-version", "6")
    expect(page.locator("#pedigree-editor svg g.individual[data-id='i2']")).not_to_have_class(re.compile(r"\bdeceased\b"))
    # and the son (with the partner added for him)
    page.get_by_role("button", name="Undo last change").click()
    expect(page.locator("#pedigree-editor")).to_have_attribute("data-version", "7")
    expect(rows).to_have_count(6)

    with page.expect_download() as info:
        page.locator("#pedigree-editor").get_by_role("link", name="SVG", exact=True).click()
    root = ET.parse(info.value.path()).getroot()
    labels = {g.get("data-label") for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("data-label")}
    assert labels == {"I-1", "I-2", "II-1", "II-2", "III-1", "III-2"}
    assert errors == []
    context.close()
