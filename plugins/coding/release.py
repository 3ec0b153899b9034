"""The write side of the terminology store: a release (one version of one code system) goes in
whole, in one transaction, or not at all.

Importers (``plugins.coding.importers``) turn official release files into a :class:`Release`;
:func:`write_release` checks it and writes it. Rows are inserted with the database driver's own
bulk interfaces (``executemany`` on SQLite, ``COPY`` on PostgreSQL) on the transaction's
connection. Measured with ICD-10-CM (98,505 concepts): piccolo's ``Table.insert`` in chunks of
1,000 (a Python object per row, one multi-row statement per chunk) took 24 s on SQLite and 29 s
on PostgreSQL for the concepts and their preferred terms alone; the driver's bulk calls write the
whole release (concepts, 111,074 terms, 98,483 links) in about 2.5 s and 6 s.

What a terminology administrator can expect:

- A release is checked before anything is written: duplicated codes, a parent or a mapping that
  names a code the release does not contain, an empty release. Any of these is a
  :class:`ReleaseError` and the database is left as it was. Dangling parents are an error rather
  than dropped with a count: in every official format handled here they mean a truncated file or
  files from two versions mixed, and a silently pruned hierarchy would be found out much later.
- Loading a system that is already loaded is refused unless ``replace=True``; replacing deletes
  the old version and writes the new one in the same transaction, so readers never see a mixture.
- Mappings name their target by system key and code, not by row, so they survive reloading the
  target system and may name a code of a system that is not loaded (yet).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

Progress = Callable[[int, int], None]

#: Column sizes of ``plugins.coding.tables`` (PostgreSQL enforces them).
MAX_CODE, MAX_TERM, MAX_KIND, MAX_NOTE, MAX_SOURCE, MAX_VERSION = 64, 1000, 30, 200, 300, 100
#: Rows handed to the driver at a time (and between two progress reports).
CHUNK = 5000

SYNONYM_USES = ("synonym", "inclusion", "abbreviation")


class ReleaseError(ValueError):
    """A release cannot be loaded; the message says where (file, line or element) and what is wrong."""


@dataclass
class ConceptIn:
    code: str
    display: str
    kind: str = ""
    active: bool = True
    properties: dict = field(default_factory=dict)
    #: (term, use) or (term, use, language); use is synonym, inclusion or abbreviation.
    synonyms: list[tuple] = field(default_factory=list)


@dataclass
class MappingIn:
    source_code: str
    target_system: str
    target_code: str
    #: FHIR ConceptMap relationship code.
    relation: str = "equivalent"
    #: The publisher's own words (Orphanet: "E · Validated").
    note: str = ""


@dataclass
class Release:
    key: str
    name: str
    uri: str
    version: str
    licence: str
    #: Where it came from: a bundled package and file, or the imported file's name.
    source: str
    concepts: list[ConceptIn] = field(default_factory=list)
    #: (child_code, parent_code)
    parents: list[tuple[str, str]] = field(default_factory=list)
    mappings: list[MappingIn] = field(default_factory=list)
    #: Language of the preferred terms and of synonyms given without one.
    language: str = "en"
    #: What the importer left out and why, for the summary ("3 mappings to UMLS not kept").
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SystemInfo:
    name: str
    uri: str
    #: Shown wherever the system's content is shown; ``{version}`` is filled in.
    licence: str


HPO_LICENCE = (
    "Human Phenotype Ontology (HPO), version {version}, © The Human Phenotype Ontology Consortium "
    "and the Monarch Initiative (http://hpo.jax.org). Used under the HPO licence "
    "(https://hpo.jax.org/license): the HPO Consortium is acknowledged, the version is shown, and "
    "the content is shown as published, not altered."
)
ORPHA_LICENCE = (
    "Orphanet nomenclature of rare diseases (ORPHAcodes), version {version}. Source: Orphanet, "
    "www.orpha.net, © INSERM. Licensed under Creative Commons Attribution 4.0 International "
    "(CC BY 4.0, https://creativecommons.org/licenses/by/4.0/)."
)
SYSTEMS: dict[str, SystemInfo] = {
    "ORPHA": SystemInfo("Orphanet rare diseases (ORPHAcodes)", "http://www.orpha.net", ORPHA_LICENCE),
    "ICD-10": SystemInfo(
        "ICD-10 (WHO)", "http://hl7.org/fhir/sid/icd-10",
        "International Statistical Classification of Diseases and Related Health Problems, 10th "
        "Revision (ICD-10), version {version}, © World Health Organization. Used under WHO's terms "
        "(https://www.who.int/about/policies/publishing/copyright): WHO does not permit "
        "redistribution of the classification without its agreement; the installer of this "
        "service accepted these terms when loading it.",
    ),
    "ICD-10-CM": SystemInfo(
        "ICD-10-CM (US clinical modification)", "http://hl7.org/fhir/sid/icd-10-cm",
        "ICD-10-CM {version}, published by the US National Center for Health Statistics "
        "(CDC/NCHS), public domain (a work of the US Government). ICD-10 on which it is based is "
        "© World Health Organization.",
    ),
    "ICD-11": SystemInfo(
        "ICD-11 MMS (WHO)", "http://id.who.int/icd/release/11/mms",
        "ICD-11 for Mortality and Morbidity Statistics, release {version}, © World Health "
        "Organization, licensed under CC BY-ND 3.0 IGO (https://icd.who.int/en/docs/icd11-license.pdf).",
    ),
    "HPO": SystemInfo("Human Phenotype Ontology", "http://human-phenotype-ontology.org", HPO_LICENCE),
    "OMIM": SystemInfo(
        "OMIM diseases (names)", "https://omim.org",
        "OMIM® disease names as distributed in the HPO annotations (phenotype.hpoa), version "
        "{version}. OMIM® is © Johns Hopkins University; its terms of use apply "
        "(https://omim.org/help/agreement). Names only, for finding a code.",
    ),
    "LOINC": SystemInfo(
        "LOINC", "http://loinc.org",
        "This material contains content from LOINC® (http://loinc.org), version {version}. LOINC "
        "is copyright © Regenstrief Institute, Inc. and the Logical Observation Identifiers Names "
        "and Codes (LOINC) Committee and is available at no cost under the license at "
        "http://loinc.org/license. LOINC® is a registered United States trademark of Regenstrief "
        "Institute, Inc.",
    ),
    "MedDRA": SystemInfo(
        "MedDRA", "https://www.meddra.org",
        "MedDRA® (Medical Dictionary for Regulatory Activities), version {version}. The MedDRA® "
        "trademark is registered by ICH. MedDRA is used under a subscription licence with the "
        "MedDRA MSSO (https://www.meddra.org); it may be used only by subscribers.",
    ),
}


def system_info(key: str) -> SystemInfo:
    """What we know of a system key; an unknown key (a national modification, say) gets a URN."""
    return SYSTEMS.get(key) or SystemInfo(key, f"urn:cpms:codesystem:{key}", "")


def make_release(key: str, version: str, source: str, *, name: str = "", licence: str = "", **kw) -> Release:
    info = system_info(key)
    return Release(
        key=key, name=name or info.name, uri=info.uri, version=version,
        licence=(licence or info.licence).replace("{version}", version or "unknown"), source=source, **kw,
    )


# --- checks -------------------------------------------------------------------------------


def _examples(items: Sequence, n: int = 5) -> str:
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def check(release: Release) -> None:
    """Refuse a release that could not be written whole (the importers check more, with line numbers)."""
    where = release.source or release.key
    if not release.key or len(release.key) > 20:
        raise ReleaseError(f"{where}: a system key of 1 to 20 characters is needed, not {release.key!r}.")
    if not release.concepts:
        raise ReleaseError(f"{where}: the release contains no concepts (empty or wrong file?).")
    seen: set[str] = set()
    for c in release.concepts:
        if not c.code or len(c.code) > MAX_CODE or c.code != c.code.strip():
            raise ReleaseError(f"{where}: code {c.code!r} is empty, padded or longer than {MAX_CODE} characters.")
        if c.code in seen:
            raise ReleaseError(f"{where}: code {c.code} appears twice in the release.")
        if not (c.display or "").strip():
            raise ReleaseError(f"{where}: code {c.code} has no preferred term.")
        seen.add(c.code)
    dangling = [f"{child}→{parent}" for child, parent in release.parents if child not in seen or parent not in seen]
    if dangling:
        raise ReleaseError(
            f"{where}: {len(dangling)} hierarchy link(s) name a code the release does not contain "
            f"({_examples(dangling)}); the file looks truncated or mixes versions. Nothing was loaded."
        )
    unknown = [m.source_code for m in release.mappings if m.source_code not in seen]
    if unknown:
        raise ReleaseError(
            f"{where}: {len(unknown)} mapping(s) start from a code the release does not contain ({_examples(unknown)})."
        )


def _cut(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- writing ------------------------------------------------------------------------------


def _is_postgres(engine) -> bool:
    return getattr(engine, "engine_type", "") in ("postgres", "cockroach")


async def _bulk_insert(tx, postgres: bool, table: str, columns: Sequence[str], rows: list[tuple], report) -> None:
    """Insert ``rows`` on the transaction's own connection, in chunks."""
    if postgres:
        for start in range(0, len(rows), CHUNK * 4):
            chunk = rows[start : start + CHUNK * 4]
            await tx.connection.copy_records_to_table(table, records=chunk, columns=list(columns))
            report(len(chunk))
        return
    sql = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join("?" * len(columns))})'
    for start in range(0, len(rows), CHUNK * 4):
        chunk = rows[start : start + CHUNK * 4]
        await tx.connection.executemany(sql, chunk)
        report(len(chunk))


