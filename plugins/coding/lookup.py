"""Read-side look-ups of the terminology store: systems, one code, its cross-walks, the tree.

Each function is a few indexed queries whatever the size of the system (no query per row:
``has_children`` of a whole list comes from one grouped query). Codes are matched exactly as
stored ("HP:0001250", "G11.1", "95"); finding a code from what someone typed is
:mod:`plugins.coding.search`'s job.
"""

from __future__ import annotations

import json
import re

#: Parameters per ``IN (...)`` list (older SQLite builds allow 999 per statement).
IN_CHUNK = 900

SYSTEM_FIELDS = ("key", "name", "uri", "version", "licence", "source", "imported_at", "concepts")

#: How a mapping's relation reads from its target's side (used for the equivalents of a code).
INVERSE = {
    "equivalent": "equivalent",
    "source-is-narrower-than-target": "source-is-broader-than-target",
    "source-is-broader-than-target": "source-is-narrower-than-target",
    "related-to": "related-to",
    "not-related-to": "not-related-to",
}
#: Equivalents, best suggestion first; "not-related-to" is never suggested.
RELATION_ORDER = {"equivalent": 0, "source-is-narrower-than-target": 1, "source-is-broader-than-target": 2, "related-to": 3}

_DIGITS = re.compile(r"(\d+)")


def code_order(code: str) -> tuple:
    """Sort key putting codes in their natural order: ORPHA 95 before 100, ICD chapter 2 before
    10; digits after a dot are decimals, as in ICD (G11.1, G11.10, G11.9)."""
    key = []
    after_dot = False
    for part in _DIGITS.split(code):
        if not part:
            continue
        if part.isdecimal():
            key.append((1, 0, part) if after_dot else (0, int(part), ""))
        else:
            key.append((2, 0, part))
            after_dot = part.endswith(".")
    return tuple(key)


def _chunks(values: list, size: int = IN_CHUNK):
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- systems ------------------------------------------------------------------------------


async def _system_rows():
    from plugins.coding.tables import CodeSystem

    return await CodeSystem.select(CodeSystem.id, *(getattr(CodeSystem, f) for f in SYSTEM_FIELDS)).order_by(CodeSystem.key)


def _public(row: dict) -> dict:
    return {f: row[f] for f in SYSTEM_FIELDS}


async def systems() -> list[dict]:
    """The loaded code systems, by key."""
    return [_public(r) for r in await _system_rows()]


async def _find_system(key_or_uri: str) -> dict | None:
    """A system row (with its id) by key, FHIR URI, or key in any case ("orpha")."""
    if not key_or_uri:
        return None
    rows = await _system_rows()
    for test in (lambda r: r["key"] == key_or_uri, lambda r: r["uri"] == key_or_uri,
                 lambda r: r["key"].casefold() == key_or_uri.casefold()):
        for r in rows:
            if test(r):
                return r
    return None


async def system(key_or_uri: str) -> dict | None:
    """One loaded system by key ("ORPHA") or FHIR canonical URI ("http://www.orpha.net")."""
    row = await _find_system(key_or_uri)
    return _public(row) if row else None


# --- concepts -----------------------------------------------------------------------------


async def _concept_row(system_id: int, code: str) -> dict | None:
    from plugins.coding.tables import Concept

    return await Concept.select(
        Concept.id, Concept.code, Concept.display, Concept.kind, Concept.active, Concept.properties
    ).where((Concept.system == system_id) & (Concept.code == code)).first()


async def _with_children_flag(rows: list[dict]) -> list[dict]:
    """``rows`` (with "id") as tree nodes, in code order; ``has_children`` from one grouped query
    per 900 rows."""
    from plugins.coding.tables import ConceptParent

    ids = [r["id"] for r in rows]
    parents: set[int] = set()
    for chunk in _chunks(ids):
        found = await ConceptParent.select(ConceptParent.parent).where(ConceptParent.parent.is_in(chunk)).distinct()
        parents.update(r["parent"] for r in found)
    nodes = [
        {"code": r["code"], "display": r["display"], "kind": r["kind"], "active": bool(r["active"]), "has_children": r["id"] in parents}
        for r in rows
    ]
    nodes.sort(key=lambda n: code_order(n["code"]))
    return nodes


