"""OpenID Connect login (EU Login) through authlib.

Authorization code flow with PKCE (S256), ``state`` and ``nonce``. The three secrets travel
in a short-lived cookie encrypted and authenticated with the site keyring, so the server keeps
no half-finished logins and a visitor can neither read nor forge them. The ID token is
verified here (signature against the provider's published keys, iss, aud, exp, nonce) rather
than trusted because it came straight from the token endpoint: the check is cheap and it
also catches a misconfigured or mixed-up provider.

An identity is matched to an account by (issuer, subject) first, then by verified e-mail
(linking it once, audited), else a new account without roles is made; every way ends in
``start_login`` so the second factor and the audit trail are the same as for passwords.
Tokens are never logged nor put in events.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery
from litestar.response import Redirect

from core.crypto import DecryptionError, keyring
from core.events import Event
from core.identity.login import client_address, safe_next, start_login
from core.web import page

with warnings.catch_warnings():
    # authlib 1.9 warns at import that its plain-httpx support will move to the httpx2
    # package; httpx is this project's pinned client, so the warning is only start-up noise.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

log = logging.getLogger("cpms.oidc")

COOKIE_NAME = "cpms_oidc"
COOKIE_PATH = "/login/oidc"
CALLBACK_PATH = "/login/oidc/callback"
#: A login must come back from the provider within this many seconds.
PENDING_MAX_AGE = 10 * 60
COOKIE_CONTEXT = "oidc"
SCOPE = "openid email profile"
#: Discovery documents and key sets change rarely; re-read them after this many seconds.
METADATA_TTL = 5 * 60
HTTP_TIMEOUT = 10.0
#: Clock skew tolerated between us and the provider when checking exp/iat.
LEEWAY = 60
#: Asymmetric algorithms only: "none" is never acceptable, and an HMAC "signature" would
#: be keyed with the client secret, which this client never uses for ID tokens.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: The column sizes of identity_user.
MAX_EMAIL, MAX_NAME, MAX_SUBJECT = 254, 200, 300

NEW_USER_NEXT = "/access/request"

AGAIN = "The login could not be completed. Please start again from the login page."
EXPIRED = "This login took too long or was already used. Please start again from the login page."
MISCONFIGURED = "The login service is not set up correctly. Please tell the helpdesk; you can still log in with your password."


class OidcRefused(Exception):
    """A login that must not go ahead: ``reason`` goes to the audit log, ``message`` to the person."""

    def __init__(self, reason: str, message: str = AGAIN, status: int = 400, user_id: int | None = None, **data: str) -> None:
        super().__init__(reason)
        self.reason, self.message, self.status, self.user_id, self.data = reason, message, status, user_id, data


class UnknownSigningKey(OidcRefused):
    """The ID token names a key the cached key set lacks: the provider may have rotated keys."""


@dataclass(frozen=True)
class Identity:
    """Who the provider says logged in, after every check passed."""

    issuer: str
    subject: str
    email: str
    name: str
    #: The provider asserted a second factor this site trusts (``acr``/``amr``; see ``second_factor``).
    second_factor: bool = False


@dataclass
class _Cached:
    value: dict[str, Any]
    fetched_at: float = field(default_factory=time.monotonic)

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self.fetched_at < METADATA_TTL


_metadata_cache: dict[str, _Cached] = {}
_jwks_cache: dict[str, _Cached] = {}


# --- configuration ---------------------------------------------------------------------------


def enabled(settings) -> bool:
    return bool(settings.oidc_issuer)


def redirect_uri(settings) -> str:
    return settings.base_url.rstrip("/") + CALLBACK_PATH


def _transport_ok(url: object) -> bool:
    """HTTPS, or plain HTTP on this machine only (a development or test provider)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)


# --- provider metadata and keys --------------------------------------------------------------


