"""The helpdesk manages hospitals and their ERN memberships; bad input changes nothing."""

from core.orgs.tables import Ern, Hcp, HcpErn
from tests.conftest import login, make_user, post_form


async def test_admin_adds_and_edits_a_hospital(client):
    await make_user("admin@example.org", roles=[("admin", None)], hcp=None)
    await login(client, "admin@example.org")
    before = await Hcp.count()
    for bad in ({"name": "X", "city": "Gent", "country": "BE"}, {"name": "UZ Gent", "city": "Gent", "country": "Belgium"}):
        r = await post_form(client, "/admin/hcps", bad)
        assert r.status_code == 422
    assert await Hcp.count() == before
    r = await post_form(client, "/admin/hcps", {"name": "UZ Gent", "city": "Gent", "country": "be"})
    assert r.status_code == 302
    hcp = await Hcp.select().where(Hcp.name == "UZ Gent").first()
    assert hcp["country"] == "BE"
    erns = {e["acronym"]: e["id"] for e in await Ern.select(Ern.id, Ern.acronym)}
    r = await post_form(client, f"/admin/hcps/{hcp['id']}", {
        "name": "UZ Gent", "city": "Gent", "country": "BE", "active": "1", "erns": [str(erns["ERN RND"]), str(erns["ERN EYE"])],
    })
    assert r.status_code == 200 and "Saved" in r.text
    assert {m["ern"] for m in await HcpErn.select(HcpErn.ern).where(HcpErn.hcp == hcp["id"])} == {erns["ERN RND"], erns["ERN EYE"]}
    bad = await post_form(client, f"/admin/hcps/{hcp['id']}", {"name": "UZ Gent", "city": "Gent", "country": "BE", "erns": ["99999"]})
    assert bad.status_code == 422
    assert await HcpErn.count().where(HcpErn.hcp == hcp["id"]) == 2
    assert (await client.get("/admin/hcps/999999")).status_code == 404


async def test_hp_cannot_manage_hospitals(client):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    assert (await client.get("/admin/hcps")).status_code == 403
    r = await post_form(client, "/admin/hcps", {"name": "Sneaky", "city": "Gent", "country": "BE"})
    assert r.status_code == 403
    assert not await Hcp.exists().where(Hcp.name == "Sneaky")
