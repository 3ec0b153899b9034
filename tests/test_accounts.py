"""E-mail verification, forgotten and changed passwords, end to end through the app and a real
SMTP server: links are taken from the mails the server received."""

import asyncio
import hashlib
from datetime import timedelta

import pytest

from core.identity import throttle
from core.identity.accounts import RESET_PASSWORD, VERIFY_EMAIL, consume_token, issue_token, send_verification
from core.identity.password_policy import check_password
from core.identity.passwords import verify_password
from core.identity.sessions import actor_from_token, create_session, now
from tests.conftest import PASSWORD, app_client, login, make_settings, make_user, post_form, text_of
from tests.support.smtp import free_port, link_in, smtp_server  # noqa: F401  (fixture)

EMAIL = "alice.martin@example.org"
NAME = "Alice Martin"
NEW_PASSWORD = "velvet otter lantern 1987"


@pytest.fixture
def mail_settings(smtp_server):
    return make_settings(smtp_host="127.0.0.1", smtp_port=smtp_server.port)


@pytest.fixture
async def mail_client(clean_db, mail_settings):
    from core.app import create_app

    throttle.addresses.reset()  # failed logins of earlier tests must not throttle this one
    async with app_client(create_app(mail_settings)) as c:
        yield c


async def alice(verified: bool = True) -> int:
    """A researcher: no second factor is required, so pages behind login open directly."""
    from core.identity.tables import User

    uid = await make_user(EMAIL, roles=[("researcher", "ERN RND")], hcp=None, name=NAME)
    if not verified:
        await User.update({User.email_verified: False}).where(User.id == uid)
    return uid


async def user_row(uid: int) -> dict:
    from core.identity.tables import User

    return await User.select().where(User.id == uid).first()


async def events(name: str) -> list[dict]:
    from core.activity.tables import Activity

    return await Activity.select().where(Activity.action == name).order_by(Activity.id)


async def live_sessions(uid: int) -> int:
    """Live sessions in whichever store the run uses (database or Redis)."""
    from core.identity.sessions import live_sessions as live
    from tests.conftest import make_settings

    return len(await live(make_settings(), uid))


async def expire_tokens(uid: int) -> None:
    from core.identity.tables import OneTimeToken

    await OneTimeToken.update({OneTimeToken.expires_at: now() - timedelta(seconds=1)}).where(OneTimeToken.user == uid)


async def ask_reset(client, email: str = EMAIL):
    await client.get("/account/password/forgot")
    return await post_form(client, "/account/password/forgot", {"email": email})


async def reset_with(client, path: str, password: str, again: str | None = None):
    await client.get("/account/password/forgot")  # a page, for the CSRF cookie
    return await post_form(client, path, {"password": password, "password_again": password if again is None else again})


# --- password policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password, problem",
    [
        ("Sh0rt!x", "at least 12 characters"),
        ("password1234", "too easy to guess"),
        ("qwertyuiop123", "too easy to guess"),
        ("aaaaaaaaaaaaaaaa", "too easy to guess"),
        ("alice.martin-rocks-42", "e-mail address"),
        ("Martin velvet otter 1987", "your name"),
        ("x" * 1025, "at most 1024"),
    ],
)
def test_policy_refuses(password, problem):
    problems = check_password(password, email=EMAIL, name=NAME)
    assert any(problem in p for p in problems), problems


def test_policy_accepts_a_passphrase_and_explains_refusals():
    assert check_password(NEW_PASSWORD, email=EMAIL, name=NAME) == []
    assert check_password(PASSWORD) == []
    [problem] = check_password("password1234")
    assert "very common password" in problem
    # Long passwords are judged quickly (only the first 72 characters are estimated).
    assert check_password("x" * 1024) != []


# --- e-mail verification ---------------------------------------------------------------------


