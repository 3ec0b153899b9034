"""One panel from creation to close in a real browser, as its three participants see it.

The HP of the enrolling hospital (Charité) opens the panel from the patient's record, a
coordinator of ERN RND at another hospital (Oslo) assembles it, an expert at a third hospital
(Warsaw) accepts the invitation and discusses live (server-sent events) with the HP, who
schedules a meeting (calendar invitation by e-mail), signs the outcome (PDF report) and
closes the panel. Three browser contexts, one per person; UI only, after the setup below.

Setup, written to the database before the browsers start (the live server has just loaded
the demo data): a patient of Charité in ERN RND with a name that must never reach the expert,
and the coordinator with their hospital. The HP and the expert are demo users.
"""

from __future__ import annotations

import email
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from email import policy

import pytest
from playwright.sync_api import expect

from tests.browser.fixtures import MailBox
from tests.browser.helpers import assert_accessible, enrol_totp, log_in
from tests.panels_support import IDENTITY, ern_id, hcp_of, make_patient

pytestmark = pytest.mark.browser

#: Milliseconds any single wait may take (the machine may be busy with other test runs).
WAIT = 10_000

HP = ("hp@demo.cpms.eu", "demo-hp-2026", "Dr. Lena Weber")
EXPERT = ("expert@demo.cpms.eu", "demo-expert-2026", "Dr. Piotr Kowalski")
COORDINATOR_EMAIL, COORDINATOR_NAME = "ingrid.solberg@ous.example", "Prof. Ingrid Solberg"
COORDINATOR_HOSPITAL = "Oslo universitetssykehus, Rikshospitalet"

TITLE = "Adolescent-onset ataxia: which genetic test next?"
QUESTION = "Progressive gait ataxia from age 14 with a normal gene panel. Which repeat expansions should we test first?"
SUMMARY = "Progressive gait ataxia since age 14."  # the patient's summary (tests.panels_support)
FAMILY, GIVEN = IDENTITY["family_name"], IDENTITY["given_name"]
MESSAGE = "@Lena Weber a normal gene panel does not exclude a repeat expansion: I would test RFC1 and FGF14 first."


class CalendarMailBox(MailBox):
    """The browser tests' SMTP mailbox, also keeping every attachment of every mail."""

    def __init__(self) -> None:
        super().__init__()
        self.attachments: list[dict] = []
        self._arrived = threading.Condition()
        inner, box = self.controller.handler, self

        class Keeping:  # aiosmtpd builds a server per connection with the controller's current handler
            async def handle_DATA(self, server, session, envelope):
                msg = email.message_from_bytes(envelope.content, policy=policy.default)
                with box._arrived:
                    for part in msg.iter_attachments():
                        box.attachments.append({
                            "to": envelope.rcpt_tos[0], "subject": str(msg["subject"]), "type": part.get_content_type(),
                            "method": part.get_param("method"), "filename": part.get_filename(), "text": part.get_content(),
                        })
                    box._arrived.notify_all()
                return await inner.handle_DATA(server, session, envelope)

        self.controller.handler = Keeping()

    def wait_for_attachment(self, to: str, content_type: str, timeout: float = WAIT / 1000) -> dict:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [a for a in self.attachments if a["to"] == to and a["type"] == content_type]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {content_type} attachment mailed to {to}")
                self._arrived.wait(left)


@pytest.fixture(scope="module")
def mailbox():
    """Overrides the browser conftest's mailbox for this module (live_server uses this one)."""
    box = CalendarMailBox()
    yield box
    box.stop()


