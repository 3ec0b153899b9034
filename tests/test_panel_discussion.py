"""The panel discussion: messages, replies, @mentions, who may post when, escaping, and live
updates through a real server (server-sent events)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.conftest import csrf_of, login, make_user, post_form, text_of
from tests.panels_support import hcp_of, make_panel, make_patient

HX = {"HX-Request": "true"}


async def cast() -> dict:
    """The people of one panel: the enrolling HP (creator and lead), two accepted members of
    other hospitals, an invitee, and people who are not members."""
    home = await make_user("home@example.org", hcp="Home Hospital", name="Dr. Hanna Home")
    weber = await make_user("weber@example.org", hcp="Other Hospital", name="Dr. Lena Weber")
    muller = await make_user("muller@example.org", hcp="Third Hospital", name="Prof. Jörg Müller")
    invitee = await make_user("invitee@example.org", hcp="Other Hospital", name="Dr. Ivo Invited")
    outsider = await make_user("outsider@example.org", hcp="Fourth Hospital", name="Dr. Otto Outside")
    coordinator = await make_user(
        "coord@example.org", roles=(("hp", "ERN RND"), ("coordinator", "ERN RND")), hcp="Fifth Hospital", name="Dr. Cora Coordinator",
    )
    researcher = await make_user("research@example.org", roles=(("researcher", "ERN RND"),), hcp="Fifth Hospital", name="Rhea Researcher")
    patient = await make_patient(await hcp_of(home))
    panel = await make_panel(patient, home, members=(weber, muller), invited=(invitee,))
    return {
        "home": home, "weber": weber, "muller": muller, "invitee": invitee, "outsider": outsider,
        "coordinator": coordinator, "researcher": researcher, "patient": patient, "panel": panel,
    }


EMAILS = {
    "home": "home@example.org", "weber": "weber@example.org", "muller": "muller@example.org", "invitee": "invitee@example.org",
    "outsider": "outsider@example.org", "coordinator": "coord@example.org", "researcher": "research@example.org",
}


async def as_user(client, who: str) -> None:
    client.cookies.clear()
    r = await login(client, EMAILS[who])
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.text[:300]


async def messages(panel_id: int) -> list[dict]:
    from core.panels.tables import Message

    return await Message.select().where(Message.panel == panel_id).order_by(Message.id)


async def all_messages() -> int:
    from core.panels.tables import Message

    return await Message.count()


async def mentions_of(message_id: int) -> set[int]:
    from core.panels.tables import Mention

    return {r["user"] for r in await Mention.select(Mention.user).where(Mention.message == message_id)}


async def inbox(user_id: int) -> list[tuple[str, str]]:
    from core.notify.tables import Notification

    return [(r["kind"], r["link"]) for r in await Notification.select().where(Notification.user == user_id).order_by(Notification.id)]


async def post_message(client, panel_id: int, body: str, parent=None, headers=None):
    data = {"body": body}
    if parent is not None:
        data["parent"] = str(parent)
    return await post_form(client, f"/panels/{panel_id}/messages", data, headers=headers or {})


# --- posting, replies, mentions ------------------------------------------------------------------


async def test_post_reply_and_mentions_notify_each_person_once(client):
    from core.activity.tables import Activity
    from core.audit.tables import AuditEntry

    c = await cast()
    pid = c["panel"]
    await as_user(client, "weber")
    r = await post_message(client, pid, "Thanks @Hanna Home, and @muller: did anyone test FXN repeats?")
    assert r.status_code == 303
    [first] = await messages(pid)
    assert r.headers["location"] == f"/panels/{pid}#msg-{first['id']}"
    assert first["author"] == c["weber"] and first["parent"] is None
    assert first["body"] == "Thanks @Hanna Home, and @muller: did anyone test FXN repeats?"
    # "@Hanna Home" (full name) and "@muller" (a distinctive part, accent folded) are mentions.
    assert await mentions_of(first["id"]) == {c["home"], c["muller"]}
    link = f"/panels/{pid}#msg-{first['id']}"
    assert await inbox(c["home"]) == [("panel.mention", link)]
    assert await inbox(c["muller"]) == [("panel.mention", link)]
    assert await inbox(c["weber"]) == []  # never the author
    assert await inbox(c["invitee"]) == [] and await inbox(c["outsider"]) == []

    # The message is clinical data: audited against the patient's pseudonym; and an event.
    audit = await AuditEntry.select().where(AuditEntry.action == "panel.message_posted")
    assert [(a["actor_id"], a["patient_pseudonym"]) for a in audit] == [(c["weber"], c["patient"]["pseudonym"])]
    events = await Activity.select().where(Activity.action == "panel.message_posted")
    assert [(e["actor_id"], e["subject_id"]) for e in events] == [(c["weber"], str(pid))]

    # A reply by Müller mentioning Weber: Weber is mentioned, the lead hears of a new message.
    await as_user(client, "muller")
    r = await post_message(client, pid, "@Weber yes, negative. @Weber again.", parent=first["id"])
    assert r.status_code == 303
    reply = (await messages(pid))[-1]
    assert reply["parent"] == first["id"] and reply["author"] == c["muller"]
    assert await mentions_of(reply["id"]) == {c["weber"]}
    rlink = f"/panels/{pid}#msg-{reply['id']}"
    assert await inbox(c["weber"]) == [("panel.mention", rlink)]
    assert await inbox(c["home"]) == [("panel.mention", link), ("panel.message", rlink)]
    assert await inbox(c["muller"]) == [("panel.mention", link)]

    # Replies nest one level only: a reply to the reply is refused and nothing is stored.
    r = await post_message(client, pid, "Third level", parent=reply["id"])
    assert r.status_code == 422
    assert len(await messages(pid)) == 2

    # The thread as the page shows it: the reply under its message.
    from core.panels.discussion import thread

    shown = await thread(pid)
    assert [m["id"] for m in shown] == [first["id"]]
    assert [m["id"] for m in shown[0]["replies"]] == [reply["id"]]
    assert shown[0]["author_name"] == "Dr. Lena Weber" and shown[0]["hcp_name"] == "Other Hospital"


async def test_a_mention_of_someone_outside_the_panel_is_plain_text(client):
    c = await cast()
    pid = c["panel"]
    await as_user(client, "home")
    r = await post_message(client, pid, "Ask @Otto Outside and @Ivo Invited? Or mail lena@Weber.example")
    assert r.status_code == 303
    [m] = await messages(pid)
    assert await mentions_of(m["id"]) == set()
    # Everyone taking part hears of the message as a plain one; outsiders and invitees do not.
    assert [k for k, _ in await inbox(c["weber"])] == ["panel.message"]
    assert [k for k, _ in await inbox(c["muller"])] == ["panel.message"]
    assert await inbox(c["outsider"]) == [] and await inbox(c["invitee"]) == []


async def test_htmx_post_returns_a_fresh_form_and_the_message_escaped(client):
    c = await cast()
    pid = c["panel"]
    await as_user(client, "weber")
    r = await post_message(client, pid, '<script>alert("x")</script> <b>bold</b> for @Müller', headers=HX)
    assert r.status_code == 200
    [m] = await messages(pid)
    html = r.text
    assert "<script>alert" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    # The message goes into the thread out of band, with the mention marked...
    assert f'hx-swap-oob="beforeend:#thread-{pid}"' in html
    assert f'id="msg-{m["id"]}"' in html
    assert '<mark class="mention">@Müller</mark>' in html
    # ...and the form comes back empty.
    form = re.search(r'<form id="discussion-form".*?</form>', html, re.S).group(0)
    assert re.search(r"<textarea[^>]*></textarea>", form)
    # The first message also removes the "no messages yet" note.
    assert f'id="thread-empty-{pid}" hx-swap-oob="delete"' in html

    # A reply goes under its message; the reply box comes back closed and empty.
    r = await post_message(client, pid, "Also <i>this</i>", parent=m["id"], headers=HX)
    assert r.status_code == 200
    assert f'hx-swap-oob="beforeend:#replies-{m["id"]}"' in r.text
    assert f'<details class="reply-box" id="reply-{m["id"]}">' in r.text
    assert "&lt;i&gt;this&lt;/i&gt;" in r.text and "<i>this</i>" not in r.text
    assert "thread-empty" not in r.text

    # An htmx post with an empty body gets the form back with the problem (422).
    r = await post_message(client, pid, "   ", headers=HX)
    assert r.status_code == 422
    assert 'aria-invalid="true"' in r.text and "at most 10,000 characters" in r.text
    assert len(await messages(pid)) == 2


async def test_the_page_shows_the_thread_escaped_with_live_updates(client):
    c = await cast()
    pid = c["panel"]
    await as_user(client, "weber")
    assert (await post_message(client, pid, "<img src=x onerror=alert(1)> see @Hanna")).status_code == 303
    [m] = await messages(pid)
    assert (await post_message(client, pid, "A reply", parent=m["id"])).status_code == 303
    r = await client.get(f"/panels/{pid}")
    assert r.status_code == 200
    section = re.search(r'<section id="discussion".*?</section>', r.text, re.S).group(0)
    assert "<img src=x" not in section and "&lt;img src=x onerror=alert(1)&gt;" in section
    assert '<mark class="mention">@Hanna</mark>' in section
    assert f'sse-connect="/panels/{pid}/live"' in section and 'sse-swap="message"' in section
    assert f'<ol class="replies" id="replies-{m["id"]}"' in section
    # The reply sits inside its message's replies.
    replies = re.search(rf'<ol class="replies" id="replies-{m["id"]}".*?</ol>', section, re.S).group(0)
    assert "A reply" in replies
    assert 'id="discussion-form"' in section and "Dr. Lena Weber" in section and "Other Hospital" in section


def test_mentions_by_name_or_distinctive_part():
    from core.panels.discussion import mention_spans, segments

    people = {1: "Dr. Lena Weber", 2: "Prof. Jörg Müller", 3: "Anna Schmidt", 4: "Anna Weber-Lang"}

    def who(body):
        return [ids for _, _, ids in mention_spans(body, people)]

    assert who("@Dr. Lena Weber, see above") == [{1}]
    assert who("@lena WEBER and @Weber") == [{1}, {1}]
    assert who("@Muller @MÜLLER @jorg müller") == [{2}, {2}, {2}]
    assert who("@Anna?") == []  # two Annas: not distinctive
    assert who("@Anna Schmidt @Schmidt @Weber-Lang") == [{3}, {3}, {4}]
    assert who("@Webers @Dr @Prof") == []  # not a whole word; titles alone mean nobody
    assert who("write to lena@Weber.example") == []  # an e-mail address
    assert segments("Hi <@Weber>!", people) == [
        {"text": "Hi <", "mention": False}, {"text": "@Weber", "mention": True}, {"text": ">!", "mention": False},
    ]


def test_links_to_this_site_become_links_and_nothing_else():
    from core.panels.discussion import link_spans, segments

    site = "https://cpms.example.org"
    view = "/pathology/slides/3/view?x=10&y=20&zoom=0.5"
    assert link_spans(f"See {view}.", site) == [(4, 4 + len(view), view)]  # the full stop stays text
    assert link_spans(f"(see {site}{view})", site) == [(5, 5 + len(site + view), view)]  # the site's own origin: the path
    assert link_spans(f"{site}/panels/3", site) == [(0, len(site) + 9, "/panels/3")]
    for other in ("https://evil.example.org/panels/3", "http://cpms.example.org/panels/3", "https://cpms.example.org.evil.io/panels/3",
                  "//evil.example.org/panels/3", "/\\evil.example.org/x", "javascript:alert(1)//panels/3", "and/or",
                  "5 mg /day", "x/panels/3", '"/panels/3"', "/Panels/3"):
        assert link_spans(other, site) == [], other
    people = {1: "Dr. Lena Weber"}
    assert segments(f"@Weber look: {view}", people, site) == [
        {"text": "@Weber", "mention": True}, {"text": " look: ", "mention": False},
        {"text": view, "mention": False, "href": view},
    ]


async def test_a_posted_link_to_this_site_is_rendered_as_a_link(client):
    c = await cast()
    await as_user(client, "weber")
    body = 'Compare /pathology/slides/7/view?x=1&y=2&zoom=1 and <a href="https://evil.example.org/x">this</a>'
    r = await post_message(client, c["panel"], body, headers=HX)
    assert r.status_code == 200
    assert '<a href="/pathology/slides/7/view?x=1&amp;y=2&amp;zoom=1">/pathology/slides/7/view?x=1&amp;y=2&amp;zoom=1</a>' in r.text
    assert "&lt;a href=&#34;https://evil.example.org/x&#34;&gt;this&lt;/a&gt;" in r.text  # escaped, never a link
    assert 'href="https://evil' not in r.text


# --- who may post, and when ------------------------------------------------------------------------


async def test_only_participants_post(client):
    c = await cast()
    pid = c["panel"]
    for who, status in (("outsider", 404), ("invitee", 403), ("coordinator", 403), ("researcher", 403)):
        await as_user(client, who)
        r = await post_message(client, pid, f"Hello from {who}")
        assert r.status_code == status, (who, r.status_code)
        if who != "coordinator":  # the assembler sees the panel, so may watch it live
            live = await client.get(f"/panels/{pid}/live")
            assert live.status_code == status, (who, live.status_code)
    assert await all_messages() == 0

    # The assembling coordinator sees the thread, but the form is not offered.
    await as_user(client, "coordinator")
    r = await client.get(f"/panels/{pid}")
    assert r.status_code == 200
    section = re.search(r'<section id="discussion".*?</section>', r.text, re.S).group(0)
    assert 'id="discussion-form"' not in section and "Only the panel" in text_of(section)


@pytest.mark.parametrize("status", ["closed", "archived", "assembling", "submitted", "cancelled"])
async def test_no_messages_outside_the_discussion(client, status):
    c = await cast()
    pid = await make_panel(c["patient"], c["home"], members=(c["weber"],), status=status, title="Another")
    await as_user(client, "weber")
    r = await post_message(client, pid, "Too late?")
    assert r.status_code == 409
    assert await all_messages() == 0


async def test_closed_panel_shows_the_thread_without_the_form(client):
    from core.panels.tables import Message, Panel

    c = await cast()
    pid = c["panel"]
    await Message.insert(Message(panel=pid, author=c["weber"], body="Before closing"))
    await Panel.update({Panel.status: "closed"}).where(Panel.id == pid)
    await as_user(client, "weber")
    r = await client.get(f"/panels/{pid}")
    assert r.status_code == 200
    section = re.search(r'<section id="discussion".*?</section>', r.text, re.S).group(0)
    assert "Before closing" in section
    assert "<form" not in section and "sse-connect" not in section and "read-only" in section


async def test_body_length_and_reply_target_are_checked(client):
    c = await cast()
    pid = c["panel"]
    other = await make_panel(c["patient"], c["home"], members=(c["weber"],), title="Another panel")
    await as_user(client, "weber")
    for body in ("", "   \n  ", "x" * 10001):
        r = await post_message(client, pid, body)
        assert r.status_code == 422
    assert await all_messages() == 0
    assert (await post_message(client, pid, "y" * 10000)).status_code == 303
    assert (await post_message(client, other, "In the other panel")).status_code == 303
    foreign = (await messages(other))[0]["id"]
    before = await all_messages()
    for parent in (foreign, "abc", "999999", "-1"):
        r = await post_message(client, pid, "A reply", parent=parent)
        assert r.status_code == 422, parent
    assert await all_messages() == before


async def test_posting_does_not_need_the_panel_revision(client):
    from core.panels.tables import Panel

    c = await cast()
    pid = c["panel"]
    await Panel.update({Panel.revision: 7}).where(Panel.id == pid)
    await as_user(client, "muller")
    r = await post_form(client, f"/panels/{pid}/messages", {"body": "Concurrent is fine", "revision": "1"})
    assert r.status_code == 303
    assert len(await messages(pid)) == 1


# --- live updates ------------------------------------------------------------------------------------


async def test_live_rendering_checks_the_viewer_again(client):
    """What the stream's render step relies on: a member sees the panel; once removed (or
    for an invitee, an outsider) nothing is rendered."""
    from core.identity.sessions import actor_for_user
    from core.panels.discussion import viewer_may_see
    from core.panels.tables import PanelMember

    c = await cast()
    pid = c["panel"]
    assert await viewer_may_see(await actor_for_user(c["weber"]), pid)
    assert await viewer_may_see(await actor_for_user(c["home"]), pid)
    assert not await viewer_may_see(await actor_for_user(c["invitee"]), pid)
    assert not await viewer_may_see(await actor_for_user(c["outsider"]), pid)
    await PanelMember.update({PanelMember.status: "removed"}).where((PanelMember.panel == pid) & (PanelMember.user == c["weber"]))
    assert not await viewer_may_see(await actor_for_user(c["weber"]), pid)


async def test_live_rendering_stops_for_members_when_consent_is_withdrawn(client):
    """An open stream keeps running after a withdrawal; its next event renders nothing for a member."""
    from core.identity.sessions import actor_for_user
    from core.panels.discussion import viewer_may_see
    from core.panels.tables import Panel
    from core.patients.tables import Consent

    c = await cast()
    pid = c["panel"]
    patient = (await Panel.select(Panel.patient).where(Panel.id == pid).first())["patient"]
    assert await viewer_may_see(await actor_for_user(c["weber"]), pid)
    await Consent.insert(Consent(patient=patient, kind="care", status="withdrawn", form_version="v1", recorded_by=c["home"]))
    assert not await viewer_may_see(await actor_for_user(c["weber"]), pid)
    assert await viewer_may_see(await actor_for_user(c["home"]), pid)  # the enrolling hospital still does
    await Consent.insert(Consent(patient=patient, kind="care", status="given", form_version="v1", recorded_by=c["home"]))
    assert await viewer_may_see(await actor_for_user(c["weber"]), pid)


async def _read_events(lines, wanted: str):
    """Parse the stream's lines until an event named ``wanted`` comes; returns its data."""
    event, data = None, []
    async for line in lines:
        if line == "":
            if event == wanted and data:
                return "\n".join(data)
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    raise AssertionError("the stream ended without the event")


