"""Coding a patient's diagnosis in a real browser with the keyboard only: an ORPHAcode picked from
the type-ahead list, its ICD-10 equivalent suggested and kept, the entry saved with both codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import ROOT, enrol_totp, log_in

pytestmark = pytest.mark.browser

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def with_sample_codes(live_server, settings):
    """The demo loads the bundled terminologies (ORPHA names without alignments); the Orphanet
    sample pack brings ORPHA 95's alignments, the ICD-10 sample its ICD-10 label."""
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "CPMS_ENV": "test", "CPMS_DATA_DIR": str(settings.data_dir),
        "CPMS_DATABASE_URL": settings.database_url, "CPMS_REDIS_URL": settings.redis_url,
        "CPMS_PLUGIN_MODULES": "tests.example_plugin", "CPMS_SECRET_KEY": settings.secret_key,
    }
    for fmt, path in (("orphanet", DATA / "orphanet_pack"), ("icd10-claml", DATA / "icd10_claml_sample.xml")):
        done = subprocess.run(
            [sys.executable, "-m", "core.cli", "coding", "import", fmt, str(path), "--replace"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    return live_server


def test_code_a_diagnosis_with_an_orphacode_and_its_icd10_equivalent_by_keyboard(with_sample_codes, page):
    base = with_sample_codes
    log_in(page, base, "hp@demo.cpms.eu", "demo-hp-2026")
    enrol_totp(page, base)
    page.goto(base + "/patients")
    page.get_by_role("link", name=re.compile("Aylin")).click()
    page.wait_for_url(re.compile(r"/patients/P[A-Z2-9]{11}$"))
    diagnoses = page.locator("#diagnoses")
    rows_before = diagnoses.locator("tbody tr").count()
    add = diagnoses.locator("form").last
    box = add.get_by_role("combobox", name="Label")
    expect(box).to_have_attribute("aria-expanded", "false")

    box.focus()  # the starting point; from here on only keys are pressed
    page.keyboard.type("friedr")
    listbox = page.locator("#" + box.get_attribute("aria-controls"))
    expect(listbox.locator('[role=option][data-system="ORPHA"][data-code="95"]')).to_be_visible()
    expect(box).to_have_attribute("aria-expanded", "true")
    expect(add.get_by_role("status")).to_contain_text("found")
    # Down arrow until ORPHA 95 is the active option (other systems may rank their codes first).
    for _ in range(10):
        page.keyboard.press("ArrowDown")
        active = page.locator("#" + box.get_attribute("aria-activedescendant"))
        expect(active).to_have_attribute("aria-selected", "true")
        if (active.get_attribute("data-system"), active.get_attribute("data-code")) == ("ORPHA", "95"):
            break
    else:
        pytest.fail("ORPHA 95 was not among the options")
    page.keyboard.press("Enter")

    # Enter picked the code and did not submit the form.
    expect(box).to_have_value("Friedreich ataxia")
    expect(box).to_have_attribute("aria-expanded", "false")
    expect(listbox).to_be_hidden()
    assert add.locator('input[type=hidden][name="system"]').input_value() == "ORPHA"
    assert add.locator('input[type=hidden][name="code"]').input_value() == "95"
    expect(add.locator("[data-cp-picked]")).to_contain_text("ORPHA:95")
    assert diagnoses.locator("tbody tr").count() == rows_before

    # The ICD-10 equivalent is suggested, ticked; reach it with Tab.
    icd = add.locator('input[name="codings"][value^="ICD-10|G11.1|"]')
    expect(icd).to_be_checked()
    expect(add.get_by_text(re.compile("G11.1 Early-onset cerebellar ataxia"))).to_be_visible()
    for _ in range(6):
        page.keyboard.press("Tab")
        if icd.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the ICD-10 equivalent")
    expect(icd).to_be_checked()

    # On to the Add button, and Enter submits.
    button = add.get_by_role("button", name="Add")
    for _ in range(8):
        page.keyboard.press("Tab")
        if button.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the Add button")
    page.keyboard.press("Enter")

    row = page.locator("#diagnoses tbody tr", has_text="Friedreich ataxia")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("ORPHA")
    expect(row).to_contain_text("95")
    expect(row).to_contain_text("ICD-10:G11.1")
    assert page.js_errors == []
