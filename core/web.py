"""Page rendering shared by the core and plugins.

One URL serves the whole page, or, for an htmx request that is not a boosted navigation,
only the fragment the page includes, so every fragment is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.response import Template

from core.permissions import allowed


@dataclass(frozen=True)
class MenuLink:
    label: str
    href: str
    #: Shown only to actors holding this permission (``None``: anyone logged in).
    permission: str | None = None
    order: int = 50


@dataclass(frozen=True)
class Section:
    """A tab a plugin adds to the patient or panel page, loaded from ``url`` by htmx."""

    key: str
    title: str
    url: str
    permission: str | None = None
    order: int = 50


def is_fragment_request(request: Request) -> bool:
    headers = request.headers
    return headers.get("hx-request") == "true" and headers.get("hx-boosted") != "true"


def actor_of(request: Request):
    return request.scope.get("user")


def visible(items, actor):
    """Items an actor may see (menu links, sections), sorted for display."""
    return sorted(
        (i for i in items if actor is not None and (i.permission is None or allowed(actor, i.permission))),
        key=lambda i: (i.order, i.label if hasattr(i, "label") else i.title),
    )


def _code_picker(host, actor, kind, prefix, value):
    from core.patients.coded import picker

    return picker(host, actor, kind, prefix, value)


def base_context(request: Request) -> dict[str, Any]:
    host = request.app.state.host
    actor = actor_of(request)
    links = [link for _, links in host.results_by_plugin("menu_links", actor=actor) for link in links]
    ctx: dict[str, Any] = {
        "actor": actor,
        "menu": visible(links, actor),
        "site": host.site_info,
        "allowed": lambda perm, ern_id=None: allowed(actor, perm, ern_id),
        # A plugin's coded input (core.patients.coded), or None: the template keeps plain inputs.
        "code_picker": lambda kind, prefix="", value=None: _code_picker(host, actor, kind, prefix, value),
    }
    for _, extra in host.results_by_plugin("extra_template_vars", request=request):
        ctx.update(extra)
    return ctx


def page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    fragment: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    ctx = base_context(request)
    ctx.update(context or {})
    name = fragment if fragment and is_fragment_request(request) else template
    return Template(template_name=name, context=ctx, status_code=status_code, headers=headers)
