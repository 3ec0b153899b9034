"""Passkeys (WebAuthn) as a second factor, through the real app with a software authenticator that
produces genuine attestations and signatures (tests/support/authenticator.py). The browser journey
with Chromium's virtual authenticator is tests/browser/test_passkeys_browser.py."""

from __future__ import annotations

from tests.conftest import PASSWORD, csrf_of, login, make_user, post_form
from tests.support.authenticator import SoftAuthenticator

ORIGIN, RP = "http://127.0.0.1:8000", "127.0.0.1"  # the test app's CPMS_BASE_URL


async def _post_json(client, url: str, body: dict | None = None):
    return await client.post(url, json=body or {}, headers={"x-csrftoken": csrf_of(client)})


async def _add_passkey(client, key: SoftAuthenticator, name: str = "Laptop"):
    options = (await _post_json(client, "/account/passkeys/options")).json()
    return await _post_json(client, "/account/passkeys", {"name": name, "credential": key.create(options)})


async def _password_step(client, email: str):
    client.cookies.clear()
    await client.get("/login")
    r = await client.post("/login", data={"email": email, "password": PASSWORD, "next": "/profile",
                                          "_csrf_token": csrf_of(client)}, follow_redirects=False)
    assert r.headers["location"].startswith("/login/2fa")


async def test_add_a_passkey_then_log_in_with_it_instead_of_the_code(client):
    from core.activity.tables import Activity
    from core.identity.tables import PasskeyCredential

    uid = await make_user("hp@example.org")
    await login(client, "hp@example.org")
    key = SoftAuthenticator(ORIGIN, RP)
    r = await _add_passkey(client, key, "  My   laptop ")
    assert r.status_code == 201 and r.json()["name"] == "My laptop"
    [row] = await PasskeyCredential.select().where(PasskeyCredential.user == uid)
    profile = await client.get("/profile")
    assert "My laptop" in profile.text and 'data-passkey-register' in profile.text
    # the second step of the next login, with the passkey
    await _password_step(client, "hp@example.org")
    page = await client.get("/login/2fa")
    assert "Use a passkey" in page.text
    assert (await client.get("/profile", follow_redirects=False)).status_code != 200  # not in yet
    options = (await _post_json(client, "/login/2fa/passkey/options")).json()
    assert [c["id"] for c in options["allowCredentials"]] == [row["credential_id"]]
    r = await _post_json(client, "/login/2fa/passkey", {"next": "/profile", "credential": key.get(options)})
    assert r.status_code == 200 and r.json() == {"next": "/profile"}
    assert (await client.get("/profile")).status_code == 200
    assert (await PasskeyCredential.select().first())["sign_count"] == 1
    logged = await Activity.select(Activity.data).where(Activity.action == "user.logged_in").output(load_json=True)
    assert logged[-1]["data"] == {"second_factor": "passkey"}


async def test_bad_passkey_answers_are_refused_and_count_as_failures(client):
    from core.identity.tables import User

    uid = await make_user("hp@example.org")
    await login(client, "hp@example.org")
    key = SoftAuthenticator(ORIGIN, RP)
    # registration: another origin, a replayed challenge, a request that was never made
    options = (await _post_json(client, "/account/passkeys/options")).json()
    r = await _post_json(client, "/account/passkeys", {"credential": key.create(options, origin="http://evil.example")})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    assert (await _post_json(client, "/account/passkeys", {"credential": key.create(options)})).status_code == 400  # used up
    assert (await _add_passkey(client, key)).status_code == 201
    assert (await _add_passkey(client, key)).status_code in (400, 409)  # the same authenticator again
    # login: a stale counter (a cloned authenticator), another origin, someone else's key, no options asked
    await _password_step(client, "hp@example.org")
    assert (await _post_json(client, "/login/2fa/passkey", {"credential": key.get({"challenge": "x", "rpId": RP})})).status_code == 400
    options = (await _post_json(client, "/login/2fa/passkey/options")).json()
    assert (await _post_json(client, "/login/2fa/passkey", {"credential": key.get(options, origin="http://evil.example")})).status_code == 400
    options = (await _post_json(client, "/login/2fa/passkey/options")).json()
    stranger = SoftAuthenticator(ORIGIN, RP)
    assert (await _post_json(client, "/login/2fa/passkey", {"credential": stranger.get(options)})).status_code == 400
    assert (await client.get("/profile", follow_redirects=False)).status_code != 200
    assert (await User.select(User.failed_logins).where(User.id == uid).first())["failed_logins"] == 3
    # a good login moves the counter to 7; an answer that does not go past it (a cloned key) is refused
    options = (await _post_json(client, "/login/2fa/passkey/options")).json()
    assert (await _post_json(client, "/login/2fa/passkey", {"credential": key.get(options, counter=7)})).status_code == 200
    await _password_step(client, "hp@example.org")
    options = (await _post_json(client, "/login/2fa/passkey/options")).json()
    r = await _post_json(client, "/login/2fa/passkey", {"credential": key.get(options, counter=7)})
    assert r.status_code == 400
    assert (await client.get("/profile", follow_redirects=False)).status_code != 200
    # malformed bodies: a clear 400, nothing else
    for body in (b"[1]", b"{not json", b'{"credential": 5}'):
        r = await client.post("/login/2fa/passkey", content=body,
                              headers={"x-csrftoken": csrf_of(client), "content-type": "application/json"})
        assert r.status_code == 400


async def test_passkeys_need_two_step_login_first_and_can_be_removed(client):
    from core.identity.tables import PasskeyCredential

    await make_user("nomfa@example.org", roles=(), mfa=False)  # no patient roles, no authenticator
    await login(client, "nomfa@example.org")
    r = await _post_json(client, "/account/passkeys/options")
    assert r.status_code == 409 and "authenticator app first" in r.json()["detail"]
    assert "Turn on <a href=\"/account/2fa\">two-step login</a> first" in (await client.get("/profile")).text
    await make_user("hp@example.org")
    await make_user("other@example.org")
    await login(client, "other@example.org")
    assert (await _add_passkey(client, SoftAuthenticator(ORIGIN, RP), "Other's key")).status_code == 201
    other_key = (await PasskeyCredential.select().first())["id"]
    await login(client, "hp@example.org")
    assert (await post_form(client, f"/account/passkeys/{other_key}/delete")).status_code == 404  # not theirs
    assert (await _add_passkey(client, SoftAuthenticator(ORIGIN, RP))).status_code == 201
    mine = (await PasskeyCredential.select().order_by(PasskeyCredential.id, ascending=False).first())["id"]
    assert (await post_form(client, f"/account/passkeys/{mine}/delete")).status_code == 303
    assert await PasskeyCredential.count() == 1
    await _password_step(client, "hp@example.org")
    assert "Use a passkey" not in (await client.get("/login/2fa")).text
    assert (await _post_json(client, "/login/2fa/passkey/options")).status_code == 409
