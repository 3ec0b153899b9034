"""The application factory: ``create_app(settings)`` builds one Litestar app from the plugins."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader
from litestar import Litestar, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins import InitPluginProtocol
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

import core
from core import db, openapi
from core.errors import EXCEPTION_HANDLERS
from core.identity import passwords
from core.identity.sessions import auth_middleware_factory
from core.live import channels_plugin
from core.plugins import PluginHost
from core.security import permission_guard, security_headers_factory
from core.settings import PROJECT_ROOT, Settings

log = logging.getLogger("cpms")

CORE_STATIC = Path(__file__).parent / "static"


class PluginHostInit(InitPluginProtocol):
    """Plugs the pluggy host into Litestar: routes, templates and static folders from plugins."""

    def __init__(self, host: PluginHost) -> None:
        self.host = host

    def on_app_init(self, app_config):
        host = self.host
        handlers = [handler for _, handler in host.routes()]
        for handler in handlers:
            openapi.document(handler)  # what the core answers on every route, in the API's document
        app_config.route_handlers.extend(allow_handlers(handlers))
        app_config.route_handlers.extend(handlers)
        cache = CacheControlHeader(max_age=3600, public=True)
        app_config.route_handlers.append(
            create_static_files_router("/static/core", [CORE_STATIC], name="static-core", opt={"public": True}, cache_control=cache)
        )
        for plugin in host.plugins:
            if plugin.static_dir is not None:
                app_config.route_handlers.append(
                    create_static_files_router(
                        f"/static/{plugin.name}", [plugin.static_dir], name=f"static-{plugin.name}",
                        opt={"public": True}, cache_control=cache,
                    )
                )
        # Site templates first, so a deployment can override any plugin template.
        dirs = [PROJECT_ROOT / "templates"] + [p.templates_dir for p in host.plugins if p.templates_dir]
        env = Environment(loader=FileSystemLoader([str(d) for d in dirs]), autoescape=True)
        from core.patients.coded import load as load_codings

        env.filters["codings"] = load_codings
        app_config.template_config = TemplateConfig(engine=JinjaTemplateEngine.from_environment(env))
        app_config.on_startup.append(self.on_startup)
        app_config.on_shutdown.append(self.on_shutdown)
        return app_config

    async def on_shutdown(self, app: Litestar) -> None:
        sweeper = getattr(app.state, "sweeper", None)
        if sweeper is not None:
            await sweeper.stop()
        await db.close_pool()

    async def on_startup(self, app: Litestar) -> None:
        from core.identity import sync_role_permissions
        from core.sweeper import BackgroundSweeper

        try:
            await db.open_pool()
            await sync_role_permissions(self.host)
        except Exception:  # serve anyway: /healthz then reports the database as unreachable
            log.exception("database unreachable at start-up; default grants not synchronised")
        # Working files of a killed process (original uploads among them) go before serving.
        app.state.sweeper = BackgroundSweeper(self.host, self.host.settings)
        await app.state.sweeper.start()


def allow_handlers(handlers) -> list:
    """An OPTIONS handler for each path that several handlers share, registered before them.

    Litestar gives every path an automatic OPTIONS answer whose Allow header lists the path's methods,
    but when handlers of one path are registered one by one (as plugins' are), the answer made for the
    first handler stays, listing that handler's methods only (``Allow: GET, OPTIONS`` on a path that
    also takes POST). Registered first, this one is the path's OPTIONS handler and lists them all."""
    from litestar import Response, route
    from litestar.handlers import HTTPRouteHandler

    methods: dict[str, set[str]] = {}
    for handler in handlers:
        if isinstance(handler, HTTPRouteHandler):
            for path in handler.paths:
                methods.setdefault(path, set()).update(handler.http_methods)
    out = []
    for path, verbs in sorted(methods.items()):
        if len(verbs) < 2 or "OPTIONS" in verbs:
            continue
        out.append(route(path, http_method="OPTIONS", include_in_schema=False, opt={"public": True},
                         name=f"options:{path}", signature_namespace={"Response": Response})(
            _options_answer(", ".join(sorted(verbs | {"OPTIONS"})))))
    return out


def _options_answer(allow: str):
    from litestar import Response

    async def options() -> Response:
        return Response(content=None, status_code=204, headers={"Allow": allow})

    return options


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    passwords.configure(settings)
    host = PluginHost(settings)
    db.configure(settings, host)
    channels = channels_plugin(settings)
    app = Litestar(
        route_handlers=[],
        plugins=[PluginHostInit(host), HTMXPlugin(), channels],
        guards=[permission_guard],
        middleware=[security_headers_factory(settings.production), auth_middleware_factory(settings)],
        csrf_config=CSRFConfig(
            secret=settings.secret_key, cookie_secure=host.secure_cookies, cookie_httponly=False,
            cookie_samesite="lax", header_name="x-csrftoken",
        ),
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            # The JSON API only: which routes are in it and why, core/openapi.py.
            title="CPMS API", version=core.__version__, path="/api/schema", components=openapi.components(),
            description="The JSON API of CPMS. Log in at /login (and /login/2fa) for the session cookie; changes "
                        "carry the `csrftoken` cookie's value in the `x-csrftoken` header. Errors are RFC 9457 "
                        "problems (application/problem+json), except the FHIR operations' OperationOutcome.",
            render_plugins=[JsonRenderPlugin()],
            openapi_router=Router("/api/schema", route_handlers=[], include_in_schema=False, opt={"public": True}),
        ),
        request_max_body_size=settings.max_body_size,
        debug=False,
    )
    app.state.host = host
    app.state.settings = settings
    app.state.channels = channels  # live updates (core/live.py)
    return app


SECRET_PATH = re.compile(r"(/account/(?:verify|password/reset)/)[^/?\s]+")
QUERY = re.compile(r"\?\S*")


class MaskSecretPaths(logging.Filter):
    """Keep secrets and patient data out of access logs: one-time links carry their token in
    the path, and query strings can carry what was typed in a search (a patient's name)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                QUERY.sub("?…", SECRET_PATH.sub(r"\1…", a)) if isinstance(a, str) and a.startswith("/") else a
                for a in record.args
            )
        return True


def create_app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory`` (used by ``cpms serve``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("uvicorn.access").addFilter(MaskSecretPaths())
    return create_app(Settings.from_env())
