"""The plugin contract: every hook a CPMS plugin may implement.

Each hook is documented in ``docs/plugin-hooks.md`` (a test checks that). Implementations
may take fewer arguments than the spec names, and may return an awaitable where the
docstring says so. ``register_*`` hooks declare things; the others add to pages or react.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("cpms")
hookimpl = pluggy.HookimplMarker("cpms")


@hookspec
def register_routes():
    """Return Litestar route handlers, controllers or routers; each names a permission in ``opt``."""


@hookspec
def register_permissions():
    """Return ``core.permissions.Permission`` objects; a name declared twice refuses start-up."""


@hookspec
def register_piccolo_apps():
    """Return dotted paths of piccolo ``AppConfig`` modules (tables and migrations)."""


@hookspec
def register_event_types():
    """Return ``core.events.EventType`` objects this plugin emits."""


@hookspec
def register_commands(cli):
    """Add click commands to the ``cpms`` command group ``cli``."""


@hookspec
def menu_links(actor):
    """Return ``core.web.MenuLink`` objects for the main navigation of ``actor``."""


@hookspec
def patient_sections(patient, actor):
    """Return ``core.web.Section`` objects (tabs) for a patient's page."""


@hookspec
def panel_sections(panel, actor):
    """Return ``core.web.Section`` objects (tabs) for a panel's page."""


@hookspec
def code_search_url(kind):
    """Return the URL of a code search for a clinical-record field (``diagnoses``, ``phenotype``), or None."""


@hookspec(firstresult=True)
def code_picker(kind, prefix, value, actor):
    """Return HTML (``markupsafe.Markup``) for ``actor``'s coded input posting ``<prefix>label``, ``<prefix>system``,
    ``<prefix>code`` and ``<prefix>codings`` (repeated ``SYSTEM|CODE|display``), or None."""


@hookspec
def handle_event(event, host):
    """React to a ``core.events.Event`` after it is recorded; may return an awaitable. ``host`` is the
    ``core.plugins.PluginHost`` (its ``settings``, and ``hook`` to ask other plugins)."""


@hookspec(firstresult=True)
def code_ancestors(system, codes):
    """Return ``{code: [ancestor codes, nearest first]}`` for codes of a code system (``ORPHA``, ``HPO``,
    ``ICD-10``...), or None when no plugin knows the system's hierarchy. May return an awaitable."""


@hookspec(firstresult=True)
def code_displays(system, codes):
    """Return ``{code: display name}`` for codes of a code system, or None. May return an awaitable."""


@hookspec
def gdpr_export(patient):
    """Return (or await) a dict of what this plugin holds about ``patient`` for a GDPR export."""


@hookspec
def register_kpis():
    """Return ``core.contributions.KPI`` objects computed for ERN performance indicators."""


@hookspec
def register_research_fields():
    """Return ``core.contributions.ResearchField`` objects added to anonymised research data."""


@hookspec
def load_demo_data(ctx):
    """Add demo records; ``ctx`` is a ``core.demo.DemoContext``. May return an awaitable."""


@hookspec
def extra_template_vars(request):
    """Return a dict of extra variables for every page rendered for ``request``."""


@hookspec
def storage_keys():
    """Return (or await) the keys of files in the core store (``core.storage``) that this plugin's
    rows refer to. The storage check (``core.sweeper``, ``cpms storage check``) treats a stored file
    that no plugin claims as an orphan and removes it after a grace period: a plugin that stores
    files must implement this."""


@hookspec
def sweep_working_files(settings):
    """Remove this plugin's working files that a killed process left (uploads in progress, original
    files before de-identification; see ``core.workfiles``) and return (or await) how many were
    removed. Called at start-up and periodically."""

