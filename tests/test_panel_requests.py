"""Requests for further data: a member asks, the enrolling hospital answers (sharing more of
the record if it likes), the asker may withdraw; tasks, notifications and who may do what."""

from __future__ import annotations

import re

from tests.conftest import login, make_user, post_form, text_of
from tests.panels_support import hcp_of, make_panel, make_patient

HX = {"HX-Request": "true"}
EMAILS = {
    "home": "home@example.org", "colleague": "colleague@example.org", "weber": "weber@example.org",
    "muller": "muller@example.org", "invitee": "invitee@example.org", "outsider": "outsider@example.org",
}


async def cast() -> dict:
    home = await make_user(EMAILS["home"], hcp="Home Hospital", name="Dr. Hanna Home")
    # Same hospital as the patient, not a member of the panel: sees it as the enrolling hospital.
    colleague = await make_user(EMAILS["colleague"], hcp="Home Hospital", name="Dr. Carl Colleague")
    weber = await make_user(EMAILS["weber"], hcp="Other Hospital", name="Dr. Lena Weber")
    muller = await make_user(EMAILS["muller"], hcp="Third Hospital", name="Prof. Jörg Müller")
    invitee = await make_user(EMAILS["invitee"], hcp="Other Hospital", name="Dr. Ivo Invited")
    outsider = await make_user(EMAILS["outsider"], hcp="Fourth Hospital", name="Dr. Otto Outside")
    patient = await make_patient(await hcp_of(home))
    panel = await make_panel(patient, home, members=(weber, muller), invited=(invitee,))
    return {
        "home": home, "colleague": colleague, "weber": weber, "muller": muller, "invitee": invitee, "outsider": outsider,
        "patient": patient, "panel": panel,
    }


async def as_user(client, who: str) -> None:
    client.cookies.clear()
    r = await login(client, EMAILS[who])
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.text[:300]


async def requests_of(panel_id: int) -> list[dict]:
    from core.panels.tables import DataRequest

    return await DataRequest.select().where(DataRequest.panel == panel_id).order_by(DataRequest.id)


async def inbox(user_id: int) -> list[str]:
    from core.notify.tables import Notification

    return [r["kind"] for r in await Notification.select().where(Notification.user == user_id).order_by(Notification.id)]


async def diagnosis(patient_id: int, label: str) -> int:
    from core.patients.tables import Diagnosis

    row = Diagnosis(patient=patient_id, label=label, system="ORPHA", code="95", status="suspected")
    await row.save()
    return row.id


async def actor(user_id: int):
    from core.identity.sessions import actor_for_user

    return await actor_for_user(user_id)


async def ask(client, panel_id: int, text: str, headers=None):
    return await post_form(client, f"/panels/{panel_id}/requests", {"text": text}, headers=headers or {})