def _numbered(sql: str) -> str:
    """``?`` placeholders as asyncpg's ``$1, $2...`` (no literal ``?`` appears in these statements)."""
    counter = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


async def _fetch(tx, postgres: bool, sql: str, *args) -> list[tuple]:
    """Rows as tuples, on the transaction's connection (``?`` placeholders)."""
    if postgres:
        return [tuple(r) for r in await tx.connection.fetch(_numbered(sql), *args)]
    async with tx.connection.execute(sql, args) as cursor:
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in await cursor.fetchall()]


async def _execute(tx, postgres: bool, sql: str, *args) -> None:
    if postgres:
        await tx.connection.execute(_numbered(sql), *args)
    else:
        await tx.connection.execute(sql, args)


async def _delete_system(tx, postgres: bool, system_id: int) -> None:
    """Delete a version: its terms, links and mappings first, then its concepts and the system
    (explicit deletes, rather than the foreign keys' cascade row by row, for speed)."""
    concepts = "SELECT id FROM coding_concept WHERE system = ?"
    await _execute(tx, postgres, f"DELETE FROM coding_designation WHERE concept IN ({concepts})", system_id)
    await _execute(tx, postgres, f"DELETE FROM coding_parent WHERE child IN ({concepts})", system_id)
    await _execute(tx, postgres, f"DELETE FROM coding_parent WHERE parent IN ({concepts})", system_id)
    await _execute(tx, postgres, f"DELETE FROM coding_mapping WHERE source IN ({concepts})", system_id)
    await _execute(tx, postgres, "DELETE FROM coding_concept WHERE system = ?", system_id)
    await _execute(tx, postgres, "DELETE FROM coding_system WHERE id = ?", system_id)


