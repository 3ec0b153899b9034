"""Passkeys in a real browser: Chromium's virtual authenticator (DevTools WebAuthn domain) plays the
security key. A clinician adds a passkey on the profile page, logs out, and at the next login uses it
instead of the authenticator app's code. The site runs as http://localhost (WebAuthn needs a domain)."""

import re

import pyotp
import pytest
from playwright.sync_api import expect

from tests.browser.helpers import assert_accessible, log_in

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
async def clinician(settings, migrated):
    """An HP with an authenticator app (set up before the browser starts)."""
    from tests.conftest import PASSWORD, TOTP_SECRETS, make_user
    from tests.fixtures import empty_database

    await empty_database(settings, migrated)
    uid = await make_user("passkey.hp@example.org", name="Petra Passkey")
    return {"email": "passkey.hp@example.org", "password": PASSWORD, "secret": TOTP_SECRETS[uid]}


@pytest.fixture(scope="module")
def site(clinician, settings):
    from tests.browser.fixtures import _need_chromium
    from tests.support.live_server import live_app

    _need_chromium()
    with live_app(settings, host_name="localhost") as base:
        yield base


def test_add_a_passkey_and_log_in_with_it(site, clinician, browser):
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True,
    }})
    log_in(page, site, clinician["email"], clinician["password"])
    page.wait_for_url(re.compile(r"/login/2fa"))
    page.get_by_label("Code").fill(pyotp.TOTP(clinician["secret"]).now())
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(lambda url: "/login" not in url, timeout=15000)  # the second step is done
    page.goto(site + "/profile#passkeys")
    page.get_by_label("Name of the passkey").fill("Work laptop")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("#passkeys li", has_text="Work laptop")).to_be_visible(timeout=15000)
    assert_accessible(page)  # the profile with its passkey
    page.get_by_role("button", name="Log out").first.click()
    page.wait_for_load_state()

    log_in(page, site, clinician["email"], clinician["password"])
    page.wait_for_url(re.compile(r"/login/2fa"))
    assert_accessible(page)  # the second step offering the passkey
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url(lambda url: "/login" not in url, timeout=15000)
    page.goto(site + "/profile")
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    expect(page.locator("#passkeys li", has_text="last used")).to_be_visible()
    context.close()
