"""Second factor: TOTP (RFC 6238) enrolment and checks, recovery codes, lost-authenticator resets.

A code is accepted once: the last accepted time step is stored and only a later step is
accepted, so an intercepted code cannot be replayed. The TOTP secret is encrypted at rest.
Recovery codes are kept only as SHA-256 hashes and each works once.
"""

from __future__ import annotations

import hashlib
import secrets
import time

import pyotp
import segno
from litestar import Request, get, post
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect, Template

from core.crypto import keyring
from core.events import Event
from core.identity.login import client_address
from core.identity.sessions import now
from core.web import page

ISSUER_NAME = "CPMS"
RECOVERY_CODES = 10
SECRET_CONTEXT = "totp"


def _hash_code(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").strip().lower().encode()).hexdigest()


def _secret(settings, stored: str) -> str:
    return keyring(settings).decrypt(stored, SECRET_CONTEXT)


async def verify_totp(settings, user_id: int, code: str) -> bool:
    """Accept a 6-digit code for the current step (±1 for clock drift), never twice."""
    from core.identity.tables import User

    code = code.replace(" ", "")
    if not (code.isdecimal() and len(code) == 6):
        return False
    user = await User.select(User.totp_secret, User.totp_last_step).where(User.id == user_id).first()
    if not user or not user["totp_secret"]:
        return False
    totp = pyotp.TOTP(_secret(settings, user["totp_secret"]))
    current = int(time.time()) // totp.interval
    for step in (current - 1, current, current + 1):
        if step > user["totp_last_step"] and secrets.compare_digest(totp.generate_otp(step), code):
            # Conditional update: of two concurrent uses of one code, only one wins.
            updated = await User.update({User.totp_last_step: step}).where(
                (User.id == user_id) & (User.totp_last_step < step)
            ).returning(User.id)
            return bool(updated)
    return False


async def use_recovery_code(user_id: int, code: str) -> bool:
    from core.identity.tables import RecoveryCode

    if not code or len(code) > 64:
        return False
    updated = await RecoveryCode.update({RecoveryCode.used_at: now()}).where(
        (RecoveryCode.user == user_id) & (RecoveryCode.code_hash == _hash_code(code)) & RecoveryCode.used_at.is_null()
    ).returning(RecoveryCode.id)
    return bool(updated)


async def check_second_factor(settings, user_id: int, code: str) -> str | None:
    """Returns which factor was used ("totp" or "recovery_code"), or None."""
    if await verify_totp(settings, user_id, code):
        return "totp"
    if await use_recovery_code(user_id, code):
        return "recovery_code"
    return None


async def new_recovery_codes(user_id: int) -> list[str]:
    from core.identity.tables import RecoveryCode

    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(RECOVERY_CODES)]
    async with RecoveryCode._meta.db.transaction():
        await RecoveryCode.delete().where(RecoveryCode.user == user_id)
        await RecoveryCode.insert(*[RecoveryCode(user=user_id, code_hash=_hash_code(c)) for c in codes])
    return codes


def qr_svg_data_uri(uri: str) -> str:
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


async def reset_second_factor(settings, user_id: int) -> None:
    """Forget the authenticator and recovery codes, and end every session of the user."""
    from core.identity.sessions import revoke_user_sessions
    from core.identity.tables import RecoveryCode, User

    async with User._meta.db.transaction():
        await User.update({User.totp_secret: "", User.totp_enabled_at: None, User.totp_last_step: 0}).where(User.id == user_id)
        await RecoveryCode.delete().where(RecoveryCode.user == user_id)
    await revoke_user_sessions(settings, user_id)


# --- pages -----------------------------------------------------------------------------------