async def test_verification_link_from_the_mail_confirms_the_address_once(mail_client, mail_settings, smtp_server):
    from core.identity.tables import OneTimeToken

    uid = await alice(verified=False)
    assert await send_verification(mail_settings, uid) is not None
    [mail] = smtp_server.messages
    assert mail["to"] == EMAIL and "Confirm" in mail["subject"]
    path = link_in(mail, "/account/verify/")
    token = path.rsplit("/", 1)[1]
    # Only the token's hash is stored.
    [row] = await OneTimeToken.select().where(OneTimeToken.user == uid)
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest() and row["purpose"] == VERIFY_EMAIL
    assert row["expires_at"] - row["created_at"] == timedelta(hours=48)

    r = await mail_client.get(path)
    assert r.status_code == 200 and "confirmed" in text_of(r.text)
    assert (await user_row(uid))["email_verified"] is True
    [event] = await events("user.email_verified")
    assert event["actor_id"] == uid and event["subject_id"] == str(uid)
    assert token not in str(event)

    again = await mail_client.get(path)
    assert again.status_code == 400 and "does not work" in again.text
    assert len(await events("user.email_verified")) == 1
    # Already verified: no new mail.
    assert await send_verification(mail_settings, uid) is None
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize("case", ["forged", "expired", "other purpose", "overlong"])
async def test_bad_verification_links_change_nothing(mail_client, case):
    from core.identity.tables import OneTimeToken

    uid = await alice(verified=False)
    token = {
        "forged": "forged-token-" + "x" * 30,
        "expired": await issue_token(uid, VERIFY_EMAIL),
        "other purpose": await issue_token(uid, RESET_PASSWORD),
        "overlong": "y" * 500,
    }[case]
    if case == "expired":
        await expire_tokens(uid)
    r = await mail_client.get(f"/account/verify/{token}")
    assert r.status_code == 400 and "does not work" in r.text and "Nothing was changed" in r.text
    assert (await user_row(uid))["email_verified"] is False
    assert await OneTimeToken.count().where(OneTimeToken.used_at.is_not_null()) == 0
    assert await events("user.email_verified") == []
    assert len(await events("security.refused")) == 1  # the refusal is audited


# --- forgotten password ----------------------------------------------------------------------


async def test_forgot_password_answers_the_same_for_unknown_addresses(mail_client, smtp_server):
    from core.identity.tables import OneTimeToken, User

    uid = await alice()
    await make_user("gone@example.org", roles=[("researcher", "ERN RND")], hcp=None)
    await User.update({User.is_active: False}).where(User.email == "gone@example.org")

    unknown = await ask_reset(mail_client, "nobody@example.org")
    inactive = await ask_reset(mail_client, "gone@example.org")
    assert smtp_server.messages == []
    assert await OneTimeToken.count() == 0 and await events("user.password_reset_requested") == []

    known = await ask_reset(mail_client, "  Alice.Martin@Example.org ")
    assert unknown.status_code == inactive.status_code == known.status_code == 200
    assert text_of(unknown.text) == text_of(inactive.text) == text_of(known.text)
    assert "If an account exists" in unknown.text
    [mail] = smtp_server.messages
    assert mail["to"] == EMAIL and link_in(mail, "/account/password/reset/")
    [event] = await events("user.password_reset_requested")
    assert event["subject_id"] == str(uid) and event["data"] in ({"mail_sent": True}, '{"mail_sent": true}')


async def test_forgot_password_without_csrf_token_is_refused(mail_client, smtp_server):
    await alice()
    await mail_client.get("/account/password/forgot")
    r = await mail_client.post("/account/password/forgot", data={"email": EMAIL, "_csrf_token": "forged"})
    assert r.status_code == 403
    assert smtp_server.messages == []


