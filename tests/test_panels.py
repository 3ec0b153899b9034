"""Panels: creation, every lifecycle transition by every role, forwarding, lists."""

from __future__ import annotations

import pytest

from tests.conftest import login, make_user, post_form
from tests.panels_support import IDENTITY, ern_id, hcp_of, make_panel, make_patient, revision

pytestmark = pytest.mark.asyncio


async def _status(panel_id: int) -> str:
    from core.panels.tables import Panel

    return (await Panel.select(Panel.status).where(Panel.id == panel_id).first())["status"]


_JARS: dict[str, object] = {}


async def _cast():
    """Everyone a panel meets. The creator's hospital is "Test Hospital"."""
    _JARS.clear()
    ids = {
        "creator": await make_user("creator@x.eu", (("hp", "ERN RND"),), name="Dr Creator"),
        "colleague": await make_user("colleague@x.eu", (("hp", "ERN RND"),), name="Dr Colleague"),
        "coordinator": await make_user("coord@x.eu", (("hp", "ERN RND"), ("coordinator", "ERN RND")), hcp="Other Hospital", name="Dr Coord"),
        "dispatcher": await make_user("disp@x.eu", (("hp", "ERN RND"), ("dispatcher", "ERN RND")), hcp="Other Hospital", name="Disp"),
        "member": await make_user("member@x.eu", (("hp", "ERN RND"),), hcp="Third Hospital", name="Dr Lena Weber"),
        "invited": await make_user("invited@x.eu", (("hp", "ERN RND"),), hcp="Third Hospital", name="Dr Invitee"),
        "outsider": await make_user("outsider@x.eu", (("hp", "ERN RND"),), hcp="Third Hospital", name="Dr Outsider"),
        "other_ern": await make_user("kidney@x.eu", (("hp", "ERKNet"), ("coordinator", "ERKNet")), hcp="Other Hospital", name="Dr Kidney"),
        "researcher": await make_user("res@x.eu", (("researcher", "ERN RND"),), hcp=None, name="Researcher", mfa=False),
    }
    return ids


EMAILS = {
    "creator": "creator@x.eu", "colleague": "colleague@x.eu", "coordinator": "coord@x.eu", "dispatcher": "disp@x.eu",
    "member": "member@x.eu", "invited": "invited@x.eu", "outsider": "outsider@x.eu", "other_ern": "kidney@x.eu", "researcher": "res@x.eu",
}


def no_identity(text: str) -> bool:
    folded = text.lower()
    return all(IDENTITY[k].lower() not in folded for k in ("given_name", "family_name", "local_record_number", "date_of_birth"))


async def as_user(client, who: str):
    """Act as ``who``: logged in once per test, then their session cookies are reused."""
    import httpx

    if who in _JARS:
        client.cookies = httpx.Cookies(_JARS[who])
        return
    client.cookies.clear()
    r = await login(client, EMAILS[who])
    assert r.status_code in (302, 303), r.text
    _JARS[who] = httpx.Cookies(client.cookies)


# --- creation -------------------------------------------------------------------------------


async def test_hp_creates_a_panel_from_the_patient_record(client):
    from core.panels.tables import Panel, PanelShare, PanelTransition
    from core.patients.tables import Diagnosis

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    dx = Diagnosis(patient=patient["id"], label="Spinocerebellar ataxia", system="ORPHA", code="94147", status="suspected")
    await dx.save()
    await as_user(client, "creator")
    r = await client.get(f"/panels/new?patient={patient['pseudonym']}")
    assert r.status_code == 200 and 'name="question"' in r.text
    form = {
        "patient": patient["pseudonym"], "ern": str(await ern_id()), "title": "Progressive ataxia", "question": "Which gene next?",
        "kind": "diagnostic", "urgency": "routine", "specialties": "neurogenetics", "share": ["summary:", f"diagnosis:{dx.id}"],
        "then": "save",
    }
    r = await post_form(client, "/panels/new", form)
    assert r.status_code == 303, r.text
    panel = await Panel.select().where(Panel.title == "Progressive ataxia").first()
    assert panel["status"] == "draft" and panel["lead"] == ids["creator"] and panel["form_template"] is not None
    assert {(s["kind"], s["ref_id"]) for s in await PanelShare.select().where(PanelShare.panel == panel["id"])} == {("summary", None), ("diagnosis", dx.id)}
    assert await PanelTransition.count().where(PanelTransition.panel == panel["id"]) == 1
    page = await client.get(f"/panels/{panel['id']}")
    assert page.status_code == 200
    assert patient["nickname"] in page.text and "Spinocerebellar ataxia" in page.text
    assert IDENTITY["family_name"].upper() in page.text  # the enrolling hospital sees who it is
    # the patient page lists the panel
    section = await client.get(f"/panels/for-patient/{patient['pseudonym']}")
    assert "Progressive ataxia" in section.text


