"""ICD-10-CM tabular list XML as the CDC/NCHS publishes it (``icd10cm-tabular-<year>.xml``; the
same file ships in ``simple-icd-10-cm``).

``chapter`` (``name`` is the chapter number, ``desc`` the title), ``section`` (``@id`` is the
block, e.g. A00-A09; a block of one category, B10, becomes B10-B10 so it differs from the category) and nested ``diag`` elements (``name``/``desc``; ``inclusionTerm/note``
become synonyms of use "inclusion"). Seventh characters are expanded as the tabular list
instructs: a ``sevenChrDef`` applies to every code below it (the nearest one wins), and each leaf
code under it gives one code per extension, padded with the placeholder X to six characters
(``S00.01`` + A → ``S00.01XA``, display "…, initial encounter"). Billable codes (leaves, and
the seventh-character codes in place of their leaves) carry ``billable: true``.
"""

from __future__ import annotations

from pathlib import Path

from plugins.coding.importers._common import Concepts, file_label, iterparse, open_binary, text_of
from plugins.coding.release import ConceptIn, Progress, Release, ReleaseError, make_release

ROOT = "ICD10CM.tabular"


def read(
    path: Path, *, version: str | None = None, key: str = "ICD-10-CM", progress: Progress | None = None, source: str = "",
    codes: Path | None = None,
) -> Release:
    """``codes``: the CDC code file (``icd10cm-codes-<year>.txt``, first column the code without
    its dot) that says which seventh-character codes exist: the tabular list states some
    exceptions only in prose (S06 codes with death as sixth character take only A). Without it,
    such codes are produced too. A codes file lying next to the XML is used when none is given."""
    path = Path(path)
    name = path.name
    codes = codes or _sibling_codes_file(path)
    valid = _valid_codes(codes) if codes else None
    concepts = Concepts(name)
    parents: list[tuple[str, str]] = []
    file_version, root, depth = "", None, 0
    with open_binary(path, progress) as f:
        for event, el in iterparse(path, f, "ICD-10-CM tabular"):
            if event == "start":
                depth += 1
                if root is None:
                    root = el
                    if el.tag != ROOT:
                        raise ReleaseError(f"{name}: the root element is <{el.tag}>, not <{ROOT}>: not an ICD-10-CM tabular list.")
                continue
            depth -= 1
            if depth != 1:
                continue
            if el.tag == "version":
                file_version = (el.text or "").strip()
            elif el.tag == "chapter":
                _chapter(el, name, concepts, parents, valid)
            el.clear()
    if not concepts:
        raise ReleaseError(f"{name}: no <chapter> element: not an ICD-10-CM tabular list, or an empty one.")
    return make_release(key, version or file_version, source or file_label(path), concepts=concepts.items, parents=parents)


def _sibling_codes_file(path: Path) -> Path | None:
    for pattern in ("icd10cm-codes-*.txt", "icd10cm_codes_*.txt", "code-list-*.txt"):
        found = sorted(path.parent.glob(pattern))
        if found:
            return found[-1]
    return None


def _valid_codes(path: Path) -> set[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return {line.split(None, 1)[0] for line in f if line.strip()}


def _chapter(el, name: str, concepts: Concepts, parents: list, valid: set[str] | None) -> None:
    number = (el.findtext("name") or "").strip()
    if not number:
        raise ReleaseError(f"{name}: a <chapter> without a <name> (chapter number).")
    concepts.add(ConceptIn(code=number, display=text_of(el.find("desc")), kind="chapter"), f"<chapter> {number}")
    for section in el.iterfind("section"):
        block = (section.get("id") or "").strip()
        if not block:
            raise ReleaseError(f"{name}: chapter {number}: a <section> without an id attribute.")
        if "-" not in block:
            block = f"{block}-{block}"  # a block of one category (B10) is written as a range, as WHO does (B99-B99)
        concepts.add(ConceptIn(code=block, display=text_of(section.find("desc")), kind="block"), f"<section id={block!r}>")
        parents.append((block, number))
        for diag in section.iterfind("diag"):
            _diag(diag, block, None, name, concepts, parents, valid)


def _extensions(diag) -> list[tuple[str, str]] | None:
    definition = diag.find("sevenChrDef")
    if definition is None:
        return None
    return [(e.get("char", "").strip(), text_of(e)) for e in definition.iterfind("extension") if e.get("char")]


def _diag(diag, parent: str, inherited, name: str, concepts: Concepts, parents: list, valid: set[str] | None) -> None:
    code = (diag.findtext("name") or "").strip()
    if not code:
        raise ReleaseError(f"{name}: a <diag> under {parent} without a <name> (code).")
    display = text_of(diag.find("desc"))
    extensions = _extensions(diag) or inherited
    children = diag.findall("diag")
    synonyms = [(text_of(n), "inclusion") for n in diag.iterfind("inclusionTerm/note") if text_of(n)]
    billable = not children and not extensions
    concepts.add(
        ConceptIn(
            code=code, display=display, kind="category" if len(code) == 3 else "subcategory",
            properties={"billable": True} if billable else {}, synonyms=synonyms,
        ),
        f"<diag> {code}",
    )
    parents.append((code, parent))
    for child in children:
        _diag(child, code, extensions, name, concepts, parents, valid)
    if not children and extensions:
        plain = code.replace(".", "")
        for char, meaning in extensions:
            full = plain.ljust(6, "X") + char
            if valid is not None and full not in valid:
                continue
            full = f"{full[:3]}.{full[3:]}"
            concepts.add(
                ConceptIn(code=full, display=f"{display}, {meaning}", kind="subcategory", properties={"billable": True}),
                f"seventh character {char} of {code}",
            )
            parents.append((full, code))
