"""OpenID Connect login against the real provider in tests/oidc_provider (node + oidc-provider).

The app is driven through its HTTP interface; the provider's login form is filled in with a
separate plain httpx client, as a browser would, and its redirect back is then requested on
the app's client. Nothing about the provider is mocked.
"""

from __future__ import annotations

import base64
import json
import re
import time
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from core.app import create_app
from core.identity import oidc
from tests.conftest import app_client, make_settings, make_user, post_form, totp_code
from tests.support.oidc_provider import ensure_node_modules, run_oidc_provider

BASE_URL = "http://127.0.0.1:8000"
CALLBACK = BASE_URL + "/login/oidc/callback"
CLIENT = {"client_id": "cpms", "client_secret": "cpms-oidc-test-secret-0123456789", "redirect_uris": [CALLBACK]}
PASSWORD = "provider-pass-2026"
ALICE = {"sub": "alice-sub", "email": "Alice.New@Example.org", "email_verified": True, "name": "Alice New", "password": PASSWORD}
BOB = {"sub": "bob-sub", "email": "bob@example.org", "email_verified": True, "name": "Bob at the provider", "password": PASSWORD}
EVE = {"sub": "eve-sub", "email": "eve@example.org", "email_verified": False, "name": "Eve Unverified", "password": PASSWORD}
# Logins that assert how strongly the person logged in (as EU Login does with acr; others with amr).
HIGH = "urn:cpms-test:loa:high"
CAROL = {"sub": "carol-sub", "email": "carol@example.org", "email_verified": True, "name": "Carol Strong", "password": PASSWORD,
         "acr": HIGH, "amr": ["pwd"]}
DAVE = {"sub": "dave-sub", "email": "dave@example.org", "email_verified": True, "name": "Dave Two-Factor", "password": PASSWORD,
        "acr": "urn:cpms-test:loa:low", "amr": ["pwd", "mfa"]}
FRANK = {"sub": "frank-sub", "email": "frank@example.org", "email_verified": True, "name": "Frank Password", "password": PASSWORD,
         "acr": "urn:cpms-test:loa:low", "amr": ["pwd"]}


@pytest.fixture(scope="module")
def provider():
    ensure_node_modules()
    with run_oidc_provider([CLIENT], [ALICE, BOB, EVE, CAROL, DAVE, FRANK]) as running:
        yield running


def oidc_settings(provider, **overrides):
    values = dict(
        oidc_issuer=provider.issuer, oidc_client_id=CLIENT["client_id"], oidc_client_secret=CLIENT["client_secret"],
        base_url=BASE_URL,
    )
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
async def client(clean_db, provider):
    async with app_client(create_app(oidc_settings(provider))) as c:
        yield c


# --- helpers -----------------------------------------------------------------------------


async def begin(client, next: str | None = None) -> str:
    """Ask the app to start an OIDC login; returns the provider URL it sends the browser to."""
    r = await client.get("/login/oidc", params={"next": next} if next else None)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def _follow(idp: httpx.AsyncClient, r: httpx.Response) -> httpx.Response | str:
    """Follow the provider's redirects; stop (without requesting it) at the app's callback."""
    while r.is_redirect:
        location = urljoin(str(r.url), r.headers["location"])
        if location.startswith(CALLBACK):
            return location
        r = await idp.get(location)
    return r


async def sign_in(auth_url: str, account: dict) -> str:
    """Log in at the provider as a browser would; returns the callback's path and query."""
    async with httpx.AsyncClient() as idp:
        form = await _follow(idp, await idp.get(auth_url))
        assert isinstance(form, httpx.Response) and 'name="password"' in form.text, form
        action = re.search(r'<form[^>]*action="([^"]+)"', form.text).group(1)
        done = await idp.post(urljoin(str(form.url), action), data={"login": account["sub"], "password": account["password"]})
        location = await _follow(idp, done)
    assert isinstance(location, str), f"the provider did not send the browser back: {location.text}"
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}"


async def oidc_login(client, account: dict, next: str | None = None) -> httpx.Response:
    return await client.get(await sign_in(await begin(client, next), account))


def with_query(path_and_query: str, **changes: str) -> str:
    parts = urlsplit(path_and_query)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts.path + "?" + "&".join(f"{k}={v}" for k, v in query.items())