async def _get_json(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        response = await http.get(url, headers={"accept": "application/json"})
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def check_metadata(issuer: str, metadata: dict[str, Any]) -> None:
    """The document must name exactly the configured issuer (OpenID Connect Discovery §4.3),
    otherwise tokens from one provider could be accepted as coming from another."""
    if metadata.get("issuer") != issuer:
        found = str(metadata.get("issuer", ""))[:200]
        raise OidcRefused(
            "issuer_mismatch",
            f"The login service is not set up correctly: it calls itself {found!r}, but {issuer!r} is configured. "
            "Please tell the helpdesk; you can still log in with your password.",
            status=502,
        )
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not _transport_ok(metadata.get(key)):
            raise OidcRefused("bad_metadata", MISCONFIGURED, status=502, endpoint=key)
    if "userinfo_endpoint" in metadata and not _transport_ok(metadata["userinfo_endpoint"]):
        raise OidcRefused("bad_metadata", MISCONFIGURED, status=502, endpoint="userinfo_endpoint")


async def provider_metadata(issuer: str) -> dict[str, Any]:
    """The provider's discovery document, checked, and cached per issuer for a few minutes."""
    cached = _metadata_cache.get(issuer)
    if cached and cached.fresh:
        return cached.value
    if not _transport_ok(issuer):
        raise OidcRefused("insecure_issuer", MISCONFIGURED, status=502)
    try:
        metadata = await _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("OpenID provider discovery failed: %s", type(exc).__name__)
        raise OidcRefused(
            "provider_unreachable",
            "The login service could not be reached. Please try again later, or log in with your password.",
            status=502,
        ) from exc
    check_metadata(issuer, metadata)
    _metadata_cache[issuer] = _Cached(metadata)
    return metadata


async def provider_jwks(metadata: dict[str, Any], refresh: bool = False) -> dict[str, Any]:
    uri = metadata["jwks_uri"]
    cached = _jwks_cache.get(uri)
    if cached and cached.fresh and not refresh:
        return cached.value
    try:
        jwks = await _get_json(uri)
    except (httpx.HTTPError, ValueError) as exc:
        raise OidcRefused("jwks_unavailable") from exc
    _jwks_cache[uri] = _Cached(jwks)
    return jwks


def id_token_algorithms(metadata: dict[str, Any]) -> list[str]:
    """The provider's signing algorithms we accept; RS256 is the one every provider must support."""
    offered = metadata.get("id_token_signing_alg_values_supported") or []
    return [alg for alg in SIGNING_ALGORITHMS if alg in offered] or ["RS256"]


# --- the pending login (cookie) --------------------------------------------------------------


def new_pending(next_url: str | None) -> dict[str, Any]:
    return {
        "state": generate_token(32),
        "nonce": generate_token(32),
        # RFC 7636: 43 to 128 unreserved characters.
        "verifier": generate_token(64),
        "next": safe_next(next_url),
        "created": int(time.time()),
    }


def seal_pending(settings, pending: dict[str, Any]) -> str:
    return keyring(settings).encrypt(json.dumps(pending), context=COOKIE_CONTEXT)


def open_pending(settings, sealed: str | None) -> dict[str, Any]:
    """The pending login from the cookie; refused when missing, forged or too old."""
    if not sealed:
        raise OidcRefused("no_pending_login", EXPIRED)
    try:
        pending = json.loads(keyring(settings).decrypt(sealed, context=COOKIE_CONTEXT))
    except (DecryptionError, ValueError) as exc:
        raise OidcRefused("bad_pending_login") from exc
    if not isinstance(pending, dict) or not all(isinstance(pending.get(k), str) for k in ("state", "nonce", "verifier", "next")):
        raise OidcRefused("bad_pending_login")
    created = pending.get("created")
    if not isinstance(created, int) or not 0 <= time.time() - created <= PENDING_MAX_AGE:
        raise OidcRefused("pending_login_expired", EXPIRED)
    return pending


def authorization_code(issuer: str, params, pending: dict[str, Any]) -> str:
    """The code from the provider's redirect, once it is known to answer our own request."""
    if not secrets.compare_digest(str(params.get("state", "")).encode(), pending["state"].encode()):
        raise OidcRefused("state_mismatch")
    # RFC 9207: a provider that names itself must be ours (defends against mix-up attacks).
    if "iss" in params and params.get("iss") != issuer:
        raise OidcRefused("issuer_mismatch")
    if params.get("error"):
        raise OidcRefused(
            "provider_error", "The login service did not log you in. Please start again from the login page.",
            provider_error=str(params.get("error"))[:50],
        )
    code = params.get("code")
    if not code:
        raise OidcRefused("no_code")
    return str(code)


# --- talking to the provider -----------------------------------------------------------------


def oauth_client(settings, metadata: dict[str, Any], token: dict[str, Any] | None = None) -> AsyncOAuth2Client:
    supported = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return AsyncOAuth2Client(
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        # Basic is the default of the specification; some providers accept only post.
        token_endpoint_auth_method="client_secret_basic" if "client_secret_basic" in supported else "client_secret_post",
        scope=SCOPE,
        redirect_uri=redirect_uri(settings),
        code_challenge_method="S256",
        token=token,
        timeout=HTTP_TIMEOUT,
    )


async def authorization_url(settings, metadata: dict[str, Any], pending: dict[str, Any]) -> str:
    async with oauth_client(settings, metadata) as client:
        url, _ = client.create_authorization_url(
            metadata["authorization_endpoint"], state=pending["state"], code_verifier=pending["verifier"],
            nonce=pending["nonce"],
        )
    return url


async def exchange_code(client: AsyncOAuth2Client, metadata: dict[str, Any], code: str, verifier: str) -> dict[str, Any]:
    try:
        return dict(
            await client.fetch_token(
                metadata["token_endpoint"], grant_type="authorization_code", code=code, code_verifier=verifier,
            )
        )
    except (AuthlibBaseError, httpx.HTTPError, ValueError) as exc:
        # The provider's error code is safe to keep; its body could echo the code.
        log.warning("OpenID token exchange failed: %s %s", type(exc).__name__, getattr(exc, "error", ""))
        raise OidcRefused("token_exchange_failed", provider_error=str(getattr(exc, "error", "") or "")[:50]) from exc


async def fetch_userinfo(client: AsyncOAuth2Client, metadata: dict[str, Any], subject: str) -> dict[str, Any]:
    """The userinfo claims, for providers that keep e-mail and name out of the ID token."""
    endpoint = metadata.get("userinfo_endpoint")
    if not endpoint:
        raise OidcRefused("no_email")
    try:
        response = await client.get(endpoint)
        response.raise_for_status()
        claims = response.json()
    except (AuthlibBaseError, httpx.HTTPError, ValueError) as exc:
        raise OidcRefused("userinfo_failed") from exc
    # OpenID Connect Core §5.3.2: claims about anyone but the ID token's subject are ignored.
    if not isinstance(claims, dict) or claims.get("sub") != subject:
        raise OidcRefused("userinfo_subject_mismatch")
    return claims


def verify_id_token(
    id_token: str, jwks: dict[str, Any], *, issuer: str, client_id: str, nonce: str,
    access_token: str | None = None, algorithms=SIGNING_ALGORITHMS, now: int | None = None,
) -> dict[str, Any]:
    """The ID token's claims, once its signature, iss, aud, exp, iat, nonce (and at_hash) hold."""
    try:
        decoded = jwt.decode(
            id_token, KeySet.import_key_set(jwks),
            # Providers may add header fields of their own; the algorithm list is what matters.
            registry=JWSRegistry(algorithms=list(algorithms), strict_check_header=False),
        )
    except InvalidKeyIdError as exc:
        raise UnknownSigningKey("id_token_unknown_key") from exc
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise OidcRefused("id_token_signature_invalid") from exc
    claims = CodeIDToken(
        decoded.claims, decoded.header,
        options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
            "sub": {"essential": True},
            "nonce": {"essential": True, "value": nonce},
        },
        params={"nonce": nonce, "client_id": client_id, "access_token": access_token},
    )
    try:
        claims.validate(now=now, leeway=LEEWAY)
    except JoseError as exc:
        raise OidcRefused("id_token_claims_invalid", claim=str(getattr(exc, "claim", "") or exc.error)[:30]) from exc
    return dict(claims)