async def test_reset_mails_are_limited_to_three_an_hour(mail_client, smtp_server):
    from core.identity.tables import OneTimeToken

    uid = await alice()
    answers = [await ask_reset(mail_client) for _ in range(5)]
    assert {a.status_code for a in answers} == {200}
    assert len({text_of(a.text) for a in answers}) == 1  # the limit is not revealed
    assert len(smtp_server.messages) == 3
    assert await OneTimeToken.count().where(OneTimeToken.user == uid) == 3
    assert len(await events("user.password_reset_requested")) == 5
    # Only the newest link works.
    paths = [link_in(m, "/account/password/reset/") for m in smtp_server.messages]
    assert [(await mail_client.get(p)).status_code for p in paths] == [400, 400, 200]


async def test_down_mail_server_does_not_break_the_request(clean_db):
    from core.app import create_app
    from core.mail.tables import OutboxMail

    await alice()
    async with app_client(create_app(make_settings(smtp_host="127.0.0.1", smtp_port=free_port()))) as client:
        r = await ask_reset(client)
    assert r.status_code == 200 and "If an account exists" in r.text
    [mail] = await OutboxMail.select()
    assert mail["to_address"] == EMAIL and mail["status"] == "pending" and mail["last_error"]


# --- password reset --------------------------------------------------------------------------


async def test_reset_flow_end_to_end(mail_client, mail_settings, smtp_server):
    from core.identity.tables import OneTimeToken, User

    uid = await alice(verified=False)
    other_session = await create_session(mail_settings, uid)
    await User.update({User.failed_logins: 3, User.locked_until: now() + timedelta(minutes=10)}).where(User.id == uid)

    await ask_reset(mail_client)
    [mail] = smtp_server.messages
    path = link_in(mail, "/account/password/reset/")
    token = path.rsplit("/", 1)[1]
    form = await mail_client.get(path)
    assert form.status_code == 200 and 'name="password_again"' in form.text
    assert token not in form.text  # the form posts back to its own address

    r = await reset_with(mail_client, path, NEW_PASSWORD)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    user = await user_row(uid)
    assert user["failed_logins"] == 0 and user["locked_until"] is None
    assert user["password_changed_at"] is not None and user["email_verified"] is True
    assert await live_sessions(uid) == 0
    assert await actor_from_token(mail_settings, other_session) is None
    [event] = await events("user.password_changed")
    assert event["actor_id"] == uid and token not in str(event)
    assert await OneTimeToken.count().where(OneTimeToken.used_at.is_not_null()) == 1
    # The owner is told.
    assert [m["subject"] for m in smtp_server.messages][1:] == ["Your CPMS password was changed"]

    assert (await login(mail_client, EMAIL, PASSWORD)).status_code == 400
    assert (await login(mail_client, EMAIL, NEW_PASSWORD)).status_code == 302

    # The link worked once.
    assert (await mail_client.get(path)).status_code == 400
    reuse = await reset_with(mail_client, path, "another fine passphrase 2031")
    assert reuse.status_code == 400
    assert verify_password((await user_row(uid))["password_hash"], NEW_PASSWORD)


@pytest.mark.parametrize(
    "password, again, message",
    [
        ("Sh0rt!x", None, "at least 12 characters"),
        ("password1234", None, "too easy to guess"),
        ("alice.martin velvet otter", None, "e-mail address"),
        ("martin velvet otter 1987", None, "your name"),
        (NEW_PASSWORD, NEW_PASSWORD + "!", "not the same"),
    ],
)
async def test_reset_refuses_weak_or_mismatched_passwords_and_changes_nothing(mail_client, mail_settings, password, again, message):
    uid = await alice()
    other_session = await create_session(mail_settings, uid)
    before = await user_row(uid)
    path = "/account/password/reset/" + await issue_token(uid, RESET_PASSWORD)

    r = await reset_with(mail_client, path, password, again)
    assert r.status_code == 422
    assert message in r.text and "not changed" in r.text
    assert password not in r.text
    assert await user_row(uid) == before
    assert await live_sessions(uid) == 1 and await actor_from_token(mail_settings, other_session) is not None
    assert await events("user.password_changed") == []
    # The token was not used up: the user can try again.
    assert (await mail_client.get(path)).status_code == 200
    assert (await reset_with(mail_client, path, NEW_PASSWORD)).status_code == 303