def settings_of(client):
    return client._transport.app.state.settings


def pending_of(client) -> dict:
    return oidc.open_pending(settings_of(client), client.cookies.get(oidc.COOKIE_NAME))


def replace_pending_cookie(client, value: str) -> None:
    client.cookies.delete(oidc.COOKIE_NAME)
    client.cookies.set(oidc.COOKIE_NAME, value, domain="127.0.0.1", path=oidc.COOKIE_PATH)


async def audit(action: str) -> list[dict]:
    from core.activity.tables import Activity

    return await Activity.select(Activity.actor_id, Activity.data).where(Activity.action == action).output(load_json=True)


async def users() -> list[dict]:
    from core.identity.tables import User

    return await User.select()


async def assert_refused(r: httpx.Response, client, reason: str, status: int = 400) -> dict:
    assert r.status_code == status, r.text
    assert "did not work" in r.text
    assert "cpms_session" not in client.cookies
    assert oidc.COOKIE_NAME not in client.cookies
    failures = await audit("user.oidc_failed")
    assert failures and failures[-1]["data"]["reason"] == reason, failures
    return failures[-1]


# --- the flow ----------------------------------------------------------------------------


async def test_start_sends_browser_to_provider_with_pkce_and_a_sealed_cookie(client, provider):
    r = await client.get("/login/oidc", params={"next": "https://evil.example/phish"})
    assert r.status_code == 302
    url = urlsplit(r.headers["location"])
    assert f"{url.scheme}://{url.netloc}" == provider.issuer
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["response_type"] == "code"
    assert query["scope"] == "openid email profile"
    assert query["client_id"] == CLIENT["client_id"]
    assert query["redirect_uri"] == CALLBACK
    assert query["code_challenge_method"] == "S256"

    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(oidc.COOKIE_NAME + "="))
    attrs = cookie.lower()
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/login/oidc" in attrs and "max-age=600" in attrs
    assert "secure" not in attrs  # plain-HTTP base URL; https:// would make it Secure
    sealed = client.cookies.get(oidc.COOKIE_NAME)
    assert query["state"] not in sealed and query["nonce"] not in sealed  # encrypted, not just signed
    pending = pending_of(client)
    assert pending["state"] == query["state"] and pending["nonce"] == query["nonce"]
    assert create_s256_code_challenge(pending["verifier"]) == query["code_challenge"]
    assert pending["next"] == "/"  # no open redirect


async def test_login_page_offers_the_provider_only_when_configured(client):
    r = await client.get("/login", params={"next": "/profile"})
    assert 'href="/login/oidc?next=/profile"' in r.text and "Log in with EU Login" in r.text
    async with app_client(create_app(make_settings(base_url=BASE_URL))) as plain:
        assert "/login/oidc" not in (await plain.get("/login")).text


async def test_new_person_gets_an_account_without_roles_and_is_sent_to_request_access(client, provider):
    from core.identity.tables import RoleAssignment

    r = await oidc_login(client, ALICE, next="/profile")
    assert r.status_code == 302, r.text
    assert r.headers["location"] == "/access/request"
    assert oidc.COOKIE_NAME not in client.cookies  # single use
    assert (await client.get("/profile")).status_code == 200

    [user] = await users()
    assert user["email"] == "alice.new@example.org"
    assert user["name"] == "Alice New"
    assert user["email_verified"] is True and user["is_active"] is True
    assert user["password_hash"] == ""
    assert (user["oidc_issuer"], user["oidc_subject"]) == (provider.issuer, "alice-sub")
    assert await RoleAssignment.count().where(RoleAssignment.user == user["id"]) == 0
    assert [e["data"] for e in await audit("user.created")] == [{"method": "oidc"}]
    assert [e["data"] for e in await audit("user.logged_in")] == [{"method": "oidc"}]
    from core.identity.sessions import live_sessions
    from tests.conftest import make_settings

    assert [r.method for r in await live_sessions(make_settings(), user["id"])] == ["oidc"]