async def test_creation_refuses_bad_input_and_changes_nothing(client):
    from core.panels.tables import Panel

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    await as_user(client, "creator")
    base = {"patient": patient["pseudonym"], "ern": str(await ern_id()), "title": "T", "question": "Q", "kind": "diagnostic", "urgency": "routine"}
    for bad in ({"title": ""}, {"kind": "astrology"}, {"urgency": "yesterday"}, {"ern": str(await ern_id("ERKNet"))}, {"question": "x" * 5001}, {"share": ["document:999"]}):
        r = await post_form(client, "/panels/new", {**base, **bad})
        assert r.status_code == 422, bad
    assert await Panel.count() == 0
    # someone else's patient is not there at all
    await as_user(client, "outsider")
    r = await post_form(client, "/panels/new", base)
    assert r.status_code == 404 and await Panel.count() == 0


async def test_researcher_and_other_erns_never_see_a_panel(client):
    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    pid = await make_panel(patient, ids["creator"], status="open", members=[ids["member"]])
    for who, code in (("outsider", 404), ("other_ern", 404), ("researcher", 403)):
        await as_user(client, who)
        r = await client.get(f"/panels/{pid}")
        assert r.status_code == code, who
        assert patient["nickname"] not in r.text
    await as_user(client, "member")
    r = await client.get(f"/panels/{pid}")
    assert r.status_code == 200 and patient["nickname"] in r.text
    assert no_identity(r.text)


async def test_an_invitee_sees_the_invitation_but_not_the_record(client):
    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    pid = await make_panel(patient, ids["creator"], status="assembling", invited=[ids["invited"]])
    await as_user(client, "invited")
    r = await client.get(f"/panels/{pid}")
    assert r.status_code == 200 and "Which diagnosis explains" in r.text
    assert "Progressive gait ataxia" not in r.text  # the summary is not shown before accepting
    r = await client.get(f"/panels/{pid}/shared/1")
    assert r.status_code == 403


# --- the transition matrix ----------------------------------------------------------------------

ROLES = ("creator", "colleague", "coordinator", "dispatcher", "member", "invited", "outsider", "other_ern", "researcher")
#: action -> (a state it starts from, roles allowed)
MATRIX = {
    "submit": ("draft", {"creator"}),
    "take": ("submitted", {"coordinator", "dispatcher"}),
    "return": ("submitted", {"coordinator", "dispatcher"}),
    "forward": ("assembling", {"coordinator", "dispatcher"}),
    "open": ("assembling", {"coordinator", "dispatcher", "creator"}),
    "propose": ("open", {"creator"}),
    "reopen": ("outcome_review", {"creator"}),
    "close": ("outcome_review", {"creator"}),
    "archive": ("closed", {"creator", "coordinator", "dispatcher"}),
    "cancel": ("open", {"creator", "coordinator", "dispatcher"}),
}


