"""Coding a patient's diagnosis in a real browser with the keyboard only: an ORPHAcode picked from
the type-ahead list, its ICD-10 equivalent suggested and kept, the entry saved with both codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import enrol_totp, log_in
from tests.support.cli import run_cpms

pytestmark = pytest.mark.browser

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def with_sample_codes(live_server, settings):
    """The demo loads the bundled terminologies (ORPHA names without alignments); the Orphanet
    sample pack brings ORPHA 95's alignments, the ICD-10 sample its ICD-10 label."""
    for fmt, path in (("orphanet", DATA / "orphanet_pack"), ("icd10-claml", DATA / "icd10_claml_sample.xml")):
        done = run_cpms(settings, "coding", "import", fmt, str(path), "--replace")
        assert done.returncode == 0, done.stderr[-2000:]
    return live_server


@pytest.fixture(scope="module")
def signed_in(with_sample_codes, browser):
    """The demo HP's session (password, then the forced authenticator enrolment), once per module."""
    context = browser.new_context()
    page = context.new_page()
    log_in(page, with_sample_codes, "hp@demo.cpms.eu", "demo-hp-2026")
    enrol_totp(page, with_sample_codes)
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def hp_page(signed_in, browser):
    context = browser.new_context(storage_state=signed_in)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    # htmx logs a request cut short by a page navigation (a lazy-loaded section when the form
    # submits) as an error; that is no fault of the picker.
    page.on("console", lambda msg: page.js_errors.append(msg.text)
            if msg.type == "error" and msg.text not in ("htmx:sendAbort", "htmx:afterRequest") else None)
    yield page
    context.close()


def test_code_a_diagnosis_with_an_orphacode_and_its_icd10_equivalent_by_keyboard(with_sample_codes, hp_page):
    base, page = with_sample_codes, hp_page
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
    # The first search after start-up builds the server's search index (seconds on a busy machine).
    expect(listbox.locator('[role=option][data-system="ORPHA"][data-code="95"]')).to_be_visible(timeout=60_000)
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
    # The system checkboxes steer the search only: the form posts the picked code's system alone.
    assert add.evaluate("f => new FormData(f).getAll('system')") == ["ORPHA"]
    assert add.evaluate("f => new FormData(f).getAll('codings')")[0].startswith("ICD-10|G11.1|")

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


def test_pick_with_the_mouse_type_over_it_clear_it_and_submit_with_enter(with_sample_codes, hp_page):
    base, page = with_sample_codes, hp_page
    page.goto(base + "/patients")
    page.get_by_role("link", name=re.compile("Jonas")).click()
    page.wait_for_url(re.compile(r"/patients/P[A-Z2-9]{11}$"))
    add = page.locator("#phenotype form").last
    assert [b.get_attribute("value") for b in add.locator("[data-code-picker] input[type=checkbox]").all()] == ["HPO"]
    box = add.get_by_role("combobox", name="Label")
    system, code = add.locator('input[type=hidden][name="system"]'), add.locator('input[type=hidden][name="code"]')
    box.click()
    page.keyboard.type("seiz")
    seizure = add.locator('[role=option][data-code="HP:0001250"]')
    seizure.click(timeout=60_000)
    expect(box).to_have_value("Seizure")
    expect(box).to_be_focused()
    assert (system.input_value(), code.input_value()) == ("HPO", "HP:0001250")

    # Typing over a picked code makes the entry free text again; Escape closes the list.
    page.keyboard.type(" in sleep")
    expect(code).to_have_value("")
    expect(add.locator("[data-cp-picked]")).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "true", timeout=30_000)
    page.keyboard.press("Escape")
    expect(box).to_have_attribute("aria-expanded", "false")

    # Pick again by mouse, remove it with the chip's button, pick once more.
    box.fill("")
    page.keyboard.type("seizure")
    seizure.click()
    add.get_by_role("button", name="Remove the code HPO:HP:0001250").click()
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    assert code.input_value() == ""
    page.keyboard.type("seizure")
    seizure.click()
    expect(code).to_have_value("HP:0001250")

    # Unticking a system leaves it out of the search (diagnoses: ORPHA, ICD-10, ICD-10-CM, OMIM).
    diagnosis = page.locator("#diagnoses form").last
    diagnosis.get_by_role("checkbox", name="ICD-10-CM").uncheck()
    diagnosis.get_by_role("combobox", name="Label").click()
    page.keyboard.type("friedr")
    diagnosis.locator('[role=option][data-code="95"]').wait_for()
    assert diagnosis.locator('[role=option][data-system="ICD-10-CM"]').count() == 0
    diagnosis.get_by_role("checkbox", name="ICD-10-CM").check()
    diagnosis.get_by_role("combobox", name="Label").press("End")
    page.keyboard.type("e")
    diagnosis.locator('[role=option][data-system="ICD-10-CM"]').first.wait_for()

    # With the list closed, Enter submits the form as in any text box.
    box.click()
    expect(box).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    row = page.locator("#phenotype tbody tr", has_text="HP:0001250")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Seizure")
    assert page.js_errors == []
