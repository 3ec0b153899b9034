"""Passkeys and security keys (WebAuthn) as a second factor, beside the authenticator app.

A user who turned on two-step login (TOTP) may add passkeys on their profile; at the second step of
a login they then use either. The ceremonies run through py_webauthn (Duo Labs, BSD-3-Clause): the
server makes the options and checks the answers (challenge, origin ``CPMS_BASE_URL``, RP id its host,
signature, and a sign counter that must grow). The challenge travels in a short-lived sealed cookie
(encrypted with the site keyring, bound to its purpose and user), so any app process can check it.
The small script ``/static/core/passkeys.js`` calls the browser's WebAuthn API.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

from litestar import Request, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Response

from core.events import Event
from core.identity.login import client_address, safe_next
from core.openapi import json_schema, operation, problems, unknown_fields

COOKIE = "cpms_passkey"
CONTEXT = "passkey-challenge"
TTL = 300
MAX_PER_USER = 10
MAX_BODY = 64 * 1024


# --- the OpenAPI document (core/openapi.py) -----------------------------------------------------------


class _CreationOptions(TypedDict):
    """PublicKeyCredentialCreationOptions (WebAuthn), as JSON: hand it to navigator.credentials.create()."""

    rp: dict[str, Any]
    user: dict[str, Any]
    challenge: str
    pubKeyCredParams: list[dict[str, Any]]
    excludeCredentials: list[dict[str, Any]]


class CreationOptions(_CreationOptions, total=False):
    timeout: int
    authenticatorSelection: dict[str, Any]
    attestation: str
    hints: list[str]


class _RequestOptions(TypedDict):
    """PublicKeyCredentialRequestOptions (WebAuthn), as JSON: hand it to navigator.credentials.get()."""

    challenge: str
    rpId: str
    allowCredentials: list[dict[str, Any]]


class RequestOptions(_RequestOptions, total=False):
    timeout: int
    userVerification: str
    hints: list[str]


class Credential(TypedDict, total=False):
    """The browser's answer (PublicKeyCredential as JSON); py_webauthn checks it."""

    id: str
    rawId: str
    #: clientDataJSON with attestationObject (adding) or authenticatorData and signature (logging in),
    #: base64url; transports; userHandle.
    response: dict[str, str | list[str] | None]
    type: str
    authenticatorAttachment: str | None
    clientExtensionResults: dict[str, bool | str | None]


class _RegistrationAnswer(TypedDict):
    credential: Credential


class RegistrationAnswer(_RegistrationAnswer, total=False):
    #: Shown on the profile (at most 60 characters are kept; "Passkey" when empty).
    name: str | None


class _LoginAnswer(TypedDict):
    credential: Credential


class LoginAnswer(_LoginAnswer, total=False):
    #: Where to go after the login (a local path; anything else becomes /).
    next: str | None


class Registered(TypedDict):
    ok: Literal[True]
    name: str


class LoggedIn(TypedDict):
    next: str


REGISTRATION_BODY = json_schema(RegistrationAnswer, closed=True)
LOGIN_BODY = json_schema(LoginAnswer, closed=True)
#: The second step of a login reads the session cookie of the first (password) step.
PENDING = [{"session": [], "csrf": [], "csrfCookie": []}]
API = dict(tags=["passkeys"], request_max_body_size=MAX_BODY)
BAD_ANSWER = "The body is not JSON or not {\"credential\": {...}}, the challenge expired or is not yours, or the " \
             "passkey could not be verified."


def rp_id(settings) -> str:
    return urlsplit(settings.base_url).hostname or "localhost"


def origin(settings) -> str:
    parts = urlsplit(settings.base_url)
    return f"{parts.scheme}://{parts.netloc}"


def problem(status: int, detail: str) -> Response:
    from core.errors import problem_response

    return problem_response(status, detail)


def _seal(settings, purpose: str, user_id: int, challenge: bytes) -> str:
    from webauthn.helpers import bytes_to_base64url

    from core.crypto import keyring

    payload = {"p": purpose, "u": user_id, "c": bytes_to_base64url(challenge), "t": int(time.time())}
    return keyring(settings).encrypt(json.dumps(payload), CONTEXT)


def _open(settings, sealed: str | None, purpose: str, user_id: int) -> bytes | None:
    from webauthn.helpers import base64url_to_bytes

    from core.crypto import keyring

    if not sealed:
        return None
    try:
        payload = json.loads(keyring(settings).decrypt(sealed, CONTEXT))
    except Exception:  # tampered, from another site, or from a retired key
        return None
    if payload.get("p") != purpose or payload.get("u") != user_id or time.time() - payload.get("t", 0) > TTL:
        return None
    return base64url_to_bytes(payload["c"])


def _with_challenge(request: Request, options, purpose: str, user_id: int) -> Response:
    from webauthn import options_to_json

    response = Response(json.loads(options_to_json(options)), status_code=200, media_type="application/json")
    response.set_cookie(COOKIE, _seal(request.app.state.settings, purpose, user_id, options.challenge), max_age=TTL,
                        path="/", httponly=True, samesite="strict", secure=request.app.state.host.secure_cookies)
    return response


