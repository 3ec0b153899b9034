"""WHO ICD-10 in ClaML (ISO 13120), the XML WHO distributes to licensees (also ICD-10-GM and others).

Reads ``Title@version`` (the version), every ``Class`` (``@code``, ``@kind``: chapter, block,
category; ``@usage``: dagger/aster), its ``SuperClass`` links, and its rubrics: ``preferred`` is
the display, ``inclusion`` labels become synonyms of use "inclusion", ``preferredLong`` and
``definition`` go into the properties. Exclusions, notes and coding hints are not kept (they
are instructions for coders, not names of the class). Codes produced by ``ModifiedBy`` (the
fifth characters of chapters XIII and XIX) are not expanded.

The file is streamed (``iterparse``), each class released once read.
"""

from __future__ import annotations

from pathlib import Path

from plugins.coding.importers._common import Concepts, file_label, iterparse, local, open_binary, text_of
from plugins.coding.release import ConceptIn, Progress, Release, ReleaseError, make_release

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def read(path: Path, *, version: str | None = None, key: str = "ICD-10", progress: Progress | None = None) -> Release:
    path = Path(path)
    name = path.name
    concepts = Concepts(name)
    parents: list[tuple[str, str]] = []
    file_version, language, root, depth = "", "", None, 0
    with open_binary(path, progress) as f:
        for event, el in iterparse(path, f, "ClaML"):
            if event == "start":
                depth += 1
                if root is None:
                    root = el
                    if local(el.tag) != "ClaML":
                        raise ReleaseError(f"{name}: the root element is <{local(el.tag)}>, not <ClaML>: not an ICD-10 ClaML file.")
                continue
            depth -= 1
            tag = local(el.tag)
            if tag == "Title" and depth == 1:
                file_version = (el.get("version") or el.get("date") or "").strip()
            elif tag == "Class" and depth == 1:
                concept, supers, lang = _class(el, name, len(concepts) + 1)
                concepts.add(concept, f"<Class code={concept.code!r}>")
                parents.extend((concept.code, s) for s in supers)
                language = language or lang
                el.clear()
            elif depth == 1:
                el.clear()  # Modifier, ModifierClass, meta data: not kept
    if root is None or not concepts:
        raise ReleaseError(f"{name}: no <Class> element: not an ICD-10 ClaML file, or an empty one.")
    return make_release(
        key, version or file_version, file_label(path), concepts=concepts.items, parents=parents, language=language or "en",
    )


def _class(el, name: str, position: int) -> tuple[ConceptIn, list[str], str]:
    code = (el.get("code") or "").strip()
    if not code:
        raise ReleaseError(f"{name}: <Class> number {position} has no code attribute.")
    display, language, synonyms, props = "", "", [], {}
    for rubric in el.iter():
        if local(rubric.tag) != "Rubric":
            continue
        kind = rubric.get("kind", "")
        for label in rubric:
            if local(label.tag) != "Label":
                continue
            text = text_of(label)
            if not text:
                continue
            lang = label.get(XML_LANG, "")
            if kind == "preferred" and not display:
                display, language = text, lang
            elif kind == "inclusion":
                synonyms.append((text, "inclusion", lang))
            elif kind in ("preferredLong", "definition"):
                props.setdefault(kind, text)
    if not display:
        raise ReleaseError(f"{name}: <Class code={code!r}> has no preferred rubric.")
    if el.get("usage"):
        props["usage"] = el.get("usage")
    supers = [s.get("code", "").strip() for s in el if local(s.tag) == "SuperClass" and s.get("code")]
    concept = ConceptIn(code=code, display=display, kind=el.get("kind", ""), properties=props, synonyms=synonyms)
    return concept, supers, language
