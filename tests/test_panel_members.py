"""Panel members: finding the ERN's experts, invitations and answers, expert groups, guests
from outside the ERNs (with a real SMTP server), removals, and the end of guest access."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from core.app import create_app
from tests.conftest import app_client, login, make_settings, make_user, post_form, text_of
from tests.panels_support import hcp_of, make_panel, make_patient, revision
from tests.support.smtp import link_in, smtp_server  # noqa: F401  (fixture)

HX = {"HX-Request": "true"}


class Web:
    """One app per test (building it is what costs), and as many clients of it as there are
    people acting on the panel, each with its own cookies."""

    def __init__(self, app, client) -> None:
        self.app = app
        self.client = client

    @contextlib.asynccontextmanager
    async def anonymous(self):
        transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            yield c

    @contextlib.asynccontextmanager
    async def session(self, email: str):
        async with self.anonymous() as c:
            r = await login(c, email)
            assert r.status_code in (302, 303), r.text
            yield c


@pytest.fixture
async def web(clean_db):
    app = create_app(make_settings())
    async with app_client(app) as c:
        yield Web(app, c)


@pytest.fixture
async def mail_web(clean_db, smtp_server):
    app = create_app(make_settings(smtp_host="127.0.0.1", smtp_port=smtp_server.port))
    async with app_client(app) as c:
        yield Web(app, c)


async def people() -> dict[str, int]:
    from core.orgs.tables import Hcp

    ids = {
        "creator": await make_user("creator@example.org", name="Dr Clara Creator"),
        "coord": await make_user("coord@example.org", roles=[("hp", "ERN RND"), ("coordinator", "ERN RND")], name="Prof Cora Coordinator"),
        "muller": await make_user("muller@example.org", hcp="Hôpital Saint-Éloi", name="Dr Jürgen Müller"),
        "nowak": await make_user("nowak@example.org", hcp="Szpital Kraków", name="Dr Anna Nowak"),
        "kidney": await make_user("kidney@example.org", roles=[("hp", "ERKNet")], hcp="Kidney Centre", name="Dr Kenji Kidney"),
        "researcher": await make_user("res@example.org", roles=[("researcher", "ERN RND")], hcp=None, name="Dr Rita Researcher"),
        "erk_coord": await make_user("erkcoord@example.org", roles=[("hp", "ERKNet"), ("coordinator", "ERKNet")], hcp="Kidney Centre", name="Prof Erk Coordinator"),
    }
    await Hcp.update({Hcp.country: "FR", Hcp.city: "Montpellier"}).where(Hcp.name == "Hôpital Saint-Éloi")
    await Hcp.update({Hcp.country: "PL", Hcp.city: "Kraków"}).where(Hcp.name == "Szpital Kraków")
    return ids


async def a_panel(ids, status: str = "assembling", **kw) -> int:
    patient = await make_patient(await hcp_of(ids["creator"]))
    return await make_panel(patient, ids["creator"], status=status, **kw)


async def member(panel_id: int, user_id: int) -> dict | None:
    from core.panels.tables import PanelMember

    return await PanelMember.select().where((PanelMember.panel == panel_id) & (PanelMember.user == user_id)).first()


async def members_of(panel_id: int) -> list[dict]:
    from core.panels.tables import PanelMember

    return await PanelMember.select().where(PanelMember.panel == panel_id).order_by(PanelMember.id)


async def timeline(panel_id: int) -> list[dict]:
    from core.panels.tables import PanelTransition

    return await PanelTransition.select().where(PanelTransition.panel == panel_id).order_by(PanelTransition.id)


async def activity(action: str) -> list[dict]:
    from core.activity.tables import Activity

    rows = await Activity.select().where(Activity.action == action).order_by(Activity.id)
    return [{**r, "data": json.loads(r["data"]) if isinstance(r["data"], str) else r["data"]} for r in rows]


async def notifications(user_id: int) -> list[dict]:
    from core.notify.tables import Notification

    return await Notification.select().where(Notification.user == user_id).order_by(Notification.id)


async def invite(c, panel_id: int, *user_ids, rev: str | None = None):
    return await post_form(c, f"/panels/{panel_id}/invite", {"user": [str(u) for u in user_ids], "revision": rev if rev is not None else await revision(panel_id)})


async def respond(c, panel_id: int, answer: str, reason: str = ""):
    return await post_form(c, f"/panels/{panel_id}/respond", {"answer": answer, "reason": reason, "revision": await revision(panel_id)})


async def search(c, panel_id: int, q: str = ""):
    return await c.get(f"/panels/{panel_id}/candidates", params={"q": q}, headers=HX)


# --- finding experts ---------------------------------------------------------------------------


async def test_search_lists_the_erns_experts_of_every_hospital_only(web):
    client = web.client
    ids = await people()
    panel_id = await a_panel(ids)
    await login(client, "coord@example.org")
    r = await search(client, panel_id)
    assert r.status_code == 200 and "<html" not in r.text
    text = text_of(r.text)
    assert "Dr Jürgen Müller" in text and "Hôpital Saint-Éloi" in text and "(France)" in text
    assert "Dr Anna Nowak" in text and "Poland" in text
    assert "Prof Cora Coordinator" in text  # a coordinator may invite themselves as an expert
    for absent in ("Dr Kenji Kidney", "Dr Rita Researcher", "Prof Erk Coordinator", "Dr Clara Creator"):
        assert absent not in text, absent
    assert f'name="user" value="{ids["muller"]}"' in r.text and 'aria-label="Matching experts"' in r.text

    # accent-insensitive, on name, hospital and country
    for q, expected in (("muller", "Müller"), ("MÜLLER", "Müller"), ("saint eloi", "Müller"), ("france", "Müller"),
                        ("krakow", "Nowak"), ("polska", "Nowak"), ("nowak poland", "Nowak")):
        assert expected in (await search(client, panel_id, q)).text, q
    assert "Müller" not in (await search(client, panel_id, "nowak")).text
    assert "No expert of the ERN matches" in (await search(client, panel_id, "kidney")).text

    # without htmx the panel page shows the results
    plain = await client.get(f"/panels/{panel_id}/candidates", params={"q": "muller"}, follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"] == f"/panels/{panel_id}?member_q=muller#members"


async def test_search_leaves_out_people_already_in_and_expired_roles(web):
    client = web.client
    from core.identity.tables import RoleAssignment

    ids = await people()
    panel_id = await a_panel(ids, invited=[ids["nowak"]])
    await RoleAssignment.update({RoleAssignment.expires_at: datetime.now(timezone.utc) - timedelta(minutes=1)}).where(
        RoleAssignment.user == ids["muller"]
    )
    await login(client, "coord@example.org")
    text = (await search(client, panel_id)).text
    assert "Nowak" not in text and "Müller" not in text and "Prof Cora Coordinator" in text


async def test_who_may_search(web):
    client = web.client
    ids = await people()
    panel_id = await a_panel(ids, members=[ids["nowak"]])
    # the lead (here the creator) may
    async with web.session("creator@example.org") as lead:
        assert (await search(lead, panel_id)).status_code == 200
    # an accepted member may not; an HP of the ERN outside the panel does not even see it
    async with web.session("nowak@example.org") as c:
        assert (await search(c, panel_id)).status_code == 403
    async with web.session("muller@example.org") as c:
        assert (await search(c, panel_id)).status_code == 404
    # another ERN's coordinator: 404
    async with web.session("erkcoord@example.org") as c:
        assert (await search(c, panel_id)).status_code == 404
    # a researcher has no panels at all
    async with web.session("res@example.org") as c:
        assert (await search(c, panel_id)).status_code == 403
    # a draft is not assembled yet: refused with 409 for its creator
    draft = await a_panel(ids, status="draft")
    await login(client, "creator@example.org")
    assert (await search(client, draft)).status_code == 409


# --- inviting and answering --------------------------------------------------------------------


async def test_invite_then_the_invitee_sees_only_the_invitation_and_accepts(web):
    client = web.client
    ids = await people()
    panel_id = await a_panel(ids)
    await login(client, "coord@example.org")
    r = await invite(client, panel_id, ids["muller"])
    assert r.status_code == 303 and r.headers["location"] == f"/panels/{panel_id}#members"
    row = await member(panel_id, ids["muller"])
    assert (row["status"], row["role"], row["invited_by"], row["responded_at"]) == ("invited", "member", ids["coord"], None)
    [entry] = [t for t in await timeline(panel_id) if t["action"] == "invited"]
    assert "Dr Jürgen Müller" in entry["note"] and entry["actor"] == ids["coord"]
    [note] = await notifications(ids["muller"])
    assert note["kind"] == "panel.invited" and note["link"] == f"/panels/{panel_id}#members"
    assert [a["data"]["user"] for a in await activity("panel.member_invited")] == [ids["muller"]]
    assert "Müller" not in (await search(client, panel_id, "muller")).text  # no longer a candidate

    async with web.session("muller@example.org") as invitee:
        # the invitation, not the panel
        assert (await search(invitee, panel_id)).status_code == 403
        page = await invitee.get(f"/panels/{panel_id}")
        assert page.status_code == 200
        assert "Accept the invitation" in page.text and 'id="timeline"' not in page.text
        assert "Dr Clara Creator" not in text_of(page.text.split('id="members"', 1)[1])  # no member list yet

        r = await respond(invitee, panel_id, "accept")
        assert r.status_code == 303 and r.headers["location"] == f"/panels/{panel_id}#members"
        row = await member(panel_id, ids["muller"])
        assert row["status"] == "accepted" and row["responded_at"] is not None
        assert [t["action"] for t in await timeline(panel_id)][-1] == "accepted"
        lead_notes = await notifications(ids["creator"])
        assert lead_notes and lead_notes[-1]["kind"] == "panel.status" and "accepted" in lead_notes[-1]["title"]
        assert [a["data"]["answer"] for a in await activity("panel.member_responded")] == ["accepted"]

        again = await respond(invitee, panel_id, "accept")
        assert again.status_code == 409
        assert (await respond(invitee, panel_id, "decline")).status_code == 409
        assert (await member(panel_id, ids["muller"]))["status"] == "accepted"
        # now a member: the page, but no inviting
        assert (await search(invitee, panel_id)).status_code == 403


async def test_decline_with_a_reason_then_the_panel_is_gone_and_a_new_invitation_reuses_the_row(web):
    client = web.client
    ids = await people()
    panel_id = await a_panel(ids, invited=[ids["muller"]])
    async with web.session("muller@example.org") as invitee:
        assert (await respond(invitee, panel_id, "maybe")).status_code == 422
        assert (await post_form(invitee, f"/panels/{panel_id}/respond", {"answer": "decline", "reason": "x" * 1001, "revision": await revision(panel_id)})).status_code == 422
        assert (await member(panel_id, ids["muller"]))["status"] == "invited"
        r = await respond(invitee, panel_id, "decline", "On leave until March.")
        assert r.status_code == 303 and r.headers["location"] == "/panels"
        assert (await member(panel_id, ids["muller"]))["status"] == "declined"
        last = (await timeline(panel_id))[-1]
        assert last["action"] == "declined" and "On leave until March." in last["note"]
        assert (await invitee.get(f"/panels/{panel_id}")).status_code == 404
        assert (await respond(invitee, panel_id, "accept")).status_code == 404

    await login(client, "creator@example.org")
    assert (await invite(client, panel_id, ids["muller"])).status_code == 303
    rows = [m for m in await members_of(panel_id) if m["user"] == ids["muller"]]
    assert len(rows) == 1 and rows[0]["status"] == "invited" and rows[0]["responded_at"] is None


async def test_several_invitations_at_once_and_duplicates_refused(web):
    client = web.client
    ids = await people()
    panel_id = await a_panel(ids)
    await login(client, "creator@example.org")
    assert (await invite(client, panel_id, ids["muller"], ids["nowak"], ids["muller"])).status_code == 303
    assert sorted(m["user"] for m in await members_of(panel_id)) == sorted([ids["muller"], ids["nowak"]])
    assert len(await notifications(ids["nowak"])) == 1
    again = await invite(client, panel_id, ids["nowak"], ids["coord"])
    assert again.status_code == 409
    assert await member(panel_id, ids["coord"]) is None
    assert (await post_form(client, f"/panels/{panel_id}/invite", {"revision": await revision(panel_id)})).status_code == 422
    assert (await invite(client, panel_id, "12abc")).status_code == 422


async def test_people_outside_the_erns_experts_cannot_be_invited(web):
    client = web.client
    ids = await people()
    panel_id = await a_panel(ids)
    await login(client, "coord@example.org")
    for who in ("kidney", "researcher", "erk_coord"):
        r = await invite(client, panel_id, ids[who])
        assert r.status_code == 422, who
    mixed = await invite(client, panel_id, ids["muller"], ids["kidney"])
    assert mixed.status_code == 422
    assert await members_of(panel_id) == []
    assert await notifications(ids["muller"]) == [] and await activity("panel.member_invited") == []
    assert [t["action"] for t in await timeline(panel_id)] == []


async def test_non_members_and_researchers_get_nothing(web):
    client = web.client
    ids = await people()
    panel_id = await a_panel(ids, invited=[ids["nowak"]])
    rev = await revision(panel_id)
    async with web.session("muller@example.org") as outsider:  # an HP of the ERN, not in the panel
        assert (await outsider.get(f"/panels/{panel_id}")).status_code == 404
        assert (await invite(outsider, panel_id, ids["muller"], rev=rev)).status_code == 404
        assert (await respond(outsider, panel_id, "accept")).status_code == 404
        assert (await post_form(outsider, f"/panels/{panel_id}/invite-guest", {"name": "A B", "email": "a@b.org", "revision": rev})).status_code == 404
    async with web.session("erkcoord@example.org") as other_ern:
        assert (await invite(other_ern, panel_id, ids["muller"], rev=rev)).status_code == 404
    async with web.session("res@example.org") as researcher:
        assert (await invite(researcher, panel_id, ids["muller"], rev=rev)).status_code == 403
    async with web.session("nowak@example.org") as invitee:  # an invitee does not invite others
        assert (await invite(invitee, panel_id, ids["muller"], rev=rev)).status_code == 403
    assert [m["user"] for m in await members_of(panel_id)] == [ids["nowak"]]


async def test_stale_revision_is_refused_and_nothing_is_stored(web):
    client = web.client
    from core.panels.tables import Panel

    ids = await people()
    panel_id = await a_panel(ids, invited=[ids["nowak"]])
    old = await revision(panel_id)
    await Panel.update({Panel.revision: Panel.revision + 1}).where(Panel.id == panel_id)  # someone acted meanwhile
    await login(client, "coord@example.org")
    assert (await invite(client, panel_id, ids["muller"], rev=old)).status_code == 409
    assert (await invite(client, panel_id, ids["muller"], rev="")).status_code == 409
    assert (await post_form(client, f"/panels/{panel_id}/invite-guest", {"name": "Dr Out", "email": "out@else.org", "revision": old})).status_code == 409
    assert [m["user"] for m in await members_of(panel_id)] == [ids["nowak"]]
    async with web.session("nowak@example.org") as invitee:
        r = await post_form(invitee, f"/panels/{panel_id}/respond", {"answer": "accept", "revision": old})
        assert r.status_code == 409
    assert (await member(panel_id, ids["nowak"]))["status"] == "invited"
    assert await timeline(panel_id) == [] and await notifications(ids["muller"]) == []


async def test_closed_panel_refuses_invitations_and_changes(web):
    client = web.client
    ids = await people()
    panel_id = await a_panel(ids, status="closed", members=[ids["nowak"]])
    rev = await revision(panel_id)
    await login(client, "creator@example.org")
    assert (await invite(client, panel_id, ids["muller"])).status_code == 409
    assert (await post_form(client, f"/panels/{panel_id}/invite-guest", {"name": "Dr Out", "email": "out@else.org", "revision": rev})).status_code == 409
    [row] = await members_of(panel_id)
    assert (await post_form(client, f"/panels/{panel_id}/members/{row['id']}/remove", {"revision": rev})).status_code == 409
    assert (await search(client, panel_id)).status_code == 409
    assert [(m["user"], m["status"]) for m in await members_of(panel_id)] == [(ids["nowak"], "accepted")]


# --- removing ----------------------------------------------------------------------------------


async def test_removed_members_lose_access_and_the_lead_stays(web):
    client = web.client
    from core.panels.tables import PanelMember

    ids = await people()
    panel_id = await a_panel(ids, status="open", members=[ids["nowak"]], invited=[ids["muller"]])
    await PanelMember.insert(PanelMember(panel=panel_id, user=ids["creator"], role="lead", status="accepted"))
    rows = {m["user"]: m for m in await members_of(panel_id)}
    async with web.session("nowak@example.org") as nowak:
        assert (await nowak.get(f"/panels/{panel_id}")).status_code == 200
        # a member removes nobody
        r = await post_form(nowak, f"/panels/{panel_id}/members/{rows[ids['muller']]['id']}/remove", {"revision": await revision(panel_id)})
        assert r.status_code == 403

        async with web.session("coord@example.org") as coord:  # the ERN's assembler
            for who in ("nowak", "muller"):
                r = await post_form(coord, f"/panels/{panel_id}/members/{rows[ids[who]]['id']}/remove", {"revision": await revision(panel_id)})
                assert r.status_code == 303, who
            r = await post_form(coord, f"/panels/{panel_id}/members/{rows[ids['creator']]['id']}/remove", {"revision": await revision(panel_id)})
            assert r.status_code == 409  # never the lead
            again = await post_form(coord, f"/panels/{panel_id}/members/{rows[ids['nowak']]['id']}/remove", {"revision": await revision(panel_id)})
            assert again.status_code == 404

        assert (await nowak.get(f"/panels/{panel_id}")).status_code == 404
    async with web.session("muller@example.org") as muller:
        assert (await respond(muller, panel_id, "accept")).status_code == 404
    states = {m["user"]: m["status"] for m in await members_of(panel_id)}
    assert states == {ids["nowak"]: "removed", ids["muller"]: "removed", ids["creator"]: "accepted"}
    removed = [t for t in await timeline(panel_id) if t["action"] == "member_removed"]
    assert len(removed) == 2 and "Dr Anna Nowak" in removed[0]["note"]


# --- the page section --------------------------------------------------------------------------


async def test_panel_page_shows_members_search_groups_and_guest_form(web):
    client = web.client
    from core.panels.tables import ExpertGroup

    ids = await people()
    panel_id = await a_panel(ids, members=[ids["nowak"]], invited=[ids["muller"]])
    await ExpertGroup.insert(ExpertGroup(ern=await _rnd(), name="Ataxia experts", area="adult ataxias"))
    await login(client, "coord@example.org")
    page = await client.get(f"/panels/{panel_id}", params={"member_q": "muller"})
    assert page.status_code == 200
    members = page.text.split('id="members"', 1)[1]
    text = text_of(members)
    assert "Dr Anna Nowak" in text and "Szpital Kraków (Poland)" in text and "Accepted" in text
    assert "Dr Jürgen Müller" in text and "Invited" in text and "Dr Clara Creator" in text and "Lead" in text
    assert 'id="candidate-q"' in members and '<label class="inline" for="candidate-q">' in members
    assert 'aria-controls="candidate-results"' in members and 'id="candidate-results"' in members
    assert "Ataxia experts" in members and 'action="/panels/%d/invite-guest"' % panel_id in members
    assert "Remove Dr Anna Nowak from the panel" in members
    assert 'href="/panels/groups"' in members

    async with web.session("nowak@example.org") as member_client:  # a member sees the list, no invite tools
        members = (await member_client.get(f"/panels/{panel_id}")).text.split('id="members"', 1)[1]
        assert "Dr Jürgen Müller" in members and 'id="candidate-q"' not in members and "invite-guest" not in members
        assert "/remove" not in members


async def _rnd() -> int:
    from tests.panels_support import ern_id

    return await ern_id("ERN RND")


# --- expert groups -----------------------------------------------------------------------------


async def test_expert_groups_admin_and_group_invitation(web):
    client = web.client
    from core.identity.tables import RoleAssignment
    from core.panels.tables import ExpertGroup, ExpertGroupMember

    ids = await people()
    rnd = await _rnd()
    await login(client, "coord@example.org")
    listing = await client.get("/panels/groups")
    assert listing.status_code == 200 and "ERN RND" in listing.text and "ERKNet" not in listing.text
    bad = await post_form(client, "/panels/groups", {"ern": str(rnd), "name": "x" * 121, "area": ""})
    assert bad.status_code == 422 and await ExpertGroup.select() == []
    r = await post_form(client, "/panels/groups", {"ern": str(rnd), "name": "Ataxia experts", "area": "Hereditary ataxias"})
    assert r.status_code == 303
    [group] = await ExpertGroup.select()
    assert (group["ern"], group["name"], group["area"]) == (rnd, "Ataxia experts", "Hereditary ataxias")
    assert r.headers["location"] == f"/panels/groups/{group['id']}"
    dup = await post_form(client, "/panels/groups", {"ern": str(rnd), "name": "ataxia EXPERTS"})
    assert dup.status_code == 422
    erk = (await RoleAssignment.select(RoleAssignment.ern).where(RoleAssignment.user == ids["kidney"]).first())["ern"]
    assert (await post_form(client, "/panels/groups", {"ern": str(erk), "name": "Not mine"})).status_code == 404
    assert len(await ExpertGroup.select()) == 1

    gid = group["id"]
    detail = await client.get(f"/panels/groups/{gid}")
    assert detail.status_code == 200 and "Dr Jürgen Müller" in detail.text and "Dr Kenji Kidney" not in detail.text
    for who in ("muller", "nowak", "coord"):
        assert (await post_form(client, f"/panels/groups/{gid}/members", {"user": str(ids[who])})).status_code == 303
    assert (await post_form(client, f"/panels/groups/{gid}/members", {"user": str(ids["nowak"])})).status_code == 409
    for who in ("kidney", "researcher"):
        assert (await post_form(client, f"/panels/groups/{gid}/members", {"user": str(ids[who])})).status_code == 422
    assert (await post_form(client, f"/panels/groups/{gid}/members/{ids['coord']}/remove")).status_code == 303
    in_group = sorted(r["user"] for r in await ExpertGroupMember.select())
    assert in_group == sorted([ids["muller"], ids["nowak"]])

    # another ERN's coordinator: every group page and action answers 404, nothing changes
    async with web.session("erkcoord@example.org") as other:
        assert "Ataxia experts" not in (await other.get("/panels/groups")).text
        assert (await other.get(f"/panels/groups/{gid}")).status_code == 404
        assert (await post_form(other, f"/panels/groups/{gid}/members", {"user": str(ids["kidney"])})).status_code == 404
        assert (await post_form(other, f"/panels/groups/{gid}/members/{ids['muller']}/remove")).status_code == 404
        assert (await post_form(other, f"/panels/groups/{gid}/delete")).status_code == 404
    async with web.session("muller@example.org") as hp:
        assert (await hp.get("/panels/groups")).status_code == 403
        assert (await post_form(hp, f"/panels/groups/{gid}/delete")).status_code == 403
    assert len(await ExpertGroupMember.select()) == 2 and len(await ExpertGroup.select()) == 1

    # the whole group is invited, except who is already in or lost their role in the ERN
    lapsed = await make_user("lapsed@example.org", name="Dr Lapsed Role")
    await ExpertGroupMember.insert(ExpertGroupMember(group=gid, user=lapsed))
    await RoleAssignment.update({RoleAssignment.expires_at: datetime.now(timezone.utc) - timedelta(seconds=1)}).where(RoleAssignment.user == lapsed)
    assert "no longer in ERN RND" in (await client.get(f"/panels/groups/{gid}")).text
    panel_id = await a_panel(ids, invited=[ids["nowak"]])
    async with web.session("creator@example.org") as lead:
        r = await post_form(lead, f"/panels/{panel_id}/invite-group", {"group": str(gid), "revision": await revision(panel_id)})
        assert r.status_code == 303
        assert sorted(m["user"] for m in await members_of(panel_id)) == sorted([ids["nowak"], ids["muller"]])
        assert len(await notifications(ids["muller"])) == 1 and await notifications(ids["nowak"]) == []
        assert "Ataxia experts" in (await timeline(panel_id))[-1]["note"]
        again = await post_form(lead, f"/panels/{panel_id}/invite-group", {"group": str(gid), "revision": await revision(panel_id)})
        assert again.status_code == 409
        foreign = ExpertGroup(ern=erk, name="Kidney people")
        await foreign.save()
        await ExpertGroupMember.insert(ExpertGroupMember(group=foreign.id, user=ids["kidney"]))
        r = await post_form(lead, f"/panels/{panel_id}/invite-group", {"group": str(foreign.id), "revision": await revision(panel_id)})
        assert r.status_code == 422
    assert len(await members_of(panel_id)) == 2

    assert (await post_form(client, f"/panels/groups/{gid}/delete")).status_code == 303
    assert [g["name"] for g in await ExpertGroup.select()] == ["Kidney people"]
    assert [m["user"] for m in await ExpertGroupMember.select()] == [ids["kidney"]]


# --- guests ------------------------------------------------------------------------------------


async def roles_of(user_id: int) -> list[dict]:
    from core.identity.tables import RoleAssignment

    return await RoleAssignment.select().where(RoleAssignment.user == user_id).order_by(RoleAssignment.id)


async def test_guest_invitation_mails_a_set_password_link_and_the_role_ends_with_the_panel(mail_web, smtp_server):
    from core.identity.roles import GUEST_DAYS
    from core.identity.tables import User
    from core.panels.members import expire_guests
    from core.panels.tables import Panel

    ids = await people()
    panel_id = await a_panel(ids)
    other_panel = await a_panel(ids, status="open")
    async with mail_web.session("coord@example.org") as coord:
        r = await post_form(coord, f"/panels/{panel_id}/invite-guest", {"name": "  Dr Olivia   Outsider ", "email": "Olivia@Elsewhere.example", "revision": await revision(panel_id)})
        assert r.status_code == 303, r.text
        guest = await User.select().where(User.email == "olivia@elsewhere.example").first()
        assert guest["name"] == "Dr Olivia Outsider" and guest["hcp"] is None and guest["is_active"]
        [role] = await roles_of(guest["id"])
        assert (role["role"], role["ern"], role["granted_by"]) == ("guest", await _rnd(), ids["coord"])
        days = (role["expires_at"] - datetime.now(timezone.utc)).total_seconds() / 86400
        assert GUEST_DAYS - 0.01 < days <= GUEST_DAYS
        row = await member(panel_id, guest["id"])
        assert (row["role"], row["status"], row["guest_assignment"]) == ("guest", "invited", role["id"])
        [mail] = [m for m in smtp_server.messages if m["recipients"] == ["olivia@elsewhere.example"]]
        assert "Prof Cora Coordinator" in mail["body"] and f"Panel #{panel_id}" in mail["body"] and "ERN RND" in mail["body"]
        assert "Zygmunt" not in mail["body"] and "Quarrington" not in mail["body"]
        link = link_in(mail, "/account/password/reset/")

        # the same guest twice, a bad address, a too long name: refused, nothing more stored
        dup = await post_form(coord, f"/panels/{panel_id}/invite-guest", {"name": "Dr Olivia Outsider", "email": "olivia@elsewhere.example", "revision": await revision(panel_id)})
        assert dup.status_code == 409
        for name, email in (("Dr X", "not-an-address"), ("Dr X", "x@y"), ("Dr X", "a b@c.org"), ("x" * 201, "x@y.org"), ("", "x@y.org"), ("Dr X", "x" * 250 + "@y.org")):
            r = await post_form(coord, f"/panels/{panel_id}/invite-guest", {"name": name, "email": email, "revision": await revision(panel_id)})
            assert r.status_code == 422, (name, email)
        assert await User.count() == len(ids) + 1 and len(await members_of(panel_id)) == 1
        assert len(smtp_server.messages) == 1

        # the same guest in a second panel of the ERN: the guest role is shared, not granted twice
        r = await post_form(coord, f"/panels/{other_panel}/invite-guest", {"name": "Dr Olivia Outsider", "email": "olivia@elsewhere.example", "revision": await revision(other_panel)})
        assert r.status_code == 303
        assert len(await roles_of(guest["id"])) == 1
        assert (await member(other_panel, guest["id"]))["guest_assignment"] == role["id"]
        assert [m["subject"] for m in smtp_server.messages if m["recipients"] == ["olivia@elsewhere.example"]][-1].startswith("[CPMS]")

    # the guest chooses a password through the link, then must set up two-step login
    async with mail_web.anonymous() as g:
        assert (await g.get(link)).status_code == 200
        new_password = "plum-orchard-lantern-2961"
        r = await g.post(link, data={"password": new_password, "password_again": new_password, "_csrf_token": g.cookies.get("csrftoken", "")}, follow_redirects=False)
        assert r.status_code == 303
        r = await login(g, "olivia@elsewhere.example", new_password)
        assert r.status_code in (302, 303)
        r = await g.get(f"/panels/{panel_id}", follow_redirects=False)
        assert r.status_code in (302, 303) and r.headers["location"] == "/account/2fa"

    # the first panel closes: the guest still takes part in the other one, the role stays
    await Panel.update({Panel.status: "closed"}).where(Panel.id == panel_id)
    assert await expire_guests(panel_id) == 0
    assert (await roles_of(guest["id"]))[0]["expires_at"] > datetime.now(timezone.utc)
    # the other one is cancelled: now the role ends
    await Panel.update({Panel.status: "cancelled"}).where(Panel.id == other_panel)
    assert await expire_guests(other_panel) == 1
    assert (await roles_of(guest["id"]))[0]["expires_at"] <= datetime.now(timezone.utc)
    from core.identity.sessions import actor_for_user

    assert (await actor_for_user(guest["id"])).roles == ()
    assert await expire_guests(other_panel) == 0  # idempotent


async def test_guest_form_with_existing_accounts(mail_web, smtp_server):
    from core.identity.tables import User

    ids = await people()
    panel_id = await a_panel(ids)
    users_before = await User.count()
    async with mail_web.session("creator@example.org") as lead:
        # an HP of another ERN: the existing account, with a guest role in this ERN
        r = await post_form(lead, f"/panels/{panel_id}/invite-guest", {"name": "whatever", "email": "KIDNEY@example.org", "revision": await revision(panel_id)})
        assert r.status_code == 303
        roles = {(x["role"], x["ern"]) for x in await roles_of(ids["kidney"])}
        assert ("guest", await _rnd()) in roles
        row = await member(panel_id, ids["kidney"])
        assert row["role"] == "guest" and row["guest_assignment"] is not None
        # an expert of the ERN joins as a member, with no guest role
        r = await post_form(lead, f"/panels/{panel_id}/invite-guest", {"name": "Dr Nowak", "email": "nowak@example.org", "revision": await revision(panel_id)})
        assert r.status_code == 303
        row = await member(panel_id, ids["nowak"])
        assert (row["role"], row["guest_assignment"]) == ("member", None)
        assert [x["role"] for x in await roles_of(ids["nowak"])] == ["hp"]
    assert await User.count() == users_before
    # existing accounts get the ordinary invitation, no set-password mail
    subjects = [m["subject"] for m in smtp_server.messages]
    assert subjects and all(s.startswith("[CPMS]") for s in subjects)
    assert not any("/account/password/reset/" in m["body"] for m in smtp_server.messages)

    # the guest accepts and sees the panel; once the panel closes, expire_guests ends the role
    async with mail_web.session("kidney@example.org") as guest:
        assert (await respond(guest, panel_id, "accept")).status_code == 303
        assert (await guest.get(f"/panels/{panel_id}")).status_code == 200
    from core.panels.members import expire_guests
    from core.panels.tables import Panel

    await Panel.update({Panel.status: "closed"}).where(Panel.id == panel_id)
    assert await expire_guests(panel_id) == 1
    now = datetime.now(timezone.utc)
    assert all(r["expires_at"] is None for r in await roles_of(ids["kidney"]) if r["role"] == "hp")
    assert all(r["expires_at"] <= now for r in await roles_of(ids["kidney"]) if r["role"] == "guest")


async def test_removing_a_guest_ends_their_guest_role(mail_web, smtp_server):
    ids = await people()
    panel_id = await a_panel(ids, status="open")
    async with mail_web.session("coord@example.org") as coord:
        r = await post_form(coord, f"/panels/{panel_id}/invite-guest", {"name": "Dr Kenji Kidney", "email": "kidney@example.org", "revision": await revision(panel_id)})
        assert r.status_code == 303
        row = await member(panel_id, ids["kidney"])
        r = await post_form(coord, f"/panels/{panel_id}/members/{row['id']}/remove", {"revision": await revision(panel_id)})
        assert r.status_code == 303
    [guest_role] = [x for x in await roles_of(ids["kidney"]) if x["role"] == "guest"]
    assert guest_role["expires_at"] <= datetime.now(timezone.utc)
    async with mail_web.session("kidney@example.org") as guest:
        assert (await guest.get(f"/panels/{panel_id}")).status_code == 404


async def test_guest_role_lapses_after_guest_days(mail_web, smtp_server):
    """Without any panel closing, the role given to a guest stops at GUEST_DAYS."""
    from core.identity.roles import GUEST_DAYS
    from core.identity.sessions import actor_for_user
    from core.identity.tables import RoleAssignment, User

    ids = await people()
    panel_id = await a_panel(ids)
    async with mail_web.session("coord@example.org") as coord:
        r = await post_form(coord, f"/panels/{panel_id}/invite-guest", {"name": "Dr Late", "email": "late@else.example", "revision": await revision(panel_id)})
        assert r.status_code == 303
    guest = await User.select().where(User.email == "late@else.example").first()
    [role] = await roles_of(guest["id"])
    assert (await actor_for_user(guest["id"])).roles == (("guest", await _rnd()),)
    # GUEST_DAYS later (the role's expiry moved to the past as time would have done)
    granted = role["expires_at"] - timedelta(days=GUEST_DAYS)
    assert abs((granted - datetime.now(timezone.utc)).total_seconds()) < 60
    await RoleAssignment.update({RoleAssignment.expires_at: datetime.now(timezone.utc) - timedelta(seconds=1)}).where(RoleAssignment.id == role["id"])
    assert (await actor_for_user(guest["id"])).roles == ()
