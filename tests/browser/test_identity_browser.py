"""The identity journey in a real browser: request access → coordinator approves →
first login with TOTP enrolment → dashboard showing exactly the role's menu."""

import re

import pytest

from tests.browser.helpers import assert_accessible, enrol_totp, log_in, menu_labels

pytestmark = pytest.mark.browser

PASSWORD = "quiet-lantern-meadow-4821"


def test_request_access_approval_and_first_login(live_server, browser, mailbox):
    # 1. A clinician asks for an account and the HP role in ERN RND at Charité.
    requester = browser.new_context().new_page()
    requester.goto(live_server + "/login")
    requester.get_by_role("link", name="Request an account").click()
    requester.wait_for_url(live_server + "/signup")
    requester.get_by_label("Full name").fill("Dr Nina Petrova")
    requester.get_by_label("E-mail address").fill("nina.petrova@charite.example")
    requester.get_by_label("Password (at least 12 characters; a passphrase is best)").fill(PASSWORD)
    requester.get_by_label("Password again").fill(PASSWORD)
    requester.get_by_label("Network (ERN)").select_option(label="ERN RND — European Reference Network on Rare Neurological Diseases")
    requester.get_by_label("Hospital (HCP)").select_option(label="Charité – Universitätsmedizin Berlin, Berlin (DE)")
    requester.get_by_role("checkbox", name=re.compile(r"^\s*hp —")).check()
    requester.get_by_label("Why do you need access?").fill("I lead the neurogenetics clinic and discuss ataxia cases.")
    requester.get_by_role("button", name="Send request").click()
    requester.get_by_role("heading", name="Check your e-mail").wait_for()
    assert_accessible(requester)

    # 2. She confirms her address from the e-mail.
    mail = mailbox.wait_for("nina.petrova@charite.example")
    link = re.search(r"https?://\S+/account/verify/\S+", mail["body"]).group(0)
    requester.goto(link)
    assert requester.get_by_role("heading", name="E-mail address confirmed").is_visible()
    assert_accessible(requester)

    # 3. The ERN RND coordinator logs in (first time: sets up two-step login) and approves.
    coord = browser.new_context().new_page()
    log_in(coord, live_server, "coordinator@demo.cpms.eu", "demo-coordinator-2026")
    enrol_totp(coord, live_server)
    coord.goto(live_server + "/")
    assert "Access requests" in menu_labels(coord)
    coord.get_by_role("navigation", name="Main").get_by_role("link", name="Access requests").click()
    request = coord.locator("article.request", has_text="nina.petrova@charite.example")
    request.wait_for()
    assert "neurogenetics clinic" in request.inner_text()
    assert_accessible(coord)  # the queue with a request to decide
    request.get_by_role("button", name="Approve").click()
    coord.get_by_text("Request approved.").wait_for()
    assert coord.locator("article.request", has_text="nina.petrova@charite.example").count() == 0
    approved = mailbox.wait_for("nina.petrova@charite.example")
    assert "approved" in approved["subject"]

    # 4. Her first login: password, then forced TOTP enrolment, then the dashboard.
    log_in(requester, live_server, "nina.petrova@charite.example", PASSWORD)
    enrol_totp(requester, live_server)
    requester.get_by_role("link", name="Continue to the dashboard").click()
    requester.wait_for_url(live_server + "/")
    assert requester.get_by_role("heading", name="Welcome, Dr Nina Petrova").is_visible()
    # exactly the HP's menu: no queue, no administration
    assert menu_labels(requester) == ["Dashboard", "Patients", "Panels", "Terminologies", "Example", "Networks", "Profile"]
    requester.goto(live_server + "/access/queue")
    assert requester.get_by_role("heading", name="You may not do this").is_visible()
    assert_accessible(requester)