async def test_ask_answer_with_shares_and_notifications(client):
    from core.activity.tables import Activity
    from core.audit.tables import AuditEntry
    from core.panels import shares
    from core.panels.requests import open_tasks_for
    from core.panels.tables import PanelShare, PanelTransition

    c = await cast()
    pid = c["panel"]
    dx = await diagnosis(c["patient"]["id"], "Friedreich ataxia")

    await as_user(client, "weber")
    r = await ask(client, pid, "Please share the latest brain MRI and the FXN repeat result.")
    assert r.status_code == 303
    [req] = await requests_of(pid)
    assert r.headers["location"] == f"/panels/{pid}#request-{req['id']}"
    assert (req["asked_by"], req["status"], req["answer"]) == (c["weber"], "open", "")
    # A task for the enrolling hospital: the creator and lead hear of it, no one else.
    assert await inbox(c["home"]) == ["panel.data_request"]
    assert await inbox(c["muller"]) == [] and await inbox(c["weber"]) == [] and await inbox(c["colleague"]) == []
    assert [t["action"] for t in await PanelTransition.select().where(PanelTransition.panel == pid)] == ["data_requested"]
    assert [e["actor_id"] for e in await Activity.select().where(Activity.action == "panel.data_requested")] == [c["weber"]]

    # The open task shows on the lists of the enrolling hospital's clinicians only.
    tasks = await open_tasks_for(await actor(c["colleague"]))
    assert [(t["id"], t["panel"], t["text"]) for t in tasks] == [(req["id"], pid, req["text"])]
    assert tasks[0]["title"] == "Ataxia with unclear genetics" and tasks[0]["link"] == f"/panels/{pid}#request-{req['id']}"
    assert [t["id"] for t in await open_tasks_for(await actor(c["home"]))] == [req["id"]]
    assert await open_tasks_for(await actor(c["weber"])) == []
    assert await open_tasks_for(await actor(c["outsider"])) == []
    # ...and on the panels list page.
    await as_user(client, "colleague")
    page = await client.get("/panels")
    assert page.status_code == 200 and "Please share the latest brain MRI" in page.text

    # The colleague sees the answer form with the record's items (titles only they see).
    page = await client.get(f"/panels/{pid}")
    section = re.search(r'<section id="requests".*?</section>', page.text, re.S).group(0)
    assert f'action="/panels/{pid}/requests/{req["id"]}/answer"' in section
    assert f'value="diagnosis:{dx}"' in section and "Friedreich ataxia" in section

    r = await post_form(client, f"/panels/{pid}/requests/{req['id']}/answer", {
        "answer": "MRI shared; FXN repeats were normal.", "share": [f"diagnosis:{dx}", "summary:"],
    })
    assert r.status_code == 303 and r.headers["location"] == f"/panels/{pid}#request-{req['id']}"
    [req] = await requests_of(pid)
    assert (req["status"], req["answer"], req["answered_by"]) == ("answered", "MRI shared; FXN repeats were normal.", c["colleague"])
    assert req["answered_at"] is not None
    # The shares are the panel's now: members see the items through shared_data.
    assert {(s["kind"], s["ref_id"]) for s in await PanelShare.select().where(PanelShare.panel == pid)} == {("diagnosis", dx), ("summary", None)}
    data = await shares.shared_data(pid, c["patient"])
    assert [d["label"] for d in data["sections"]["diagnosis"]] == ["Friedreich ataxia"]
    assert data["summary"] == "Progressive gait ataxia since age 14."
    # The asker and every participant hear of the answer (the answerer does not).
    assert await inbox(c["weber"]) == ["panel.data_answered"]
    assert await inbox(c["muller"]) == ["panel.data_answered"]
    assert await inbox(c["home"]) == ["panel.data_request", "panel.data_answered"]
    assert await inbox(c["colleague"]) == [] and await inbox(c["invitee"]) == []
    audit = await AuditEntry.select().where(AuditEntry.action == "panel.data_answered")
    assert [(a["actor_id"], a["patient_pseudonym"]) for a in audit] == [(c["colleague"], c["patient"]["pseudonym"])]
    assert [e["actor_id"] for e in await Activity.select().where(Activity.action == "panel.data_answered")] == [c["colleague"]]
    assert await open_tasks_for(await actor(c["colleague"])) == []

    # Answering twice is a conflict, and changes nothing.
    r = await post_form(client, f"/panels/{pid}/requests/{req['id']}/answer", {"answer": "Again"})
    assert r.status_code == 409
    assert (await requests_of(pid))[0]["answer"] == "MRI shared; FXN repeats were normal."

    # A member of another hospital reads the answer and the newly shared diagnosis.
    await as_user(client, "muller")
    page = await client.get(f"/panels/{pid}")
    section = re.search(r'<section id="requests".*?</section>', page.text, re.S).group(0)
    assert "MRI shared; FXN repeats were normal." in section and "Dr. Carl Colleague" in section
    assert "/answer" not in section
    shared = re.search(r'<section id="shared".*?</section>', page.text, re.S).group(0)
    assert "Friedreich ataxia" in shared


