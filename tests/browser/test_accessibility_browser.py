"""WCAG 2.2 AA in a real browser: axe-core (``assert_accessible`` in tests/browser/helpers.py) on
every page each demo role's menu offers, one detail page behind each list, and the main pages of
each journey, at a desktop width and at a phone's (docs/accessibility.md).

Each page is loaded once and judged at both sizes, with its closed <details> opened, so the edit
forms and actions they hold are judged too. Every violation of a test is gathered before it fails,
so one run lists them all. The other browser tests run the same check at the natural points of
their journeys (a suspended panel, the live discussion, the outcome, the access queue…)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from core.identity import DEMO_PASSWORD
from tests.browser.helpers import axe_violations, enrol_totp, format_violations, log_in

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

#: Menu entries not walked here, each with its reason.
NOT_WALKED: dict[str, str] = {}

#: Pages already judged in this process (as patterns: digits and pseudonyms folded), so a page
#: several roles' menus offer is judged once, for the first role that reaches it. The patient and
#: panel pages are judged in test_clinician_pages, with every section in place.
_SEEN: set[str] = {"/patients/P…", "/panels/N"}


def _pattern(path: str) -> str:
    return re.sub(r"/P[A-Z2-9]{11}\b", "/P…", re.sub(r"/\d+", "/N", path))


@pytest.fixture(scope="module")
async def demo(live_server):
    """Ids of the demo's records, read before the browser starts (as in the other modules)."""
    from core.panels.tables import Panel
    from core.patients.tables import Patient
    from plugins.dicom_viewer.tables import Series, Study
    from plugins.pathology_viewer.tables import Slide

    study = await Study.select(Study.id, Study.patient).first()
    series = await Series.select(Series.id).where(Series.study == study["id"]).first()
    slide = await Slide.select(Slide.id).first()
    patient = await Patient.select(Patient.pseudonym).where(Patient.id == study["patient"]).first()
    panel = await Panel.select(Panel.id).where(Panel.status == "open").first()
    closed = await Panel.select(Panel.id).where(Panel.status == "closed").first()
    return {
        "patient": patient["pseudonym"], "study": study["id"], "series": series["id"], "slide": slide["id"],
        "panel": panel["id"], "closed": closed["id"],
    }


class Checker:
    """Judges pages at both sizes and gathers what axe finds."""

    def __init__(self, page) -> None:
        self.page = page
        self.report: list[str] = []
        self.judged: list[str] = []

    def check(self, label: str | None = None) -> None:
        page = self.page
        label = label or re.sub(r"^https?://[^/]+", "", page.url)
        self.judged.append(label)
        page.evaluate("() => document.querySelectorAll('details:not([open])').forEach(d => { d.open = true; })")
        for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(size)
            found = axe_violations(page)
            if found:
                self.report.append(f"{label} at {name} {size['width']}x{size['height']}:\n{format_violations(found)}")
        page.set_viewport_size(DESKTOP)

    def visit(self, url: str, label: str | None = None) -> None:
        self.page.goto(url)
        self.check(label)

    def assert_clean(self) -> None:
        print(f"axe judged {len(self.judged)} pages at two sizes:", "; ".join(self.judged))  # shown with -s
        assert not self.report, "axe found WCAG 2.2 A/AA violations:\n\n" + "\n\n".join(self.report)


def _sign_in(page, base: str, role: str, checker: Checker) -> None:
    """Log in as a demo account; the forced two-step enrolment's pages are judged on the way."""
    log_in(page, base, f"{role}@demo.cpms.eu", DEMO_PASSWORD.format(role=role))
    page.wait_for_url(lambda url: "/login" not in url)  # hx-boost: htmx posts the form
    if page.url.endswith("/account/2fa"):
        if "two-step enrolment" not in _SEEN:
            checker.check("two-step enrolment (QR code)")
        enrol_totp(page, base)
        if "two-step enrolment" not in _SEEN:
            checker.check("two-step enrolment (recovery codes)")
        _SEEN.add("two-step enrolment")


def _walk_menu(page, base: str, checker: Checker) -> None:
    """The dashboard, each page of the main menu, and the first detail page linked from each
    (pages an earlier account reached are not judged again)."""
    page.goto(base + "/")
    if "/" not in _SEEN:
        _SEEN.add("/")
        checker.check("dashboard")
    hrefs = [a.get_attribute("href") for a in page.get_by_role("navigation", name="Main").get_by_role("link").all()]
    for href in hrefs:
        if href == "/" or href in NOT_WALKED or _pattern(href) in _SEEN:
            continue
        _SEEN.add(_pattern(href))
        checker.visit(base + href)
        # one detail page behind the list (a network, a hospital, a user, a code system…)
        links = page.locator(f'main a[href^="{href}/"]:not([download]):not([hx-boost="false"]):not([href$="/new"])')
        if links.count():
            detail = links.first.get_attribute("href").split("#")[0]
            if _pattern(detail) not in _SEEN:
                _SEEN.add(_pattern(detail))
                checker.visit(base + detail)


