"""The main journey of the foundation in a real browser: log in, navigate with htmx, log out."""

import re

import pytest

pytestmark = pytest.mark.browser


def test_login_dashboard_navigation_and_logout(live_server, page):
    page.goto(live_server + "/")
    assert "/login" in page.url
    assert page.get_by_role("heading", name="Log in to CPMS").is_visible()
    # htmx loaded from our own static files and running under the strict CSP
    page.wait_for_function("() => window.htmx !== undefined")

    # the researcher's roles see no patient data: no second factor is demanded
    page.get_by_label("E-mail address").fill("researcher@demo.cpms.eu")
    page.get_by_label("Password").fill("demo-researcher-2026")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server + "/")
    assert page.get_by_role("heading", name=re.compile("Welcome, Dr. Sofia Rossi")).is_visible()
    nav = page.get_by_role("navigation", name="Main")
    labels = [t.strip() for t in nav.get_by_role("link").all_inner_texts()]
    assert labels == ["Dashboard", "Terminologies", "Research", "Networks", "Profile"]

    # hx-boost: navigation swaps the body without a full page load
    page.evaluate("() => { window.__marker = 42 }")
    nav.get_by_role("link", name="Networks").click()
    page.wait_for_url(live_server + "/erns")
    assert page.get_by_role("heading", name="European Reference Networks").is_visible()
    assert page.evaluate("() => window.__marker") == 42
    assert page.locator("tbody tr").count() == 24

    page.get_by_role("link", name="ERN RND").click()
    page.wait_for_url(re.compile(r"/erns/\d+$"))
    assert page.get_by_text("Charité – Universitätsmedizin Berlin").is_visible()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login"))
    page.goto(live_server + "/profile")
    assert "/login?next=" in page.url
    assert page.js_errors == []


def test_wrong_password_and_error_pages(live_server, page):
    page.goto(live_server + "/login")
    page.get_by_label("E-mail address").fill("hp@demo.cpms.eu")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").wait_for()
    assert "not right" in page.get_by_role("alert").inner_text()
    response = page.goto(live_server + "/this/does/not/exist")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()


def test_works_without_javascript(live_server, browser):
    context = browser.new_context(java_script_enabled=False)
    p = context.new_page()
    p.goto(live_server + "/login")
    p.get_by_label("E-mail address").fill("researcher@demo.cpms.eu")
    p.get_by_label("Password").fill("demo-researcher-2026")
    p.get_by_role("button", name="Log in").click()
    p.wait_for_url(live_server + "/")
    assert p.get_by_role("heading", name=re.compile("Welcome")).is_visible()
    context.close()