async def test_only_the_enrolling_hospital_answers(client):
    c = await cast()
    pid = c["panel"]
    await as_user(client, "weber")
    assert (await ask(client, pid, "Any EMG?")).status_code == 303
    [req] = await requests_of(pid)
    url = f"/panels/{pid}/requests/{req['id']}/answer"
    for who, status in (("weber", 403), ("muller", 403), ("outsider", 404), ("invitee", 403)):
        await as_user(client, who)
        r = await post_form(client, url, {"answer": "From the wrong place"})
        assert r.status_code == status, (who, r.status_code)
    assert (await requests_of(pid))[0]["status"] == "open"

    # Even the enrolling hospital may not answer a request of another panel through this one.
    other = await make_panel(c["patient"], c["home"], members=(c["weber"],), title="Other panel")
    await as_user(client, "home")
    r = await post_form(client, f"/panels/{other}/requests/{req['id']}/answer", {"answer": "Wrong panel"})
    assert r.status_code == 404
    # Empty or oversized answers, or a document shared without confirmation, change nothing.
    for data in ({"answer": " "}, {"answer": "x" * 5001}, {"answer": "Fine", "share": "diagnosis:999999"}):
        r = await post_form(client, url, data)
        assert r.status_code == 422, data
    assert (await requests_of(pid))[0]["status"] == "open"


async def test_withdraw_by_the_asker_only(client):
    from core.panels.requests import open_tasks_for

    c = await cast()
    pid = c["panel"]
    await as_user(client, "weber")
    assert (await ask(client, pid, "Skin biopsy?")).status_code == 303
    [req] = await requests_of(pid)
    url = f"/panels/{pid}/requests/{req['id']}/withdraw"
    for who in ("muller", "home"):
        await as_user(client, who)
        assert (await post_form(client, url)).status_code == 403
    assert (await requests_of(pid))[0]["status"] == "open"
    await as_user(client, "weber")
    r = await post_form(client, url)
    assert r.status_code == 303 and r.headers["location"] == f"/panels/{pid}#request-{req['id']}"
    assert (await requests_of(pid))[0]["status"] == "withdrawn"
    assert (await post_form(client, url)).status_code == 409
    assert await open_tasks_for(await actor(c["home"])) == []
    # A withdrawn request cannot be answered.
    await as_user(client, "home")
    r = await post_form(client, f"/panels/{pid}/requests/{req['id']}/answer", {"answer": "Too late"})
    assert r.status_code == 409
    assert (await requests_of(pid))[0]["answer"] == ""


async def test_who_may_ask_and_when(client):
    from core.panels.tables import Panel

    c = await cast()
    pid = c["panel"]
    for who, status in (("outsider", 404), ("invitee", 403)):
        await as_user(client, who)
        assert (await ask(client, pid, "Me too")).status_code == status
    await as_user(client, "weber")
    for text in ("", "   ", "x" * 5001):
        assert (await ask(client, pid, text)).status_code == 422
    assert await requests_of(pid) == []
    # While the outcome is in review members may still ask; once closed, not any more.
    await Panel.update({Panel.status: "outcome_review"}).where(Panel.id == pid)
    assert (await ask(client, pid, "One more thing")).status_code == 303
    await Panel.update({Panel.status: "closed"}).where(Panel.id == pid)
    assert (await ask(client, pid, "After closing")).status_code == 409
    [req] = await requests_of(pid)
    assert (await post_form(client, f"/panels/{pid}/requests/{req['id']}/withdraw")).status_code == 409
    await as_user(client, "home")
    assert (await post_form(client, f"/panels/{pid}/requests/{req['id']}/answer", {"answer": "Closed"})).status_code == 409
    assert [r["text"] for r in await requests_of(pid)] == ["One more thing"]
    assert (await requests_of(pid))[0]["status"] == "open"


async def test_htmx_gets_the_section_back(client):
    c = await cast()
    pid = c["panel"]
    await as_user(client, "weber")
    r = await ask(client, pid, "<b>Echo</b> please", headers=HX)
    assert r.status_code == 200
    assert r.text.lstrip().startswith('<section id="requests"')
    assert "&lt;b&gt;Echo&lt;/b&gt; please" in r.text and "<b>Echo</b>" not in r.text
    [req] = await requests_of(pid)
    assert f'action="/panels/{pid}/requests/{req["id"]}/withdraw"' in r.text
    r = await ask(client, pid, "", headers=HX)
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    assert len(await requests_of(pid)) == 1
    await as_user(client, "home")
    r = await post_form(client, f"/panels/{pid}/requests/{req['id']}/answer", {"answer": "Normal echo."}, headers=HX)
    assert r.status_code == 200
    assert "Normal echo." in text_of(r.text) and "Answered" in r.text
