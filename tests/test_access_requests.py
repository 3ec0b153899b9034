"""Access requests: sign-up, the ERN's queue, decisions (audited, notified), isolation between
ERNs, revocation taking effect at once, guest expiry and extension, and administration."""

import re
from datetime import timedelta

from core.app import create_app
from core.identity.sessions import now
from core.identity.tables import AccessRequest, RoleAssignment, User
from core.orgs.tables import Ern, Hcp
from tests.conftest import app_client, login, make_settings, make_user, post_form
from tests.support.smtp import smtp_server  # noqa: F401  (fixture)

STRONG = "violet-harbour-juniper-1987"


async def _ids():
    erns = {e["acronym"]: e["id"] for e in await Ern.select(Ern.id, Ern.acronym)}
    return erns


async def _activity(action):
    from core.activity.tables import Activity

    return await Activity.select().where(Activity.action == action)


async def _signup(client, **over):
    erns = await _ids()
    hcp = await Hcp.select(Hcp.id).where(Hcp.name == "Test Hospital").first()
    data = {
        "name": "Dr Ada Newcomer", "email": "ada@example.org", "password": STRONG, "password2": STRONG,
        "ern": str(erns["ERN RND"]), "hcp": str(hcp["id"]), "roles": ["hp"],
        "justification": "I treat patients with rare neurological diseases at this hospital.",
    }
    data.update(over)
    await client.get("/signup")
    return await post_form(client, "/signup", data)


async def test_signup_verify_then_coordinator_approves(clean_db, smtp_server):
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=smtp_server.port)
    await make_user("coord@example.org", roles=[("hp", "ERN RND"), ("coordinator", "ERN RND")])
    app = create_app(settings)
    async with app_client(app) as client:
        r = await _signup(client)
        assert r.status_code == 200 and "Check your e-mail" in r.text
        user = await User.select().where(User.email == "ada@example.org").first()
        assert user["email_verified"] is False and user["password_hash"].startswith("$argon2id$")
        # not yet verified: the coordinator does not see it
        async with app_client(app) as coord:
            await login(coord, "coord@example.org")
            assert "ada@example.org" not in (await coord.get("/access/queue")).text
            mail = smtp_server.messages[-1]
            assert mail["to"] == "ada@example.org"
            link = re.search(r"http://\S+/account/verify/\S+", mail["body"]).group(0)
            assert (await client.get(link.split("8000", 1)[1])).status_code == 200
            queue = await coord.get("/access/queue")
            assert "ada@example.org" in queue.text and "rare neurological" in queue.text
            [req] = await AccessRequest.select().where(AccessRequest.user == user["id"])
            r = await post_form(coord, f"/access/requests/{req['id']}/approve", headers={"HX-Request": "true"})
            assert r.status_code == 200 and "<html" not in r.text and "Request approved" in r.text
            again = await post_form(coord, f"/access/requests/{req['id']}/approve")
            assert again.status_code == 409
    roles = await RoleAssignment.select(RoleAssignment.role).where(RoleAssignment.user == user["id"])
    assert [r["role"] for r in roles] == ["hp"]
    assert "approved" in smtp_server.messages[-1]["subject"]
    assert len(await _activity("access.approved")) == 1 and len(await _activity("role.granted")) == 1


async def test_signup_bad_input_changes_nothing(client):
    await make_user("someone@example.org")
    cases = [
        {"password": "short", "password2": "short"},
        {"password": "password123456", "password2": "password123456"},
        {"password2": "something-else-entirely-42"},
        {"email": "not-an-email"},
        {"roles": ["coordinator"]},
        {"roles": ["admin"]},
        {"roles": []},  # no role ticked: the form sends no "roles" field at all
        {"ern": "999999"},
        {"ern": "abc"},
        {"justification": "short"},
        {"hcp": ""},
        {"email": "someone@example.org"},
    ]
    before = await User.count()
    for case in cases:
        r = await _signup(client, **case)
        assert r.status_code == 422, case
        assert 'class="field-error"' in r.text, case
    assert await User.count() == before
    assert await AccessRequest.count() == 0


async def test_hcp_must_belong_to_the_ern(client):
    await make_user("someone@example.org")  # creates "Test Hospital", member of ERN RND, ERKNet, MetabERN
    erns = await _ids()
    r = await _signup(client, ern=str(erns["ERN EYE"]))
    assert r.status_code == 422 and "not a member of that network" in r.text


