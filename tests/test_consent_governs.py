"""Consent governs every use of a patient's data by anyone outside the enrolling hospital.

Starting from the demo (patient 1 has an open panel with an expert from a hospital in Warsaw, a
shared record, a family tree, a slide and a CT study), the expert walks EVERY GET route of the
app, every plugin's included (taken from the app's route table, so a route added later is walked
too), with the patient's own ids filled in. Then each consent is changed in turn through the
page the enrolling hospital uses, and the walk is repeated: where the rule says sharing stops
(care or sharing refused or withdrawn), every route that served the expert before must refuse
now and no response may carry the shared data; where it does not (registry, research), the same
routes still serve. Consent given again restores access. The rules: core/patients/consent_rules.py.
"""

from __future__ import annotations

import re

import pytest

from core.identity import DEMO_PASSWORD
from tests.conftest import enrol_totp, login, post_form
from tests.fixtures import session_app

#: A marker of the shared record (the demo's genetic finding) and of the panel discussion.
SHARED_MARKERS = ("ATXN2",)
#: Path parameters that name the patient's data (or a way to it, such as a share link's token).
PATIENT_PARAMS = {
    "pseudonym", "panel_id", "slide_id", "study_id", "series_id", "instance_id", "study", "series", "sop", "token",
    "share_id", "annotation_id",
}
#: Values for path parameters that do not name the patient's data: whatever they are, the expert
#: gets the same answer with or without consent (checked: their answers must not change to 200).
GENERIC = {"int": "1", "str": "x", "path": "x"}