@pytest.fixture(scope="module")
async def cast(live_server):
    """The patient (Charité, ERN RND) and the coordinator at another hospital of ERN RND."""
    from core.identity.tables import User
    from core.orgs.tables import Hcp, HcpErn
    from tests.conftest import PASSWORD, make_user

    hp = await User.select(User.id).where(User.email == HP[0]).first()
    hospital = Hcp(name=COORDINATOR_HOSPITAL, city="Oslo", country="NO")
    await hospital.save()
    await HcpErn.insert(HcpErn(hcp=hospital.id, ern=await ern_id("ERN RND")))
    await make_user(
        COORDINATOR_EMAIL, roles=(("hp", "ERN RND"), ("coordinator", "ERN RND")), hcp=COORDINATOR_HOSPITAL,
        name=COORDINATOR_NAME, mfa=False,
    )
    patient = await make_patient(await hcp_of(hp["id"]))
    return {"patient": patient, "coordinator": (COORDINATOR_EMAIL, PASSWORD, COORDINATOR_NAME)}


@pytest.fixture
def patient_waits():
    """Assertions wait up to WAIT here (the default 5 s is tight while other runs load the machine)."""
    expect.set_options(timeout=WAIT)
    yield
    expect.set_options(timeout=None)  # back to Playwright's default


def _person(browser, base: str, who: tuple[str, str, str]):
    """A browser context for one person, logged in; first login, so they set up two-step login."""
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(WAIT)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    email_, password, name = who
    log_in(page, base, email_, password)
    enrol_totp(page, base)
    page.get_by_role("link", name="Continue to the dashboard").click()
    page.wait_for_url(base + "/")
    expect(page.get_by_role("heading", name=f"Welcome, {name}")).to_be_visible()
    return context, page


def _menu(page, label: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label).click()


def _status(page):
    """The panel's status badge (first badge of the panel's header)."""
    return page.locator("header.patient-head .badge").first


def _open_panel_page(page, url: str, panel_id: int) -> None:
    """Load the panel page and wait until its live stream (server-sent events) is connected."""
    with page.expect_response(lambda r: r.url.endswith(f"/panels/{panel_id}/live"), timeout=WAIT):
        page.goto(url)


