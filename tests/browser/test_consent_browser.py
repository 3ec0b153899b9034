"""Consent in a real browser: the enrolling HP withdraws the Consent for Care of a patient under
discussion; the expert of another hospital finds the panel suspended (listed without its title,
refused with the reason); the HP's page says what is left to do; consent given again resumes it."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import assert_accessible, enrol_totp, log_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def discussed(live_server):
    """The demo's panel under discussion and its patient (set up before the browser starts)."""
    from core.panels.tables import Panel
    from core.patients.tables import Patient

    panel = await Panel.select(Panel.id, Panel.patient, Panel.title).where(Panel.status == "open").first()
    patient = await Patient.select(Patient.pseudonym).where(Patient.id == panel["patient"]).first()
    return {"panel": panel["id"], "title": panel["title"], "pseudonym": patient["pseudonym"]}


def _record(page, base: str, pseudonym: str, kind: str, status: str) -> None:
    page.goto(f"{base}/patients/{pseudonym}#consents")
    form = page.locator("#consents form")
    form.get_by_label("Kind").select_option(label=kind)
    form.get_by_label("Status").select_option(status)
    form.get_by_label("Date").fill("2026-12-07")
    form.get_by_label("Form version").fill("ERN-RND consent v3.1")
    # The page's URL already matches: wait for the POST's answer itself (303 to the record).
    with page.expect_response(lambda r: r.url.endswith("/consents") and r.request.method == "POST") as answer:
        form.get_by_role("button", name="Record consent").click()
    assert answer.value.status == 303
    page.wait_for_load_state()


def test_withdrawn_consent_suspends_the_panel_for_the_expert_and_given_again_resumes_it(live_server, discussed, browser):
    base, panel_url = live_server, f"{live_server}/panels/{discussed['panel']}"
    hp_ctx = browser.new_context()
    hp = hp_ctx.new_page()
    log_in(hp, base, "hp@demo.cpms.eu", "demo-hp-2026")
    enrol_totp(hp, base)
    _record(hp, base, discussed["pseudonym"], "Consent for Care", "withdrawn")
    expect(hp.get_by_role("alert").filter(has_text="No valid Consent for Care")).to_be_visible()
    expect(hp.get_by_text("care: withdrawn")).to_be_visible()
    assert_accessible(hp)  # the record saying the consent is missing

    hp.goto(panel_url)
    expect(hp.locator("#suspended")).to_contain_text("nobody outside this hospital sees this panel")
    expect(hp.locator("summary", has_text="Cancel the panel")).to_be_visible()
    expect(hp.get_by_role("button", name="Put the outcome up for review")).to_have_count(0)
    assert_accessible(hp)  # the suspended panel, as its hospital sees it

    ex_ctx = browser.new_context()
    expert = ex_ctx.new_page()
    log_in(expert, base, "expert@demo.cpms.eu", "demo-expert-2026")
    enrol_totp(expert, base)
    expert.goto(base + "/panels")
    row = expert.locator("tr", has_text="Suspended: the patient's consent")
    expect(row).to_have_count(1)
    expect(row.get_by_text("Suspended", exact=True)).to_be_visible()
    expect(row.get_by_role("link")).to_have_count(0)  # no link to a page that would refuse
    expect(expert.get_by_text(discussed["title"])).to_have_count(0)
    assert_accessible(expert)  # the list with a suspended row
    response = expert.goto(panel_url)
    assert response.status == 403
    expect(expert.get_by_text("This panel is suspended")).to_be_visible()
    expect(expert.get_by_text("ATXN2")).to_have_count(0)
    assert_accessible(expert)  # the refusal, saying why

    _record(hp, base, discussed["pseudonym"], "Consent for Care", "given")
    response = expert.goto(panel_url)
    assert response.status == 200
    expect(expert.get_by_role("heading", name=re.compile(re.escape(discussed["title"][:30])))).to_be_visible()
    hp_ctx.close()
    ex_ctx.close()