def _transaction(engine):
    from piccolo.engine.sqlite import TransactionType

    if _is_postgres(engine):
        return engine.transaction()
    # Take the write lock at once: a deferred transaction could fail half-way on a busy database.
    return engine.transaction(transaction_type=TransactionType.immediate)


def _designation_rows(concept_id: int, c: ConceptIn, language: str) -> Iterable[tuple]:
    """The preferred term, then each synonym once (a synonym repeating a term is left out)."""
    seen = {c.display.strip()}
    yield (concept_id, _cut(c.display, MAX_TERM), "preferred", language)
    for syn in c.synonyms:
        term = (syn[0] or "").strip()
        use = syn[1] if len(syn) > 1 and syn[1] in SYNONYM_USES else "synonym"
        lang = (syn[2] if len(syn) > 2 and syn[2] else language)[:10]
        if not term or term in seen:
            continue
        seen.add(term)
        yield (concept_id, _cut(term, MAX_TERM), use, lang)


def _invalidate_search() -> None:
    try:
        from plugins.coding import search
    except ImportError:
        return
    search.invalidate()


async def write_release(release: Release, *, replace: bool = False, imported_by: str = "", progress: Progress | None = None) -> dict:
    """Write ``release`` in one transaction; returns a summary (counts, seconds, replaced version)."""
    from plugins.coding.tables import CodeSystem

    check(release)
    started = time.perf_counter()
    engine = CodeSystem._meta.db
    postgres = _is_postgres(engine)
    concepts = release.concepts
    language = (release.language or "en")[:10]
    total_designations = sum(1 + len(c.synonyms) for c in concepts)  # upper bound for the progress bar
    total = len(concepts) + total_designations + len(release.parents) + len(release.mappings)
    done = 0

    def report(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done, total), total)

    summary = {"key": release.key, "version": release.version, "replaced": None}
    async with _transaction(engine) as tx:
        old = await _fetch(tx, postgres, "SELECT id, version, source FROM coding_system WHERE key = ?", release.key)
        if old:
            if not replace:
                raise ReleaseError(
                    f"{release.key} is already loaded (version {old[0][1] or 'unknown'}, from {old[0][2] or 'unknown'}). "
                    "Replace it explicitly (--replace) to load another version."
                )
            await _delete_system(tx, postgres, old[0][0])
            summary["replaced"] = old[0][1]
        system = CodeSystem(
            key=release.key, name=_cut(release.name, 200), uri=release.uri, version=_cut(release.version, MAX_VERSION),
            licence=release.licence, source=_cut(release.source, MAX_SOURCE), imported_by=_cut(imported_by, 200),
            concepts=len(concepts),
        )
        await system.save()
        sid = system.id

        await _bulk_insert(
            tx, postgres, "coding_concept", ("system", "code", "display", "kind", "active", "properties"),
            [
                (sid, c.code, _cut(c.display, MAX_TERM), _cut(c.kind, MAX_KIND), bool(c.active),
                 json.dumps(c.properties, ensure_ascii=False, separators=(",", ":")) if c.properties else "{}")
                for c in concepts
            ],
            report,
        )
        ids = dict((code, cid) for cid, code in await _fetch(tx, postgres, "SELECT id, code FROM coding_concept WHERE system = ?", sid))

        designations = [row for c in concepts for row in _designation_rows(ids[c.code], c, language)]
        await _bulk_insert(tx, postgres, "coding_designation", ("concept", "term", "use", "language"), designations, report)
        report(total_designations - len(designations))

        links = list(dict.fromkeys((ids[child], ids[parent]) for child, parent in release.parents if child != parent))
        await _bulk_insert(tx, postgres, "coding_parent", ("child", "parent"), links, report)
        report(len(release.parents) - len(links))

        mappings = _mapping_rows(release.mappings, ids)
        await _bulk_insert(tx, postgres, "coding_mapping", ("source", "target_system", "target_code", "relation", "note"), mappings, report)
        report(len(release.mappings) - len(mappings))

    _invalidate_search()
    summary.update(
        concepts=len(concepts), designations=len(designations), parents=len(links), mappings=len(mappings),
        seconds=round(time.perf_counter() - started, 2), notes=list(release.notes),
    )
    return summary