def test_panel_from_creation_to_close(live_server, cast, mailbox, browser, patient_waits):
    # ``cast`` (async, on pytest's event loop) must be set up before ``browser``: Playwright's
    # sync API keeps its own loop running in this thread from then on.
    base = live_server
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def lap(step: str) -> None:
        timings[step] = round(time.monotonic() - t0, 1)

    # 1. The HP opens a panel from the patient's record and submits it to the ERN. ------------------
    hp_ctx, hp = _person(browser, base, HP)
    _menu(hp, "Patients")
    hp.get_by_role("link", name=f"{FAMILY.upper()}, {GIVEN}").click()
    hp.wait_for_url(re.compile(r"/patients/P[A-Z2-9]{11}$"))
    # the record's Panels section, loaded by htmx, offers the new panel
    hp.get_by_role("link", name="Open a panel for this patient").click()
    hp.wait_for_url(re.compile(r"/panels/new\?patient=P[A-Z2-9]{11}$"))
    expect(hp.get_by_role("heading", name=re.compile(r"^Open a panel"))).to_contain_text(cast["patient"]["nickname"])
    expect(hp.get_by_role("combobox", name=re.compile(r"^ERN")).locator("option:checked")).to_have_text("ERN RND")
    hp.get_by_role("textbox", name=re.compile(r"^Title")).fill(TITLE)
    hp.get_by_role("textbox", name=re.compile(r"^Clinical question")).fill(QUESTION)
    hp.get_by_label("Type").select_option(label="Diagnostic")
    hp.get_by_label("Urgency").select_option(label="Within two weeks")
    # the required fields of ERN RND's consultation form
    hp.get_by_label("The panel is asked about").select_option("Diagnosis")
    hp.get_by_label("Context of the question").fill("Gait ataxia and dysarthria; normal MRI apart from mild cerebellar atrophy.")
    hp.get_by_label("Age at onset").fill("14")
    hp.get_by_label("Predominant movement disorder").select_option("Ataxia")
    hp.get_by_label("Genetic testing done").select_option("Yes")
    hp.get_by_label("Patient consented to discussion in the ERN").check()
    hp.get_by_role("checkbox", name="Clinical summary").check()
    hp.get_by_role("button", name="Save and submit to the ERN").click()
    hp.wait_for_url(re.compile(r"/panels/\d+$"))
    panel_id = int(hp.url.rsplit("/", 1)[1])
    panel_url = f"{base}/panels/{panel_id}"
    expect(_status(hp)).to_have_text("Submitted")
    expect(hp.get_by_role("heading", level=1)).to_have_text(f"#{panel_id} {TITLE}")
    expect(hp.locator("#question")).to_contain_text(QUESTION)
    expect(hp.locator("#shared")).to_contain_text(SUMMARY)
    # the enrolling hospital sees the name, with the nickname
    expect(hp.locator("header.patient-head")).to_contain_text(f"{FAMILY.upper()}, {GIVEN}")
    lap("1 HP created and submitted")

    # 2. A coordinator of ERN RND at another hospital assembles it and invites the expert. -----------
    co_ctx, coord = _person(browser, base, cast["coordinator"])
    _menu(coord, "Panel queue")
    expect(coord.get_by_role("heading", name="ERN panel queue")).to_be_visible()
    coord.get_by_role("link", name=TITLE).click()
    coord.wait_for_url(panel_url)
    expect(_status(coord)).to_have_text("Submitted")
    coord.get_by_role("button", name="Assemble this panel").click()
    expect(_status(coord)).to_have_text("Assembling")
    expect(coord.locator("header.patient-head")).to_contain_text(f"Assembled by{COORDINATOR_NAME}")
    expect(coord.locator("body")).not_to_contain_text(FAMILY)  # another hospital: the nickname only
    coord.get_by_label("Find experts of ERN RND by name, hospital or country").fill("Kowalski")
    expert_box = coord.get_by_role("checkbox", name=re.compile(r"Piotr Kowalski"))
    expect(expert_box).to_be_visible()
    assert_accessible(coord)  # assembling: the candidate search's results
    expert_box.check()
    coord.get_by_role("button", name="Invite the selected experts").click()
    invited = coord.get_by_role("row", name=re.compile(r"Piotr Kowalski"))
    expect(invited).to_contain_text("Invited")
    lap("2 coordinator assembled and invited")

    # 3. The expert accepts; sees the nickname and the shared summary, never the name. --------------
    ex_ctx, expert = _person(browser, base, EXPERT)
    _menu(expert, "Panels")
    expert.get_by_role("region", name="Invitations awaiting your answer").get_by_role("link", name=f"#{panel_id} {TITLE}").click()
    expert.wait_for_url(panel_url)
    expect(expert.get_by_role("heading", name="You are invited to this panel")).to_be_visible()
    expect(expert.locator("main")).not_to_contain_text(SUMMARY)  # the invitation only, until they accept
    assert_accessible(expert)  # the invitation
    expert.get_by_role("button", name="Accept the invitation").click()
    expect(expert.get_by_role("heading", name="Shared clinical data")).to_be_visible()
    expect(expert.locator("#shared")).to_contain_text(SUMMARY)
    expect(expert.locator("header.patient-head")).to_contain_text(f"“{cast['patient']['nickname']}”")
    expect(expert.get_by_role("row", name=re.compile(r"Piotr Kowalski"))).to_contain_text("Accepted")
    expect(expert.locator("body")).not_to_contain_text(FAMILY)
    assert FAMILY.lower() not in expert.content().lower() and GIVEN not in expert.content()
    # the coordinator sees the answer and opens the discussion
    coord.reload()
    expect(coord.get_by_role("row", name=re.compile(r"Piotr Kowalski"))).to_contain_text("Accepted")
    coord.get_by_role("button", name="Open the discussion").click()
    expect(_status(coord)).to_have_text("Open for discussion")
    lap("3 expert accepted, discussion open")

    # 4. Live discussion: the expert's message reaches the HP's open page without a reload. ---------
    _open_panel_page(hp, panel_url, panel_id)
    _open_panel_page(expert, panel_url, panel_id)
    for page in (hp, expert):
        expect(_status(page)).to_have_text("Open for discussion")
    hp_thread = hp.get_by_role("list", name="Messages")
    expect(hp_thread).to_have_count(1)
    expect(hp_thread.get_by_role("listitem")).to_have_count(0)
    hp.evaluate("() => { window.__sameDocument = true }")
    reloads: list[str] = []
    watch = lambda r: reloads.append(r.url) if r.method == "GET" and r.url.split("#")[0] == panel_url else None  # noqa: E731
    hp.on("request", watch)
    expert.get_by_label("Your message").fill(MESSAGE)
    expert.get_by_role("button", name="Post the message").click()
    expect(expert.get_by_role("list", name="Messages")).to_contain_text("RFC1 and FGF14")
    expect(expert.get_by_label("Your message")).to_have_value("")
    live = hp_thread.get_by_role("listitem").filter(has_text="RFC1 and FGF14")
    expect(live).to_be_visible()
    expect(live).to_contain_text(EXPERT[2])
    expect(live.locator("mark.mention")).to_have_text("@Lena Weber")
    expect(hp.get_by_text("No messages yet.")).to_have_count(0)
    assert_accessible(hp)  # the discussion with the message that arrived live
    hp.remove_listener("request", watch)
    assert reloads == [] and hp.evaluate("() => window.__sameDocument") is True
    lap("4 live message")

    # 5. The HP schedules a meeting: calendar invitations by e-mail, a video room on the page. ------
    day = (datetime.now(timezone.utc) + timedelta(days=7)).date().isoformat()
    hp.get_by_text("Schedule a meeting", exact=True).click()
    meeting_form = hp.get_by_role("form", name="Schedule a meeting")
    meeting_form.get_by_label("Date").fill(day)
    meeting_form.get_by_label("Time", exact=True).fill("15:30")
    meeting_form.get_by_label("Time zone").select_option("Europe/Berlin")
    meeting_form.get_by_label("Minutes").fill("45")
    meeting_form.get_by_label("Agenda").fill("1. Repeat expansion testing\n2. Physiotherapy")
    meeting_form.get_by_role("button", name="Schedule and invite").click()
    meeting = hp.locator("#meetings li.meeting")
    expect(meeting).to_have_count(1)
    expect(meeting).to_contain_text(f"{day} 15:30")
    expect(meeting).to_contain_text("Europe/Berlin")
    expect(meeting).to_contain_text("45 minutes")
    expect(meeting).to_contain_text("Repeat expansion testing")
    room = meeting.get_by_role("link", name=re.compile(r"^https:\/\/meet\.jit\.si\/cpms-[0-9a-f]{32}$"))
    expect(room).to_be_visible()
    room_url = room.get_attribute("href")
    expect(meeting.get_by_role("link", name="Add to my calendar (.ics)")).to_be_visible()
    invitation = mailbox.wait_for_attachment(EXPERT[0], "text/calendar")
    ics = invitation["text"].replace("\r\n ", "").replace("\n ", "")  # unfold iCalendar lines
    assert f"Panel #{panel_id}" in invitation["subject"] and invitation["method"] == "REQUEST"
    assert "BEGIN:VEVENT" in ics and "METHOD:REQUEST" in ics and room_url in ics
    assert FAMILY not in ics
    # the lead who scheduled it gets no mail about it; the expert is the one other participant
    assert {a["to"] for a in mailbox.attachments if a["type"] == "text/calendar"} == {EXPERT[0]}
    lap("5 meeting")

    # 6. The HP drafts the outcome, puts it up for review, signs it; the PDF report appears. --------
    outcome_form = hp.get_by_role("form", name="Draft the outcome")
    outcome_form.get_by_label("Findings").fill("Late-onset cerebellar ataxia; RFC1 and FGF14 repeat expansions not yet excluded.")
    # The diagnosis through the coding plugin's picker: type, Down, Enter picks ORPHA 95.
    box = outcome_form.get_by_role("combobox", name="Label")
    box.fill("friedreich ataxia")
    listbox = hp.locator("#" + box.get_attribute("aria-controls"))
    # The first search after start-up may still be building the server's search index.
    expect(listbox.locator('[role=option][data-system="ORPHA"][data-code="95"]')).to_be_visible(timeout=60_000)
    box.press("ArrowDown")
    for _ in range(10):  # ICD-10-CM's "Friedreich ataxia" may rank level with it
        active = box.get_attribute("aria-activedescendant")
        if active and hp.locator("#" + active).get_attribute("data-system") == "ORPHA":
            break
        box.press("ArrowDown")
    assert_accessible(hp, context="#outcome")  # the code picker open, an option active
    box.press("Enter")
    expect(outcome_form.locator("[data-cp-picked-text]")).to_have_text("ORPHA:95")
    outcome_form.get_by_label("Recommendations").fill("Test the RFC1 and FGF14 repeat expansions before an exome.")
    outcome_form.get_by_label("Treatment plan").fill("Physiotherapy twice weekly; review in six months.")
    outcome_form.get_by_role("button", name="Save the draft").click()
    outcome_heading = hp.get_by_role("heading", name=re.compile(r"^Outcome"))
    expect(outcome_heading).to_contain_text("draft")
    expect(hp.get_by_text("Put the outcome up for review to sign it.")).to_be_visible()
    hp.get_by_role("button", name="Put the outcome up for review").click()
    expect(_status(hp)).to_have_text("Outcome in review")
    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    hp.once("dialog", accept)
    hp.get_by_role("button", name="Sign the outcome").click()
    expect(outcome_heading).to_contain_text("signed")
    assert dialogs == ["Sign the outcome? Its text can no longer change afterwards."]
    expect(hp.locator("#outcome")).to_contain_text(f"{HP[2]} (lead): signed")
    report = hp.get_by_role("link", name="Download the outcome report (PDF)")
    expect(report).to_be_visible()
    assert_accessible(hp)  # the meeting, the signed outcome
    with hp.expect_download(timeout=WAIT) as info:
        report.click()
    assert info.value.suggested_filename == f"panel-{panel_id}-outcome.pdf"
    with open(info.value.path(), "rb") as fh:
        assert fh.read(5) == b"%PDF-"
    lap("6 outcome signed")

    # 7. The HP closes the panel: read-only from now on. --------------------------------------------
    hp.get_by_role("button", name="Close the panel").click()
    confirm = hp.get_by_role("heading", name="Close the panel?")
    expect(confirm.or_(_status(hp).filter(has_text="Closed"))).to_be_visible()
    if confirm.is_visible():  # fewer than two contributors would ask first
        assert_accessible(hp)  # the confirmation
        hp.get_by_role("button", name="Yes, close the panel").click()
    expect(_status(hp)).to_have_text("Closed")
    expect(hp.get_by_text("The panel is closed: the discussion is read-only.")).to_be_visible()
    expect(hp.get_by_label("Your message")).to_have_count(0)
    expect(hp.get_by_role("button", name="Post the message")).to_have_count(0)
    expect(hp.get_by_role("button", name="Close the panel")).to_have_count(0)
    expect(hp_thread).to_contain_text("RFC1 and FGF14")  # the discussion stays readable
    expert.reload()
    expect(_status(expert)).to_have_text("Closed")
    expect(expert.get_by_role("button", name="Post the message")).to_have_count(0)
    lap("7 closed")

    for page in (hp, coord, expert):
        assert page.js_errors == [], page.js_errors
    for context in (hp_ctx, co_ctx, ex_ctx):
        context.close()
    print("timings (s since the first login):", timings)