def _refusal(role: str, state: str) -> int:
    """What a role that may not act gets: 404 when it may not even see the panel."""
    if role == "researcher":
        return 403  # no panel permission at all: the route itself refuses
    if role in ("outsider", "other_ern"):
        return 404
    if role == "invited" and state in ("closed", "archived", "cancelled"):
        return 404  # an invitation to a finished panel is void
    if role in ("coordinator", "dispatcher") and state == "draft":
        return 404  # drafts are not in the queue
    return 403  # visible (colleague at home, member, invitee) but not theirs to do


async def _prepare(action: str, state: str, ids: dict, patient: dict) -> int:
    from datetime import datetime, timezone

    from core.panels.tables import Outcome

    pid = await make_panel(patient, ids["creator"], status=state, members=[ids["member"]], invited=[ids["invited"]])
    if action in ("propose", "close", "reopen"):
        await Outcome.insert(Outcome(
            panel=pid, findings="Findings", recommendations="Recommendations", signed_by=ids["creator"],
            signed_at=datetime.now(timezone.utc),
        ))
    return pid


@pytest.mark.parametrize("action", sorted(MATRIX))
async def test_every_transition_by_every_role(client, action):
    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    state, allowed = MATRIX[action]
    from core.panels.lifecycle import TRANSITIONS

    target = TRANSITIONS[action].target
    for role in ROLES:
        pid = await _prepare(action, state, ids, patient)
        await as_user(client, role)
        data = {"revision": await revision(pid), "note": "Because", "ern": str(await ern_id("ERKNet")), "confirm": "yes"}
        r = await post_form(client, f"/panels/{pid}/transition/{action}", data)
        if role in allowed:
            assert r.status_code == 303, (action, role, r.status_code, r.text[:500])
            assert await _status(pid) == target, (action, role)
        else:
            assert r.status_code == _refusal(role, state), (action, role, r.status_code)
            assert await _status(pid) == state, (action, role)


@pytest.mark.parametrize("action", sorted(MATRIX))
async def test_a_transition_from_the_wrong_state_changes_nothing(client, action):
    from core.panels.tables import PanelTransition

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    state, allowed = MATRIX[action]
    from core.panels.lifecycle import TRANSITIONS

    wrong = next(s for s in ("archived", "cancelled", "draft", "closed") if s not in TRANSITIONS[action].sources)
    actor = "creator" if "creator" in allowed else "coordinator"
    if wrong == "draft" and actor == "coordinator":
        wrong = "archived"
    pid = await make_panel(patient, ids["creator"], status=wrong, members=[ids["member"]])
    await as_user(client, actor)
    r = await post_form(client, f"/panels/{pid}/transition/{action}", {"revision": await revision(pid), "note": "x", "ern": str(await ern_id("ERKNet"))})
    assert r.status_code == 409, (action, wrong, r.status_code)
    assert "cannot" in r.text
    assert await _status(pid) == wrong
    assert await PanelTransition.count().where(PanelTransition.panel == pid) == 0


async def test_double_submit_and_stale_forms_change_nothing(client):
    from core.panels.tables import PanelTransition

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    pid = await make_panel(patient, ids["creator"], status="draft")
    await as_user(client, "creator")
    rev = await revision(pid)
    first = await post_form(client, f"/panels/{pid}/transition/submit", {"revision": rev})
    second = await post_form(client, f"/panels/{pid}/transition/submit", {"revision": rev})
    assert first.status_code == 303 and second.status_code == 409
    assert await PanelTransition.count().where(PanelTransition.panel == pid) == 1
    # a stale form: the coordinator acts on what they saw before the creator cancelled
    await as_user(client, "coordinator")
    stale = await revision(pid)
    await as_user(client, "creator")
    await post_form(client, f"/panels/{pid}/transition/cancel", {"revision": stale, "note": "Patient moved abroad"})
    await as_user(client, "coordinator")
    r = await post_form(client, f"/panels/{pid}/transition/take", {"revision": stale})
    assert r.status_code in (404, 409)
    assert await _status(pid) == "cancelled"
    # a reason is required where the history needs one, and nothing changes without it
    pid2 = await make_panel(patient, ids["creator"], status="submitted")
    r = await post_form(client, f"/panels/{pid2}/transition/return", {"revision": await revision(pid2), "note": "  "})
    assert r.status_code == 422 and await _status(pid2) == "submitted"
    r = await post_form(client, f"/panels/{pid2}/transition/teleport", {"revision": await revision(pid2)})
    assert r.status_code == 404


