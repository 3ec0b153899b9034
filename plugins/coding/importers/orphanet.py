"""The Orphanet nomenclature (ORPHAcodes), its alignments and, when present, its classifications.

Files, all ``<JDBOR>`` XML (CC BY 4.0), as published on orphadata.com / orphacode.org:

- the nomenclature: ``ORPHAnomenclature_<lang>_<year>.xml`` of the yearly nomenclature pack, or
  ``<lang>_product1.xml`` ("rare diseases and alignment with terminologies"). Each
  ``JDBOR/DisorderList/Disorder`` gives ``OrphaCode``, ``Name`` (display, with its ``@lang``),
  ``SynonymList/Synonym``, ``DisorderType`` (property ``type``), ``ClassificationLevel`` or
  ``DisorderGroup`` (kind: group, disorder, subtype), ``Totalstatus`` / ``DisorderFlagList``
  (an inactive, deprecated or obsolete entity stays resolvable but inactive),
  ``DisorderDisorderAssociationList`` ("moved to", "referred to"), the definition and the expert link;
- the alignments: ``ExternalReferenceList/ExternalReference`` inside the nomenclature
  (product1) or in the pack's separate files ``ORPHA_ICD10_mapping_<lang>_<year>.xml``,
  ``ORPHA_OMIM_mapping_...``, ``ORPHA_ICD11_mapping_...`` (same layout, one target each).
  ``Source`` names the target (ICD-10, OMIM, ICD-11, MedDRA are kept; UMLS, MeSH, GARD, MONDO
  are not systems here and are counted, not kept), ``Reference`` the code, and
  ``DisorderMappingRelation`` the relation: E → equivalent, NTBT → source-is-narrower-than-target,
  BTNT → source-is-broader-than-target, ND → related-to, W → not-related-to. The note keeps
  Orphanet's own words: relation, validation status, ICD relation ("E · Validated · Attributed code");
- the classifications (optional): ``ORPHAclassification_*.xml`` / ``<lang>_product3_*.xml``,
  ``ClassificationNode`` trees whose parent/child links become the hierarchy (a polyhierarchy:
  one disorder sits in several specialty classifications).

``read`` takes one nomenclature file, or a folder or ``.zip`` holding the unpacked pack (all its
alignment and classification files are then read into the same release: one transaction).
``read_mappings`` reads an alignment file on its own, for ``write_mappings``.

The version is the year of the pack (from the file name) and the extraction date
(``JDBOR@ExtractionDate`` or ``JDBOR@date``), e.g. "2025 (2025-06-24)".
"""

from __future__ import annotations

import fnmatch
import io
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plugins.coding.importers._common import Concepts, _Counting, file_label, iterparse, open_binary, text_of
from plugins.coding.release import ConceptIn, MappingIn, Progress, Release, ReleaseError, make_release

TARGETS = {"ICD-10": "ICD-10", "ICD10": "ICD-10", "OMIM": "OMIM", "ICD-11": "ICD-11", "ICD11": "ICD-11", "MedDRA": "MedDRA"}
RELATIONS = {
    "E": "equivalent",
    "NTBT": "source-is-narrower-than-target",
    "BTNT": "source-is-broader-than-target",
    "ND": "related-to",
    "W": "not-related-to",
}
LEVELS = {"group of disorders": "group", "disorder": "disorder", "subtype of disorder": "subtype"}
NOMENCLATURE = ("ORPHAnomenclature_*.xml", "*product1*.xml")
ALIGNMENTS = ("ORPHA_*_mapping*.xml",)
CLASSIFICATIONS = ("ORPHAclassification*.xml", "*product3*.xml")


# --- files: one XML, a folder, or a zip ------------------------------------------------------


class _Files:
    """The XML files of a pack (folder or zip) or a single file, opened as binary streams."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.zip = zipfile.ZipFile(self.path) if self.path.is_file() and zipfile.is_zipfile(self.path) else None
        if self.zip is not None:
            self.names = sorted(n for n in self.zip.namelist() if n.lower().endswith(".xml"))
        elif self.path.is_dir():
            self.names = sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*.xml"))
        else:
            self.names = [self.path.name]

    def match(self, patterns) -> list[str]:
        return [n for n in self.names if any(fnmatch.fnmatch(Path(n).name, p) for p in patterns)]

    @contextmanager
    def open(self, name: str, progress: Progress | None):
        if self.zip is not None:
            info = self.zip.getinfo(name)
            if info.file_size == 0:
                raise ReleaseError(f"{Path(name).name}: the file is empty.")
            with io.BufferedReader(_Counting(self.zip.open(info), info.file_size, progress)) as f:
                yield f
        else:
            with open_binary(self.path / name if self.path.is_dir() else self.path, progress) as f:
                yield f

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


# --- parsing ---------------------------------------------------------------------------------


def _disorders(files: _Files, name: str, progress: Progress | None, header: dict) -> Iterator[dict]:
    """Each ``JDBOR/DisorderList/Disorder`` as a dict, streamed; ``header`` gets the root's attributes."""
    label = Path(name).name
    path: list[str] = []
    with files.open(name, progress) as f:
        position = 0
        for event, el in iterparse(Path(label), f, "Orphanet XML"):
            if event == "start":
                if not path:
                    if el.tag != "JDBOR":
                        raise ReleaseError(f"{label}: the root element is <{el.tag}>, not <JDBOR>: not an Orphanet file.")
                    header.update(el.attrib)
                path.append(el.tag)
                continue
            path.pop()
            if el.tag == "Disorder" and path[-2:] == ["JDBOR", "DisorderList"]:
                position += 1
                yield _disorder(el, label, position)
                el.clear()