async def test_existing_account_is_linked_by_verified_email(client, provider):
    uid = await make_user("bob@example.org", roles=(), name="Bob Local", mfa=False)
    r = await oidc_login(client, BOB, next="/profile")
    assert r.status_code == 302 and r.headers["location"] == "/profile"
    assert (await client.get("/profile")).status_code == 200

    [user] = await users()
    assert user["id"] == uid and user["name"] == "Bob Local"
    assert (user["oidc_issuer"], user["oidc_subject"]) == (provider.issuer, "bob-sub")
    linked = await audit("user.oidc_linked")
    assert [(e["actor_id"], e["data"]) for e in linked] == [(uid, {"issuer": provider.issuer})]
    assert await audit("user.created") == []


async def test_linked_user_with_an_authenticator_must_give_the_second_factor(client):
    uid = await make_user("bob@example.org")  # an HP, with an authenticator enrolled
    r = await oidc_login(client, BOB, next="/profile")
    assert r.status_code == 302 and r.headers["location"] == "/login/2fa?next=/profile"
    assert (await client.get("/profile", follow_redirects=False)).status_code != 200  # not logged in yet
    assert (await client.get("/login/2fa")).status_code == 200
    assert await audit("user.logged_in") == []

    r = await post_form(client, "/login/2fa", {"code": await totp_code(uid), "next": "/profile"})
    assert r.status_code in (302, 303) and r.headers["location"] == "/profile"
    assert (await client.get("/profile")).status_code == 200
    assert [e["actor_id"] for e in await audit("user.logged_in")] == [uid]


@pytest.mark.parametrize("account,trusted,asserted", [
    (CAROL, {"oidc_trusted_acr": (HIGH,)}, True),        # acr names a trusted level
    (DAVE, {"oidc_trusted_amr": ("mfa", "hwk")}, True),   # amr holds a trusted method
    (FRANK, {"oidc_trusted_acr": (HIGH,), "oidc_trusted_amr": ("mfa",)}, False),  # password only
    (DAVE, {}, False),                                    # nothing trusted: the default
])
async def test_a_second_factor_asserted_by_the_provider_replaces_the_totp_code_only_when_trusted(clean_db, provider, account, trusted, asserted):
    """EU Login (or another provider) may assert a second factor (acr/amr in the verified ID token).
    Trusted by configuration, CPMS asks no TOTP code; otherwise the user with an authenticator gives
    its code."""
    with_totp = await make_user(account["email"], name=account["name"])  # an HP with an authenticator
    async with app_client(create_app(oidc_settings(provider, **trusted))) as c:
        r = await oidc_login(c, account, next="/patients")
        assert r.status_code == 302
        if asserted:
            assert r.headers["location"] == "/patients"
            assert (await c.get("/patients")).status_code == 200
            sessions = await _sessions_of(with_totp)
            assert [s["method"] for s in sessions] == ["oidc-mfa"]
        else:
            assert r.headers["location"] == "/login/2fa?next=/patients"
            assert (await c.get("/patients", follow_redirects=False)).status_code != 200
            r = await post_form(c, "/login/2fa", {"code": await totp_code(with_totp), "next": "/patients"})
            assert r.headers["location"] == "/patients" and (await c.get("/patients")).status_code == 200
            assert [s["method"] for s in await _sessions_of(with_totp)] == ["oidc"]


async def _sessions_of(user_id: int) -> list[dict]:
    """Live sessions of the user, from whichever store holds them (database or Redis)."""
    from core.identity.session_store import store_for

    return [{"method": s.method} for s in await store_for(make_settings()).live_for_user(user_id)]


async def test_second_login_finds_the_account_by_subject(client, provider):
    from core.identity.tables import User

    await oidc_login(client, ALICE)
    [user] = await users()
    # The local address may change; the provider's subject still finds the account.
    await User.update({User.email: "alice@renamed.example"}).where(User.id == user["id"])
    client.cookies.clear()

    r = await oidc_login(client, ALICE, next="/profile")
    assert r.status_code == 302 and r.headers["location"] == "/profile"
    assert [u["id"] for u in await users()] == [user["id"]]
    assert len(await audit("user.created")) == 1 and await audit("user.oidc_linked") == []
    assert (await client.get("/profile")).status_code == 200


