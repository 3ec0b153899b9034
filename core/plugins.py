"""The plugin host: which plugins load, in what order, and what they declared.

Core domains (organisations, identity, pages, activity...) are plugins too and always
load first. Other plugins come from the ``cpms.plugins`` entry-point group (the in-tree
ones are declared there in ``pyproject.toml``, exactly like a third-party package) and from
``CPMS_PLUGIN_MODULES``. ``CPMS_PLUGINS`` / ``CPMS_DISABLED_PLUGINS`` choose among them.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import pluggy

from core import hookspecs
from core.permissions import PermissionRegistry, StartupError
from core.settings import Settings

ENTRY_POINT_GROUP = "cpms.plugins"

# Always loaded, never disabled: the core is built from the same hooks as plugins.
CORE_MODULES = (
    "core.orgs",
    "core.identity",
    "core.activity",
    "core.audit",
    "core.mail",
    "core.patients",
    "core.notify",
    "core.panels",
    "core.pages",
)


@dataclass(frozen=True)
class LoadedPlugin:
    name: str
    module: ModuleType
    core: bool
    source: str  # "core", "entry point <dist>", "module"

    @property
    def folder(self) -> Path:
        return Path(self.module.__file__).resolve().parent

    @property
    def templates_dir(self) -> Path | None:
        path = self.folder / "templates"
        return path if path.is_dir() else None

    @property
    def static_dir(self) -> Path | None:
        path = self.folder / "static"
        return path if path.is_dir() else None

    @property
    def hooks(self) -> list[str]:
        names = {n for n in dir(hookspecs) if not n.startswith("_") and n not in {"hookspec", "hookimpl", "pluggy", "annotations"}}
        return sorted(n for n in names if inspect.isfunction(getattr(self.module, n, None)))


def available_plugins(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, module path, source) for every non-core plugin that could be enabled."""
    found: list[tuple[str, str, str]] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else "?"
        found.append((ep.name, ep.value, f"entry point ({dist})"))
    for path in settings.plugin_modules:
        found.append((path.rsplit(".", 1)[-1], path, "module"))
    return found


def _tracer(hook_name, hook_impls, kwargs):  # pragma: no cover - debugging aid
    print(f"[cpms hook] {hook_name}({', '.join(kwargs)}) -> {[i.plugin_name for i in hook_impls]}", file=sys.stderr)


class PluginHost:
    """Owns the pluggy manager and the declarations collected from it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pm = pluggy.PluginManager("cpms")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[LoadedPlugin] = []
        for path in CORE_MODULES:
            self._register(path.rsplit(".", 1)[-1], path, core=True, source="core")
        wanted = set(settings.plugins)
        seen: set[str] = set()
        for name, path, source in available_plugins(settings):
            if name in seen:
                raise StartupError(f"two plugins are named {name!r}")
            seen.add(name)
            if ("*" in wanted or name in wanted) and name not in settings.disabled_plugins:
                self._register(name, path, core=False, source=source)
        unknown = wanted - {"*"} - seen
        if unknown:
            raise StartupError(f"CPMS_PLUGINS names unknown plugins: {', '.join(sorted(unknown))}")
        # A misspelt hook name in a plugin is a bug the author should hear about at once.
        self.pm.check_pending()
        if settings.trace_hooks:  # pragma: no cover
            self.pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
            self.pm.add_hookcall_monitoring(_tracer, lambda *a: None)
        self.permissions = self._collect_permissions()
        self.event_types = self._collect_event_types()
        from core.events import EventBus

        self.events = EventBus(self)
        self.site_info = {"name": "CPMS", "env": settings.env}

    @property
    def secure_cookies(self) -> bool:
        return self.settings.production or self.settings.base_url.startswith("https://")

    def _register(self, name: str, path: str, core: bool, source: str) -> None:
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            raise StartupError(f"plugin {name!r} cannot be imported from {path!r}: {exc}") from exc
        self.pm.register(module, name=name)
        self.plugins.append(LoadedPlugin(name, module, core, source))

    @property
    def hook(self):
        return self.pm.hook

    def plugin_name_of(self, impl_module: object) -> str:
        return self.pm.get_name(impl_module) or "?"

    def results_by_plugin(self, hook_name: str, **kwargs) -> list[tuple[str, object]]:
        """Call a hook and keep which plugin gave each result (registration order)."""
        caller = getattr(self.pm.hook, hook_name)
        out = []
        # Registration order: core domains first, so later plugins can build on them.
        for impl in caller.get_hookimpls():
            argnames = impl.argnames
            result = impl.function(**{k: kwargs[k] for k in argnames})
            if result is not None:
                out.append((impl.plugin_name, result))
        return out

    def _collect_permissions(self) -> PermissionRegistry:
        registry = PermissionRegistry()
        for plugin, perms in self.results_by_plugin("register_permissions"):
            for perm in perms:
                registry.add(perm, plugin)
        return registry

    def _collect_event_types(self) -> dict:
        types = {}
        for plugin, declared in self.results_by_plugin("register_event_types"):
            for et in declared:
                if et.name in types:
                    raise StartupError(f"event type {et.name!r} is declared twice")
                types[et.name] = et
        return types

    def piccolo_apps(self) -> list[str]:
        return [path for _, paths in self.results_by_plugin("register_piccolo_apps") for path in paths]

    def routes(self) -> list[tuple[str, object]]:
        return [(plugin, h) for plugin, handlers in self.results_by_plugin("register_routes") for h in handlers]