def _names(el, tag: str) -> str:
    return text_of(el.find(f"{tag}/Name"))


def _disorder(el, label: str, position: int) -> dict:
    code = (el.findtext("OrphaCode") or "").strip()
    where = f"<Disorder> number {position}" + (f" (OrphaCode {code})" if code else "")
    if not code:
        raise ReleaseError(f"{label}: {where} has no <OrphaCode>.")
    if not code.isdecimal():
        raise ReleaseError(f"{label}: {where}: an ORPHAcode is a number, not {code!r}.")
    name_el = el.find("Name")
    flags = [text_of(f) for f in el.iterfind("DisorderFlagList/DisorderFlag/Label")]
    status = text_of(el.find("Totalstatus"))
    inactive = any(re.search(r"inactive|deprecated|obsolete", s, re.I) for s in (status, *flags) if s)
    definition = ""
    for section in el.iterfind(".//TextSection"):
        if (_names(section, "TextSectionType") or "Definition") == "Definition":
            definition = text_of(section.find("Contents"))
            break
    associations = []
    for assoc in el.iterfind("DisorderDisorderAssociationList/DisorderDisorderAssociation"):
        target = (assoc.findtext("TargetDisorder/OrphaCode") or "").strip()
        if target and target != code:
            associations.append({"relation": _names(assoc, "DisorderDisorderAssociationType"), "code": target})
    return {
        "where": where, "code": code, "name": text_of(name_el), "lang": name_el.get("lang", "") if name_el is not None else "",
        "synonyms": [(text_of(s), "synonym", s.get("lang", "")) for s in el.iterfind("SynonymList/Synonym") if text_of(s)],
        "type": _names(el, "DisorderType"),
        "level": _names(el, "ClassificationLevel") or _names(el, "DisorderGroup"),
        "status": status or "; ".join(flags), "inactive": inactive, "definition": definition,
        "url": text_of(el.find("ExpertLink")), "associations": associations,
        "references": [
            {
                "source": text_of(ref.find("Source")), "code": text_of(ref.find("Reference")),
                "relation": _names(ref, "DisorderMappingRelation"), "icd": _names(ref, "DisorderMappingICDRelation"),
                "validation": _names(ref, "DisorderMappingValidationStatus"),
            }
            for ref in el.iterfind("ExternalReferenceList/ExternalReference")
        ],
    }


def _mappings(d: dict, skipped: dict[str, int]) -> list[MappingIn]:
    out = []
    for ref in d["references"]:
        target = TARGETS.get(ref["source"])
        if target is None:
            skipped[ref["source"] or "?"] = skipped.get(ref["source"] or "?", 0) + 1
            continue
        code = ref["code"].strip()
        if target in ("ICD-10", "ICD-11"):
            code = code.rstrip("+*†").strip()  # dagger/asterisk marks are not part of the code
        if not code:
            continue
        sigle = ref["relation"].split(" ", 1)[0] if ref["relation"] else ""
        # Orphanet's words without their explanations: "E · Validated · Attributed".
        note = " · ".join(p.split(" (")[0] for p in (sigle, ref["validation"], ref["icd"]) if p)
        out.append(MappingIn(d["code"], target, code, RELATIONS.get(sigle, "related-to"), note))
    return out


def _version(header: dict, filename: str) -> str:
    date = (header.get("ExtractionDate") or header.get("date") or "").split(" ")[0]
    year = re.search(r"_(\d{4})(?:_\d{2}_\d{2})?\.xml$", filename)
    if year and date:
        return f"{year.group(1)} ({date})"
    return (year.group(1) if year else "") or date


def _skipped_note(skipped: dict[str, int]) -> list[str]:
    if not skipped:
        return []
    listed = ", ".join(f"{n} to {s}" for s, n in sorted(skipped.items()))
    return [f"Alignments to systems not handled here were not kept ({listed})."]


# --- public ---------------------------------------------------------------------------------


