"""The ``cpms`` command: serve, migrate, demo, createuser, plugins, and plugins' own commands."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys

import click

from core.permissions import StartupError
from core.settings import Settings, SettingsError


def _host():
    from core import db
    from core.plugins import PluginHost

    from core.identity import passwords

    settings = Settings.from_env()
    passwords.configure(settings)
    host = PluginHost(settings)
    db.configure(settings, host)
    return host


def run_with_settings(work):
    """For plugin commands: run ``await work(settings)`` against the configured database,
    then close its connections (a pool must not outlive the event loop it was made in)."""
    return run_with_host(lambda host: work(host.settings))


def run_with_host(work):
    """As ``run_with_settings``, for commands that also ask other plugins: ``await work(host)``."""
    from core import db

    host = _host()

    async def main():
        try:
            return await work(host)
        finally:
            await db.close_pool()

    return asyncio.run(main())


async def migrate_all(host) -> None:
    from core import db
    from core.identity import sync_role_permissions
    from core.orgs.seed import seed_erns

    await db.migrate()
    await seed_erns()
    await sync_role_permissions(host)


def build_cli(host=None) -> click.Group:
    @click.group(help="CPMS: Clinical Patient Management System for the European Reference Networks.")
    def cli():
        pass

    @cli.command(help="Serve the web application.")
    @click.option("--host", "bind", default=None, help="Address to bind (default CPMS_HOST or 127.0.0.1).")
    @click.option("--port", default=None, type=int, help="Port (default CPMS_PORT or 8000).")
    @click.option("--workers", default=1, show_default=True, type=int)
    def serve(bind, port, workers):
        import uvicorn

        settings = Settings.from_env()
        uvicorn.run(
            "core.app:create_app_from_env", factory=True, host=bind or settings.host, port=port or settings.port,
            workers=workers, proxy_headers=True, log_level="info",
            # Live pages hold server-sent-event streams open; do not let them delay a restart.
            timeout_graceful_shutdown=5,
        )

    @cli.command(help="Apply pending database migrations of every enabled plugin and seed reference data.")
    def migrate():
        h = host or _host()
        asyncio.run(migrate_all(h))
        click.echo("Database is up to date.")

    @cli.command(help="Migrate, then replace ALL data with realistic demo data (never in production).")
    def demo():
        from core.demo import load_demo
        from core.identity import DEMO_PASSWORD

        h = host or _host()

        async def run():
            await migrate_all(h)
            return await load_demo(h)

        ctx = asyncio.run(run())
        click.echo(f"Demo data loaded: {len(ctx.erns)} ERNs, {len(ctx.hcps)} hospitals, {len(ctx.users)} users.")
        click.echo("Demo accounts (e-mail / password):")
        for role in ctx.users:
            click.echo(f"  {role}@demo.cpms.eu / {DEMO_PASSWORD.format(role=role)}")

    @cli.group(help="The encrypted file store.")
    def storage():
        pass

    @storage.command("check", help="Compare stored files with the rows that refer to them; --repair removes orphans.")
    @click.option("--repair", is_flag=True, help="Remove orphaned files older than the grace period, and abandoned working files.")
    @click.option("--grace-hours", type=click.FloatRange(min=0), default=1.0, show_default=True,
                  help="Orphans younger than this are kept (an upload may be about to commit).")
    def storage_check(repair, grace_hours):
        from datetime import timedelta

        from core import db
        from core.sweeper import check_storage, sweep_working

        h = host or _host()

        async def run():
            try:
                swept = await sweep_working(h, h.settings) if repair else 0
                return swept, await check_storage(h, h.settings, repair=repair, grace=timedelta(hours=grace_hours))
            finally:
                await db.close_pool()

        swept, report = asyncio.run(run())
        if swept:
            click.echo(f"{swept} abandoned working file(s) or folder(s) removed")
        for line in report.lines():
            click.echo(line)
        if any(report.missing.values()) or (report.orphans and not repair):
            sys.exit(1)

    @cli.command(help="Create a user account.")
    @click.option("--email", required=True)
    @click.option("--name", required=True)
    @click.option("--role", "roles", multiple=True, help="ROLE or ROLE:ERN-ACRONYM, repeatable (e.g. hp:'ERN RND').")
    @click.option("--hcp-id", type=int, default=None)
    @click.option("--password", default=None, help="Prompted for when omitted.")
    def createuser(email, name, roles, hcp_id, password):
        from core.identity import create_user
        from core.orgs.tables import Ern

        if host is None:
            _host()  # binds the tables to the configured database
        password = password or getpass.getpass("Password: ")

        async def run():
            erns = {e["acronym"]: e["id"] for e in await Ern.select(Ern.id, Ern.acronym)}
            pairs = []
            for spec in roles:
                role, _, ern = spec.partition(":")
                if ern and ern not in erns:
                    raise click.BadParameter(f"unknown ERN {ern!r}", param_hint="--role")
                pairs.append((role, erns[ern] if ern else None))
            return await create_user(email, name, password, hcp_id, pairs)

        try:
            user_id = asyncio.run(run())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Created user {user_id} <{email}>.")

    @cli.command(help="List enabled plugins with their hooks, routes and permissions.")
    @click.option("--json", "as_json", is_flag=True)
    def plugins(as_json):
        from core.plugins import PluginHost

        h = host or PluginHost(Settings.from_env())
        out = describe_plugins(h)
        if as_json:
            click.echo(json.dumps(out, indent=2))
            return
        for p in out:
            click.echo(f"{p['name']} ({p['source']})")
            click.echo(f"  hooks: {', '.join(p['hooks']) or '-'}")
            for route in p["routes"]:
                click.echo(f"  route: {route}")
            for perm in p["permissions"]:
                click.echo(f"  permission: {perm}")

    try:
        h = host or _plugin_host_for_commands()
    except (SettingsError, StartupError) as exc:
        click.echo(f"cpms: {exc}", err=True)
        h = None
    if h is not None:
        h.pm.hook.register_commands(cli=cli)
    return cli


def _plugin_host_for_commands():
    from core.plugins import PluginHost

    return PluginHost(Settings.from_env())


def describe_plugins(host) -> list[dict]:

    out = []
    routes_by_plugin: dict[str, list[str]] = {}
    for plugin, handler in host.routes():
        for path, methods in _paths(handler):
            routes_by_plugin.setdefault(plugin, []).append(f"{' '.join(sorted(methods))} {path}")
    for p in host.plugins:
        out.append(
            {
                "name": p.name,
                "source": p.source,
                "hooks": p.hooks,
                "routes": sorted(routes_by_plugin.get(p.name, [])),
                "permissions": [perm.name for perm in host.permissions.by_plugin(p.name)],
            }
        )
    return out


def _paths(handler, prefix: str = ""):
    from litestar import Controller, Router
    from litestar.handlers import HTTPRouteHandler

    if isinstance(handler, HTTPRouteHandler):
        methods = {m for m in handler.http_methods if m not in ("HEAD", "OPTIONS")}
        for path in handler.paths:
            yield (prefix.rstrip("/") + path) or "/", methods
    elif isinstance(handler, Router):
        for child in handler.route_handlers if hasattr(handler, "route_handlers") else []:
            yield from _paths(child, prefix + handler.path)
    elif isinstance(handler, type) and issubclass(handler, Controller):
        for name in dir(handler):
            attr = getattr(handler, name)
            if isinstance(attr, HTTPRouteHandler):
                yield from _paths(attr, prefix + handler.path)


def main() -> None:
    try:
        build_cli()(prog_name="cpms")
    except (SettingsError, StartupError) as exc:
        click.echo(f"cpms: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
