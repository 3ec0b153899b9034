"""Notifications: inbox rows and e-mails through a real SMTP server, preferences, urgent
delivery, one's own inbox only, safe redirects, read state and the unread badge."""

import re

import pytest

from core.app import create_app
from core.notify.kinds import KINDS, register_kind
from core.notify.service import mark_read, notify, preferences, unread_count
from tests.conftest import app_client, login, make_settings, make_user, post_form
from tests.support.smtp import free_port, link_in, smtp_server  # noqa: F401  (fixture)

PANEL_KINDS = (
    "panel.invited", "panel.urgent", "panel.message", "panel.mention", "panel.data_request",
    "panel.data_answered", "panel.meeting", "panel.outcome", "panel.status",
)
BASE = "https://cpms.example.eu"


@pytest.fixture
def mail_settings(smtp_server):
    # Only the mails' links use this base URL; the app under test keeps the plain one, so its
    # session cookie is not "Secure" and the test client sends it over http.
    return make_settings(smtp_host="127.0.0.1", smtp_port=smtp_server.port, base_url=BASE)


@pytest.fixture
async def web(clean_db, smtp_server):
    app = create_app(make_settings(smtp_host="127.0.0.1", smtp_port=smtp_server.port))
    async with app_client(app) as c:
        yield c


async def two_users():
    alice = await make_user("alice@example.org", name="Dr Alice Expert")
    bob = await make_user("bob@example.org", name="Dr Bob Expert")
    return alice, bob


async def rows_of(user_id):
    from core.notify.tables import Notification

    return await Notification.select().where(Notification.user == user_id).order_by(Notification.id)