async def verified_id_token(settings, metadata: dict[str, Any], token: dict[str, Any], nonce: str) -> dict[str, Any]:
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise OidcRefused("no_id_token")
    params = dict(
        issuer=settings.oidc_issuer, client_id=settings.oidc_client_id, nonce=nonce,
        access_token=token.get("access_token"), algorithms=id_token_algorithms(metadata),
    )
    try:
        return verify_id_token(id_token, await provider_jwks(metadata), **params)
    except UnknownSigningKey:
        return verify_id_token(id_token, await provider_jwks(metadata, refresh=True), **params)


def _display_name(claims: dict[str, Any], email: str) -> str:
    name = claims.get("name")
    if not (isinstance(name, str) and name.strip()):
        parts = [claims.get(k) for k in ("given_name", "family_name")]
        name = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return (name.strip() or email.split("@", 1)[0])[:MAX_NAME]


def identity_from_claims(issuer: str, claims: dict[str, Any], userinfo: dict[str, Any] | None = None) -> Identity:
    """E-mail and name from the ID token, else from userinfo; the e-mail must be verified."""
    source = claims if claims.get("email") else (userinfo or {})
    email = source.get("email")
    if not (isinstance(email, str) and "@" in email and len(email.strip()) <= MAX_EMAIL):
        raise OidcRefused("no_email", "The login service did not tell us your e-mail address.")
    # A link by e-mail is only as good as the provider's word that the address is the person's.
    if source.get("email_verified") is not True:
        raise OidcRefused(
            "email_not_verified",
            "The login service has not confirmed your e-mail address, so it cannot be used to log in here. "
            "Confirm the address with the login service first.",
        )
    subject = claims["sub"]
    if len(subject) > MAX_SUBJECT:
        raise OidcRefused("subject_too_long")
    email = email.strip().lower()
    return Identity(issuer, subject, email, _display_name({**(userinfo or {}), **claims}, email))


