"""ICD-11 for Mortality and Morbidity Statistics, WHO's simple tabulation
(``LinearizationMiniOutput-MMS-en.txt`` / ``SimpleTabulation-ICD-11-MMS-en.txt``).

Tab-separated with a header: ``Foundation URI``, ``Linearization (release) URI``, ``Code``,
``BlockId``, ``Title``, ``ClassKind`` (chapter, block, category), ``DepthInKind``,
``IsResidual``, ``ChapterNo``, ``BrowserLink``, ``isLeaf``... in depth-first order. ``Title``
starts with one "- " per level below the chapter; the hierarchy is read from that depth (each
row's parent is the last row one level up); a category listed again elsewhere (``Primary
tabulation`` or ``PrimaryLocation`` False) gets a second parent, not a second concept. The code is ``Code`` for categories, ``BlockId``
for blocks, and ``ChapterNo`` for chapters. A category without a code (rare: groupings) keeps
its place in the tree under its linearization id. The file carries no release name: give
``--version`` (e.g. 2025-01); it is otherwise read from a "Version:" column header if present.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from plugins.coding.importers._common import Concepts, file_label, open_text
from plugins.coding.release import ConceptIn, Progress, Release, ReleaseError, make_release

REQUIRED = ("Code", "BlockId", "Title", "ClassKind", "ChapterNo")


def read(path: Path, *, version: str | None = None, key: str = "ICD-11", progress: Progress | None = None) -> Release:
    path = Path(path)
    name = path.name
    concepts = Concepts(name)
    parents: list[tuple[str, str]] = []
    stack: list[str] = []
    file_version = ""
    with open_text(path, progress, encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter="\t")
        header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
        if not header:
            raise ReleaseError(f"{name}: the file is empty.")
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ReleaseError(f"{name}: line 1: the header lacks {', '.join(missing)}: not an ICD-11 MMS tabulation.")
        for h in header:
            if h.lower().startswith("version:"):
                file_version = h.split(":", 1)[1].strip()
        at = {h: i for i, h in enumerate(header)}
        uri_column = next((h for h in header if h.startswith("Linearization")), None)
        primary_column = next((h for h in header if h.lower() in ("primary tabulation", "primarylocation")), None)
        rows: list[tuple] = []
        for row in reader:
            line = reader.line_num
            if not row or not any(row):
                continue
            if len(row) < len(REQUIRED):
                raise ReleaseError(f"{name}: line {line}: {len(row)} fields where the header has {len(header)}.")
            value = lambda column: row[at[column]].strip() if column in at and at[column] < len(row) else ""  # noqa: E731
            kind = value("ClassKind").lower()
            raw_title = value("Title").strip('"')
            depth = len(re.match(r"^(?:-\s*)*", raw_title).group(0).replace(" ", ""))
            title = raw_title.lstrip("- ").strip()
            if kind == "chapter":
                code, depth = value("ChapterNo"), 0
            elif kind == "block":
                code = value("BlockId")
            elif kind == "category":
                code = value("Code") or (value(uri_column).rstrip("/").rsplit("/", 1)[-1] if uri_column else "")
            else:
                raise ReleaseError(f"{name}: line {line}: ClassKind {kind!r} is not chapter, block or category.")
            if not code or not title:
                raise ReleaseError(f"{name}: line {line}: a {kind or 'row'} without a code or a title.")
            if depth > len(stack):
                raise ReleaseError(f"{name}: line {line}: {code} is {depth} levels deep but follows a row {len(stack) - 1} deep.")
            props = {"residual": True} if value("IsResidual").lower() == "true" else {}
            primary = (value(primary_column) if primary_column else "True").lower() != "false"
            del stack[depth:]
            rows.append((line, code, title, kind, props, primary, stack[-1] if stack else ""))
            stack.append(code)
    # A category shown at a second place in the tabulation (primary tabulation False) is one
    # concept with a second parent.
    for line, code, title, kind, props, primary, parent in sorted(rows, key=lambda r: not r[5]):
        if primary or code not in concepts:
            concepts.add(ConceptIn(code=code, display=title, kind=kind, properties=props), f"line {line}")
        if parent:
            parents.append((code, parent))
    if not concepts:
        raise ReleaseError(f"{name}: a header but no row.")
    return make_release(key, version or file_version, file_label(path), concepts=concepts.items, parents=parents)
