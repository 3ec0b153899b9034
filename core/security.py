"""Security headers on every response, and the permission guard for every route."""

from __future__ import annotations

import logging
import re

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from core.openapi import MAX_ID
from core.permissions import allowed

log = logging.getLogger("cpms.security")

CSP_BASE = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors "
)
CSP = CSP_BASE + "'none'"
# A source list for frame-ancestors: "*", schemes, hosts or keywords; never a ";" that would add a directive.
_FRAME_SOURCES = re.compile(r"^(\*|'self'|'none'|[a-z][a-z0-9+.-]*:(//[A-Za-z0-9.*:-]+)?|[A-Za-z0-9.*-]+(:[0-9*]+)?)"
                            r"( (\*|'self'|[a-z][a-z0-9+.-]*:(//[A-Za-z0-9.*:-]+)?|[A-Za-z0-9.*-]+(:[0-9*]+)?))*$")


def frame_ancestors_of(scope) -> str | None:
    """The frame-ancestors sources a route asks for in its ``opt`` (``{"frame_ancestors": "*"}``),
    or None: every other page may not be framed at all (clickjacking). Only a route meant to be
    embedded elsewhere (the pathology viewer's share-link page) relaxes it."""
    handler = scope.get("route_handler")
    value = getattr(handler, "opt", {}).get("frame_ancestors") if handler is not None else None
    if not isinstance(value, str) or not _FRAME_SOURCES.match(value):
        if value is not None:
            log.error("route %s asks for invalid frame_ancestors %r; kept 'none'", scope.get("path"), value)
        return None
    return value


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
                    framing = frame_ancestors_of(scope)
                    add = [
                        (b"content-security-policy", (CSP if framing is None else CSP_BASE + framing).encode()),
                        (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"same-origin"),
                        # X-Frame-Options has no "these sites" value: a framable route sends none and
                        # relies on CSP frame-ancestors alone (which browsers prefer anyway).
                        *([(b"x-frame-options", b"DENY")] if framing is None else []),
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


def _is_automatic_options(handler: BaseRouteHandler) -> bool:
    methods = getattr(handler, "http_methods", ())
    qualname = getattr(getattr(handler, "fn", None), "__qualname__", "")
    return set(methods) == {"OPTIONS"} and qualname.startswith("HTTPRoute.create_options_handler")


async def permission_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Every route says what it needs in ``opt``: ``public``, ``authenticated`` or ``permission``."""
    # async although it awaits nothing: Litestar runs a plain-function guard in a worker thread,
    # a thread hop on every request (measured: about a third of a cached tile's time).
    opt = handler.opt
    for value in connection.path_params.values():
        # A path id beyond a row id's 32 bits names no row, and PostgreSQL refuses to compare it (a 500 once).
        if isinstance(value, int) and not -MAX_ID - 1 <= value <= MAX_ID:
            raise NotFoundException("There is nothing at this address, or you may not see it.")
    if opt.get("public"):
        return
    if _is_automatic_options(handler):
        # Litestar answers OPTIONS on every path itself (204 and an Allow header: no data, and
        # the methods are no secret). Deliberately open, so it neither fails nor logs an error.
        return
    actor = connection.scope.get("user")
    if "permission" not in opt and not opt.get("authenticated"):
        # Deny by default: a route that forgot to name a permission is never open.
        log.error("route %s names no permission; refused", connection.url.path)
        raise PermissionDeniedException("This address is not available.")
    if actor is None:
        raise NotAuthorizedException("Please log in.")
    if actor.mfa_required and not (actor.mfa_enabled or actor.mfa_by_provider) and not opt.get("mfa_setup"):
        from core.identity.mfa import MfaSetupRequired

        raise MfaSetupRequired("Set up two-step login first: your roles give access to patient data.")
    permission = opt.get("permission")
    if permission and not allowed(actor, permission):
        raise PermissionDeniedException("Your roles do not allow this.")