async def test_opening_needs_an_accepted_member_and_closing_a_signed_outcome(client):
    from datetime import datetime, timezone

    from core.panels.tables import Outcome, Panel

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    pid = await make_panel(patient, ids["creator"], status="assembling", invited=[ids["invited"]])
    await as_user(client, "creator")
    r = await post_form(client, f"/panels/{pid}/transition/open", {"revision": await revision(pid)})
    assert r.status_code == 409 and await _status(pid) == "assembling"
    pid = await make_panel(patient, ids["creator"], status="outcome_review", members=[ids["member"]])
    await Outcome.insert(Outcome(panel=pid, findings="F", recommendations="R"))
    r = await post_form(client, f"/panels/{pid}/transition/close", {"revision": await revision(pid)})
    assert r.status_code == 409 and "signed" in r.text
    await Outcome.update({Outcome.signed_by: ids["creator"], Outcome.signed_at: datetime.now(timezone.utc)}).where(Outcome.panel == pid)
    # fewer than two contributors: asks first, and says what it means
    r = await post_form(client, f"/panels/{pid}/transition/close", {"revision": await revision(pid)})
    assert r.status_code == 409 and "monitoring" in r.text and 'name="confirm" value="yes"' in r.text
    assert await _status(pid) == "outcome_review"
    r = await post_form(client, f"/panels/{pid}/transition/close", {"revision": await revision(pid), "confirm": "yes"})
    assert r.status_code == 303
    row = await Panel.select().where(Panel.id == pid).first()
    assert row["status"] == "closed" and row["closed_at"] is not None and row["counts_in_monitoring"] is False
    # read-only now: nothing but archiving
    r = await post_form(client, f"/panels/{pid}/transition/reopen", {"revision": await revision(pid)})
    assert r.status_code == 409


async def test_forwarding_keeps_the_history(client):
    from core.panels.tables import PanelForward, PanelTransition

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    pid = await make_panel(patient, ids["creator"], status="submitted")
    await as_user(client, "coordinator")
    r = await post_form(client, f"/panels/{pid}/transition/take", {"revision": await revision(pid)})
    assert r.status_code == 303
    r = await post_form(client, f"/panels/{pid}/transition/forward", {"revision": await revision(pid), "ern": str(await ern_id("ERN RND")), "note": "same"})
    assert r.status_code == 422  # to the ERN it is already in
    r = await post_form(client, f"/panels/{pid}/transition/forward", {"revision": await revision(pid), "ern": str(await ern_id("ERKNet")), "note": "Renal phenotype dominates"})
    assert r.status_code == 303
    forwards = await PanelForward.select().where(PanelForward.panel == pid)
    assert len(forwards) == 1 and forwards[0]["reason"] == "Renal phenotype dominates"
    assert forwards[0]["from_ern"] == await ern_id("ERN RND") and forwards[0]["to_ern"] == await ern_id("ERKNet")
    assert await _status(pid) == "submitted"
    actions = [t["action"] for t in await PanelTransition.select().where(PanelTransition.panel == pid).order_by(PanelTransition.id)]
    assert actions == ["take", "forward"]
    # the old ERN's coordinator no longer sees it; the new ERN's does, with the history
    r = await client.get("/panels/queue")
    assert f"/panels/{pid}\"" not in r.text
    await as_user(client, "other_ern")
    r = await client.get("/panels/queue")
    assert f"/panels/{pid}\"" in r.text
    page = await client.get(f"/panels/{pid}")
    assert page.status_code == 200 and "Renal phenotype dominates" in page.text and "ERN RND → ERKNet" in page.text
    # the creator still follows the panel
    await as_user(client, "creator")
    assert (await client.get(f"/panels/{pid}")).status_code == 200


