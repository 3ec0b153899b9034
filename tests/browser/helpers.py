"""Steps shared by browser tests."""

import re

import pyotp


def log_in(page, base: str, email: str, password: str) -> None:
    page.goto(base + "/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def enrol_totp(page, base: str) -> str:
    """On the forced enrolment page: read the key, answer with a current code, return the key."""
    page.wait_for_url(re.compile(r"/account/2fa$"))
    secret = page.get_by_test_id("totp-secret").inner_text().strip()
    assert page.get_by_role("img", name="QR code for your authenticator app").is_visible()
    page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on two-step login").click()
    page.get_by_test_id("recovery-codes").wait_for()
    assert page.get_by_test_id("recovery-codes").locator("li").count() == 10
    return secret


def menu_labels(page) -> list[str]:
    nav = page.get_by_role("navigation", name="Main")
    return [t.strip() for t in nav.get_by_role("link").all_inner_texts()]