def badge_text(html: str) -> str:
    """What the badge reads (to a screen reader too): tags dropped, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def mails_to(server, address):
    return [m for m in server.messages if m["recipients"] == [address]]


async def test_notify_fills_the_inbox_and_mails_an_absolute_link(web, smtp_server, mail_settings):
    alice, bob = await two_users()
    count = await notify(
        mail_settings, [alice, bob, alice], "panel.invited", "Invited to the panel on Amber Heron 42", "/panels/7",
        "The coordinator asks for your opinion by Friday.",
    )
    assert count == 2  # alice named twice, notified once
    [a_row] = await rows_of(alice)
    assert len(await rows_of(bob)) == 1
    assert (a_row["kind"], a_row["link"], a_row["urgent"], a_row["read_at"]) == ("panel.invited", "/panels/7", False, None)

    assert sorted(m["to"] for m in smtp_server.messages) == ["alice@example.org", "bob@example.org"]
    [mail] = mails_to(smtp_server, "alice@example.org")
    assert mail["subject"] == "[CPMS] Invited to the panel on Amber Heron 42"
    assert "Hello Dr Alice Expert" in mail["body"] and "by Friday" in mail["body"]
    assert f"{BASE}/panels/7" in mail["body"] and link_in(mail, "/panels/") == "/panels/7"
    assert f"{BASE}/notifications/preferences" in mail["body"]

    await login(web, "alice@example.org")
    inbox = await web.get("/notifications")
    assert inbox.status_code == 200
    assert "Invited to the panel on Amber Heron 42" in inbox.text and "by Friday" in inbox.text
    assert re.search(rf'id="notification-{a_row["id"]}" class="notification unread"', inbox.text)


async def test_inactive_and_unknown_users_are_skipped(web, smtp_server, mail_settings):
    from core.identity.tables import User

    alice, bob = await two_users()
    await User.update({User.is_active: False}).where(User.id == bob)
    assert await notify(mail_settings, [bob, alice, 987654], "panel.status", "Panel closed", "/panels/3") == 1
    assert [m["to"] for m in smtp_server.messages] == ["alice@example.org"]
    assert await rows_of(bob) == []
    assert await notify(mail_settings, [], "panel.status", "Panel closed", "/panels/3") == 0


async def test_preferences_page_switches_email_and_inbox_off(web, smtp_server, mail_settings):
    alice, _ = await two_users()
    await login(web, "alice@example.org")
    form = await web.get("/notifications/preferences")
    assert form.status_code == 200
    for kind in PANEL_KINDS:  # every kind has a row with both boxes, ticked by default
        assert KINDS[kind] in form.text
        assert re.search(rf'name="in_app" value="{re.escape(kind)}"[^>]* checked', form.text)
        assert re.search(rf'name="email" value="{re.escape(kind)}"[^>]* checked', form.text)

    saved = await post_form(web, "/notifications/preferences", {
        "kind": list(PANEL_KINDS),
        "in_app": [k for k in PANEL_KINDS if k not in ("panel.message", "panel.meeting")],
        "email": [k for k in PANEL_KINDS if k not in ("panel.invited", "panel.meeting")],
    })
    assert saved.status_code == 200 and "settings were saved" in saved.text
    assert not re.search(r'name="email" value="panel\.invited"[^>]* checked', saved.text)
    assert re.search(r'name="email" value="panel\.message"[^>]* checked', saved.text)
    prefs = await preferences(alice)
    assert prefs["panel.invited"] == (True, False) and prefs["panel.message"] == (False, True)
    assert prefs["panel.meeting"] == (False, False) and prefs["panel.outcome"] == (True, True)

    # e-mail off: inbox only
    assert await notify(mail_settings, [alice], "panel.invited", "Invited", "/panels/1") == 1
    assert smtp_server.messages == []
    assert [r["kind"] for r in await rows_of(alice)] == ["panel.invited"]
    # inbox off: e-mail only
    assert await notify(mail_settings, [alice], "panel.message", "New message", "/panels/1") == 1
    assert [m["subject"] for m in smtp_server.messages] == ["[CPMS] New message"]
    assert [r["kind"] for r in await rows_of(alice)] == ["panel.invited"]
    # both off: not notified at all
    assert await notify(mail_settings, [alice], "panel.meeting", "Meeting moved", "/panels/1") == 0
    assert len(smtp_server.messages) == 1 and len(await rows_of(alice)) == 1

    # Saving again replaces the choices (no duplicate rows), and kinds not on the form keep theirs.
    await post_form(web, "/notifications/preferences", {"kind": ["panel.invited"], "in_app": [], "email": ["panel.invited"]})
    prefs = await preferences(alice)
    assert prefs["panel.invited"] == (False, True) and prefs["panel.message"] == (False, True)
    from core.notify.tables import NotificationPreference

    assert await NotificationPreference.count().where(
        (NotificationPreference.user == alice) & (NotificationPreference.kind == "panel.invited")
    ) == 1


async def test_urgent_ignores_the_opt_outs(web, smtp_server, mail_settings):
    alice, _ = await two_users()
    await login(web, "alice@example.org")
    await post_form(web, "/notifications/preferences", {"kind": ["panel.urgent"]})  # both boxes unticked
    assert (await preferences(alice))["panel.urgent"] == (False, False)
    assert await notify(mail_settings, [alice], "panel.urgent", "Urgent panel", "/panels/9") == 0

    assert await notify(mail_settings, [alice], "panel.urgent", "Urgent panel", "/panels/9", urgent=True) == 1
    [mail] = smtp_server.messages
    assert mail["subject"] == "[CPMS] Urgent panel" and "always sent by e-mail" in mail["body"]
    [row] = await rows_of(alice)
    assert row["urgent"] is True
    inbox = await web.get("/notifications")
    assert re.search(r'class="notification unread urgent"', inbox.text) and ">urgent</span>" in inbox.text


async def test_attachment_goes_with_the_mail(clean_db, smtp_server, mail_settings):
    alice, _ = await two_users()
    invite = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
    await notify(mail_settings, [alice], "panel.meeting", "Panel meeting", "/panels/2", attachment=("panel.ics", "text/calendar", invite))
    [mail] = smtp_server.messages
    assert mail["attachments"] == [("panel.ics", "text/calendar", invite)]


async def test_a_mail_server_that_is_down_does_not_fail_the_caller(clean_db):
    from core.mail.tables import OutboxMail

    alice, _ = await two_users()
    down = make_settings(smtp_host="127.0.0.1", smtp_port=free_port())
    assert await notify(down, [alice], "panel.outcome", "Outcome reached", "/panels/4") == 1
    assert len(await rows_of(alice)) == 1
    [queued] = await OutboxMail.select().where(OutboxMail.to_address == "alice@example.org")
    assert queued["status"] == "pending" and queued["subject"] == "[CPMS] Outcome reached"


async def test_bad_calls_raise_value_error_and_notify_nobody(clean_db, smtp_server, mail_settings):
    alice, _ = await two_users()
    with pytest.raises(ValueError, match="unknown notification kind"):
        await notify(mail_settings, [alice], "panel.nonsense", "Hello", "/panels/1")
    for link in ("https://evil.example/x", "//evil.example/x", "/\\evil.example", "panels/1", "/a b"):
        with pytest.raises(ValueError, match="local path"):
            await notify(mail_settings, [alice], "panel.status", "Hello", link)
    with pytest.raises(ValueError, match="title"):
        await notify(mail_settings, [alice], "panel.status", "  ", "/panels/1")
    assert await rows_of(alice) == [] and smtp_server.messages == []


def test_kind_registry_has_the_panel_kinds_and_checks_names():
    assert list(KINDS)[:len(PANEL_KINDS)] == list(PANEL_KINDS)
    assert all(KINDS[k] for k in PANEL_KINDS)
    for bad in ("Panel.Invited", "panel", "panel..x", "panel." + "x" * 40):
        with pytest.raises(ValueError):
            register_kind(bad, "Something")
    with pytest.raises(ValueError):
        register_kind("panel.other_thing", " ")
    # The panels module registers its kinds again at import: harmless, order kept.
    before = list(KINDS)
    register_kind("panel.invited", KINDS["panel.invited"])
    assert list(KINDS) == before


async def test_inbox_is_ones_own_and_other_ids_are_404(web, mail_settings):
    alice, bob = await two_users()
    await notify(mail_settings, [alice], "panel.message", "For Alice only", "/panels/1")
    await notify(mail_settings, [bob], "panel.message", "For Bob only", "/panels/2")
    [bobs] = await rows_of(bob)
    await login(web, "alice@example.org")
    inbox = await web.get("/notifications")
    assert "For Alice only" in inbox.text and "For Bob only" not in inbox.text
    for attempt in (
        post_form(web, f"/notifications/{bobs['id']}/read"),
        web.get(f"/notifications/{bobs['id']}/open", follow_redirects=False),
        post_form(web, "/notifications/99999999/read"),
    ):
        r = await attempt
        assert r.status_code == 404 and "For Bob only" not in r.text and "/panels/2" not in r.text
    # alice's "read all" leaves bob's inbox alone
    assert (await post_form(web, "/notifications/read-all")).status_code == 303
    assert await unread_count(bob) == 1 and await unread_count(alice) == 0


async def test_open_marks_read_and_never_redirects_off_site(web, mail_settings):
    from core.notify.tables import Notification

    alice, _ = await two_users()
    await notify(mail_settings, [alice], "panel.data_request", "More data asked", "/panels/5?tab=requests")
    # Rows written without notify() (another tool, an old bug) must not become open redirects.
    await Notification.insert(*[
        Notification(user=alice, kind="panel.status", title=f"Odd {i}", link=link)
        for i, link in enumerate(("//evil.example/x", "https://evil.example/x", "/\\evil.example"))
    ])
    good, *odd = await rows_of(alice)
    await login(web, "alice@example.org")
    r = await web.get(f"/notifications/{good['id']}/open", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/panels/5?tab=requests"
    assert (await rows_of(alice))[0]["read_at"] is not None
    for row in odd:
        r = await web.get(f"/notifications/{row['id']}/open", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/notifications", row["link"]
    assert await unread_count(alice) == 0


async def test_read_one_read_all_and_the_badge(web, mail_settings):
    alice, _ = await two_users()
    for n in range(3):
        await notify(mail_settings, [alice], "panel.message", f"Message {n}", "/panels/1")
    first, second, _ = await rows_of(alice)
    await login(web, "alice@example.org")

    page = await web.get("/notifications")
    assert 'hx-get="/notifications/badge"' in page.text  # the header loads the badge
    badge = await web.get("/notifications/badge", headers={"HX-Request": "true"})
    assert badge.status_code == 200 and badge_text(badge.text) == "Inbox (3 unread)"

    r = await post_form(web, f"/notifications/{first['id']}/read")
    assert r.status_code == 303 and r.headers["location"] == "/notifications"
    assert badge_text((await web.get("/notifications/badge")).text) == "Inbox (2 unread)"

    # The row's own button (htmx): the row comes back, read, and the badge is told to reload.
    r = await post_form(web, f"/notifications/{second['id']}/read", headers={"HX-Request": "true"})
    assert r.status_code == 200 and r.headers.get("hx-trigger") == "notify-changed"
    assert r.text.lstrip().startswith(f'<tr id="notification-{second["id"]}" class="notification"')
    assert "Mark as read" not in r.text and "<html" not in r.text
    assert await unread_count(alice) == 1

    # Reading a read notification again changes nothing and is no error.
    assert (await post_form(web, f"/notifications/{first['id']}/read")).status_code == 303
    assert await mark_read(alice, []) == 0 and await unread_count(alice) == 1

    r = await post_form(web, "/notifications/read-all")
    assert r.status_code == 303
    assert await unread_count(alice) == 0
    assert badge_text((await web.get("/notifications/badge")).text) == "Inbox"
    assert "notification unread" not in (await web.get("/notifications")).text


async def test_inbox_pages_newest_first_and_serves_a_fragment(web):
    from core.notify.tables import Notification

    alice, _ = await two_users()
    await Notification.insert(*[Notification(user=alice, kind="panel.message", title=f"Note {n:02d}", link="/") for n in range(55)])
    await login(web, "alice@example.org")
    first = await web.get("/notifications")
    titles = re.findall(r">(Note \d\d)</a>", first.text)
    assert titles == [f"Note {n:02d}" for n in range(54, 4, -1)]  # 50, newest first
    older = re.search(r'href="(/notifications\?before=\d+)" rel="next"', first.text).group(1)

    rest = await web.get(older)
    assert re.findall(r">(Note \d\d)</a>", rest.text) == [f"Note {n:02d}" for n in range(4, -1, -1)]
    assert 'rel="next"' not in rest.text and "<html" in rest.text

    fragment = await web.get(older, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.text.lstrip().startswith('<table class="inbox">') and "Note 00" in fragment.text

    bad = await web.get("/notifications?before=yesterday")
    assert bad.status_code == 400 and "<html" in bad.text


async def test_anonymous_visitors_are_sent_to_login(web):
    for path in ("/notifications", "/notifications/preferences", "/notifications/1/open", "/notifications/badge"):
        r = await web.get(path, follow_redirects=False)
        assert r.status_code in (302, 303) and r.headers["location"].startswith("/login?next="), path
    r = await web.get("/notifications/badge", headers={"HX-Request": "true"})
    assert r.status_code == 200 and r.headers["hx-redirect"].startswith("/login") and "Inbox" not in r.text
    await web.get("/login")  # for the CSRF cookie
    r = await post_form(web, "/notifications/read-all")
    assert r.status_code in (302, 303) and r.headers["location"].startswith("/login")


async def test_badge_answers_while_two_step_login_is_being_set_up(web, mail_settings):
    # Every page's header loads the badge; a redirect to /account/2fa would reload that page for ever.
    uid = await make_user("new@example.org", mfa=False)
    await notify(mail_settings, [uid], "panel.invited", "Invited", "/panels/1")
    await login(web, "new@example.org")
    setup = await web.get("/account/2fa")
    assert setup.status_code == 200 and 'hx-get="/notifications/badge"' in setup.text
    badge = await web.get("/notifications/badge", headers={"HX-Request": "true"})
    assert badge.status_code == 200 and "hx-redirect" not in badge.headers
    assert badge_text(badge.text) == "Inbox (1 unread)"
    # the inbox itself still waits for the second factor
    r = await web.get("/notifications", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/account/2fa"
