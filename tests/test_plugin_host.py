"""The plugin contract: loading, enabling/disabling, declarations, and the route guard."""

import sys
import textwrap
import types

import pytest
from litestar import get

from core.app import create_app
from core.hookspecs import hookimpl
from core.permissions import Permission, StartupError
from core.plugins import PluginHost
from tests.conftest import app_client, login, make_settings, make_user


def _module(name: str, **attrs) -> str:
    mod = types.ModuleType(name)
    mod.__file__ = __file__
    for key, value in attrs.items():
        setattr(mod, key, value)
    sys.modules[name] = mod
    return name


def test_core_and_example_plugins_load_in_order():
    host = PluginHost(make_settings())
    names = [p.name for p in host.plugins]
    assert names[:9] == ["orgs", "identity", "activity", "audit", "mail", "patients", "notify", "panels", "pages"]
    assert "example_plugin" in names
    assert "example.hello" in host.permissions
    assert host.permissions.get("example.hello").plugin == "example_plugin"


def test_duplicate_permission_refuses_startup():
    @hookimpl
    def register_permissions():
        return [Permission("orgs.view", "again")]

    name = _module("dup_perm_plugin", register_permissions=register_permissions)
    with pytest.raises(StartupError, match="orgs.view"):
        PluginHost(make_settings(plugin_modules=(name,)))


def test_misspelt_hook_refuses_startup():
    @hookimpl
    def register_rootes():
        return []

    name = _module("typo_plugin", register_rootes=register_rootes)
    with pytest.raises(Exception, match="register_rootes"):
        PluginHost(make_settings(plugin_modules=(name,)))


def test_unknown_plugin_name_refuses_startup():
    with pytest.raises(StartupError, match="nosuch"):
        PluginHost(make_settings(plugins=("nosuch",)))


def test_unimportable_plugin_module_refuses_startup_clearly():
    with pytest.raises(StartupError, match="cannot be imported"):
        PluginHost(make_settings(plugin_modules=("no.such.module",)))


def test_entry_point_plugins_are_discovered(tmp_path, monkeypatch):
    """A package installed with a ``cpms.plugins`` entry point is loaded like the in-tree ones."""
    pkg = tmp_path / "cpms_ep_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from core.hookspecs import hookimpl
        from core.permissions import Permission

        @hookimpl
        def register_permissions():
            return [Permission("epdemo.use", "Use the entry-point demo", ("hp",))]
    '''))
    dist = tmp_path / "cpms_ep_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cpms-ep-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cpms.plugins]\nepdemo = cpms_ep_demo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = PluginHost(make_settings())
    loaded = {p.name: p for p in host.plugins}
    assert "epdemo" in loaded and "entry point" in loaded["epdemo"].source
    assert "epdemo.use" in host.permissions
    host = PluginHost(make_settings(disabled_plugins=("epdemo",)))
    assert "epdemo" not in {p.name for p in host.plugins}


async def test_disabling_a_plugin_removes_routes_menu_and_sections(clean_db):
    await make_user("hp@example.org")
    # The installed plugins (pedigree, viewers …) stay out, so the lists below are the core's and the example's.
    from importlib.metadata import entry_points

    installed = tuple(ep.name for ep in entry_points(group="cpms.plugins"))
    enabled = create_app(make_settings(disabled_plugins=installed))
    disabled = create_app(make_settings(disabled_plugins=("example_plugin", *installed)))
    for app, present in ((enabled, True), (disabled, False)):
        async with app_client(app) as client:
            await login(client, "hp@example.org")
            dash = await client.get("/")
            assert ('href="/example/hello"' in dash.text) is present
            r = await client.get("/example/hello")
            assert (r.status_code == 200) is present
            if not present:
                assert r.status_code == 404
            static = await client.get("/static/example_plugin/example.css")
            assert (static.status_code == 200) is present
    host = disabled.state.host
    sections = [s for _, secs in host.results_by_plugin("patient_sections", patient="p1", actor=None) for s in secs]
    assert [s.key for s in sections] == ["panels"]  # the core's own section only
    sections = [s for _, secs in enabled.state.host.results_by_plugin("patient_sections", patient="p1", actor=None) for s in secs]
    assert [s.key for s in sections] == ["panels", "example"]


def _all_handlers(app):
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            # Litestar adds an OPTIONS responder per path by itself; it runs no handler code.
            if set(getattr(handler, "http_methods", ())) == {"OPTIONS"}:
                continue
            yield route.path, handler


def test_every_route_is_guarded_or_explicitly_public(settings):
    app = create_app(settings)
    offenders = []
    seen = 0
    for path, handler in _all_handlers(app):
        seen += 1
        opt = handler.opt
        if opt.get("public"):
            continue
        if opt.get("authenticated"):
            continue
        perm = opt.get("permission")
        if not perm or perm not in app.state.host.permissions:
            offenders.append(path)
    assert seen > 10
    assert offenders == [], f"routes without a declared permission or public flag: {offenders}"


async def test_unmarked_route_is_denied_by_default(clean_db):
    @get("/forgot-to-guard", sync_to_thread=False)
    def forgot() -> str:
        return "secret"

    @hookimpl
    def register_routes():
        return [forgot]

    name = _module("unguarded_plugin", register_routes=register_routes)
    app = create_app(make_settings(plugin_modules=("tests.example_plugin", name)))
    await make_user("admin@example.org", roles=[("admin", None)], hcp=None)
    async with app_client(app) as client:
        await login(client, "admin@example.org")
        r = await client.get("/forgot-to-guard")
        assert r.status_code == 403 and "secret" not in r.text


def test_public_routes_are_the_expected_few(settings):
    app = create_app(settings)
    public = sorted({path for path, h in _all_handlers(app) if h.opt.get("public")})
    # Everything reachable without logging in, reviewed: login steps, sign-up, account recovery.
    allowed = {
        "/login", "/login/2fa", "/login/2fa/reset-request", "/login/2fa/passkey/options", "/login/2fa/passkey",
        "/logout", "/signup", "/healthz",
        "/login/oidc", "/login/oidc/callback", "/account/password/forgot",
    }
    unexpected = [
        p for p in public
        # /pathology/embed/: a slide's share link, opened only with its signed token (plugins/pathology_viewer/embed.py)
        if p not in allowed and not p.startswith(("/static/", "/api/schema", "/account/verify/", "/account/password/reset/",
                                                  "/pathology/embed/{token:str}"))
    ]
    assert unexpected == [], unexpected