async def test_transitions_are_audited_and_announced(client):
    from core.activity.tables import Activity
    from core.notify.tables import Notification

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    pid = await make_panel(patient, ids["creator"], status="draft", urgency="urgent")
    await as_user(client, "creator")
    r = await post_form(client, f"/panels/{pid}/transition/submit", {"revision": await revision(pid)})
    assert r.status_code == 303
    assert await Activity.count().where((Activity.action == "panel.transition") & (Activity.subject_id == str(pid))) == 1
    notes = await Notification.select().where(Notification.user.is_in([ids["coordinator"], ids["dispatcher"]]))
    assert {n["user"] for n in notes} == {ids["coordinator"], ids["dispatcher"]}
    assert all(n["kind"] == "panel.urgent" and n["urgent"] for n in notes)
    assert all(no_identity(n["title"] + n["body"]) for n in notes)


# --- lists ----------------------------------------------------------------------------------------


async def test_lists_filter_search_and_paginate(client):
    from core.panels import views

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    made = []
    for i in range(views.PER_PAGE + 5):
        made.append(await make_panel(patient, ids["creator"], status="submitted" if i % 2 else "open", title=f"Case {i:03d}",
                                     urgency="urgent" if i % 10 == 0 else "routine"))
    other = await make_panel(patient, ids["creator"], ern="ERKNet", status="submitted", title="Kidney case")
    await as_user(client, "creator")
    r = await client.get("/panels")
    assert r.status_code == 200
    assert f"Case {views.PER_PAGE + 4:03d}" in r.text and "Case 000" not in r.text  # newest first
    assert 'rel="next"' in r.text
    older = await client.get(f"/panels?before={made[5]}")
    assert "Case 004" in older.text and "Case 005" not in older.text
    r = await client.get("/panels?status=submitted")
    assert "Case 003<" in r.text and "Case 002<" not in r.text
    r = await client.get("/panels?urgency=urgent&status=open")
    listed = [n for n in range(views.PER_PAGE + 5) if f"Case {n:03d}<" in r.text]
    assert listed and all(n % 10 == 0 and n % 2 == 0 for n in listed)
    r = await client.get("/panels?q=Kidney")
    assert "Kidney case" in r.text and "Case 0" not in r.text
    r = await client.get(f"/panels?q=%23{made[3]}")
    assert "Case 003" in r.text and "Case 004" not in r.text
    r = await client.get("/panels?status=nonsense")
    assert r.status_code == 422
    # the queue: only the coordinator's ERN, submitted or assembling by default
    await as_user(client, "coordinator")
    r = await client.get("/panels/queue")
    assert "Case 001" in r.text and "Case 002" not in r.text and "Kidney case" not in r.text
    await as_user(client, "member")
    assert (await client.get("/panels/queue")).status_code == 403
    assert other


async def test_the_filter_form_as_the_page_renders_it_is_accepted(client):
    """Submitting the list's own filter form with every field left at "any" (``ern=``, ``q=``...)
    answers the list, for the queue too; a malformed number is a clear 400, not a crash."""
    import re

    from tests.conftest import text_of

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    await make_panel(patient, ids["creator"], status="submitted", title="Filtered case")
    for who, url in (("creator", "/panels"), ("coordinator", "/panels/queue")):
        await as_user(client, who)
        page = await client.get(url)
        form = re.search(r"<form[^>]*method=\"get\"[^>]*>(.*?)</form>", page.text, re.S)
        assert form, "the list has a filter form"
        names = set(re.findall(r'name="(\w+)"', form.group(1)))
        assert "ern" in names
        r = await client.get(url, params={name: "" for name in names})
        assert r.status_code == 200 and "Filtered case" in r.text, (url, r.status_code)
        ern_id = (await client.get(url, params={"ern": ""})).status_code
        assert ern_id == 200
        for bad in ("abc", "0", "-1", "1e9", "99999999999"):
            r = await client.get(url, params={"ern": bad})
            assert r.status_code == 400 and "whole number" in text_of(r.text), (bad, r.status_code)
        assert (await client.get(url, params={"before": "x"})).status_code == 400