async def test_callback_cannot_be_replayed(client):
    callback = await sign_in(await begin(client), ALICE)
    sealed = client.cookies.get(oidc.COOKIE_NAME)
    assert (await client.get(callback)).status_code == 302
    # The browser's pending login is spent...
    r = await client.get(callback)
    assert r.status_code == 400 and (await audit("user.oidc_failed"))[-1]["data"]["reason"] == "no_pending_login"
    # ...and with a copy of the cookie the provider refuses the used code.
    client.cookies.clear()
    replace_pending_cookie(client, sealed)
    await assert_refused(await client.get(callback), client, "token_exchange_failed")
    assert len(await users()) == 1


# --- refusals ----------------------------------------------------------------------------


async def test_tampered_state_is_refused_and_audited(client):
    callback = await sign_in(await begin(client), ALICE)
    r = await client.get(with_query(callback, state="forged-state"))
    await assert_refused(r, client, "state_mismatch")
    assert await users() == []
    # The pending login is spent: the genuine redirect no longer works either.
    await assert_refused(await client.get(callback), client, "no_pending_login")
    assert await users() == []


async def test_redirect_naming_another_issuer_is_refused(client):
    # RFC 9207: a response from a different provider (a mix-up attack) is not ours.
    callback = await sign_in(await begin(client), ALICE)
    await assert_refused(await client.get(with_query(callback, iss="http://127.0.0.1:9")), client, "issuer_mismatch")
    assert await users() == []


async def test_missing_forged_or_expired_cookie_is_refused(client):
    callback = await sign_in(await begin(client), ALICE)
    pending = pending_of(client)
    settings = settings_of(client)

    client.cookies.clear()
    await assert_refused(await client.get(callback), client, "no_pending_login")

    replace_pending_cookie(client, "enc1:00000000:" + base64.urlsafe_b64encode(b"x" * 64).decode())
    await assert_refused(await client.get(callback), client, "bad_pending_login")

    # Sealed with the site key, but for another purpose: still refused.
    from core.crypto import keyring

    replace_pending_cookie(client, keyring(settings).encrypt(json.dumps(pending), context="totp"))
    await assert_refused(await client.get(callback), client, "bad_pending_login")

    stale = pending | {"created": int(time.time()) - oidc.PENDING_MAX_AGE - 5}
    replace_pending_cookie(client, oidc.seal_pending(settings, stale))
    await assert_refused(await client.get(callback), client, "pending_login_expired")
    assert await users() == []


async def test_error_from_provider_is_refused(client):
    state = parse_qs(urlsplit(await begin(client)).query)["state"][0]
    r = await client.get(f"/login/oidc/callback?error=access_denied&state={state}")
    failure = await assert_refused(r, client, "provider_error")
    assert failure["data"]["provider_error"] == "access_denied"


async def test_wrong_nonce_in_the_id_token_is_refused(client):
    auth_url = await begin(client)
    pending = pending_of(client) | {"nonce": "not-the-nonce-sent"}
    replace_pending_cookie(client, oidc.seal_pending(settings_of(client), pending))
    r = await client.get(await sign_in(auth_url, ALICE))
    failure = await assert_refused(r, client, "id_token_claims_invalid")
    assert failure["data"]["claim"] == "nonce"
    assert await users() == []


async def test_wrong_code_verifier_fails_the_code_exchange(client):
    auth_url = await begin(client)
    pending = pending_of(client) | {"verifier": "x" * 64}
    replace_pending_cookie(client, oidc.seal_pending(settings_of(client), pending))
    r = await client.get(await sign_in(auth_url, ALICE))
    failure = await assert_refused(r, client, "token_exchange_failed")
    assert failure["data"]["provider_error"] == "invalid_grant"
    assert await users() == []


async def test_unverified_email_at_the_provider_is_refused(client):
    uid = await make_user("eve@example.org", roles=(), mfa=False)
    r = await oidc_login(client, EVE)
    await assert_refused(r, client, "email_not_verified")
    [user] = await users()
    assert user["id"] == uid and user["oidc_subject"] == ""  # neither created nor linked


async def test_deactivated_account_is_refused(client):
    from core.identity.tables import User

    uid = await make_user("bob@example.org", roles=(), mfa=False)
    await User.update({User.is_active: False}).where(User.id == uid)
    failure = await assert_refused(await oidc_login(client, BOB), client, "account_inactive", status=403)
    assert failure["actor_id"] == uid
    assert (await users())[0]["oidc_subject"] == ""


