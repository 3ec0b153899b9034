"""E-mail verification, password reset and password change.

Links in mails carry single-use, expiring tokens (``secrets.token_urlsafe(32)``); the
database keeps only their SHA-256, so a copy of it cannot be turned into working links.
The forgotten-password form answers the same whether or not the account exists, and does
the lookup and the mailing after the answer is sent, so its timing tells nothing either.
A new password ends every other session of the account.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from litestar import Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.params import FromPath
from litestar.response import Redirect, Template

from core.events import Event
from core.identity import throttle
from core.identity.login import client_address
from core.identity.password_policy import check_password
from core.identity.sessions import now
from core.settings import Settings
from core.web import page

log = logging.getLogger("cpms.identity.accounts")

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"
LIFETIMES = {VERIFY_EMAIL: timedelta(hours=48), RESET_PASSWORD: timedelta(hours=1)}
#: Reset mails per account and hour; more requests are ignored without saying so, which
#: keeps the form from being used to flood someone's mailbox.
RESET_MAILS_PER_HOUR = 3
#: Issued tokens are 43 characters; anything much longer is not worth hashing.
TOKEN_MAX_LENGTH = 100


# --- tokens ----------------------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(user_id: int, purpose: str, lifetime: timedelta | None = None) -> str:
    """A new single-use token for ``purpose`` (``LIFETIMES[purpose]`` unless ``lifetime`` is given).

    Issuing a reset token ends the user's older unused ones: only the newest link works.
    """
    from core.identity.tables import OneTimeToken

    token = secrets.token_urlsafe(32)
    current = now()
    async with OneTimeToken._meta.db.transaction():
        if purpose == RESET_PASSWORD:
            await OneTimeToken.update({OneTimeToken.expires_at: current}).where(
                (OneTimeToken.user == user_id) & (OneTimeToken.purpose == purpose)
                & OneTimeToken.used_at.is_null() & (OneTimeToken.expires_at > current)
            )
        await OneTimeToken.insert(
            OneTimeToken(
                user=user_id, purpose=purpose, token_hash=_hash(token), created_at=current,
                expires_at=current + (lifetime or LIFETIMES[purpose]),
            )
        )
    return token


def _usable(token: str, purpose: str):
    from core.identity.tables import OneTimeToken

    return (
        (OneTimeToken.token_hash == _hash(token)) & (OneTimeToken.purpose == purpose)
        & OneTimeToken.used_at.is_null() & (OneTimeToken.expires_at > now())
    )


async def token_user(token: str, purpose: str) -> int | None:
    """The user a still-usable token belongs to, without using it up."""
    from core.identity.tables import OneTimeToken

    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    row = await OneTimeToken.select(OneTimeToken.user).where(_usable(token, purpose)).first()
    return row["user"] if row else None


async def consume_token(token: str, purpose: str) -> int | None:
    """Use a token up and return its user, or None if it is unknown, used or expired.

    The conditional update makes this atomic: of two concurrent uses, only one succeeds.
    """
    from core.identity.tables import OneTimeToken

    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    rows = await OneTimeToken.update({OneTimeToken.used_at: now()}).where(_usable(token, purpose)).returning(OneTimeToken.user)
    return rows[0]["user"] if rows else None


# --- mails -----------------------------------------------------------------------------------


SIGNATURE = "CPMS, the Clinical Patient Management System of the European Reference Networks"


def _settings(request_or_settings) -> Settings:
    if isinstance(request_or_settings, Settings):
        return request_or_settings
    return request_or_settings.app.state.settings


def _link(settings: Settings, path: str) -> str:
    return settings.base_url.rstrip("/") + path


async def send_verification(request_or_settings, user_id: int) -> int | None:
    """Mail the user a link confirming their address; returns the outbox id (None when the
    account does not exist or is already verified). Delivery problems never raise."""
    from core.identity.tables import User
    from core.mail.sender import send_mail

    settings = _settings(request_or_settings)
    user = await User.select(User.email, User.name, User.email_verified).where(User.id == user_id).first()
    if user is None or user["email_verified"]:
        return None
    token = await issue_token(user_id, VERIFY_EMAIL)
    body = (
        f"Hello {user['name']},\n\n"
        "please confirm that this is your e-mail address by opening this link within 48 hours:\n\n"
        f"{_link(settings, '/account/verify/' + token)}\n\n"
        "If you did not ask for a CPMS account, ignore this message.\n\n"
        f"{SIGNATURE}\n"
    )
    return await send_mail(settings, user["email"], "Confirm your e-mail address for CPMS", body)


async def _send_reset_link(settings: Settings, user: dict) -> None:
    from core.mail.sender import send_mail

    token = await issue_token(user["id"], RESET_PASSWORD)
    body = (
        f"Hello {user['name']},\n\n"
        "someone, probably you, asked to reset the password of your CPMS account. "
        "Choose a new password by opening this link within one hour:\n\n"
        f"{_link(settings, '/account/password/reset/' + token)}\n\n"
        "The link works once. If you did not ask for it, ignore this message: your password stays as it is.\n\n"
        f"{SIGNATURE}\n"
    )
    await send_mail(settings, user["email"], "Reset your CPMS password", body)


async def _send_password_changed(settings: Settings, email: str, name: str) -> None:
    """Tell the owner, so that a change they did not make does not go unnoticed."""
    from core.mail.sender import send_mail

    body = (
        f"Hello {name},\n\n"
        "the password of your CPMS account was just changed, and your other sessions were logged out.\n\n"
        "If you did not do this, reset your password at once and tell your ERN's helpdesk:\n\n"
        f"{_link(settings, '/account/password/forgot')}\n\n"
        f"{SIGNATURE}\n"
    )
    await send_mail(settings, email, "Your CPMS password was changed", body)


# --- shared steps ----------------------------------------------------------------------------


def _new_password_problems(password: str, again: str, email: str, name: str) -> list[str]:
    problems = check_password(password, email=email, name=name)
    if password != again:
        problems.append("The two new passwords are not the same.")
    return problems


async def _store_password(settings, user_id: int, password_hash: str, keep_session: str | None = None, verified: bool = False) -> None:
    """Set the new hash, lift any lockout, and end every session but ``keep_session``:
    whoever knew the old password must not stay logged in."""
    from core.identity.sessions import revoke_user_sessions
    from core.identity.tables import User

    current = now()
    values = {User.password_hash: password_hash, User.password_changed_at: current, User.failed_logins: 0, User.locked_until: None}
    if verified:
        values[User.email_verified] = True
    await User.update(values).where(User.id == user_id)
    await revoke_user_sessions(settings, user_id, keep=keep_session)


async def _invalid_link(request: Request, kind: str) -> Template:
    # Refused links are audited: many of them can mean someone is guessing tokens.
    await request.app.state.host.events.emit(
        Event("security.refused", None, "request", request.url.path.split("/")[2], {"reason": f"invalid {kind} link"}, client_address(request))
    )
    return page(request, "identity/account_token_invalid.html", {"kind": kind}, status_code=400)


async def _emit(request: Request, name: str, user_id: int, data: dict | None = None) -> None:
    await request.app.state.host.events.emit(Event(name, user_id, "user", str(user_id), data or {}, client_address(request)))


# --- e-mail verification ---------------------------------------------------------------------


@get("/account/verify/{token:str}", opt={"public": True}, include_in_schema=False)
async def verify_email(request: Request, token: FromPath[str]) -> Template:
    from core.identity.tables import User

    user_id = await consume_token(token, VERIFY_EMAIL)
    if user_id is None:
        return await _invalid_link(request, "verify")
    await User.update({User.email_verified: True}).where(User.id == user_id)
    await _emit(request, "user.email_verified", user_id)
    return page(request, "identity/account_verified.html")


# --- forgotten password ----------------------------------------------------------------------


@get("/account/password/forgot", opt={"public": True}, include_in_schema=False)
async def forgot_form(request: Request) -> Template:
    return page(request, "identity/account_forgot.html", {"sent": False})


async def _handle_reset_request(request: Request, email: str) -> None:
    """Runs after the answer was sent; mails a link only to an existing, active account."""
    from core.identity.tables import OneTimeToken, User

    try:
        user = await User.select(User.id, User.email, User.name).where((User.email == email) & (User.is_active == True)).first()  # noqa: E712
        if user is None:
            return
        recent = await OneTimeToken.count().where(
            (OneTimeToken.user == user["id"]) & (OneTimeToken.purpose == RESET_PASSWORD)
            & (OneTimeToken.created_at > now() - timedelta(hours=1))
        )
        allowed = recent < RESET_MAILS_PER_HOUR
        if allowed:
            await _send_reset_link(request.app.state.settings, user)
        await _emit(request, "user.password_reset_requested", user["id"], {"mail_sent": allowed})
    except Exception:  # the answer is already sent: all that is left to do is to log it
        log.exception("a password reset request could not be handled")


@post("/account/password/forgot", opt={"public": True}, include_in_schema=False)
async def forgot_submit(request: Request) -> Template:
    form = await request.form()
    email = str(form.get("email", "")).strip().lower()[:254]
    response = page(request, "identity/account_forgot.html", {"sent": True})
    if email:
        response.background = BackgroundTask(_handle_reset_request, request, email)
    return response


# --- password reset from the mailed link -----------------------------------------------------


async def _reset_target(token: str) -> dict | None:
    """The active account a usable reset token belongs to."""
    from core.identity.tables import User

    user_id = await token_user(token, RESET_PASSWORD)
    if user_id is None:
        return None
    return await User.select(User.id, User.email, User.name).where((User.id == user_id) & (User.is_active == True)).first()  # noqa: E712


@get("/account/password/reset/{token:str}", opt={"public": True}, include_in_schema=False)
async def reset_form(request: Request, token: FromPath[str]) -> Template:
    if await _reset_target(token) is None:
        return await _invalid_link(request, "reset")
    return page(request, "identity/account_reset.html", {"errors": []})


@post("/account/password/reset/{token:str}", opt={"public": True}, include_in_schema=False)
async def reset_submit(request: Request, token: FromPath[str]) -> Template | Redirect:
    from core.identity.passwords import hash_password
    from core.identity.tables import OneTimeToken

    user = await _reset_target(token)
    if user is None:
        return await _invalid_link(request, "reset")
    form = await request.form()
    password, again = str(form.get("password", "")), str(form.get("password_again", ""))
    errors = _new_password_problems(password, again, user["email"], user["name"])
    if errors:
        # The token is used up only by an accepted password, so the user can try again.
        return page(request, "identity/account_reset.html", {"errors": errors}, status_code=422)
    password_hash = hash_password(password)  # before the transaction: hashing takes a while
    async with OneTimeToken._meta.db.transaction():
        consumed = await consume_token(token, RESET_PASSWORD)
        if consumed == user["id"]:
            # Receiving the link proves the mailbox belongs to the user.
            await _store_password(request.app.state.settings, user["id"], password_hash, verified=True)
    if consumed != user["id"]:
        return await _invalid_link(request, "reset")
    await _emit(request, "user.password_changed", user["id"], {"method": "reset"})
    response = Redirect("/login?notice=password-reset", status_code=303)
    response.background = BackgroundTask(_send_password_changed, request.app.state.settings, user["email"], user["name"])
    return response


# --- password change when logged in ----------------------------------------------------------


@get("/account/password", opt={"authenticated": True}, include_in_schema=False)
async def change_form(request: Request) -> Template:
    return page(request, "identity/account_password.html", {"errors": [], "done": False})


@post("/account/password", opt={"authenticated": True}, include_in_schema=False)
async def change_submit(request: Request) -> Template:
    from core.identity.passwords import hash_password, verify_password
    from core.identity.tables import User

    actor = request.scope["user"]
    user = await User.select(User.password_hash, User.locked_until).where(User.id == actor.user_id).first()

    def refused(errors: list[str], status: int = 422) -> Template:
        return page(request, "identity/account_password.html", {"errors": errors, "done": False}, status_code=status)

    # Someone with a stolen session must not get to try passwords without limit.
    if await throttle.account_locked(user):
        return refused(["Too many wrong passwords. Please wait 15 minutes, or reset your password."], 429)
    form = await request.form()
    current = str(form.get("current_password", ""))
    password, again = str(form.get("password", "")), str(form.get("password_again", ""))
    if not verify_password(user["password_hash"], current[:1024]):
        await throttle.record_failure(actor.user_id)
        return refused(["Your current password is not right."])
    errors = _new_password_problems(password, again, actor.email, actor.name)
    if password == current:
        errors.append("Choose a password different from your current one.")
    if errors:
        return refused(errors)
    password_hash = hash_password(password)
    async with User._meta.db.transaction():
        await _store_password(request.app.state.settings, actor.user_id, password_hash, keep_session=actor.session_id or None)
    await _emit(request, "user.password_changed", actor.user_id, {"method": "change"})
    response = page(request, "identity/account_password.html", {"errors": [], "done": True})
    response.background = BackgroundTask(_send_password_changed, request.app.state.settings, actor.email, actor.name)
    return response


ROUTES = [verify_email, forgot_form, forgot_submit, reset_form, reset_submit, change_form, change_submit]
