"""Server-side sessions (database, or Redis when configured): timeouts, revocation, the store in use."""

from datetime import timedelta

from core.identity.session_store import DatabaseSessionStore, RedisSessionStore, store_for, token_hash
from core.identity.sessions import now
from tests.conftest import login, make_user


async def test_the_configured_store_holds_the_session(client, settings):
    uid = await make_user("hp@example.org")
    await login(client, "hp@example.org")
    token = client.cookies.get("cpms_session")
    store = store_for(settings)
    record = await store.get(token_hash(token))
    assert record is not None and record.user_id == uid and record.stage == "full"
    if settings.redis_url:
        assert isinstance(store, RedisSessionStore)
        assert await store.redis.exists(f"cpms:session:{token_hash(token)}")
        ttl = await store.redis.ttl(f"cpms:session:{token_hash(token)}")
        assert 0 < ttl <= settings.session_absolute_timeout
    else:
        from core.identity.tables import Session

        assert isinstance(store, DatabaseSessionStore)
        assert await Session.count().where(Session.token_hash == token_hash(token)) == 1
    assert token not in repr(record)  # only the hash is kept


async def test_idle_session_ends(client, settings):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    assert (await client.get("/profile")).status_code == 200
    token = client.cookies.get("cpms_session")
    await store_for(settings).update(token_hash(token), last_seen_at=now() - timedelta(seconds=settings.session_idle_timeout + 5))
    assert (await client.get("/profile", follow_redirects=False)).status_code == 302


async def test_absolute_lifetime_ends_session(client, settings):
    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    token = client.cookies.get("cpms_session")
    await store_for(settings).update(token_hash(token), expires_at=now() - timedelta(seconds=1))
    assert (await client.get("/profile", follow_redirects=False)).status_code == 302


async def test_session_cookie_flags(client):
    await make_user("hp@example.org")
    await client.get("/login")
    from tests.conftest import PASSWORD, post_form

    r = await post_form(client, "/login", {"email": "hp@example.org", "password": PASSWORD})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie


async def test_hp_names_an_assistant_of_the_same_hospital(client):
    from core.identity.profile import acting_for
    from core.identity.tables import AssistantFor
    from tests.conftest import post_form

    hp = await make_user("hp@example.org")
    assistant = await make_user("assistant@example.org", roles=[("assistant", "ERN RND")])
    await make_user("elsewhere@example.org", roles=[("assistant", "ERN RND")], hcp="Other Hospital")
    await make_user("plainhp@example.org")
    await login(client, "hp@example.org")
    for email, why in (("elsewhere@example.org", "at your hospital"), ("plainhp@example.org", "assistant role"), ("nobody@example.org", "at your hospital")):
        r = await post_form(client, "/profile/assistants", {"email": email})
        assert r.status_code == 422 and why in r.text
    r = await post_form(client, "/profile/assistants", {"email": "assistant@example.org"})
    assert r.status_code == 200 and "Assistant added" in r.text
    assert await acting_for(assistant) == [hp]
    link = await AssistantFor.select(AssistantFor.id).first()
    r = await post_form(client, f"/profile/assistants/{link['id']}/remove")
    assert r.status_code == 200 and await acting_for(assistant) == []