def second_factor(settings, claims: dict[str, Any]) -> bool:
    """Whether the verified ID token says the login passed a second factor this site trusts:
    its ``acr`` is one of ``CPMS_OIDC_TRUSTED_ACR``, or its ``amr`` holds one of
    ``CPMS_OIDC_TRUSTED_AMR``. Only claims of a token whose signature, issuer, audience and nonce
    were checked get here."""
    acr = claims.get("acr")
    amr = claims.get("amr")
    if isinstance(acr, str) and acr in settings.oidc_trusted_acr:
        return True
    return isinstance(amr, list) and any(isinstance(m, str) and m in settings.oidc_trusted_amr for m in amr)


async def authenticate(settings, pending: dict[str, Any], code: str) -> Identity:
    """Code → tokens → verified identity."""
    metadata = await provider_metadata(settings.oidc_issuer)
    async with oauth_client(settings, metadata) as client:
        token = await exchange_code(client, metadata, code, pending["verifier"])
        claims = await verified_id_token(settings, metadata, token, pending["nonce"])
        userinfo = None if claims.get("email") else await fetch_userinfo(client, metadata, claims["sub"])
    identity = identity_from_claims(settings.oidc_issuer, claims, userinfo)
    return replace(identity, second_factor=second_factor(settings, claims))


# --- accounts --------------------------------------------------------------------------------


async def _find_user(where):
    from core.identity.tables import User

    return await User.select(
        User.id, User.is_active, User.email_verified, User.oidc_issuer, User.oidc_subject
    ).where(where).first()


def _check_active(user: dict[str, Any]) -> None:
    if not user["is_active"]:
        raise OidcRefused(
            "account_inactive", "This account has been deactivated. Please contact the helpdesk.",
            status=403, user_id=user["id"],
        )


async def _link(request: Request, user: dict[str, Any], identity: Identity) -> None:
    from core.identity.tables import User

    if user["oidc_issuer"] == identity.issuer and user["oidc_subject"] and user["oidc_subject"] != identity.subject:
        # Someone else's identity at the same provider now has this address: relinking
        # silently would hand the account over.
        raise OidcRefused(
            "subject_mismatch",
            "This account is already linked to another identity at the login service. Please contact the helpdesk.",
            status=403, user_id=user["id"],
        )
    if not user["email_verified"]:
        # Someone could have registered this address in advance; linking would let them in later.
        raise OidcRefused(
            "local_email_unverified",
            "An account with this e-mail address exists, but its address is not confirmed yet. "
            "Confirm it with the link we e-mailed you, then log in again.",
            status=403, user_id=user["id"],
        )
    await User.update({User.oidc_issuer: identity.issuer, User.oidc_subject: identity.subject}).where(User.id == user["id"])
    await request.app.state.host.events.emit(
        Event("user.oidc_linked", user["id"], "user", str(user["id"]), {"issuer": identity.issuer}, client_address(request))
    )


