"""Patient-data audit trail (GDPR): every view, search hit, download, export and change of
patient data is appended to a hash chain (``core.audit.chain.record``), so that tampering is
detectable (``cpms audit verify``). A hospital's data-protection officer browses and exports
the entries about that hospital's patients at ``/audit``."""

from core.events import EventType
from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import MenuLink


@hookimpl
def register_piccolo_apps():
    return ["core.audit.piccolo_app"]


@hookimpl
def register_permissions():
    return [Permission("audit.view", "Browse and export the patient-data audit of one's hospital", ("dpo",))]


@hookimpl
def register_event_types():
    return [EventType("audit.exported", "The patient-data audit of a hospital was exported")]


@hookimpl
def menu_links(actor):
    return [MenuLink("Audit", "/audit", "audit.view", order=88)]


@hookimpl
def register_routes():
    from core.audit.views import ROUTES

    return ROUTES


@hookimpl
def register_commands(cli):
    import sys

    import click

    @cli.group("audit", help="The patient-data audit trail.")
    def audit():
        pass

    @audit.command("verify", help="Recompute the hash chain; exit code 1 names the first broken entry.")
    def verify():
        from core.cli import run_with_settings  # imported late: core.cli loads the plugins

        result, last = run_with_settings(_verify)
        if not result.ok:
            click.echo(f"Audit chain broken at entry {result.first_bad_seq} ({result.checked} entries before it are intact).")
            sys.exit(1)
        click.echo(f"Audit chain intact: {result.checked} entries.")
        if last is not None:
            # Noted elsewhere, this shows later whether the chain was cut short or rewritten.
            click.echo(f"Latest entry {last[0]} has hash {last[1]}.")


async def _verify(settings):
    from core.audit.chain import head, verify

    last = await head()  # read first, so the entry named was among those verified
    return await verify(), last