@pytest.mark.parametrize("case", ["forged", "expired", "verification token"])
async def test_bad_reset_links_are_refused(mail_client, case):
    uid = await alice()
    before = await user_row(uid)
    token = {
        "forged": "not-a-real-token-" + "z" * 26,
        "expired": await issue_token(uid, RESET_PASSWORD),
        "verification token": await issue_token(uid, VERIFY_EMAIL),
    }[case]
    if case == "expired":
        await expire_tokens(uid)
    path = f"/account/password/reset/{token}"
    assert (await mail_client.get(path)).status_code == 400
    r = await reset_with(mail_client, path, NEW_PASSWORD)
    assert r.status_code == 400 and "does not work" in r.text
    assert await user_row(uid) == before


async def test_a_token_is_used_once_even_when_raced(clean_db):
    uid = await alice()
    token = await issue_token(uid, RESET_PASSWORD)
    results = await asyncio.gather(*[consume_token(token, RESET_PASSWORD) for _ in range(5)])
    assert results.count(uid) == 1 and results.count(None) == 4
    assert await consume_token(token, RESET_PASSWORD) is None
    # A token only works for its purpose.
    verify = await issue_token(uid, VERIFY_EMAIL)
    assert await consume_token(verify, RESET_PASSWORD) is None
    assert await consume_token(verify, VERIFY_EMAIL) == uid


# --- password change -------------------------------------------------------------------------


async def test_change_password_needs_login(mail_client):
    r = await mail_client.get("/account/password", follow_redirects=False)
    assert r.status_code in (302, 303, 307) and r.headers["location"].startswith("/login")


async def test_change_password_keeps_this_session_and_ends_the_others(mail_client, mail_settings, smtp_server):
    uid = await alice()
    other_session = await create_session(mail_settings, uid)
    assert (await login(mail_client, EMAIL)).status_code == 302
    form = await mail_client.get("/account/password")
    assert form.status_code == 200 and 'name="current_password"' in form.text

    wrong = await post_form(mail_client, "/account/password", {"current_password": "not my password", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert wrong.status_code == 422 and "current password is not right" in wrong.text
    assert (await user_row(uid))["failed_logins"] == 1
    weak = await post_form(mail_client, "/account/password", {"current_password": PASSWORD, "password": "password1234", "password_again": "password1234"})
    assert weak.status_code == 422 and "too easy to guess" in weak.text
    same = await post_form(mail_client, "/account/password", {"current_password": PASSWORD, "password": PASSWORD, "password_again": PASSWORD})
    assert same.status_code == 422 and "different from your current one" in same.text
    assert verify_password((await user_row(uid))["password_hash"], PASSWORD)
    assert await events("user.password_changed") == []

    r = await post_form(mail_client, "/account/password", {"current_password": PASSWORD, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert r.status_code == 200 and "Your password was changed" in r.text
    assert verify_password((await user_row(uid))["password_hash"], NEW_PASSWORD)
    assert (await mail_client.get("/profile")).status_code == 200  # this session goes on
    assert await actor_from_token(mail_settings, other_session) is None
    assert await live_sessions(uid) == 1
    [event] = await events("user.password_changed")
    assert event["actor_id"] == uid
    assert [m["subject"] for m in smtp_server.messages] == ["Your CPMS password was changed"]


async def test_change_password_is_throttled_after_wrong_current_passwords(mail_client):
    uid = await alice()
    await login(mail_client, EMAIL)
    for _ in range(throttle.ACCOUNT_LIMIT):
        await post_form(mail_client, "/account/password", {"current_password": "guess", "password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    r = await post_form(mail_client, "/account/password", {"current_password": PASSWORD, "password": NEW_PASSWORD, "password_again": NEW_PASSWORD})
    assert r.status_code == 429
    assert verify_password((await user_row(uid))["password_hash"], PASSWORD)