async def _create(request: Request, identity: Identity) -> int:
    from core.identity.tables import User

    user = User(
        email=identity.email, name=identity.name, password_hash="", email_verified=True,
        oidc_issuer=identity.issuer, oidc_subject=identity.subject,
    )
    await user.save()
    await request.app.state.host.events.emit(
        Event("user.created", user.id, "user", str(user.id), {"method": "oidc"}, client_address(request))
    )
    return user.id


async def resolve_account(request: Request, identity: Identity) -> tuple[int, bool]:
    """The account for ``identity`` (linking or creating it); returns (user id, newly created)."""
    from core.identity.tables import User

    user = await _find_user((User.oidc_issuer == identity.issuer) & (User.oidc_subject == identity.subject))
    if user:
        _check_active(user)
        return user["id"], False
    user = await _find_user(User.email == identity.email)
    if user:
        _check_active(user)
        await _link(request, user, identity)
        return user["id"], False
    try:
        return await _create(request, identity), True
    except Exception:
        # Two first logins of one person at once: the other one created the account (the
        # e-mail is unique), so use it; anything else is a real error.
        user = await _find_user((User.oidc_issuer == identity.issuer) & (User.oidc_subject == identity.subject))
        if user is None:
            raise
        return user["id"], False


# --- pages -----------------------------------------------------------------------------------


async def refuse(request: Request, refused: OidcRefused) -> Response:
    settings = request.app.state.settings
    uid = refused.user_id
    log.info("OpenID Connect login refused: %s", refused.reason)
    await request.app.state.host.events.emit(
        Event(
            "user.oidc_failed", uid, "user", str(uid) if uid else "",
            {"reason": refused.reason, **refused.data}, client_address(request),
        )
    )
    return page(
        request, "identity/oidc_error.html", {"label": settings.oidc_label, "message": refused.message},
        status_code=refused.status,
    )


@get("/login/oidc", opt={"public": True}, include_in_schema=False)
async def oidc_start(request: Request, next: FromQuery[str | None] = None) -> Response:
    """Send the browser to the provider, remembering state, nonce and verifier in a sealed cookie."""
    settings = request.app.state.settings
    if not enabled(settings):
        raise NotFoundException()
    if request.scope.get("user") is not None:
        return Redirect(safe_next(next))
    try:
        metadata = await provider_metadata(settings.oidc_issuer)
    except OidcRefused as refused:
        return await refuse(request, refused)
    pending = new_pending(next)
    response = Redirect(await authorization_url(settings, metadata, pending))
    response.set_cookie(
        COOKIE_NAME, seal_pending(settings, pending), max_age=PENDING_MAX_AGE, path=COOKIE_PATH,
        secure=request.app.state.host.secure_cookies, httponly=True, samesite="lax",
    )
    return response


@get(CALLBACK_PATH, opt={"public": True}, include_in_schema=False)
async def oidc_callback(request: Request) -> Response:
    """The provider sends the browser back here with a code (or an error)."""
    settings = request.app.state.settings
    if not enabled(settings):
        raise NotFoundException()
    try:
        pending = open_pending(settings, request.cookies.get(COOKIE_NAME))
        code = authorization_code(settings.oidc_issuer, request.query_params, pending)
        identity = await authenticate(settings, pending, code)
        user_id, created = await resolve_account(request, identity)
    except OidcRefused as refused:
        response = await refuse(request, refused)
    else:
        # A new account has no roles yet: asking for them is the only useful next step.
        from core.identity.sessions import OIDC_MFA

        method = OIDC_MFA if identity.second_factor else "oidc"
        response = await start_login(request, user_id, method, NEW_USER_NEXT if created else pending["next"])
    # Single use: whatever happened, this pending login is spent.
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH)
    return response


ROUTES = [oidc_start, oidc_callback]