@get("/account/2fa", opt={"authenticated": True, "mfa_setup": True}, include_in_schema=False)
async def setup_page(request: Request) -> Template:
    """Status when enrolled; otherwise a new secret (kept until confirmed) and its QR code."""
    from core.identity.tables import RecoveryCode, User

    actor = request.scope["user"]
    settings = request.app.state.settings
    if actor.mfa_enabled:
        left = await RecoveryCode.count().where((RecoveryCode.user == actor.user_id) & RecoveryCode.used_at.is_null())
        return page(request, "identity/mfa_status.html", {"codes_left": left, "codes": None, "error": None})
    secret = pyotp.random_base32()
    await User.update({User.totp_secret: keyring(settings).encrypt(secret, SECRET_CONTEXT)}).where(User.id == actor.user_id)
    uri = pyotp.TOTP(secret).provisioning_uri(name=actor.email, issuer_name=ISSUER_NAME)
    return page(
        request, "identity/mfa_setup.html",
        {"qr": qr_svg_data_uri(uri), "secret": secret, "error": None, "required": actor.mfa_required},
    )


@post("/account/2fa", opt={"authenticated": True, "mfa_setup": True}, include_in_schema=False)
async def setup_confirm(request: Request) -> Template | Redirect:
    from core.identity.tables import User

    actor = request.scope["user"]
    host = request.app.state.host
    if actor.mfa_enabled:
        return Redirect("/account/2fa")
    form = await request.form()
    code = str(form.get("code", ""))[:16]
    if not await verify_totp(host.settings, actor.user_id, code):
        user = await User.select(User.totp_secret).where(User.id == actor.user_id).first()
        secret = _secret(host.settings, user["totp_secret"]) if user and user["totp_secret"] else pyotp.random_base32()
        uri = pyotp.TOTP(secret).provisioning_uri(name=actor.email, issuer_name=ISSUER_NAME)
        return page(
            request, "identity/mfa_setup.html",
            {"qr": qr_svg_data_uri(uri), "secret": secret, "required": actor.mfa_required,
             "error": "That code does not match. Check the time on your phone and enter the current code."},
            status_code=422,
        )
    await User.update({User.totp_enabled_at: now()}).where(User.id == actor.user_id)
    codes = await new_recovery_codes(actor.user_id)
    await host.events.emit(Event("user.mfa_enabled", actor.user_id, "user", str(actor.user_id), address=client_address(request)))
    return page(request, "identity/mfa_status.html", {"codes_left": len(codes), "codes": codes, "error": None})


@post("/account/2fa/recovery-codes", opt={"authenticated": True}, include_in_schema=False)
async def regenerate_codes(request: Request) -> Template:
    actor = request.scope["user"]
    host = request.app.state.host
    form = await request.form()
    if not actor.mfa_enabled or not await verify_totp(host.settings, actor.user_id, str(form.get("code", ""))[:16]):
        return page(
            request, "identity/mfa_status.html",
            {"codes_left": None, "codes": None, "error": "Enter a current code from your authenticator app to make new recovery codes."},
            status_code=422,
        )
    codes = await new_recovery_codes(actor.user_id)
    await host.events.emit(Event("user.recovery_codes_created", actor.user_id, "user", str(actor.user_id), address=client_address(request)))
    return page(request, "identity/mfa_status.html", {"codes_left": len(codes), "codes": codes, "error": None})


@post("/login/2fa/reset-request", opt={"public": True}, include_in_schema=False)
async def request_reset(request: Request) -> Template | Redirect:
    """Lost phone and no recovery code: ask the coordinators of one's ERNs (audited)."""
    from core.identity.sessions import COOKIE_NAME, pending_user_id
    from core.identity.tables import MfaResetRequest

    host = request.app.state.host
    user_id = await pending_user_id(host.settings, request.cookies.get(COOKIE_NAME))
    if user_id is None:
        return Redirect("/login")
    pending = await MfaResetRequest.exists().where((MfaResetRequest.user == user_id) & (MfaResetRequest.status == "pending"))
    if not pending:
        await MfaResetRequest.insert(MfaResetRequest(user=user_id))
        await host.events.emit(Event("mfa_reset.requested", user_id, "user", str(user_id), address=client_address(request)))
    return page(request, "identity/second_factor.html", {"next": "/", "error": None, "reset_requested": True})


class MfaSetupRequired(PermissionDeniedException):
    """The actor's roles need a second factor that is not enrolled yet."""


ROUTES = [setup_page, setup_confirm, regenerate_codes, request_reset]
