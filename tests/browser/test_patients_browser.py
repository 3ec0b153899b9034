"""The patient journey in a real browser: an HP enrols a patient with consent, uploads a
document, edits a diagnosis, and exports the patient bundle."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import assert_accessible, enrol_totp, log_in

pytestmark = pytest.mark.browser

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def test_enrol_upload_edit_export(live_server, browser, tmp_path):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    log_in(page, live_server, "hp@demo.cpms.eu", "demo-hp-2026")
    enrol_totp(page, live_server)
    page.goto(live_server + "/patients")
    page.get_by_role("link", name="Enrol a patient").click()
    page.wait_for_url(live_server + "/patients/new")
    page.get_by_label("Given name *").fill("Elif")
    page.get_by_label("Family name *").fill("Kaya-Lindqvist")
    page.get_by_label("Date of birth *").fill("2015-08-21")
    page.get_by_label("Sex").select_option("female")
    page.get_by_label("Local record number").fill("CH-0077001")
    page.get_by_label("Network (ERN) *").select_option(label="ERN RND")
    page.get_by_label("The patient (or guardian) signed the Consent for Care").check()
    page.get_by_label("Date signed *").fill("2026-11-20")
    page.get_by_label("Form version *").fill("ERN-RND consent v3.1")
    page.get_by_role("button", name="Enrol").click()
    page.wait_for_url(re.compile(r"/patients/P[A-Z2-9]{11}$"))
    pseudonym = page.url.rsplit("/", 1)[1]
    assert page.get_by_role("heading", name=re.compile("KAYA-LINDQVIST, Elif")).is_visible()
    assert page.get_by_text("care: given").is_visible()

    # a document
    pdf = tmp_path / "letter.pdf"
    pdf.write_bytes(PDF)
    documents = page.locator("#documents")
    documents.get_by_label("Kind").select_option("letter")
    documents.get_by_label("Title").fill("Referral letter")
    documents.get_by_label(re.compile("^File")).set_input_files(str(pdf))
    documents.get_by_role("button", name="Upload").click()
    page.locator("#documents").get_by_role("link", name="Referral letter").wait_for()

    # a diagnosis, then corrected from suspected to confirmed
    diagnoses = page.locator("#diagnoses")
    add = diagnoses.locator("form").last
    add.get_by_label("label").fill("Hereditary spastic paraplegia")
    add.get_by_label("status").select_option("suspected")
    add.get_by_role("button", name="Add").click()
    expect(page.locator("#diagnoses tbody tr").first.locator("td").first).to_have_text("Hereditary spastic paraplegia")
    page.locator("#diagnoses summary", has_text="edit").first.click()
    edit = page.get_by_role("form", name="Edit Diagnoses entry")
    edit.get_by_label("status").select_option("confirmed")
    edit.get_by_role("button", name="Save").click()
    # the status cell itself (4th column), not the option texts of the edit form
    expect(page.locator("#diagnoses tbody tr").first.locator("td").nth(3)).to_have_text("confirmed")
    assert_accessible(page)  # the new record, its sections swapped in by htmx
    page.get_by_role("link", name="History").click()
    page.get_by_role("heading", name="Changes to this record").wait_for()
    assert page.locator("td", has_text="suspected").count() >= 1

    # export the bundle (JSON) and check what it holds
    page.goto(live_server + f"/patients/{pseudonym}")
    with page.expect_download() as info:
        page.get_by_role("link", name="JSON").click()
    download = info.value
    assert download.suggested_filename == f"{pseudonym}-export.json"
    data = json.loads(open(download.path(), encoding="utf-8").read())
    dump = json.dumps(data)
    assert "Kaya-Lindqvist" in dump and "Hereditary spastic paraplegia" in dump and "Referral letter" in dump
    assert "patient.view" in dump  # the access audit is part of the export
    context.close()