async def _body(request: Request, schema: dict) -> dict | Response:
    from core.jsonbody import JsonRejected, parse

    try:
        data = parse(await request.body(), max_bytes=MAX_BODY, what="The passkey answer")
    except JsonRejected as exc:
        return problem(exc.status, exc.detail)
    if not isinstance(data, dict) or not isinstance(data.get("credential"), dict):
        return problem(400, "Send the browser's answer as {\"credential\": {...}}.")
    if any(data.get(key) is not None and not isinstance(data[key], str) for key in ("name", "next")):
        return problem(400, "name and next are texts.")
    if unknown := unknown_fields(data, schema):
        return problem(400, f"Unknown fields: {', '.join(unknown[:5])}.")
    return data


async def credentials_of(user_id: int) -> list[dict]:
    from core.identity.tables import PasskeyCredential

    return await PasskeyCredential.select().where(PasskeyCredential.user == user_id).order_by(PasskeyCredential.id)


# --- adding a passkey (profile) ------------------------------------------------------------------


@post("/account/passkeys/options", opt={"authenticated": True}, status_code=200, operation_id="passkeyRegistrationOptions",
      responses=problems(s409="Two-step login with an authenticator app is not on, or the account has 10 passkeys."), **API)
async def registration_options(request: Request) -> Response[CreationOptions]:
    """Start adding a passkey: the options for the browser, and the challenge in a sealed cookie (5 minutes)."""
    from webauthn import generate_registration_options
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria, PublicKeyCredentialDescriptor, ResidentKeyRequirement, UserVerificationRequirement,
    )

    actor = request.scope["user"]
    if not actor.mfa_enabled:
        return problem(409, "Turn on two-step login with an authenticator app first; passkeys are added beside it.")
    existing = await credentials_of(actor.user_id)
    if len(existing) >= MAX_PER_USER:
        return problem(409, f"You have {MAX_PER_USER} passkeys already; remove one first.")
    settings = request.app.state.settings
    options = generate_registration_options(
        rp_id=rp_id(settings), rp_name="CPMS", user_id=str(actor.user_id).encode(), user_name=actor.email,
        user_display_name=actor.name,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c["credential_id"])) for c in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED),
    )
    return _with_challenge(request, options, "register", actor.user_id)


@post("/account/passkeys", opt={"authenticated": True}, status_code=201, operation_id="passkeyRegister",
      operation_class=operation(body=REGISTRATION_BODY),
      responses=problems(s400=BAD_ANSWER, s409="This passkey is registered already."), **API)
async def register(request: Request) -> Response[Registered]:
    """Add the passkey the browser made (checked: challenge, origin, RP id, signature)."""
    from webauthn import verify_registration_response
    from webauthn.helpers import bytes_to_base64url

    from core.identity.tables import PasskeyCredential

    actor = request.scope["user"]
    settings = request.app.state.settings
    data = await _body(request, REGISTRATION_BODY)
    if isinstance(data, Response):
        return data
    challenge = _open(settings, request.cookies.get(COOKIE), "register", actor.user_id)
    if challenge is None or not actor.mfa_enabled:
        return problem(400, "This passkey request expired or is not yours; start again.")
    name = " ".join(str(data.get("name", "") or "").split())[:60] or "Passkey"
    try:
        verified = verify_registration_response(
            credential=data["credential"], expected_challenge=challenge, expected_rp_id=rp_id(settings),
            expected_origin=origin(settings),
        )
    except Exception as exc:  # py_webauthn raises its own errors for every failed check
        refused = problem(400, f"The passkey could not be verified: {str(exc)[:200]}")
        refused.delete_cookie(COOKIE, path="/")  # one answer per challenge: start again
        return refused
    credential_id = bytes_to_base64url(verified.credential_id)
    if await PasskeyCredential.exists().where(PasskeyCredential.credential_id == credential_id):
        return problem(409, "This passkey is registered already.")
    await PasskeyCredential.insert(PasskeyCredential(
        user=actor.user_id, credential_id=credential_id, public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count, name=name,
    ))
    await request.app.state.host.events.emit(
        Event("user.passkey_added", actor.user_id, "user", str(actor.user_id), {"name": name}, client_address(request)))
    response = Response({"ok": True, "name": name}, status_code=201, media_type="application/json")
    response.delete_cookie(COOKIE, path="/")
    return response


@post("/account/passkeys/{passkey_id:int}/delete", opt={"authenticated": True}, include_in_schema=False)
async def remove(request: Request, passkey_id: FromPath[int]) -> Redirect:
    from core.identity.tables import PasskeyCredential

    actor = request.scope["user"]
    gone = await PasskeyCredential.delete().where(
        (PasskeyCredential.id == passkey_id) & (PasskeyCredential.user == actor.user_id)).returning(PasskeyCredential.id)
    if not gone:
        raise NotFoundException("No such passkey.")
    await request.app.state.host.events.emit(
        Event("user.passkey_removed", actor.user_id, "user", str(actor.user_id), {}, client_address(request)))
    return Redirect("/profile#passkeys", status_code=303)