def _mapping_rows(mappings: Iterable[MappingIn], ids: dict[str, int]) -> list[tuple]:
    rows, seen = [], set()
    for m in mappings:
        source = ids.get(m.source_code)
        target = (m.target_code or "").strip()
        if source is None or not target or len(target) > MAX_CODE:
            continue
        key = (source, m.target_system, target)
        if key in seen:
            continue
        seen.add(key)
        rows.append((source, m.target_system[:20], target, (m.relation or "related-to")[:40], _cut(m.note, MAX_NOTE)))
    return rows


async def write_mappings(source_system: str, mappings: list[MappingIn], *, target_system: str, source: str) -> int:
    """Replace ``source_system``'s mappings to ``target_system`` (one transaction); returns how many
    were written. Mappings from a code the loaded version does not have are left out (see
    :func:`replace_mappings` for the count)."""
    return (await replace_mappings(source_system, mappings, target_system=target_system, source=source))["written"]


async def replace_mappings(source_system: str, mappings: list[MappingIn], *, target_system: str, source: str) -> dict:
    """:func:`write_mappings` with a summary: ``written``, ``skipped`` (source code not loaded), ``removed``.

    An alignment file is published on its own schedule, so it may name codes the loaded version
    of the source system does not have (yet); those are counted, not fatal. ``source`` (the file)
    is recorded in the system's provenance."""
    from plugins.coding.tables import CodeSystem

    if not mappings:
        raise ReleaseError(f"{source}: no {source_system} → {target_system} mappings found (empty or wrong file?).")
    engine = CodeSystem._meta.db
    postgres = _is_postgres(engine)
    async with _transaction(engine) as tx:
        row = await _fetch(tx, postgres, "SELECT id, source FROM coding_system WHERE key = ?", source_system)
        if not row:
            raise ReleaseError(f"{source_system} is not loaded: load its nomenclature before its {target_system} mappings.")
        sid, provenance = row[0]
        ids = dict((code, cid) for cid, code in await _fetch(tx, postgres, "SELECT id, code FROM coding_concept WHERE system = ?", sid))
        removed = await _fetch(
            tx, postgres,
            "SELECT count(*) FROM coding_mapping WHERE target_system = ? AND source IN (SELECT id FROM coding_concept WHERE system = ?)",
            target_system, sid,
        )
        await _execute(
            tx, postgres,
            "DELETE FROM coding_mapping WHERE target_system = ? AND source IN (SELECT id FROM coding_concept WHERE system = ?)",
            target_system, sid,
        )
        mine = [m for m in mappings if m.target_system == target_system]
        rows = _mapping_rows(mine, ids)
        await _bulk_insert(tx, postgres, "coding_mapping", ("source", "target_system", "target_code", "relation", "note"), rows, lambda n: None)
        # Provenance: "<release source>; <TARGET> mappings: <file>", one entry per target system.
        marker = f"{target_system} mappings: "
        parts = [p for p in (provenance or "").split("; ") if p and not p.startswith(marker)]
        # imported_at moves too: other processes (the web app's search index) watch it for changes.
        await CodeSystem.update(
            {CodeSystem.source: _cut("; ".join([*parts, marker + source]), MAX_SOURCE), CodeSystem.imported_at: datetime.now(timezone.utc)}
        ).where(CodeSystem.id == sid)
    _invalidate_search()
    skipped = sum(1 for m in mine if m.source_code not in ids)
    return {"written": len(rows), "skipped": skipped, "removed": int(removed[0][0]) if removed else 0}


async def loaded() -> list[dict]:
    """The loaded systems, for ``cpms coding list`` and the bundled loader."""
    from plugins.coding.tables import CodeSystem

    return await CodeSystem.select(
        CodeSystem.key, CodeSystem.name, CodeSystem.version, CodeSystem.source, CodeSystem.concepts,
        CodeSystem.imported_at, CodeSystem.imported_by,
    ).order_by(CodeSystem.key)
