"""Error responses: a clear page for people, RFC 9457 problem JSON for programs.

Nothing internal (tracebacks, SQL, file paths, identifiers of other records) ever leaves
the server; a 500 carries an incident id that matches the server log line instead.
"""

from __future__ import annotations

import logging
import secrets
from html import escape
from urllib.parse import quote

from litestar import MediaType, Request, Response
from litestar.background_tasks import BackgroundTask
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.response import Redirect, Template

log = logging.getLogger("cpms.errors")

TITLES = {
    400: "The request could not be understood",
    401: "Please log in",
    403: "You may not do this",
    404: "Not found",
    405: "Not allowed here",
    409: "This conflicts with the current state",
    413: "Too large",
    415: "Unsupported file type",
    422: "Please check what you entered",
    429: "Too many attempts",
    500: "Something went wrong on our side",
    503: "Temporarily unavailable",
}


def wants_json(request: Request) -> bool:
    from core.openapi import is_api_route

    if is_api_route(request.scope):  # a route of the JSON API answers its errors as problems, always
        return True
    path = request.url.path
    if path.startswith("/api/") or path == "/healthz":
        return True
    accept = request.headers.get("accept", "")
    return "json" in accept and "html" not in accept


def _messages(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        out = []
        for item in exc.extra:
            if isinstance(item, dict) and item.get("message"):
                key = item.get("key")
                out.append(f"{key}: {item['message']}" if key else str(item["message"]))
        return out
    return []


def problem_response(status: int, detail: str, messages: list[str] | None = None, headers=None) -> Response:
    """An RFC 9457 problem (JSON): for JSON endpoints, and for error pages asked for as JSON."""
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    if messages:
        body["errors"] = messages
    return Response(body, status_code=status, media_type="application/problem+json", headers=headers)


def error_response(request: Request, status: int, detail: str, messages: list[str] | None = None, headers=None) -> Response:
    title = TITLES.get(status, "Error")
    if wants_json(request):
        return problem_response(status, detail, messages, headers)
    context = {"status": status, "title": title, "detail": detail, "messages": messages or []}
    try:
        from core.web import base_context

        ctx = base_context(request)
        ctx.update(context)
        return Template("errors/error.html", context=ctx, status_code=status, headers=headers)
    except Exception:  # the error page itself must never fail
        log.exception("error page could not be rendered")
        return Response(f"<h1>{escape(title)}</h1><p>{escape(detail)}</p>", status_code=status, media_type=MediaType.HTML)


def sends_to_login(request: Request) -> bool:
    """A person not logged in is sent to the login page: on every page, and on a JSON route that a
    browser opened (a GET asking for HTML first: a download link, an info.json followed by hand).
    A program gets the 401 problem (core/openapi.py documents both)."""
    if not wants_json(request):
        return True
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def http_exception_handler(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if isinstance(exc, NotAuthorizedException) and sends_to_login(request):
        target = "/login?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
        if request.headers.get("hx-request") == "true":
            return Response("", status_code=200, headers={"HX-Redirect": target})
        return Redirect(target)
    if type(exc).__name__ == "MfaSetupRequired" and not wants_json(request):
        if request.headers.get("hx-request") == "true":
            return Response("", status_code=200, headers={"HX-Redirect": "/account/2fa"})
        return Redirect("/account/2fa")
    detail = exc.detail if isinstance(exc.detail, str) and status < 500 else TITLES.get(status, "Error")
    if status == 400 and isinstance(exc, ValidationException):
        detail = "Some values are missing or not valid."
    if status == 404 and detail in ("Not Found", ""):
        detail = "There is nothing at this address, or you may not see it."
    response = error_response(request, status, detail, _messages(exc), headers=getattr(exc, "headers", None))
    if status == 403 and exc.detail == CSRF_FAILED:
        response.background = BackgroundTask(_audit_refusal, request, "CSRF token missing or wrong")
    return response


CSRF_FAILED = "CSRF token verification failed"  # Litestar's CSRF middleware says so


async def _audit_refusal(request: Request, reason: str) -> None:
    """Forged requests are audited (after the response: a refusal must not wait on the log)."""
    from core.events import Event

    actor = request.scope.get("user")
    address = request.client.host if request.client else ""
    try:
        await request.app.state.host.events.emit(
            Event("security.refused", actor.user_id if actor else None, "request", request.url.path[:100], {"reason": reason, "method": request.method}, address)
        )
    except Exception:
        log.exception("could not audit a refused request")


def internal_error_handler(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return http_exception_handler(request, exc)
    incident = secrets.token_hex(6)
    log.error("incident %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, f"The error was logged as incident {incident}. Nothing was changed.")


EXCEPTION_HANDLERS = {HTTPException: http_exception_handler, Exception: internal_error_handler}