async def roots(system_key: str) -> list[dict]:
    """Top of a system's tree: its active concepts without a parent (ICD chapters, HPO "All";
    a flat system such as ORPHA names from the HPO annotations is all roots). In code order."""
    from plugins.coding.tables import Concept, ConceptParent

    found = await _find_system(system_key)
    if found is None:
        return []
    rows = await Concept.select(Concept.id, Concept.code, Concept.display, Concept.kind, Concept.active).where(
        (Concept.system == found["id"])
        & (Concept.active == True)  # noqa: E712 (a piccolo condition)
        # Unfiltered: SQLite then reads the (child, parent) index once, three times faster
        # than restricting the subquery to the system with a join.
        & Concept.id.not_in(ConceptParent.select(ConceptParent.child))
    )
    return await _with_children_flag(rows)


async def _children_of(concept_id: int) -> list[dict]:
    from plugins.coding.tables import ConceptParent

    rows = await ConceptParent.select(
        ConceptParent.child.id.as_alias("id"), ConceptParent.child.code.as_alias("code"),
        ConceptParent.child.display.as_alias("display"), ConceptParent.child.kind.as_alias("kind"),
        ConceptParent.child.active.as_alias("active"),
    ).where(ConceptParent.parent == concept_id)
    return await _with_children_flag(rows)


async def children(system_key: str, code: str) -> list[dict]:
    """The direct children of a code, in code order (empty if the code is not loaded)."""
    found = await _find_system(system_key)
    if found is None:
        return []
    row = await _concept_row(found["id"], code)
    if row is None:
        return []
    return await _children_of(row["id"])