def test_public_pages(live_server, demo, page):
    """Login (and its error), the account request (and its errors), forgotten password, 404."""
    checker = Checker(page)
    page.set_viewport_size(DESKTOP)
    checker.visit(live_server + "/login")
    page.get_by_label("E-mail address").fill("hp@demo.cpms.eu")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").wait_for()
    checker.check("login with an error")
    page.goto(live_server + "/signup")
    # one role ticked: a request with none answers 500 today (KeyError in validate_request's getall)
    page.get_by_role("checkbox", name=re.compile(r"^\s*hp —")).check()
    page.get_by_role("button", name="Send request").click()
    page.locator(".field-error").first.wait_for()
    checker.check("account request with errors")
    checker.visit(live_server + "/account/password/forgot")
    checker.visit(live_server + "/this/does/not/exist", "404 page")
    checker.assert_clean()


@pytest.mark.parametrize("role", ["admin", "coordinator", "dispatcher", "researcher", "guest", "assistant", "dpo", "expert"])
def test_each_role_menu(live_server, demo, browser, role):
    """Every page of the role's menu (and one detail page behind each list)."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    checker = Checker(page)
    _sign_in(page, live_server, role, checker)
    _walk_menu(page, live_server, checker)
    context.close()
    checker.assert_clean()


def test_clinician_pages(live_server, demo, browser):
    """The HP's menu, then the clinical pages: enrolment with errors, the record with every plugin
    section (pedigree editor and side form, images, slides, code pickers open), panels, viewers,
    profile and two-step login pages."""
    base, pseudonym = live_server, demo["patient"]
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    checker = Checker(page)
    _sign_in(page, base, "hp", checker)
    _walk_menu(page, base, checker)

    page.goto(base + "/patients/new")
    page.get_by_role("button", name="Enrol").click()
    page.locator(".field-error").first.wait_for()
    checker.check("enrolment form with errors")

    # The patient page with every section, the pedigree editor showing a relative's side form and
    # the diagnosis's code picker open with an option active: judged once, all in place.
    page.goto(f"{base}/patients/{pseudonym}")
    page.locator("#pedigree-editor table.pedigree-people tbody a").first.click()
    page.locator("#pedigree-editor .pedigree-side").wait_for()
    box = page.locator("#diagnoses form").last.get_by_role("combobox", name="Label")
    box.fill("ataxia")
    listbox = page.locator("#" + box.get_attribute("aria-controls"))
    expect(listbox.get_by_role("option").first).to_be_visible(timeout=60_000)  # the search index may still build
    box.press("ArrowDown")
    checker.check("patient page: every section, a relative's pedigree form, the code picker open")

    checker.visit(f"{base}/patients/{pseudonym}/history")
    checker.visit(f"{base}/panels/new?patient={pseudonym}", "new panel form")
    checker.visit(f"{base}/panels/{demo['panel']}", "panel under discussion")
    checker.visit(f"{base}/panels/{demo['closed']}", "closed panel with its signed outcome")
    checker.visit(f"{base}/dicom/studies/{demo['study']}")
    checker.visit(f"{base}/dicom/series/{demo['series']}/view", "DICOM viewer")
    checker.visit(f"{base}/dicom/patients/{pseudonym}/upload", "DICOM upload")
    checker.visit(f"{base}/pathology/slides/{demo['slide']}", "slide facts")
    checker.visit(f"{base}/pathology/slides/{demo['slide']}/view", "pathology viewer")
    checker.visit(f"{base}/pathology/slides/{demo['slide']}/share-links", "slide share links")
    checker.visit(f"{base}/coding/HPO/HP:0001251", "a code's page")
    checker.visit(f"{base}/notifications", "inbox")
    checker.visit(f"{base}/notifications/preferences")
    checker.visit(f"{base}/account/2fa", "two-step login status")

    # the second step of the next login
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/login"))
    log_in(page, base, "hp@demo.cpms.eu", DEMO_PASSWORD.format(role="hp"))
    page.wait_for_url(re.compile(r"/login/2fa"))
    checker.check("login, second step")
    context.close()
    checker.assert_clean()
