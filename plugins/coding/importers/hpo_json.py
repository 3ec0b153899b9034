"""The Human Phenotype Ontology as OBO Graphs JSON (``hp.json``): the same content as ``hp.obo``
(see ``hpo_obo``), read from ``graphs[0]``: ``nodes`` of type CLASS (``id`` as a PURL,
``lbl``, ``meta.synonyms``, ``meta.definition``, ``meta.deprecated``,
``meta.basicPropertyValues`` for alternative ids and replacements) and ``edges`` with
``pred`` "is_a". The version comes from ``meta.version`` (``.../hp/releases/2025-01-16/hp.json``).

The file (about 30 MB) is read whole: the JSON library has no streaming reader.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from plugins.coding.importers._common import Concepts, file_label, open_text
from plugins.coding.release import ConceptIn, Progress, Release, ReleaseError, make_release

PURL = re.compile(r"^http://purl\.obolibrary\.org/obo/([A-Za-z]+)_(\w+)$")
SCOPES = {"hasExactSynonym": "EXACT", "hasRelatedSynonym": "RELATED", "hasBroadSynonym": "BROAD", "hasNarrowSynonym": "NARROW"}
PROPERTIES = {
    "http://www.geneontology.org/formats/oboInOwl#hasAlternativeId": "alt_ids",
    "http://purl.obolibrary.org/obo/IAO_0100001": "replaced_by",
    "http://www.geneontology.org/formats/oboInOwl#consider": "consider",
}


def _curie(uri: str) -> str:
    m = PURL.match(uri or "")
    return f"{m.group(1)}:{m.group(2)}" if m else uri


def read(path: Path, *, version: str | None = None, key: str = "HPO", progress: Progress | None = None, source: str = "") -> Release:
    path = Path(path)
    name = path.name
    with open_text(path, progress, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ReleaseError(f"{name}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}).") from None
    graphs = data.get("graphs") if isinstance(data, dict) else None
    if not graphs or not isinstance(graphs, list):
        raise ReleaseError(f"{name}: no 'graphs' list: not an OBO Graphs JSON file.")
    graph = graphs[0]
    concepts = Concepts(name)
    for position, node in enumerate(graph.get("nodes", []), 1):
        if node.get("type") != "CLASS":
            continue
        code = _curie(node.get("id", ""))
        if not code.startswith("HP:"):
            continue  # classes of other ontologies referenced by HPO's logical definitions
        meta = node.get("meta") or {}
        props: dict = {}
        synonyms, scopes = [], {}
        for syn in meta.get("synonyms") or []:
            text = (syn.get("val") or "").strip()
            if not text:
                continue
            kind = (syn.get("synonymType") or "").rsplit("#", 1)[-1].rsplit("/", 1)[-1]
            synonyms.append((text, "abbreviation" if kind == "abbreviation" else "synonym"))
            scope = SCOPES.get(syn.get("pred", ""), "EXACT")
            if scope != "EXACT":
                scopes[text] = f"{scope} {kind}".strip()
        if (meta.get("definition") or {}).get("val"):
            props["definition"] = meta["definition"]["val"]
        for value in meta.get("basicPropertyValues") or []:
            target = PROPERTIES.get(value.get("pred", ""))
            if target:
                props.setdefault(target, []).append(_curie(value.get("val", "")))
        if scopes:
            props["synonym_scopes"] = scopes
        label = node.get("lbl") or ""
        concepts.add(
            ConceptIn(code=code, display=label, kind="term", active=not meta.get("deprecated", False), properties=props, synonyms=synonyms),
            f"node {position} ({code})",
        )
    if not concepts:
        raise ReleaseError(f"{name}: no HP class in graphs[0].nodes: not the HPO.")
    parents = []
    for position, edge in enumerate(graph.get("edges", []), 1):
        if edge.get("pred") != "is_a":
            continue
        child, parent = _curie(edge.get("sub", "")), _curie(edge.get("obj", ""))
        if child in concepts and parent in concepts:
            parents.append((child, parent))
        elif child in concepts:
            raise ReleaseError(f"{name}: edge {position}: {child} is_a {parent}, which is not a class of the file.")
    meta_version = (graph.get("meta") or {}).get("version", "")
    file_version = m.group(1) if (m := re.search(r"releases/([^/]+)/", meta_version)) else meta_version
    return make_release(key, version or file_version, source or file_label(path), concepts=concepts.items, parents=parents)
