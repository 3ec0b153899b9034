"""Login (password, then the second factor), logout, and the shared ``start_login`` step
that every way of logging in (password, OpenID Connect) ends with."""

from __future__ import annotations

from litestar import Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from core.events import Event
from core.identity import throttle
from core.identity.sessions import COOKIE_NAME, complete_session, create_session, pending_user_id
from core.web import page


def safe_next(value: str | None) -> str:
    """Only local paths: an open redirect would help phishing."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def set_session_cookie(request: Request, response, token: str) -> None:
    host = request.app.state.host
    response.set_cookie(
        COOKIE_NAME, token, httponly=True, samesite="lax", secure=host.secure_cookies, path="/",
        max_age=host.settings.session_absolute_timeout,
    )


async def start_login(request: Request, user_id: int, method: str, next_url: str = "/") -> Redirect:
    """The first factor is proven: open a session, asking for the second factor if enrolled."""
    from core.identity.tables import User

    from core.identity.sessions import OIDC_MFA

    host = request.app.state.host
    user = await User.select(User.totp_enabled_at).where(User.id == user_id).first()
    await throttle.record_success(user_id)
    # A second factor passed at a trusted OpenID provider is not asked for again.
    needs_code = user is not None and user["totp_enabled_at"] is not None and method != OIDC_MFA
    token = await create_session(
        host.settings, user_id, client_address(request), request.headers.get("user-agent", ""),
        stage="mfa" if needs_code else "full", method=method,
    )
    if needs_code:
        response = Redirect(f"/login/2fa?next={safe_next(next_url)}")
    else:
        await host.events.emit(Event("user.logged_in", user_id, "user", str(user_id), {"method": method}, client_address(request)))
        response = Redirect(safe_next(next_url))
    set_session_cookie(request, response, token)
    return response


def too_many(request: Request) -> Template:
    return page(
        request, "identity/login.html",
        {"next": "/", "email": "", "error": "Too many failed attempts. Please wait 15 minutes, or reset your password."},
        status_code=429,
    )


NOTICES = {
    "password-reset": "Your password was changed. Log in with the new one.",
}


@get("/login", opt={"public": True}, include_in_schema=False)
async def login_form(
    request: Request, next: FromQuery[str | None] = None, notice: FromQuery[str | None] = None
) -> Template | Redirect:
    if request.scope.get("user") is not None:
        return Redirect(safe_next(next))
    return page(
        request, "identity/login.html",
        {"next": safe_next(next), "error": None, "email": "", "notice": NOTICES.get(notice or "")},
    )


@post("/login", opt={"public": True}, include_in_schema=False)
async def login_submit(request: Request) -> Template | Redirect:
    from core.identity.passwords import verify_password
    from core.identity.tables import User

    host = request.app.state.host
    address = client_address(request)
    form = await request.form()
    email = str(form.get("email", "")).strip().lower()[:254]
    password = str(form.get("password", ""))[:1024]
    next_url = safe_next(str(form.get("next", "/")))
    if throttle.addresses.blocked(address):
        await host.events.emit(Event("user.login_throttled", None, "address", address, address=address))
        return too_many(request)
    user = (
        await User.select(User.id, User.password_hash, User.is_active, User.locked_until).where(User.email == email).first()
        if email else None
    )
    if user and await throttle.account_locked(user):
        await host.events.emit(Event("user.login_throttled", user["id"], "user", str(user["id"]), address=address))
        return too_many(request)
    ok = verify_password(user["password_hash"] if user else None, password) and bool(user and user["is_active"])
    if not ok:
        throttle.addresses.failed(address)
        if user:
            await throttle.record_failure(user["id"])
        await host.events.emit(Event("user.login_failed", user["id"] if user else None, "user", str(user["id"]) if user else "", address=address))
        return page(
            request, "identity/login.html",
            {"next": next_url, "error": "The e-mail address or password is not right.", "email": email},
            status_code=400,
        )
    return await start_login(request, user["id"], "password", next_url)


@get("/login/2fa", opt={"public": True}, include_in_schema=False)
async def second_factor_form(request: Request, next: FromQuery[str | None] = None) -> Template | Redirect:
    user_id = await pending_user_id(request.app.state.settings, request.cookies.get(COOKIE_NAME))
    if user_id is None:
        return Redirect("/login")
    return page(request, "identity/second_factor.html", {
        "next": safe_next(next), "error": None, "reset_requested": False, "has_passkeys": await _has_passkeys(user_id)})


async def _has_passkeys(user_id: int) -> bool:
    from core.identity.tables import PasskeyCredential

    return bool(await PasskeyCredential.exists().where(PasskeyCredential.user == user_id))


@post("/login/2fa", opt={"public": True}, include_in_schema=False)
async def second_factor_submit(request: Request) -> Template | Redirect:
    from core.identity import mfa

    host = request.app.state.host
    token = request.cookies.get(COOKIE_NAME)
    user_id = await pending_user_id(host.settings, token)
    if user_id is None:
        return Redirect("/login")
    form = await request.form()
    code = str(form.get("code", ""))[:64]
    next_url = safe_next(str(form.get("next", "/")))
    address = client_address(request)
    from core.identity.tables import User

    user = await User.select(User.locked_until).where(User.id == user_id).first()
    if throttle.addresses.blocked(address) or await throttle.account_locked(user):
        return too_many(request)
    used = await mfa.check_second_factor(host.settings, user_id, code)
    if used is None:
        throttle.addresses.failed(address)
        await throttle.record_failure(user_id)
        await host.events.emit(Event("user.mfa_failed", user_id, "user", str(user_id), address=address))
        return page(
            request, "identity/second_factor.html",
            {"next": next_url, "error": "That code is not valid (each code works once).", "reset_requested": False,
             "has_passkeys": await _has_passkeys(user_id)},
            status_code=400,
        )
    await throttle.record_success(user_id)
    await complete_session(host.settings, token)
    await host.events.emit(Event("user.logged_in", user_id, "user", str(user_id), {"second_factor": used}, address))
    return Redirect(next_url)


@post("/logout", opt={"public": True}, include_in_schema=False)
async def logout(request: Request) -> Redirect:
    """Public so that a half-finished login (waiting for its code) can be abandoned too."""
    from core.identity.sessions import revoke_session

    token = request.cookies.get(COOKIE_NAME)
    if token:
        await revoke_session(request.app.state.settings, token)
    actor = request.scope.get("user")
    if actor is not None:
        await request.app.state.host.events.emit(
            Event("user.logged_out", actor.user_id, "user", str(actor.user_id), address=client_address(request))
        )
    response = Redirect("/login")
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


ROUTES = [login_form, login_submit, second_factor_form, second_factor_submit, logout]