async def _ids(settings) -> dict[str, str]:
    """The demo patient's own objects, by path parameter name."""
    from core.panels.tables import Panel
    from core.patients.tables import Patient
    from plugins.dicom_viewer.tables import Instance, Series, Study
    from plugins.pathology_viewer.tables import Slide
    from plugins.pathology_viewer.embed import make_token
    from plugins.pathology_viewer.tables import ShareLink
    from datetime import datetime, timedelta, timezone

    patient = await Patient.select().order_by(Patient.id).first()
    panel = await Panel.select().where((Panel.patient == patient["id"]) & (Panel.status == "open")).first()
    slide = await Slide.select().where(Slide.patient == patient["id"]).first()
    study = await Study.select().where(Study.patient == patient["id"]).first()
    series = await Series.select().where(Series.study == study["id"]).first()
    instance = await Instance.select().where((Instance.series == series["id"]) & (Instance.needs_review == False)).first()  # noqa: E712
    from core.panels.tables import Meeting as PanelMeeting, PanelShare

    share = await PanelShare.select().where((PanelShare.panel == panel["id"]) & (PanelShare.kind == "document")).first()
    meeting = await PanelMeeting.select().where(PanelMeeting.panel == panel["id"]).first()
    link = ShareLink(slide=slide["id"], nonce="c" * 24, created_by=panel["created_by"], note="tumour board",
                     expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    await link.save()
    return {
        "pseudonym": patient["pseudonym"], "panel_id": str(panel["id"]), "slide_id": str(slide["id"]),
        "study_id": str(study["id"]), "series_id": str(series["id"]), "instance_id": str(instance["id"]),
        "study": study["study_uid"], "series": series["series_uid"], "sop": instance["sop_uid"],
        "frame": "0", "numbers": "1", "level": "8", "fmt": "svg",
        "token": make_token(settings, link.id, link.nonce, link.expires_at),
        "share_id": str(share["id"]) if share else "1", "meeting": f"{meeting['id']}.ics" if meeting else "x",
    }


def _fill(path: str, ids: dict[str, str], handler_name: str) -> str:
    def value(m: re.Match) -> str:
        name, kind = m.group(1), m.group(2)
        if name == "name" and "image_files" in path:
            return "0_0.jpeg"
        if name == "name" and "/iiif/" in path:
            return "default.jpg"
        if name == "name" and "/meetings/" in path:
            return ids["meeting"]
        if name in ("region",):
            return "full"
        if name == "size":
            return "max"
        if name == "rotation":
            return "0"
        return ids.get(name, GENERIC[kind])
    return re.sub(r"\{(\w+):(\w+)\}", value, path)


def _get_routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        if route.path.startswith(("/static/", "/api/schema")) or "{" not in route.path:
            continue  # lists and pages without the patient's ids: checked by the markers below
        for handler in route.route_handlers:
            if "GET" in handler.http_methods and "/live" not in route.path:
                out.append((route.path, handler.handler_name))
    return sorted(set(out))


async def _walk(client, app, ids) -> dict[str, int]:
    answers = {}
    for path, name in _get_routes(app):
        url = _fill(path, ids, name)
        r = await client.get(url, follow_redirects=False)
        assert r.status_code < 500, (url, r.status_code, r.text[:300])
        answers[path] = r.status_code
        if r.status_code == 200:
            answers[path + " body"] = r.content  # type: ignore[assignment]
    return answers


async def _record_consent(client, pseudonym: str, kind: str, status: str) -> None:
    r = await post_form(client, f"/patients/{pseudonym}/consents", {
        "kind": kind, "status": status, "date": "2026-12-01", "form_version": "ERN consent v3",
    })
    assert r.status_code == 303, r.text[:500]


async def _as(client, demo, role: str) -> None:
    client.cookies.clear()
    r = await login(client, f"{role}@demo.cpms.eu", DEMO_PASSWORD.format(role=role))
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.headers.get("location")


STOPS = [("care", "withdrawn"), ("care", "refused"), ("sharing", "withdrawn"), ("sharing", "refused")]
KEEPS = [("registry", "withdrawn"), ("research", "withdrawn"), ("registry", "refused")]


@pytest.mark.parametrize("kind,status", STOPS + KEEPS)
async def test_each_consent_change_governs_every_panel_member_route(client, demo, settings, kind, status):
    from core.panels.tables import PanelTransition
    from core.notify.tables import Notification

    app = session_app(settings)
    for role in ("hp", "expert"):
        await enrol_totp(demo.users[role])
    ids = await _ids(settings)
    await _as(client, demo, "expert")
    before = await _walk(client, app, ids)
    served = sorted(p for p, code in before.items() if code == 200 and not p.endswith(" body"))
    # the walk reached the member's view of the panel and of every plugin's data, and it served
    for must in ("/panels/{panel_id:int}", "/pedigree/panels/{panel_id:int}", "/pathology/panels/{panel_id:int}",
                 "/dicom/panels/{panel_id:int}", "/pathology/slides/{slide_id:int}",
                 "/pathology/slides/{slide_id:int}/image_files/{level:int}/{name:str}",
                 "/dicom/instances/{instance_id:int}/frames/{frame:int}/rendered", "/dicom/series/{series_id:int}/view",
                 "/pathology/embed/{token:str}", "/panels/{panel_id:int}/meetings/{name:str}"):
        assert before.get(must) == 200, (must, before.get(must))
    assert any(m.encode() in before["/panels/{panel_id:int} body"] for m in SHARED_MARKERS)

    await _as(client, demo, "hp")
    await _record_consent(client, ids["pseudonym"], kind, status)
    await _as(client, demo, "expert")
    after = await _walk(client, app, ids)
    stops = (kind, status) in STOPS
    for path in served:
        if stops and PATIENT_PARAMS & set(re.findall(r"\{(\w+):", path)):
            assert after[path] in (403, 404, 410), (path, after[path])
        else:  # not about this patient (an ERN's page, a terminology): unchanged, and without the shared data
            assert after[path] == 200, (path, after[path])
            assert not (stops and any(m.encode() in after[path + " body"] for m in SHARED_MARKERS)), path
    for path, code in after.items():
        if not path.endswith(" body") and code == 200 and before.get(path) != 200:
            raise AssertionError(f"{path} answers 200 only after the consent change")
    if stops:
        refused = await client.get(f"/panels/{ids['panel_id']}")
        assert refused.status_code == 403 and "suspended" in refused.text
        assert not any(m in refused.text for m in SHARED_MARKERS)
        # the member cannot post either
        r = await post_form(client, f"/panels/{ids['panel_id']}/messages", {"body": "still here?"})
        assert r.status_code == 403
        # the panel list still names the panel (pseudonymously), without its shared data
        listed = await client.get("/panels")
        assert listed.status_code == 200 and not any(m in listed.text for m in SHARED_MARKERS)
        assert f'href="/panels/{ids["panel_id"]}"' not in listed.text  # no link to a page that refuses
        # the enrolling hospital sees the suspension and may only cancel or close
        await _as(client, demo, "hp")
        page = await client.get(f"/panels/{ids['panel_id']}")
        assert page.status_code == 200 and 'id="suspended"' in page.text
        assert f"/panels/{ids['panel_id']}/transition/cancel" in page.text
        assert f"/panels/{ids['panel_id']}/transition/propose" not in page.text
        section = await client.get(f"/panels/for-patient/{ids['pseudonym']}")
        assert "Open a panel for this patient" not in section.text and "no panel can be opened" in section.text
        steps = [t["action"] for t in await PanelTransition.select(PanelTransition.action).where(PanelTransition.panel == int(ids["panel_id"]))]
        assert steps[-1] == "consent_suspended"
        told = {n["user"] for n in await Notification.select(Notification.user).where(Notification.kind == "panel.consent")}
        assert demo.users["expert"] not in told and told  # the lead and the assembler; members only lose access
        for n in await Notification.select(Notification.title, Notification.body).where(Notification.kind == "panel.consent"):
            assert not any(m in n["title"] + n["body"] for m in SHARED_MARKERS)  # no clinical detail goes out
        # consent given again: the expert is back
        await _record_consent(client, ids["pseudonym"], kind, "given")
        await _as(client, demo, "expert")
        again = await _walk(client, app, ids)
        assert {p: again[p] for p in served} == {p: 200 for p in served}
        steps = [t["action"] for t in await PanelTransition.select(PanelTransition.action).where(PanelTransition.panel == int(ids["panel_id"]))]
        assert steps[-1] == "consent_resumed"
    else:
        assert not await Notification.count().where(Notification.kind == "panel.consent")


async def test_no_new_panel_without_consent_to_share(client, demo, settings):
    from core.panels.tables import Panel

    await enrol_totp(demo.users["hp"])
    ids = await _ids(settings)
    await _as(client, demo, "hp")
    await _record_consent(client, ids["pseudonym"], "sharing", "refused")
    before = await Panel.count()
    form = await client.get(f"/panels/new?patient={ids['pseudonym']}")
    assert form.status_code in (200, 403, 409)
    ern = re.search(r'name="ern"[^>]*>\s*<option value="(\d+)"', form.text) or re.search(r'<option value="(\d+)"', form.text)
    r = await post_form(client, "/panels/new", {
        "patient": ids["pseudonym"], "ern": ern.group(1) if ern else "1", "title": "Second opinion", "question": "What next?",
        "kind": "diagnostic", "urgency": "routine",
    })
    assert r.status_code in (409, 422) and "refused or withdrew sharing" in r.text
    assert await Panel.count() == before


def test_the_rules_table():
    from core.patients.consent_rules import allowed

    given = {"status": "given"}
    assert allowed({"care": given}, "panels")
    assert allowed({"care": given, "sharing": given}, "panels")
    assert not allowed({}, "panels")
    assert not allowed({"care": {"status": "withdrawn"}, "sharing": given}, "panels")
    assert not allowed({"care": given, "sharing": {"status": "refused"}}, "panels")
    assert allowed({}, "record")
    assert not allowed({"care": given}, "registry") and allowed({"registry": given}, "registry")
    assert not allowed({"research": {"status": "withdrawn"}}, "research_contact")
