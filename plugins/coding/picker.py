"""The type-ahead code picker any form can ask for (the core's ``code_picker`` hook).

``render_picker`` is called while a page template is being rendered (a synchronous Jinja call
without the request), so it renders ``coding/_picker.html`` with its own Jinja environment and
cannot ask the database which systems are loaded: the default systems per kind are static and
the search ignores systems that are not loaded.
"""

from __future__ import annotations

import json
import re
import secrets
from functools import lru_cache

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

#: Systems offered (and ticked) by default for each kind of entry being coded.
DEFAULT_SYSTEMS = {
    "diagnoses": ("ORPHA", "ICD-10", "ICD-10-CM", "OMIM"),
    "phenotype": ("HPO",),
}
#: Any other kind: every system the plugin knows how to import.
ALL_SYSTEMS = ("ORPHA", "ICD-10", "ICD-10-CM", "ICD-11", "OMIM", "HPO", "LOINC", "MedDRA")

#: Names of form fields and element ids are built from the prefix: keep it to safe characters.
PREFIX = re.compile(r"^[A-Za-z0-9_-]{0,40}$")
SYSTEM = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,29}$")
#: The core refuses a form with more additional codes than this (core.patients.coded).
MAX_CODINGS = 10


@lru_cache(maxsize=1)
def _environment() -> Environment:
    from pathlib import Path

    from core.settings import PROJECT_ROOT

    here = Path(__file__).resolve().parent / "templates"
    # Site templates first, as for the app's own environment: a deployment may override the picker.
    return Environment(loader=FileSystemLoader([str(PROJECT_ROOT / "templates"), str(here)]), autoescape=True)


def systems_for(kind: str, allowed=None) -> list[str]:
    """The systems a picker offers: those a form allows (a consultation form's field), else the kind's defaults."""
    chosen = [str(s).strip() for s in (allowed or []) if SYSTEM.match(str(s).strip())]
    if chosen:
        return list(dict.fromkeys(chosen))
    return list(DEFAULT_SYSTEMS.get(kind, ALL_SYSTEMS))


def render_picker(kind: str, prefix: str = "", value: dict | None = None) -> Markup:
    from core.patients.coded import load as load_codings

    if not PREFIX.match(prefix or ""):
        raise ValueError(f"a code picker prefix must be letters, digits, - or _: {prefix!r}")
    value = dict(value or {})
    system = str(value.get("system") or "")
    code = str(value.get("code") or "")
    label = str(value.get("label") or "")
    codings = [c for c in load_codings(value.get("codings")) if c.get("system") and c.get("code")][:MAX_CODINGS]
    # Several pickers share a page (one per record entry, all with the same prefix): ids are random.
    uid = f"cp-{secrets.token_hex(5)}"
    vals = {"prefix": prefix, "list": f"{uid}-list", "kind": kind}
    html = _environment().get_template("coding/_picker.html").render(
        id=uid, kind=kind, prefix=prefix, systems=systems_for(kind, value.get("systems")),
        system=system if code else "", code=code if system else "", label=label, codings=codings,
        vals=json.dumps(vals),
    )
    from plugins.coding import search

    search.warm()
    return Markup(html)