# --- the second step of a login ------------------------------------------------------------------


@post("/login/2fa/passkey/options", opt={"public": True, "security": PENDING}, status_code=200,
      operation_id="passkeyLoginOptions",
      responses=problems(s401="No login is waiting for its second step: log in with the password first.",
                         s409="The account has no passkey: use the authenticator app's code."), **API)
async def login_options(request: Request) -> Response[RequestOptions]:
    """The second step of a login, by passkey: the options for the browser (challenge in a sealed cookie)."""
    from webauthn import generate_authentication_options
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

    from core.identity.sessions import COOKIE_NAME, pending_user_id

    settings = request.app.state.settings
    user_id = await pending_user_id(settings, request.cookies.get(COOKIE_NAME))
    if user_id is None:
        return problem(401, "Log in with your password first.")
    creds = await credentials_of(user_id)
    if not creds:
        return problem(409, "You have no passkey; use the code from your authenticator app.")
    options = generate_authentication_options(
        rp_id=rp_id(settings), user_verification=UserVerificationRequirement.PREFERRED,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(c["credential_id"])) for c in creds],
    )
    return _with_challenge(request, options, "login", user_id)


@post("/login/2fa/passkey", opt={"public": True, "security": PENDING}, status_code=200, operation_id="passkeyLogin",
      operation_class=operation(body=LOGIN_BODY),
      responses=problems(429, s400=BAD_ANSWER, s401="No login is waiting for its second step: log in with the password first.",
                         s409="This passkey was used at the same moment elsewhere; try again."), **API)
async def login_with_passkey(request: Request) -> Response[LoggedIn]:
    """Complete the login with the passkey's signature; the session is then fully logged in."""
    from webauthn import verify_authentication_response
    from webauthn.helpers import base64url_to_bytes

    from core.identity import throttle
    from core.identity.sessions import COOKIE_NAME, complete_session, now, pending_user_id
    from core.identity.tables import PasskeyCredential, User

    host = request.app.state.host
    settings = host.settings
    token = request.cookies.get(COOKIE_NAME)
    user_id = await pending_user_id(settings, token)
    if user_id is None:
        return problem(401, "Log in with your password first.")
    address = client_address(request)
    user = await User.select(User.locked_until).where(User.id == user_id).first()
    if throttle.addresses.blocked(address) or await throttle.account_locked(user):
        return problem(429, "Too many failed attempts. Please wait 15 minutes.")
    data = await _body(request, LOGIN_BODY)
    if isinstance(data, Response):
        return data
    challenge = _open(settings, request.cookies.get(COOKIE), "login", user_id)
    raw_id = data["credential"].get("rawId") or data["credential"].get("id")
    stored = await PasskeyCredential.select().where(
        (PasskeyCredential.credential_id == str(raw_id or "")[:700]) & (PasskeyCredential.user == user_id)).first()
    refusal = None
    if challenge is None:
        refusal = "This passkey request expired; start again."
    elif stored is None:
        refusal = "This passkey is not registered for your account."
    else:
        try:
            verified = verify_authentication_response(
                credential=data["credential"], expected_challenge=challenge, expected_rp_id=rp_id(settings),
                expected_origin=origin(settings), credential_public_key=base64url_to_bytes(stored["public_key"]),
                credential_current_sign_count=stored["sign_count"],
            )
        except Exception as exc:  # a failed check: signature, origin, challenge, counter...
            refusal = f"The passkey could not be verified: {str(exc)[:200]}"
    if refusal is not None:
        throttle.addresses.failed(address)
        await throttle.record_failure(user_id)
        await host.events.emit(Event("user.mfa_failed", user_id, "user", str(user_id), {"method": "passkey"}, address))
        response = problem(400, refusal)
        response.delete_cookie(COOKIE, path="/")
        return response
    # The counter must grow (a cloned authenticator repeats it); the row is updated only if
    # nobody used the same counter meanwhile.
    done = await PasskeyCredential.update({PasskeyCredential.sign_count: verified.new_sign_count, PasskeyCredential.last_used_at: now()}).where(
        (PasskeyCredential.id == stored["id"]) & (PasskeyCredential.sign_count == stored["sign_count"])).returning(PasskeyCredential.id)
    if not done:
        return problem(409, "This passkey was used at the same moment elsewhere; try again.")
    await throttle.record_success(user_id)
    await complete_session(settings, token)
    await host.events.emit(Event("user.logged_in", user_id, "user", str(user_id), {"second_factor": "passkey"}, address))
    next_url = safe_next(str(data.get("next", "/") or "/"))
    response = Response({"next": next_url}, status_code=200, media_type="application/json")
    response.delete_cookie(COOKIE, path="/")
    return response


ROUTES = [registration_options, register, remove, login_options, login_with_passkey]