async def test_plugin_sections_appear_for_members(client):
    """The example plugin (tests/example_plugin) adds a tab to the panel page; its route lets
    members in through the core's access rule and keeps everyone else out."""
    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    pid = await make_panel(patient, ids["creator"], status="open", members=[ids["member"]])
    await as_user(client, "member")
    r = await client.get(f"/panels/{pid}")
    assert r.status_code == 200 and "Example panel tab" in r.text and f'hx-get="/example/panels/{pid}"' in r.text
    tab = await client.get(f"/example/panels/{pid}")
    assert tab.status_code == 200 and patient["nickname"] in tab.text
    await as_user(client, "outsider")
    assert (await client.get(f"/example/panels/{pid}")).status_code == 404


async def test_demo_panels_open_for_their_participants(client, demo):
    from core.identity import DEMO_PASSWORD
    from core.panels.tables import Panel
    from tests.conftest import enrol_totp

    panels = {p["status"]: p["id"] for p in await Panel.select(Panel.id, Panel.status)}
    expected = {"hp": {"open", "submitted", "closed"}, "coordinator": {"open", "submitted", "closed"}, "expert": {"open", "closed"}}
    for role, statuses in expected.items():
        await enrol_totp(demo.users[role])
        client.cookies.clear()
        r = await login(client, f"{role}@demo.cpms.eu", DEMO_PASSWORD.format(role=role))
        assert r.status_code in (302, 303)
        for status, pid in panels.items():
            r = await client.get(f"/panels/{pid}")
            assert r.status_code == (200 if status in statuses else 404), (role, status, r.status_code)
    # the demo expert (another hospital) sees the discussion but never the patient's name
    r = await client.get(f"/panels/{panels['open']}")
    assert "ATXN2" in r.text and "Hoffmann" not in r.text and "Mila" not in r.text


async def test_marking_a_panel_urgent_notifies_everyone_at_once(client):
    from core.notify.tables import Notification
    from core.panels.tables import Panel, PanelTransition

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    pid = await make_panel(patient, ids["creator"], status="open", members=[ids["member"]], invited=[ids["invited"]])
    await as_user(client, "member")  # a member may not change it
    r = await post_form(client, f"/panels/{pid}/urgency", {"revision": await revision(pid), "urgency": "urgent"})
    assert r.status_code == 403
    await as_user(client, "creator")
    r = await post_form(client, f"/panels/{pid}/urgency", {"revision": await revision(pid), "urgency": "tomorrow"})
    assert r.status_code == 422
    r = await post_form(client, f"/panels/{pid}/urgency", {"revision": "0", "urgency": "urgent"})
    assert r.status_code == 409
    assert (await Panel.select(Panel.urgency).where(Panel.id == pid).first())["urgency"] == "routine"
    assert await Notification.count() == 0
    r = await post_form(client, f"/panels/{pid}/urgency", {"revision": await revision(pid), "urgency": "urgent"})
    assert r.status_code == 303
    told = {n["user"]: n for n in await Notification.select()}
    assert set(told) == {ids["member"], ids["invited"], ids["coordinator"], ids["dispatcher"]}
    assert all(n["kind"] == "panel.urgent" and n["urgent"] for n in told.values())
    assert await PanelTransition.count().where((PanelTransition.panel == pid) & (PanelTransition.action == "urgency")) == 1


async def test_the_gdpr_export_holds_the_patients_panels(client):
    from core.panels.tables import Message

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    pid = await make_panel(patient, ids["creator"], status="open", members=[ids["member"]])
    await Message.insert(Message(panel=pid, author=ids["member"], body="Consider FXN repeat testing."))
    await as_user(client, "creator")
    r = await client.get(f"/patients/{patient['pseudonym']}/export?format=json")
    assert r.status_code == 200
    panels = r.json()["plugins"]["panels"]["panels"]
    assert [p["panel"] for p in panels] == [pid]
    assert panels[0]["messages"][0]["text"] == "Consider FXN repeat testing." and panels[0]["messages"][0]["by"] == "Dr Lena Weber"
    assert panels[0]["status"] == "Open for discussion" and panels[0]["ern"] == "ERN RND"


