"""Consultation templates in the database: every save is a new version, per ERN.

An ERN without a template of its own uses the newest default template (``ern`` null), which
is seeded from ``data/default_template.json`` the first time anyone asks for it.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.panels.forms import validate_definition

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_FILE = "default_template.json"


def shipped_definition(filename: str = DEFAULT_FILE) -> dict:
    """A template shipped with CPMS (``core/panels/data/<filename>``)."""
    return json.loads((DATA_DIR / filename).read_text(encoding="utf-8"))


async def _acronym(ern_id: int | None) -> str:
    from core.orgs.tables import Ern

    if ern_id is None:
        return ""
    row = await Ern.select(Ern.acronym).where(Ern.id == ern_id).first()
    return row["acronym"] if row else f"ERN {ern_id}"


def _label(acronym: str, version: int) -> str:
    return f"{acronym} form v{version}" if acronym else f"Default form v{version}"


def _as_template(row: dict, acronym: str) -> dict:
    return {
        "id": row["id"], "ern": row["ern"], "version": row["version"], "title": row["title"],
        "definition": json.loads(row["definition"]), "label": _label(acronym, row["version"]),
        "created_by": row.get("created_by"), "created_at": row.get("created_at"),
    }


def _where_ern(ern_id: int | None):
    from core.panels.tables import ConsultationTemplate as T

    return T.ern.is_null() if ern_id is None else (T.ern == ern_id)


async def _newest(ern_id: int | None) -> dict | None:
    from core.panels.tables import ConsultationTemplate as T

    # Highest version; among equal versions (two racing first seeds) the latest row.
    return await T.select().where(_where_ern(ern_id)).order_by(T.version, ascending=False).order_by(T.id, ascending=False).first()


async def _seed_default() -> None:
    """Insert the shipped default once. Two requests racing may both insert version 1: harmless,
    every reader then picks the same newest row."""
    from core.panels.tables import ConsultationTemplate as T

    if await T.exists().where(T.ern.is_null()):
        return
    definition = shipped_definition()
    await T.insert(T(ern=None, version=1, title=definition["title"][:200], definition=json.dumps(definition, ensure_ascii=False), created_by=None))


_DEFINITIONS: dict[int, dict] = {}


async def definition_of(template_id: int | None) -> dict:
    """The definition of one saved version (cached: a saved version is never changed)."""
    from core.panels.tables import ConsultationTemplate as T

    if template_id is None:
        return {}
    if template_id not in _DEFINITIONS:
        row = await T.select(T.definition).where(T.id == template_id).first()
        if row is None:
            return {}
        _DEFINITIONS[template_id] = json.loads(row["definition"])
    return _DEFINITIONS[template_id]


async def current_template(ern_id: int | None) -> dict:
    """The form an ERN's new panels use: its newest version, else the newest default.

    Returns ``{"id", "ern", "version", "title", "definition" (a dict), "label"}``; ``ern`` is
    None when the default applies (``label`` "Default form v1"), else e.g. "ERN RND form v3".
    """
    if ern_id is not None:
        row = await _newest(ern_id)
        if row is not None:
            return _as_template(row, await _acronym(ern_id))
    row = await _newest(None)
    if row is None:
        await _seed_default()
        row = await _newest(None)
    return _as_template(row, "")


async def template_version(ern_id: int | None, version: int) -> dict | None:
    """One stored version of an ERN's (or, with None, the default) template."""
    from core.panels.tables import ConsultationTemplate as T

    row = await T.select().where(_where_ern(ern_id) & (T.version == version)).order_by(T.id, ascending=False).first()
    return _as_template(row, await _acronym(ern_id)) if row else None


async def save_version(ern_id: int | None, definition: dict, title: str, user_id: int | None) -> dict:
    """Store ``definition`` as the ERN's next version (previous + 1; the first is 1).

    Raises ``ValueError`` for a definition ``validate_definition`` refuses. Returns the new
    version as ``current_template`` does."""
    from core.panels.tables import ConsultationTemplate as T

    problems = validate_definition(definition)
    if problems:
        raise ValueError("invalid consultation template: " + "; ".join(problems[:5]))
    title = (title or definition["title"]).strip()[:200]
    text = json.dumps(definition, ensure_ascii=False)
    async with T._meta.db.transaction():
        previous = await T.select(T.version).where(_where_ern(ern_id)).order_by(T.version, ascending=False).first()
        version = (previous["version"] if previous else 0) + 1
        row = T(ern=ern_id, version=version, title=title, definition=text, created_by=user_id)
        await row.save()
    saved = await T.select().where(T.id == row.id).first()
    return _as_template(saved, await _acronym(ern_id))


async def versions(ern_id: int | None) -> list[dict]:
    """The ERN's versions, newest first: id, version, title, label, created_at, created_by and
    ``author`` (the name, "CPMS" for a shipped template). The definitions are left out."""
    from core.identity.tables import User
    from core.panels.tables import ConsultationTemplate as T

    rows = await T.select(T.id, T.ern, T.version, T.title, T.created_by, T.created_at).where(_where_ern(ern_id)).order_by(
        T.version, ascending=False
    ).order_by(T.id, ascending=False)
    ids = sorted({r["created_by"] for r in rows if r["created_by"]})
    names = {u["id"]: u["name"] for u in await User.select(User.id, User.name).where(User.id.is_in(ids or [0]))}
    acronym = await _acronym(ern_id)
    return [
        {**r, "label": _label(acronym, r["version"]), "author": names.get(r["created_by"], "CPMS" if r["created_by"] is None else "?")}
        for r in rows
    ]


async def install_shipped(ern_id: int, filename: str, user_id: int | None = None) -> dict | None:
    """Give an ERN a shipped template (e.g. ``ern_rnd_template.json`` in the demo) unless it has one."""
    from core.panels.tables import ConsultationTemplate as T

    if await T.exists().where(T.ern == ern_id):
        return None
    definition = shipped_definition(filename)
    return await save_version(ern_id, definition, definition["title"], user_id)