async def test_coordinator_of_another_ern_sees_nothing_and_cannot_decide(client, settings):
    uid = await make_user("new@example.org", roles=[], mfa=False)
    await User.update({User.email_verified: True}).where(User.id == uid)
    erns = await _ids()
    req = AccessRequest(user=uid, ern=erns["ERN RND"], roles="hp", justification="please let me in, thanks")
    await req.save()
    await make_user("other@example.org", roles=[("hp", "ERKNet"), ("coordinator", "ERKNet")])
    await make_user("hp@example.org")
    await login(client, "other@example.org")
    assert "new@example.org" not in (await client.get("/access/queue")).text
    for action in ("approve", "reject"):
        r = await post_form(client, f"/access/requests/{req.id}/{action}", {"reason": "not mine at all"})
        assert r.status_code == 404
    assert (await AccessRequest.select(AccessRequest.status).where(AccessRequest.id == req.id).first())["status"] == "pending"
    # a plain HP has no queue at all
    async with app_client(create_app(settings)) as hp:
        await login(hp, "hp@example.org")
        assert (await hp.get("/access/queue")).status_code == 403


async def test_reject_needs_a_reason_and_tells_the_requester(clean_db, smtp_server):
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=smtp_server.port)
    uid = await make_user("new@example.org", roles=[], mfa=False)
    await User.update({User.email_verified: True}).where(User.id == uid)
    erns = await _ids()
    req = AccessRequest(user=uid, ern=erns["ERN RND"], roles="hp,coordinator", justification="please let me in, thanks")
    await req.save()
    await make_user("coord@example.org", roles=[("hp", "ERN RND"), ("coordinator", "ERN RND")])
    async with app_client(create_app(settings)) as coord:
        await login(coord, "coord@example.org")
        r = await post_form(coord, f"/access/requests/{req.id}/reject", {"reason": ""})
        assert r.status_code == 422
        r = await post_form(coord, f"/access/requests/{req.id}/reject", {"reason": "Not a member of our hospital network."})
        assert r.status_code == 200
    row = await AccessRequest.select().where(AccessRequest.id == req.id).first()
    assert row["status"] == "rejected" and row["reason"].startswith("Not a member")
    assert await RoleAssignment.count().where(RoleAssignment.user == uid) == 0
    assert "Not a member of our hospital network." in smtp_server.messages[-1]["body"]
    assert len(await _activity("access.rejected")) == 1


async def test_logged_in_user_requests_more_roles(client):
    uid = await make_user("hp@example.org")
    erns = await _ids()
    await login(client, "hp@example.org")
    hcp = await Hcp.select(Hcp.id).where(Hcp.name == "Test Hospital").first()
    r = await post_form(client, "/access/request", {
        "ern": str(erns["ERN RND"]), "hcp": str(hcp["id"]), "roles": ["coordinator"],
        "justification": "I now coordinate the network at our site.",
    })
    assert r.status_code == 200 and "sent to the network" in r.text  # already HP in ERN RND
    dup = await post_form(client, "/access/request", {
        "ern": str(erns["ERN RND"]), "hcp": str(hcp["id"]), "roles": ["dispatcher"],
        "justification": "And dispatching as well, please.",
    })
    assert dup.status_code == 422 and "already have a pending request" in dup.text
    assert await AccessRequest.count().where(AccessRequest.user == uid) == 1


async def test_revoking_a_role_takes_effect_on_the_next_request(client, settings):
    uid = await make_user("hp@example.org")
    await make_user("coord@example.org", roles=[("hp", "ERN RND"), ("coordinator", "ERN RND")])
    await login(client, "hp@example.org")
    assert (await client.get("/erns")).status_code == 200
    [assignment] = await RoleAssignment.select(RoleAssignment.id).where(RoleAssignment.user == uid)
    async with app_client(create_app(settings)) as coord:
        await login(coord, "coord@example.org")
        members = await coord.get("/access/members")
        assert "hp@example.org" in members.text
        r = await post_form(coord, f"/access/roles/{assignment['id']}/revoke")
        assert r.status_code == 200 and "Revoked: hp" in r.text
    assert (await client.get("/erns")).status_code == 403  # same session, next request
    assert len(await _activity("role.revoked")) == 1