async def _displays(system_codes: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """(system key, code) -> display, for the codes of systems that are loaded."""
    from plugins.coding.tables import Concept

    loaded = {r["key"]: r["id"] for r in await _system_rows()}
    out: dict[tuple[str, str], str] = {}
    for key, codes in system_codes.items():
        if key not in loaded or not codes:
            continue
        for chunk in _chunks(sorted(codes)):
            rows = await Concept.select(Concept.code, Concept.display).where(
                (Concept.system == loaded[key]) & Concept.code.is_in(chunk)
            )
            out.update(((key, r["code"]), r["display"]) for r in rows)
    return out


async def _mappings_out(concept_id: int) -> list[dict]:
    from plugins.coding.tables import Mapping

    return await Mapping.select(Mapping.target_system, Mapping.target_code, Mapping.relation, Mapping.note).where(
        Mapping.source == concept_id
    )


async def _mappings_in(system_key: str, code: str) -> list[dict]:
    """Mappings of other concepts (any system) to this code, with the source's system and display."""
    from plugins.coding.tables import Mapping

    return await Mapping.select(
        Mapping.source.system.key.as_alias("system"), Mapping.source.code.as_alias("code"),
        Mapping.source.display.as_alias("display"), Mapping.relation, Mapping.note,
    ).where((Mapping.target_system == system_key) & (Mapping.target_code == code))


def _by_system_code(items: list[dict]) -> list[dict]:
    return sorted(items, key=lambda m: (m["system"], code_order(m["code"])))


async def concept(system_key: str, code: str) -> dict | None:
    """One code with everything its page shows, or None if the system or code is not loaded.

    ``mappings`` go from this code to others (``display`` is None when the target system is not
    loaded); ``mapped_from`` are other codes' mappings to this one, their ``relation`` as the
    publisher stated it from the other code's side."""
    from plugins.coding.tables import ConceptParent, Designation

    found = await _find_system(system_key)
    if found is None:
        return None
    row = await _concept_row(found["id"], code)
    if row is None:
        return None
    cid = row["id"]
    designations = await Designation.select(Designation.term, Designation.use, Designation.language).where(
        Designation.concept == cid
    ).order_by(Designation.id)
    designations.sort(key=lambda d: d["use"] != "preferred")  # stable: the rest keep their order
    parents = await ConceptParent.select(
        ConceptParent.parent.code.as_alias("code"), ConceptParent.parent.display.as_alias("display")
    ).where(ConceptParent.child == cid)
    out_rows = await _mappings_out(cid)
    wanted: dict[str, set[str]] = {}
    for m in out_rows:
        wanted.setdefault(m["target_system"], set()).add(m["target_code"])
    displays = await _displays(wanted)
    mappings = [
        {"system": m["target_system"], "code": m["target_code"], "display": displays.get((m["target_system"], m["target_code"])),
         "relation": m["relation"], "note": m["note"]}
        for m in out_rows
    ]
    mapped_from = [
        {"system": m["system"], "code": m["code"], "display": m["display"], "relation": m["relation"], "note": m["note"]}
        for m in await _mappings_in(found["key"], row["code"])
    ]
    try:
        properties = json.loads(row["properties"] or "{}")
    except ValueError:
        properties = {}
    return {
        "system": _public(found),
        "code": row["code"],
        "display": row["display"],
        "kind": row["kind"],
        "active": bool(row["active"]),
        "properties": properties if isinstance(properties, dict) else {},
        "designations": [{"term": d["term"], "use": d["use"], "language": d["language"]} for d in designations],
        "parents": sorted(({"code": p["code"], "display": p["display"]} for p in parents), key=lambda p: code_order(p["code"])),
        "children": [
            {"code": n["code"], "display": n["display"], "has_children": n["has_children"]} for n in await _children_of(cid)
        ],
        "mappings": _by_system_code(mappings),
        "mapped_from": _by_system_code(mapped_from),
    }


async def equivalents(system_key: str, code: str) -> list[dict]:
    """Codes of other systems for the same condition, to suggest when ``code`` is picked:
    this code's mappings and other systems' mappings to it, one entry per code, equivalents
    first (then broader, narrower, related), then by system and code. ``relation`` reads from
    the picked code ("source-is-narrower-than-target": the suggestion is broader); ``display``
    is None when that system is not loaded."""
    found = await _find_system(system_key)
    if found is None:
        return []
    row = await _concept_row(found["id"], code)
    if row is None:
        return []
    best: dict[tuple[str, str], dict] = {}

    def offer(system: str, target: str, relation: str, display: str | None) -> None:
        if system == found["key"] or relation not in RELATION_ORDER:
            return
        key = (system, target)
        current = best.get(key)
        if current is None or RELATION_ORDER[relation] < RELATION_ORDER[current["relation"]]:
            best[key] = {"system": system, "code": target, "display": display if current is None else current["display"] or display,
                         "relation": relation}

    out_rows = await _mappings_out(row["id"])
    wanted: dict[str, set[str]] = {}
    for m in out_rows:
        wanted.setdefault(m["target_system"], set()).add(m["target_code"])
    displays = await _displays(wanted)
    for m in out_rows:
        offer(m["target_system"], m["target_code"], m["relation"], displays.get((m["target_system"], m["target_code"])))
    for m in await _mappings_in(found["key"], row["code"]):
        offer(m["system"], m["code"], INVERSE.get(m["relation"], m["relation"]), m["display"])
    return sorted(best.values(), key=lambda e: (RELATION_ORDER[e["relation"]], e["system"], code_order(e["code"])))


async def ancestors(system_key: str, codes: list[str]) -> dict[str, list[str]] | None:
    """Every ancestor of each code (nearest first, breadth-first over the polyhierarchy), or None when
    the system is not loaded. One query per level of the hierarchy, whatever the number of codes."""
    from plugins.coding.tables import Concept, ConceptParent

    found = await _find_system(system_key)
    if found is None:
        return None
    ids: dict[str, int] = {}
    for chunk in _chunks(sorted(set(codes))):
        rows = await Concept.select(Concept.id, Concept.code).where(
            (Concept.system == found["id"]) & Concept.code.is_in(chunk))
        ids.update({r["code"]: r["id"] for r in rows})
    parents: dict[int, list[tuple[int, str]]] = {}
    frontier = set(ids.values())
    while frontier:
        fresh: set[int] = set()
        for chunk in _chunks(sorted(frontier)):
            rows = await ConceptParent.select(
                ConceptParent.child, ConceptParent.parent, ConceptParent.parent.code.as_alias("code"),
            ).where(ConceptParent.child.is_in(chunk))
            for r in rows:
                parents.setdefault(r["child"], []).append((r["parent"], r["code"]))
                if r["parent"] not in parents:
                    fresh.add(r["parent"])
        for cid in frontier:
            parents.setdefault(cid, [])
        frontier = fresh - set(parents)
    out: dict[str, list[str]] = {}
    for code in codes:
        cid = ids.get(code)
        chain: list[str] = []
        seen: set[int] = set()
        level = sorted(parents.get(cid, [])) if cid is not None else []
        while level:
            nxt = []
            for pid, pcode in level:
                if pid in seen:
                    continue
                seen.add(pid)
                chain.append(pcode)
                nxt.extend(parents.get(pid, []))
            level = sorted(nxt)
        out[code] = chain
    return out


async def displays(system_key: str, codes: list[str]) -> dict[str, str]:
    """code -> display name for the codes of one system that are loaded."""
    return {code: name for (_, code), name in (await _displays({system_key: set(codes)})).items()}