async def test_account_linked_to_another_subject_is_not_relinked(client, provider):
    from core.identity.tables import User

    uid = await make_user("bob@example.org", roles=(), mfa=False)
    await User.update({User.oidc_issuer: provider.issuer, User.oidc_subject: "someone-else"}).where(User.id == uid)
    failure = await assert_refused(await oidc_login(client, BOB), client, "subject_mismatch", status=403)
    assert failure["actor_id"] == uid
    assert (await users())[0]["oidc_subject"] == "someone-else"


async def test_account_with_unconfirmed_local_email_is_not_linked(client):
    from core.identity.tables import User

    uid = await make_user("bob@example.org", roles=(), mfa=False)
    await User.update({User.email_verified: False}).where(User.id == uid)
    await assert_refused(await oidc_login(client, BOB), client, "local_email_unverified", status=403)
    assert (await users())[0]["oidc_subject"] == ""


@pytest.mark.parametrize("issuer", ["{issuer}/", "http://127.0.0.1:9"], ids=["other-issuer", "unreachable"])
async def test_start_refuses_a_provider_that_is_not_the_configured_issuer(clean_db, provider, issuer):
    configured = issuer.format(issuer=provider.issuer)
    async with app_client(create_app(oidc_settings(provider, oidc_issuer=configured))) as c:
        r = await c.get("/login/oidc")
        assert r.status_code == 502
        reason = "issuer_mismatch" if configured.startswith(provider.issuer) else "provider_unreachable"
        await assert_refused(r, c, reason, status=502)
        if reason == "issuer_mismatch":
            assert "not set up correctly" in r.text and provider.issuer in r.text
        assert oidc.COOKIE_NAME not in r.headers.get("set-cookie", "")
        assert await users() == []


async def test_oidc_disabled_is_not_found(clean_db):
    async with app_client(create_app(make_settings(base_url=BASE_URL))) as c:
        assert (await c.get("/login/oidc")).status_code == 404
        assert (await c.get("/login/oidc/callback?code=x&state=y")).status_code == 404


# --- ID token verification ---------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


async def real_tokens(client, account: dict) -> tuple[dict, dict, dict]:
    """A genuine token response from the provider (exchanged here instead of by the callback)."""
    callback = await sign_in(await begin(client), account)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    settings, pending = settings_of(client), pending_of(client)
    metadata = await oidc.provider_metadata(settings.oidc_issuer)
    async with oidc.oauth_client(settings, metadata) as oauth:
        token = await oidc.exchange_code(oauth, metadata, code, pending["verifier"])
    return token, pending, metadata


async def test_real_id_token_verifies_and_any_tampering_is_refused(client, provider):
    token, pending, metadata = await real_tokens(client, ALICE)
    jwks = await oidc.provider_jwks(metadata)
    check = dict(issuer=provider.issuer, client_id=CLIENT["client_id"], nonce=pending["nonce"], access_token=token["access_token"])
    claims = oidc.verify_id_token(token["id_token"], jwks, **check)
    assert (claims["sub"], claims["email"]) == ("alice-sub", ALICE["email"])

    header, payload, signature = token["id_token"].split(".")
    forged_payload = b64url(json.dumps(b64url_json(payload) | {"email": "mallory@example.org"}).encode())
    flipped = signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]
    for forged in (f"{header}.{forged_payload}.{signature}", f"{header}.{payload}.{flipped}"):
        with pytest.raises(oidc.OidcRefused) as refused:
            oidc.verify_id_token(forged, jwks, **check)
        assert refused.value.reason == "id_token_signature_invalid"

    for wrong in ({"issuer": provider.issuer + "/"}, {"client_id": "another-client"}, {"nonce": "other"}):
        with pytest.raises(oidc.OidcRefused) as refused:
            oidc.verify_id_token(token["id_token"], jwks, **(check | wrong))
        assert refused.value.reason == "id_token_claims_invalid"


async def test_userinfo_gives_the_claims_of_the_same_subject_only(client):
    token, _, metadata = await real_tokens(client, BOB)
    async with oidc.oauth_client(settings_of(client), metadata, token=token) as oauth:
        info = await oidc.fetch_userinfo(oauth, metadata, "bob-sub")
        assert (info["email"], info["email_verified"]) == (BOB["email"], True)
        with pytest.raises(oidc.OidcRefused) as refused:
            await oidc.fetch_userinfo(oauth, metadata, "alice-sub")
    assert refused.value.reason == "userinfo_subject_mismatch"