async def test_revoking_hp_removes_coordinator_too(client, settings):
    uid = await make_user("c2@example.org", roles=[("hp", "ERN RND"), ("coordinator", "ERN RND")])
    await make_user("coord@example.org", roles=[("hp", "ERN RND"), ("coordinator", "ERN RND")])
    hp_role = await RoleAssignment.select(RoleAssignment.id).where((RoleAssignment.user == uid) & (RoleAssignment.role == "hp")).first()
    await login(client, "coord@example.org")
    r = await post_form(client, f"/access/roles/{hp_role['id']}/revoke")
    assert "coordinator" in r.text
    assert await RoleAssignment.count().where(RoleAssignment.user == uid) == 0


async def test_guest_expires_and_can_be_extended(client, settings):
    from core.identity.access import grant_guest

    uid = await make_user("guest@example.org", roles=[], hcp=None)
    erns = await _ids()
    rid = await grant_guest(uid, erns["ERN RND"], None, days=90)
    await make_user("coord@example.org", roles=[("hp", "ERN RND"), ("coordinator", "ERN RND")])
    async with app_client(create_app(settings)) as guest:
        await login(guest, "guest@example.org")
        assert (await guest.get("/erns")).status_code == 200
        await RoleAssignment.update({RoleAssignment.expires_at: now() - timedelta(minutes=1)}).where(RoleAssignment.id == rid)
        assert (await guest.get("/erns")).status_code == 403  # expired: the role is gone
        await login(client, "coord@example.org")
        r = await post_form(client, f"/access/roles/{rid}/extend")
        assert r.status_code == 200 and "extended" in r.text
        assert (await guest.get("/erns")).status_code == 200
    row = await RoleAssignment.select(RoleAssignment.expires_at).where(RoleAssignment.id == rid).first()
    assert row["expires_at"] > now() + timedelta(days=89)


async def test_admin_manages_users_and_grants_but_sees_no_queue(client):
    uid = await make_user("hp@example.org")
    await make_user("admin@example.org", roles=[("admin", None)], hcp=None)
    await login(client, "admin@example.org")
    r = await client.get("/admin/users?q=hp@exa")
    assert "hp@example.org" in r.text and "admin@example.org" not in r.text
    frag = await client.get("/admin/users?q=hp", headers={"HX-Request": "true"})
    assert "<html" not in frag.text and "hp@example.org" in frag.text
    erns = await _ids()
    bad = await post_form(client, f"/admin/users/{uid}/roles", {"role": "dispatcher", "ern": str(erns["ERKNet"])})
    assert bad.status_code == 422 and "healthcare professional role in that network first" in bad.text
    ok = await post_form(client, f"/admin/users/{uid}/roles", {"role": "dispatcher", "ern": str(erns["ERN RND"])})
    assert ok.status_code == 200
    assert await RoleAssignment.count().where((RoleAssignment.user == uid) & (RoleAssignment.role == "dispatcher")) == 1
    r = await post_form(client, f"/admin/users/{uid}/active", {"active": "0"})
    assert "deactivated" in r.text
    assert (await User.select(User.is_active).where(User.id == uid).first())["is_active"] is False
    assert (await login(client.__class__(transport=client._transport, base_url=client.base_url), "hp@example.org")).status_code == 400
    assert (await client.get("/access/queue")).status_code == 403


async def test_grant_table_edit(client):
    from core.identity.tables import RolePermission

    await make_user("admin@example.org", roles=[("admin", None)], hcp=None)
    await login(client, "admin@example.org")
    page = await client.get("/admin/grants")
    checked = re.findall(r'name="grant" value="([^"]+)"[^>]*checked', page.text)
    assert "hp:orgs.view" in checked
    keep = [c for c in checked if c != "hp:orgs.view"]
    r = await post_form(client, "/admin/grants", {"grant": keep})
    assert r.status_code == 200 and "1 removed" in r.text
    assert not await RolePermission.exists().where((RolePermission.role == "hp") & (RolePermission.permission == "orgs.view"))
    # the grant that lets admins edit grants survives even if unticked
    assert await RolePermission.exists().where((RolePermission.role == "admin") & (RolePermission.permission == "identity.roles.manage"))
    bad = await post_form(client, "/admin/grants", {"grant": ["hp:no.such.permission"]})
    assert bad.status_code == 422
    assert len(await _activity("grant.changed")) == 1