async def _until_connected(lines):
    async for line in lines:
        if line.startswith(": connected") or line.startswith(":connected"):
            return
    raise AssertionError("the stream ended before it was connected")


async def test_live_update_reaches_another_member_through_a_real_server(clean_db, settings):
    """Acceptance: B holds the panel's stream open, A posts, B receives A's message within
    seconds. A member removed after opening the stream receives nothing."""
    from core.panels.tables import PanelMember
    from tests.support.live_server import live_app

    c = await cast()
    pid = c["panel"]
    leaver = await make_user("leaver@example.org", hcp="Third Hospital", name="Dr. Leo Leaver")
    await PanelMember.insert(PanelMember(panel=pid, user=leaver, role="member", status="accepted"))
    EMAILS["leaver"] = "leaver@example.org"
    with live_app(settings) as base:
        timeout = httpx.Timeout(10.0, read=10.0)
        async with httpx.AsyncClient(base_url=base, timeout=timeout) as a, httpx.AsyncClient(base_url=base, timeout=timeout) as b, \
                httpx.AsyncClient(base_url=base, timeout=timeout) as gone:
            for client, who in ((a, "weber"), (b, "muller"), (gone, "leaver")):
                r = await login(client, EMAILS[who])
                assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login")
            async with b.stream("GET", f"/panels/{pid}/live") as stream_b, gone.stream("GET", f"/panels/{pid}/live") as stream_gone:
                assert stream_b.status_code == 200 and stream_gone.status_code == 200
                assert stream_b.headers["content-type"].startswith("text/event-stream")
                lines_b, lines_gone = stream_b.aiter_lines(), stream_gone.aiter_lines()
                await asyncio.wait_for(_until_connected(lines_b), 10)
                await asyncio.wait_for(_until_connected(lines_gone), 10)
                await PanelMember.update({PanelMember.status: "removed"}).where((PanelMember.panel == pid) & (PanelMember.user == leaver))
                text = "Live from Lena: <em>FXN</em> negative, @Müller?"
                r = await a.post(f"/panels/{pid}/messages", data={"body": text, "_csrf_token": csrf_of(a)}, headers=HX)
                assert r.status_code == 200, r.text[:300]
                html = await asyncio.wait_for(_read_events(lines_b, "message"), 10)
                # The removed member's stream stays silent (B already has the event).
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(_read_events(lines_gone, "message"), 1.5)
            [m] = await messages(pid)
            assert f'id="msg-{m["id"]}"' in html
            assert "Live from Lena: &lt;em&gt;FXN&lt;/em&gt; negative," in html and "<em>" not in html
            assert '<mark class="mention">@Müller</mark>' in html
            assert f'hx-swap-oob="beforeend:#thread-{pid}"' in html
            # Müller may reply: the reply form carries B's own CSRF token.
            assert f'name="_csrf_token" value="{csrf_of(b)}"' in html
