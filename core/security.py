"""Security headers on every response, and the permission guard for every route."""

from __future__ import annotations

import logging

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from core.permissions import allowed

log = logging.getLogger("cpms.security")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def security_headers_factory(production: bool):
    extra = [(b"strict-transport-security", b"max-age=63072000; includeSubDomains")] if production else []

    def factory(app):
        async def middleware(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            static = scope["path"].startswith("/static/")

            async def send_with_headers(message):
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    names = {k.lower() for k, _ in headers}
                    add = [
                        (b"content-security-policy", CSP.encode()),
                        (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"same-origin"),
                        (b"x-frame-options", b"DENY"),
                        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                        *extra,
                    ]
                    # Pages may show patient data: never keep them in shared or browser caches.
                    if not static and b"cache-control" not in names:
                        add.append((b"cache-control", b"no-store"))
                    headers.extend((k, v) for k, v in add if k not in names)
                    message = {**message, "headers": headers}
                await send(message)

            await app(scope, receive, send_with_headers)

        return middleware

    return factory


def permission_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Every route says what it needs in ``opt``: ``public``, ``authenticated`` or ``permission``."""
    opt = handler.opt
    if opt.get("public"):
        return
    actor = connection.scope.get("user")
    if "permission" not in opt and not opt.get("authenticated"):
        # Deny by default: a route that forgot to name a permission is never open.
        log.error("route %s names no permission; refused", connection.url.path)
        raise PermissionDeniedException("This address is not available.")
    if actor is None:
        raise NotAuthorizedException("Please log in.")
    if actor.mfa_required and not actor.mfa_enabled and not opt.get("mfa_setup"):
        from core.identity.mfa import MfaSetupRequired

        raise MfaSetupRequired("Set up two-step login first: your roles give access to patient data.")
    permission = opt.get("permission")
    if permission and not allowed(actor, permission):
        raise PermissionDeniedException("Your roles do not allow this.")
