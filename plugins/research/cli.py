"""``cpms research``: rebuild the research projection."""

from __future__ import annotations

import asyncio

import click


@click.group()
def research():
    """Research data (anonymised, consent-filtered)."""


@research.command("refresh")
def refresh_command():
    """Rebuild every patient's research row from the clinical record and current consent."""
    from core.cli import run_with_host  # imported late: core.cli loads the plugins, this one among them

    async def run(host):
        from plugins.research.projection import refresh_all

        return await refresh_all(host)

    n = run_with_host(run)
    click.echo(f"{n} research rows rebuilt.")
