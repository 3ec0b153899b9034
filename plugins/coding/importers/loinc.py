"""LOINC's main table, ``LoincTable/Loinc.csv`` (comma-separated, every field quoted, a header row).

``LOINC_NUM`` is the code, ``LONG_COMMON_NAME`` the display; ``SHORTNAME`` and ``DisplayName``
are synonyms (``CONSUMER_NAME`` too when present). The six axes ``COMPONENT``, ``PROPERTY``,
``TIME_ASPCT``, ``SYSTEM``, ``SCALE_TYP``, ``METHOD_TYP``, with ``CLASS``, ``CLASSTYPE``,
``STATUS`` and ``EXAMPLE_UCUM_UNITS``, go into the properties. ``STATUS`` DEPRECATED makes the
code inactive (DISCOURAGED and TRIAL stay active, with their status shown); the replacement
named in ``MapTo.csv`` is not read. A row with ``PanelType`` is of kind "panel", the others
"observation". The file carries no release number: give ``--version``; without one the highest
``VersionLastChanged`` is used.

LOINC's content may not be changed: names are stored as published.
"""

from __future__ import annotations

import csv
from pathlib import Path

from plugins.coding.importers._common import Concepts, file_label, open_text
from plugins.coding.release import ConceptIn, Progress, Release, ReleaseError, make_release

REQUIRED = ("LOINC_NUM", "LONG_COMMON_NAME", "STATUS")
AXES = ("COMPONENT", "PROPERTY", "TIME_ASPCT", "SYSTEM", "SCALE_TYP", "METHOD_TYP", "CLASS", "CLASSTYPE", "STATUS", "EXAMPLE_UCUM_UNITS")
SYNONYMS = ("SHORTNAME", "DisplayName", "CONSUMER_NAME")


def _version_key(text: str) -> tuple:
    return tuple(int(p) if p.isdecimal() else 0 for p in text.split("."))


def read(path: Path, *, version: str | None = None, key: str = "LOINC", progress: Progress | None = None) -> Release:
    path = Path(path)
    name = path.name
    concepts = Concepts(name)
    latest = ""
    with open_text(path, progress) as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise ReleaseError(f"{name}: line 1: not a CSV file ({exc}).") from None
        if not header:
            raise ReleaseError(f"{name}: the file is empty.")
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ReleaseError(
                f"{name}: line 1: the header lacks {', '.join(missing)} (found {', '.join(header[:5])}...): not LOINC's Loinc.csv."
            )
        at = {h: i for i, h in enumerate(header)}
        try:
            for row in reader:
                line = reader.line_num
                if not row or not any(row):
                    continue
                if len(row) != len(header):
                    raise ReleaseError(f"{name}: line {line}: {len(row)} fields where the header has {len(header)}.")
                value = lambda column: row[at[column]].strip() if column in at else ""  # noqa: E731
                status = value("STATUS").upper()
                props = {column.lower(): value(column) for column in AXES if value(column)}
                synonyms = [(value(c), "synonym") for c in SYNONYMS if value(c)]
                concepts.add(
                    ConceptIn(
                        code=value("LOINC_NUM"), display=value("LONG_COMMON_NAME"),
                        kind="panel" if value("PanelType") else "observation",
                        active=status != "DEPRECATED", properties=props, synonyms=synonyms,
                    ),
                    f"line {line}",
                )
                changed = value("VersionLastChanged")
                if changed and _version_key(changed) > _version_key(latest or "0"):
                    latest = changed
        except csv.Error as exc:
            raise ReleaseError(f"{name}: line {reader.line_num}: malformed CSV ({exc}).") from None
    if not concepts:
        raise ReleaseError(f"{name}: a header but no LOINC code.")
    return make_release(key, version or latest, file_label(path), concepts=concepts.items)
