"""``cpms demo``: realistic demo data, contributed by every enabled plugin in turn."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.events import await_me_maybe


@dataclass
class DemoContext:
    """Shared between ``load_demo_data`` hooks: ids of what earlier plugins created."""

    settings: object
    #: The plugin host (``host.hook`` to ask other plugins).
    host: object = None
    erns: dict[str, int] = field(default_factory=dict)
    hcps: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)


async def load_demo(host) -> DemoContext:
    from core import db

    if host.settings.production:
        raise RuntimeError("demo data is refused in production (CPMS_ENV=production)")
    await db.delete_all_rows()
    from core.orgs.seed import seed_erns

    await seed_erns()
    from core.identity import sync_role_permissions

    await sync_role_permissions(host)
    ctx = DemoContext(settings=host.settings, host=host)
    for plugin, result in host.results_by_plugin("load_demo_data", ctx=ctx):
        await await_me_maybe(result)
    return ctx