async def test_members_download_only_the_documents_shared_with_the_panel(client):
    from core.audit.tables import AuditEntry
    from core.panels.tables import Panel
    from tests.conftest import csrf_of
    from tests.test_patients import PDF

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    await as_user(client, "creator")
    url = f"/patients/{patient['pseudonym']}/documents"
    for title in ("MRI report Quarrington", "Letter Quarrington"):
        r = await client.post(url, data={"kind": "imaging_report", "title": title, "_csrf_token": csrf_of(client)},
                              files={"file": ("Quarrington.pdf", PDF, "application/pdf")})
        assert r.status_code == 303
    from core.patients.tables import Document

    shared_doc, kept_doc = [d["id"] for d in await Document.select(Document.id).order_by(Document.id)]
    base = {"patient": patient["pseudonym"], "ern": str(await ern_id()), "title": "Imaging review", "question": "Cerebellar atrophy?",
            "kind": "diagnostic", "urgency": "routine", "share": [f"document:{shared_doc}"], f"label_{shared_doc}": "Brain MRI report 2026"}
    r = await post_form(client, "/panels/new", base)  # without confirming the file identifies nobody
    assert r.status_code == 422 and await Panel.count() == 0
    r = await post_form(client, "/panels/new", {**base, f"deidentified_{shared_doc}": "yes"})
    assert r.status_code == 303
    pid = (await Panel.select(Panel.id).first())["id"]
    from core.panels.tables import PanelMember, PanelShare

    await Panel.update({Panel.status: "open"}).where(Panel.id == pid)
    await PanelMember.insert(PanelMember(panel=pid, user=ids["member"], status="accepted"))
    share = (await PanelShare.select().where(PanelShare.kind == "document").first())["id"]
    await as_user(client, "member")
    page = await client.get(f"/panels/{pid}")
    assert "Brain MRI report 2026" in page.text and no_identity(page.text)
    dl = await client.get(f"/panels/{pid}/shared/{share}")
    assert dl.status_code == 200 and dl.content == PDF
    assert dl.headers["content-disposition"] == f'attachment; filename="panel-{pid}-{share}.pdf"'
    assert (await client.get(f"/panels/{pid}/shared/{share + 1}")).status_code == 404
    assert await AuditEntry.count().where(AuditEntry.action == "panel.document_download") == 1
    # the document that was not shared cannot be reached through any share of the panel
    assert all(s["ref_id"] != kept_doc for s in await PanelShare.select())
    await as_user(client, "outsider")
    assert (await client.get(f"/panels/{pid}/shared/{share}")).status_code == 404


async def test_submitting_an_incomplete_form_stores_nothing_but_a_draft_may_be_incomplete(client):
    from core.panels.tables import Panel
    from core.panels.templates_store import current_template

    ids = await _cast()
    patient = await make_patient(await hcp_of(ids["creator"]))
    required = [f["key"] for s in (await current_template(await ern_id()))["definition"]["sections"] for f in s["fields"] if f.get("required")]
    assert required  # the shipped default form asks for something
    await as_user(client, "creator")
    base = {"patient": patient["pseudonym"], "ern": str(await ern_id()), "title": "T", "question": "Q", "kind": "diagnostic", "urgency": "routine"}
    r = await post_form(client, "/panels/new", {**base, "then": "submit"})
    assert r.status_code == 422 and "Required" in r.text
    assert await Panel.count() == 0
    r = await post_form(client, "/panels/new", {**base, "then": "save"})
    assert r.status_code == 303
    assert [p["status"] for p in await Panel.select(Panel.status)] == ["draft"]
