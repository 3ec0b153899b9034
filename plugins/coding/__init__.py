"""Coding: terminologies (ORPHA, ICD-10, ICD-10-CM, HPO, OMIM, LOINC, MedDRA) with importers
for their official release files, fast search, a type-ahead code picker for any form, browse
and code pages, a JSON API and the FHIR terminology operations.

The core knows nothing of this plugin: it asks ``code_picker`` for a coded input wherever a
record entry, an outcome or a consultation form takes a code, and keeps plain inputs without it.
"""

from __future__ import annotations

from core.hookspecs import hookimpl
from core.permissions import Permission
from core.web import MenuLink

SEARCH = "coding.search"


@hookimpl
def register_permissions():
    return [
        Permission(
            SEARCH, "Search and browse terminologies (codes are not patient data)",
            default_roles=("hp", "coordinator", "dispatcher", "researcher", "guest", "assistant", "admin", "dpo"),
        )
    ]


@hookimpl
def register_piccolo_apps():
    return ["plugins.coding.piccolo_app"]


@hookimpl
def register_routes():
    from plugins.coding.views import ROUTES

    return ROUTES


@hookimpl
def register_commands(cli):
    from plugins.coding.cli import register

    register(cli)


@hookimpl
def menu_links(actor):
    return [MenuLink("Terminologies", "/coding", SEARCH, order=60)]


@hookimpl
def code_ancestors(system, codes):
    from plugins.coding.lookup import ancestors

    return ancestors(system, list(codes))


@hookimpl
def code_displays(system, codes):
    from plugins.coding.lookup import displays

    return displays(system, list(codes))


@hookimpl
def code_picker(kind, prefix, value, actor):
    from core.permissions import allowed
    from plugins.coding.picker import render_picker

    if actor is None or not allowed(actor, SEARCH):
        return None
    return render_picker(kind, prefix, value or {})


@hookimpl
async def load_demo_data(ctx):
    from plugins.coding.bundled import load_default_bundled

    await load_default_bundled(only_missing=True)


@hookimpl
def register_research_fields():
    from core.contributions import ResearchField
    from plugins.coding.research import hpo_categories, hpo_categories_many

    return [
        ResearchField("coding.hpo_categories", "Organ systems of the observed phenotypes (top-level HPO branches)", hpo_categories,
                      hpo_categories_many),
    ]