def read(path: Path, *, version: str | None = None, key: str = "ORPHA", progress: Progress | None = None) -> Release:
    path = Path(path)
    if not path.exists():
        raise ReleaseError(f"{path}: no such file or folder.")
    files = _Files(path)
    try:
        main = files.match(NOMENCLATURE) if (files.zip is not None or path.is_dir()) else files.names
        if not main:
            raise ReleaseError(f"{path.name}: no ORPHAnomenclature_*.xml or *product1*.xml in it: not an Orphanet nomenclature pack.")
        nomenclature = main[0]
        concepts = Concepts(Path(nomenclature).name)
        mappings: list[MappingIn] = []
        skipped: dict[str, int] = {}
        header: dict = {}
        language = ""
        for d in _disorders(files, nomenclature, progress, header):
            props = {k: d[k] for k in ("type", "status", "definition", "url") if d[k]}
            for assoc in d["associations"]:
                relation = (assoc["relation"] or "related").lower()
                props.setdefault("moved_to" if "moved" in relation else "see_also", []).append(assoc["code"])
            concepts.add(
                ConceptIn(
                    code=d["code"], display=d["name"], kind=LEVELS.get(d["level"].lower(), d["level"].lower()[:30]),
                    active=not d["inactive"], properties=props, synonyms=d["synonyms"],
                ),
                d["where"],
            )
            language = language or d["lang"]
            mappings.extend(_mappings(d, skipped))
        if not concepts:
            raise ReleaseError(f"{Path(nomenclature).name}: no <Disorder> in <JDBOR><DisorderList>: an empty or foreign file.")
        notes = []
        outside = 0
        if files.zip is not None or path.is_dir():
            for name in files.match(ALIGNMENTS):
                for d in _disorders(files, name, None, {}):
                    found = _mappings(d, skipped)
                    if d["code"] in concepts:
                        mappings.extend(found)
                    else:
                        outside += len(found)
            parents, unknown = _classifications(files, concepts)
            if unknown:
                notes.append(f"{unknown} classification link(s) name an ORPHAcode not in the nomenclature and were not kept.")
        else:
            parents = []
        if outside:
            notes.append(f"{outside} alignment(s) start from an ORPHAcode not in the nomenclature and were not kept.")
        notes.extend(_skipped_note(skipped))
        return make_release(
            key, version or _version(header, Path(nomenclature).name), file_label(path), concepts=concepts.items,
            parents=parents, mappings=mappings, language=language or "en", notes=notes,
        )
    finally:
        files.close()


def _classifications(files: _Files, concepts: Concepts) -> tuple[list[tuple[str, str]], int]:
    """Parent links from every ``ClassificationNode`` tree; links naming unknown codes are counted."""
    links: list[tuple[str, str]] = []
    unknown = 0
    for name in files.match(CLASSIFICATIONS):
        label = Path(name).name
        path: list[str] = []
        nodes: list[str] = []  # the OrphaCode of each open ClassificationNode ("" until read)
        with files.open(name, None) as f:
            for event, el in iterparse(Path(label), f, "Orphanet classification"):
                if event == "start":
                    if not path and el.tag != "JDBOR":
                        raise ReleaseError(f"{label}: the root element is <{el.tag}>, not <JDBOR>: not an Orphanet classification.")
                    path.append(el.tag)
                    if el.tag == "ClassificationNode":
                        nodes.append("")
                    continue
                path.pop()
                if el.tag == "ClassificationNode":
                    nodes.pop()
                    el.clear()
                elif el.tag == "OrphaCode" and path[-2:] == ["ClassificationNode", "Disorder"] and nodes and not nodes[-1]:
                    nodes[-1] = (el.text or "").strip()
                    parent = next((c for c in reversed(nodes[:-1]) if c), "")
                    if parent:
                        if nodes[-1] in concepts and parent in concepts:
                            links.append((nodes[-1], parent))
                        else:
                            unknown += 1
    return list(dict.fromkeys(links)), unknown


def read_mappings(path: Path, *, progress: Progress | None = None) -> tuple[dict[str, list[MappingIn]], str, list[str]]:
    """An alignment file (``ORPHA_ICD10_mapping_en_2025.xml``...) or product1: the mappings by
    target system, the version, and notes on what was not kept."""
    path = Path(path)
    files = _Files(path)
    try:
        names = files.match(ALIGNMENTS) if (files.zip is not None or path.is_dir()) else files.names
        if not names:
            raise ReleaseError(f"{path.name}: no ORPHA_*_mapping*.xml in it.")
        by_target: dict[str, list[MappingIn]] = {}
        skipped: dict[str, int] = {}
        header: dict = {}
        count = 0
        for name in names:
            for d in _disorders(files, name, progress, header):
                count += 1
                for m in _mappings(d, skipped):
                    by_target.setdefault(m.target_system, []).append(m)
        if not count:
            raise ReleaseError(f"{path.name}: no <Disorder> in <JDBOR><DisorderList>: an empty or foreign file.")
        if not by_target:
            raise ReleaseError(f"{path.name}: no alignment to ICD-10, ICD-11, OMIM or MedDRA in it.")
        return by_target, _version(header, Path(names[0]).name), _skipped_note(skipped)
    finally:
        files.close()
