"""Two-step login: TOTP enrolment, mandatory for patient-data roles, replay refused,
recovery codes single use, lockout, and the coordinator-approved reset."""

import re

import pyotp

from core.identity.tables import RecoveryCode, User
from tests.conftest import PASSWORD, TOTP_SECRETS, login, make_user, post_form, totp_code


async def _activity(action):
    from core.activity.tables import Activity

    return await Activity.select().where(Activity.action == action)


async def test_patient_roles_must_enrol_before_anything_else(client):
    uid = await make_user("hp@example.org", mfa=False)
    r = await login(client, "hp@example.org")
    assert r.headers["location"] == "/"
    for path in ("/", "/erns", "/profile"):
        r = await client.get(path, follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"] == "/account/2fa", path
    r = await client.get("/api/erns")
    assert r.status_code == 403  # programs get a refusal, not a redirect
    # enrolment page shows a QR code (inline SVG data URI) and the key
    r = await client.get("/account/2fa")
    assert r.status_code == 200 and 'src="data:image/svg+xml' in r.text
    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', r.text).group(1)
    stored = (await User.select(User.totp_secret).where(User.id == uid).first())["totp_secret"]
    assert secret not in stored and stored.startswith("enc1:")  # encrypted at rest
    bad = await post_form(client, "/account/2fa", {"code": "000000"})
    assert bad.status_code == 422
    assert (await User.select(User.totp_enabled_at).where(User.id == uid).first())["totp_enabled_at"] is None
    ok = await post_form(client, "/account/2fa", {"code": pyotp.TOTP(secret).now()})
    assert ok.status_code == 200
    codes = re.findall(r"<li><code>([0-9a-f]{6}-[0-9a-f]{6})</code></li>", ok.text)
    assert len(codes) == 10
    hashes = [r["code_hash"] for r in await RecoveryCode.select(RecoveryCode.code_hash).where(RecoveryCode.user == uid)]
    assert len(hashes) == 10 and not any(c.replace("-", "") in h for c in codes for h in hashes)
    assert (await client.get("/", follow_redirects=False)).status_code == 200
    assert len(await _activity("user.mfa_enabled")) == 1


async def test_researcher_needs_no_second_factor(client):
    await make_user("res@example.org", roles=[("researcher", "ERN RND")], hcp=None, mfa=False)
    await login(client, "res@example.org")
    assert (await client.get("/", follow_redirects=False)).status_code == 200


async def test_enrolled_user_must_give_code_and_replay_is_refused(client):
    uid = await make_user("hp@example.org")
    await client.get("/login")
    r = await post_form(client, "/login", {"email": "hp@example.org", "password": PASSWORD, "next": "/erns"})
    assert r.headers["location"] == "/login/2fa?next=/erns"
    # the half-logged-in session opens nothing
    assert (await client.get("/erns", follow_redirects=False)).headers["location"].startswith("/login")
    code = await totp_code(uid)
    r = await post_form(client, "/login/2fa", {"code": code, "next": "/erns"})
    assert r.status_code == 302 and r.headers["location"] == "/erns"
    assert (await client.get("/erns")).status_code == 200
    # same code again, in a fresh login: refused (a code works once)
    client.cookies.clear()
    await client.get("/login")
    await post_form(client, "/login", {"email": "hp@example.org", "password": PASSWORD})
    r = await post_form(client, "/login/2fa", {"code": code})
    assert r.status_code == 400 and "not valid" in r.text
    assert len(await _activity("user.mfa_failed")) == 1


async def test_recovery_code_works_once(client):
    uid = await make_user("hp@example.org")
    await login(client, "hp@example.org")
    r = await post_form(client, "/account/2fa/recovery-codes", {"code": await totp_code(uid)})
    codes = re.findall(r"<li><code>([0-9a-f]{6}-[0-9a-f]{6})</code></li>", r.text)
    assert len(codes) == 10
    for attempt, expected in ((codes[0], 302), (codes[0], 400)):
        client.cookies.clear()
        await client.get("/login")
        await post_form(client, "/login", {"email": "hp@example.org", "password": PASSWORD})
        r = await post_form(client, "/login/2fa", {"code": attempt.upper()})
        assert r.status_code == expected
    assert await RecoveryCode.count().where((RecoveryCode.user == uid) & RecoveryCode.used_at.is_not_null()) == 1


async def test_wrong_codes_lock_the_account(client):
    uid = await make_user("hp@example.org")
    await client.get("/login")
    await post_form(client, "/login", {"email": "hp@example.org", "password": PASSWORD})
    for _ in range(5):
        r = await post_form(client, "/login/2fa", {"code": "123456"})
    r = await post_form(client, "/login/2fa", {"code": await totp_code(uid)})
    assert r.status_code == 429
    assert (await client.get("/", follow_redirects=False)).headers["location"].startswith("/login")


async def test_password_lockout_after_five_failures(client):
    await make_user("hp@example.org")
    for _ in range(5):
        r = await login(client, "hp@example.org", "wrong password!!")
        assert r.status_code == 400
    r = await login(client, "hp@example.org")
    assert r.status_code == 429 and "Too many" in r.text
    assert len(await _activity("user.login_throttled")) == 1


async def test_address_throttle_across_accounts(client):
    from core.identity import throttle

    throttle.addresses.reset()
    try:
        for i in range(throttle.ADDRESS_LIMIT):
            await login(client, f"nobody{i}@example.org", "x")
        await make_user("hp@example.org")
        r = await login(client, "hp@example.org")
        assert r.status_code == 429
    finally:
        throttle.addresses.reset()


async def test_lost_phone_reset_approved_by_coordinator_of_the_ern(client, settings):
    from core.app import create_app
    from tests.conftest import app_client

    uid = await make_user("hp@example.org")
    await make_user("coord@example.org", roles=[("hp", "ERN RND"), ("coordinator", "ERN RND")])
    await make_user("other@example.org", roles=[("hp", "ERKNet"), ("coordinator", "ERKNet")])
    await client.get("/login")
    await post_form(client, "/login", {"email": "hp@example.org", "password": PASSWORD})
    r = await post_form(client, "/login/2fa/reset-request")
    assert r.status_code == 200 and "sent to the coordinators" in r.text
    await post_form(client, "/login/2fa/reset-request")  # twice: still one request
    from core.identity.tables import MfaResetRequest

    [reset] = await MfaResetRequest.select().where(MfaResetRequest.user == uid)
    app = create_app(settings)
    async with app_client(app) as other:
        await login(other, "other@example.org")
        q = await other.get("/access/queue")
        assert "hp@example.org" not in q.text
        r = await post_form(other, f"/access/mfa-resets/{reset['id']}/approve")
        assert r.status_code == 404
    async with app_client(app) as coord:
        await login(coord, "coord@example.org")
        q = await coord.get("/access/queue")
        assert "hp@example.org" in q.text
        r = await post_form(coord, f"/access/mfa-resets/{reset['id']}/approve")
        assert r.status_code == 200
        again = await post_form(coord, f"/access/mfa-resets/{reset['id']}/approve")
        assert again.status_code == 404  # decided: no longer in the queue
    user = await User.select(User.totp_enabled_at, User.totp_secret).where(User.id == uid).first()
    assert user["totp_enabled_at"] is None and user["totp_secret"] == ""
    from core.identity.session_store import store_for

    assert await store_for(settings).live_for_user(uid) == []  # every session ended
    assert len(await _activity("user.mfa_reset")) == 1
    # next login: password only, then forced enrolment
    TOTP_SECRETS.pop(uid)
    client.cookies.clear()
    r = await login(client, "hp@example.org")
    assert r.headers["location"] == "/"
    assert (await client.get("/", follow_redirects=False)).headers["location"] == "/account/2fa"


async def test_session_list_and_log_out_other_sessions(client, settings):
    from core.app import create_app
    from tests.conftest import app_client

    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    app = create_app(settings)
    async with app_client(app) as second:
        await login(second, "hp@example.org")
        r = await client.get("/profile")
        assert r.text.count("this session") == 1 and r.text.count(">End<") == 1
        r = await post_form(client, "/profile/sessions/revoke-others")
        assert "Logged out 1 other session" in r.text
        assert (await second.get("/profile", follow_redirects=False)).status_code == 302
    assert (await client.get("/profile")).status_code == 200
    r = await client.get("/profile")
    assert "Two-step login" in r.text and ">on<" in r.text