ISSUER = "https://login.example.eu"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
JWKS = {"keys": [KEY.as_dict(private=False)]}


def signed(claims: dict, key=KEY, alg: str = "RS256") -> str:
    base = {"iss": ISSUER, "aud": "cpms", "sub": "s1", "nonce": "n1", "iat": int(time.time()), "exp": int(time.time()) + 300}
    return jwt.encode({"alg": alg, "kid": "k1"}, {k: v for k, v in (base | claims).items() if v is not None}, key, algorithms=[alg])


def verify(token: str) -> dict:
    return oidc.verify_id_token(token, JWKS, issuer=ISSUER, client_id="cpms", nonce="n1")


def test_id_token_claims_are_all_checked():
    assert verify(signed({}))["sub"] == "s1"
    assert verify(signed({"aud": ["other", "cpms"], "azp": "cpms"}))["sub"] == "s1"
    bad = {
        "wrong issuer": {"iss": ISSUER + "/"},
        "wrong audience": {"aud": "someone-else"},
        "expired": {"exp": int(time.time()) - oidc.LEEWAY - 10},
        "issued in the future": {"iat": int(time.time()) + oidc.LEEWAY + 60},
        "wrong nonce": {"nonce": "n2"},
        "no nonce": {"nonce": None},
        "no subject": {"sub": None},
        "another party's token": {"aud": ["other", "cpms"], "azp": "other"},
    }
    for why, claims in bad.items():
        with pytest.raises(oidc.OidcRefused) as refused:
            verify(signed(claims))
        assert refused.value.reason == "id_token_claims_invalid", why


def test_id_token_signature_must_be_asymmetric_and_ours():
    other_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    unsigned = b64url(b'{"alg":"none"}') + "." + signed({}).split(".")[1] + "."
    # HS256 keyed with the public key's bytes: the classic algorithm-confusion forgery.
    confused = signed({}, key=OctKey.import_key(json.dumps(JWKS["keys"][0]).encode()), alg="HS256")
    for forged in (signed({}, key=other_key), unsigned, confused, "not.a.token", ""):
        with pytest.raises(oidc.OidcRefused) as refused:
            verify(forged)
        assert refused.value.reason == "id_token_signature_invalid"
    with pytest.raises(oidc.UnknownSigningKey):
        oidc.verify_id_token(
            jwt.encode({"alg": "RS256", "kid": "rotated"}, {"sub": "s1"}, RSAKey.generate_key(2048, parameters={"kid": "rotated"})),
            JWKS, issuer=ISSUER, client_id="cpms", nonce="n1",
        )


def test_identity_falls_back_to_userinfo_and_needs_a_verified_email():
    claims = {"sub": "s1"}
    info = {"sub": "s1", "email": "Ana@Example.EU", "email_verified": True, "given_name": "Ana", "family_name": "Lopes"}
    assert oidc.identity_from_claims(ISSUER, claims, info) == oidc.Identity(ISSUER, "s1", "ana@example.eu", "Ana Lopes")
    with pytest.raises(oidc.OidcRefused) as refused:
        oidc.identity_from_claims(ISSUER, claims, info | {"email_verified": "true"})
    assert refused.value.reason == "email_not_verified"
    with pytest.raises(oidc.OidcRefused) as refused:
        oidc.identity_from_claims(ISSUER, claims, None)
    assert refused.value.reason == "no_email"


def test_metadata_must_name_the_issuer_and_use_https():
    good = {
        "issuer": ISSUER, "authorization_endpoint": ISSUER + "/authorize", "token_endpoint": ISSUER + "/token",
        "jwks_uri": ISSUER + "/jwks", "userinfo_endpoint": ISSUER + "/userinfo",
    }
    oidc.check_metadata(ISSUER, good)
    for changed, reason in (
        ({"issuer": ISSUER + "/"}, "issuer_mismatch"),
        ({"token_endpoint": "http://login.example.eu/token"}, "bad_metadata"),
        ({"jwks_uri": None}, "bad_metadata"),
    ):
        with pytest.raises(oidc.OidcRefused) as refused:
            oidc.check_metadata(ISSUER, good | changed)
        assert refused.value.reason == reason and refused.value.status == 502
