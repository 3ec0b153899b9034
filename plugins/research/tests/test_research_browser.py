"""The researcher's journey in a real browser: open the approved project, build a cohort (the count
follows the conditions live), see the charts with their tables, check the risk and export."""

import io
import json
import re
import zipfile

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import assert_accessible, log_in

pytestmark = pytest.mark.browser


def test_researcher_builds_a_cohort_views_charts_and_exports(live_server, browser):
    base = live_server
    ctx = browser.new_context(accept_downloads=True)
    page = ctx.new_page()
    log_in(page, base, "researcher@demo.cpms.eu", "demo-researcher-2026")
    page.wait_for_url(base + "/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Research", exact=True).click()
    expect(page.get_by_role("heading", name="Research", level=1)).to_be_visible()
    page.get_by_role("link", name=re.compile("Build a cohort")).click()

    count = page.locator("#cohort-count")
    expect(count).to_contain_text("consented patients match")
    everyone = int(re.search(r"(\d+) consented", count.inner_text()).group(1))
    first = page.locator("fieldset.condition").first
    first.get_by_label("Field", exact=True).select_option("diagnosis")
    with page.expect_response(lambda r: "/research/projects/" in r.url and r.request.headers.get("hx-request") == "true"):
        first.get_by_label("Value", exact=True).fill("ORPHA:98756")
    expect(count).to_contain_text("diagnosis ORPHA:98756")
    narrowed = int(re.search(r"(\d+) consented", count.inner_text()).group(1))
    assert 5 <= narrowed < everyone
    assert_accessible(page)

    page.get_by_role("button", name="Update").click()
    page.get_by_role("link", name="See charts and rows").click()
    expect(page.get_by_role("heading", name="Distributions")).to_be_visible()
    sex = page.locator("figure.research-chart", has_text="Sex")
    expect(sex.locator("svg[role=img]")).to_be_visible()
    expect(sex.locator("table")).to_contain_text("female")
    expect(page.get_by_role("region", name=re.compile("Anonymised rows table")).locator("tbody tr").first).to_be_visible()
    assert_accessible(page)

    page.get_by_role("link", name="Export this cohort").click()
    expect(page.get_by_text("Re-identification risk (prosecutor)")).to_be_visible()
    assert_accessible(page)
    page.get_by_label(re.compile("EU RD Platform common data elements")).check()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    content = download.value.path().read_bytes()
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert manifest["kind"] == "cde" and manifest["k"] == 5 and manifest["rows"] >= 1
        assert "cde.csv" in z.namelist()
    ctx.close()
