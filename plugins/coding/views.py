"""Web pages, picker fragments and the JSON API of the coding plugin.

Pages: the terminologies (with each system's licence, which must be shown in the app), a browse
tree per system and a page per code. Fragments for the picker (``picker.py``): search options
and the equivalents of a picked code. JSON under ``/api/coding``; FHIR operations in ``fhir.py``.
Codes are not patient data, so everything here needs ``coding.search`` only.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypedDict
from urllib.parse import quote

from litestar import Request, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Template

from core.openapi import problems
from core.web import page
from plugins.coding import SEARCH
from plugins.coding.picker import DEFAULT_SYSTEMS, PREFIX

PERM = {"permission": SEARCH}
#: Query text longer than this is no search a person types.
MAX_QUERY = 200
#: Roots shown per page on a browse page (a flat system such as ORPHA names has thousands).
ROOTS_PER_PAGE = 200
LIST_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")

#: FHIR ConceptMap relationships in words, read from the code being looked at.
RELATION_WORDS = {
    "equivalent": "equivalent",
    "source-is-narrower-than-target": "broader (this code is more specific)",
    "source-is-broader-than-target": "narrower (this code is more general)",
    "related-to": "related",
    "not-related-to": "not related",
}
#: The same relationships read from the other end (a mapping to this code from another system).
RELATION_WORDS_IN = {
    "equivalent": "equivalent",
    "source-is-narrower-than-target": "narrower (that code is more specific)",
    "source-is-broader-than-target": "broader (that code is more general)",
    "related-to": "related",
    "not-related-to": "not related",
}


def code_url(system: str, code: str) -> str:
    # Codes keep their colons and dots (HP:0001250, G11.1); anything else is escaped.
    return f"/coding/{quote(system, safe='')}/{quote(code, safe=':')}"


def _ctx(**values: Any) -> dict[str, Any]:
    return {"code_url": code_url, "relation_words": RELATION_WORDS, "relation_words_in": RELATION_WORDS_IN, **values}


def _when(value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    return str(value or "")[:16].replace("T", " ")


def _query(q: str) -> str:
    q = (q or "").strip()
    if len(q) > MAX_QUERY:
        raise ValidationException(f"The search text is longer than {MAX_QUERY} characters.")
    return q


async def _system_or_404(key: str) -> dict:
    from plugins.coding import lookup

    found = await lookup.system(key)
    if found is None:
        raise NotFoundException("This code system is not loaded.")
    return found


# --- pages ------------------------------------------------------------------------------------


@get("/coding", opt=PERM, include_in_schema=False)
async def terminologies(
    request: Request,
    q: Annotated[str, QueryParameter(max_length=MAX_QUERY)] = "",
    system: FromQuery[list[str] | None] = None,
) -> Template:
    """The loaded systems with version, source, size and licence; a search over any of them."""
    from plugins.coding import lookup, search

    systems = [{**s, "imported": _when(s.get("imported_at"))} for s in await lookup.systems()]
    keys = {s["key"] for s in systems}
    chosen = [s for s in (system or []) if s in keys]
    q = _query(q)
    hits = await search.search(q, chosen or None, limit=50) if q else []
    return page(
        request, "coding/index.html", _ctx(systems=systems, q=q, chosen=chosen, hits=hits),
        fragment="coding/_results.html",
    )


@get("/coding/{system:str}", opt=PERM, include_in_schema=False)
async def browse(
    request: Request, system: FromPath[str], page_no: Annotated[int, QueryParameter(name="page", ge=1, le=100000)] = 1
) -> Template:
    """A system as a tree: its top-level codes, each opening its children (htmx, or the code's page)."""
    from plugins.coding import lookup

    found = await _system_or_404(system)
    roots = await lookup.roots(found["key"])
    start = (page_no - 1) * ROOTS_PER_PAGE
    shown = roots[start:start + ROOTS_PER_PAGE]
    return page(
        request, "coding/browse.html",
        _ctx(system=found, nodes=shown, total=len(roots), page_no=page_no, has_next=start + ROOTS_PER_PAGE < len(roots)),
    )


@get("/coding/{system:str}/children", opt=PERM, include_in_schema=False)
async def children(request: Request, system: FromPath[str], code: Annotated[str, QueryParameter(min_length=1, max_length=64)]) -> Template:
    """The children of a code as tree items (the browse page's htmx fragment)."""
    from plugins.coding import lookup

    found = await _system_or_404(system)
    if await lookup.concept(found["key"], code) is None:
        raise NotFoundException("This code is not in the loaded version of the system.")
    nodes = await lookup.children(found["key"], code)
    return Template("coding/_nodes.html", context=_ctx(system=found, nodes=nodes))


@get("/coding/{system:str}/{code:path}", opt=PERM, include_in_schema=False)
async def concept_page(request: Request, system: FromPath[str], code: FromPath[str]) -> Template:
    """A code: labels, synonyms, properties, parents, children and mappings both ways."""
    from plugins.coding import lookup

    found = await _system_or_404(system)
    concept = await lookup.concept(found["key"], code.lstrip("/"))
    if concept is None:
        raise NotFoundException("This code is not in the loaded version of the system.")
    loaded = {s["key"] for s in await lookup.systems()}
    return page(request, "coding/code.html", _ctx(system=found, c=concept, loaded=loaded))


# --- picker fragments ---------------------------------------------------------------------------


@get("/coding/search", opt=PERM, include_in_schema=False, media_type="text/html")
async def picker_search(
    request: Request,
    q: Annotated[str, QueryParameter(max_length=MAX_QUERY)] = "",
    system: FromQuery[list[str] | None] = None,
    kind: Annotated[str, QueryParameter(max_length=30)] = "",
    limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
    prefix: Annotated[str, QueryParameter(max_length=40)] = "",
    list_id: Annotated[str, QueryParameter(name="list", max_length=80)] = "",
) -> Template:
    """Options for a picker's listbox, and the result count for its live region (out of band).

    The picker's input posts as ``<prefix>label`` in its form, so htmx sends the typed text under
    that name; ``q`` is for everyone else."""
    from plugins.coding import search

    if not PREFIX.match(prefix):
        raise ValidationException("The prefix may hold letters, digits, - and _ only.")
    if list_id and not LIST_ID.match(list_id):
        raise ValidationException("The list id may hold letters, digits, - and _ only.")
    if not q:
        q = str(request.query_params.get(f"{prefix}label", ""))[:MAX_QUERY]
    q = _query(q)
    systems = [s for s in (system or []) if s] or list(DEFAULT_SYSTEMS.get(kind, ())) or None
    hits = await search.search(q, systems, limit=limit) if q else []
    if not q:
        status = ""
    elif not hits:
        status = "No code matches."
    else:
        status = f"{len(hits)}{'+' if len(hits) == limit else ''} code{'s' if len(hits) != 1 else ''} found. Use the Down arrow to choose."
    return Template(
        "coding/_options.html", context={"hits": hits, "q": q, "list_id": list_id or "cp-list", "oob": bool(list_id), "status": status},
    )


@get("/coding/equivalents", opt=PERM, include_in_schema=False, media_type="text/html")
async def picker_equivalents(
    system: Annotated[str, QueryParameter(max_length=30)] = "",
    code: Annotated[str, QueryParameter(max_length=64)] = "",
    prefix: Annotated[str, QueryParameter(max_length=40)] = "",
) -> Template:
    """Codes of other systems for the picked code, as checkboxes posting ``<prefix>codings``
    (nothing picked: an empty fragment, as the picker shows before a pick)."""
    from plugins.coding import lookup

    if not PREFIX.match(prefix):
        raise ValidationException("The prefix may hold letters, digits, - and _ only.")
    items = await lookup.equivalents(system, code) if system and code else []
    # The core accepts codes of at most 40 characters; longer ones could not be saved.
    items = [i for i in items if len(str(i.get("code") or "")) <= 40 and i.get("relation") != "not-related-to"]
    return Template(
        "coding/_equivalents.html",
        context={"items": items, "prefix": prefix, "checked_all": False, "picked": f"{system}:{code}" if system and code else ""},
    )


# --- JSON API -----------------------------------------------------------------------------------


class CodeSystemOut(TypedDict):
    key: str
    name: str
    #: The FHIR canonical URL.
    uri: str
    version: str
    licence: str
    source: str
    imported_at: datetime
    concepts: int


class SearchHit(TypedDict):
    system: str
    code: str
    display: str
    #: The term (or the code) that matched.
    matched: str
    match: Literal["code", "code-prefix", "preferred", "synonym", "fuzzy"]


class SearchResult(TypedDict):
    query: str
    hits: list[SearchHit]


class _CodeRef(TypedDict):
    code: str
    display: str


class CodeRef(_CodeRef, total=False):
    has_children: bool


class Designation(TypedDict):
    term: str
    use: str
    language: str


class Concept(TypedDict):
    system: CodeSystemOut
    code: str
    display: str
    kind: str
    active: bool
    properties: dict[str, Any]
    designations: list[Designation]
    parents: list[CodeRef]
    children: list[CodeRef]
    #: Mappings to other systems' codes, and from them, each with system, code, display, relation, note.
    mappings: list[dict[str, Any]]
    mapped_from: list[dict[str, Any]]



@get("/api/coding/systems", opt=PERM, operation_id="listCodeSystems", tags=["coding"])
async def api_systems() -> list[CodeSystemOut]:
    """The loaded code systems: key, name, FHIR URI, version, licence, source, import date, concept count."""
    from plugins.coding import lookup

    return await lookup.systems()


@get("/api/coding/search", opt=PERM, operation_id="searchCodes", tags=["coding"],
     responses=problems(s400="No search text (q is empty or blank), a parameter out of its limits, or a system that "
                             "is not loaded (GET /api/coding/systems lists them)."))
async def api_search(
    # \S: blank text is no search (the handler trims it).
    q: Annotated[str, QueryParameter(min_length=1, max_length=MAX_QUERY, pattern=r"\S")],
    system: Annotated[list[str] | None, QueryParameter(description="Keys of loaded systems (repeat the key for several).")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
) -> SearchResult:
    """Codes matching a text or a code, best first, in the systems named (all when none)."""
    from plugins.coding import lookup, search

    q = _query(q)
    if not q:
        raise ValidationException("Give a search text.")
    if system:
        keys = {s["key"] for s in await lookup.systems()}
        unknown = [s for s in system if s not in keys]
        if unknown:
            raise ValidationException(f"Not a loaded code system: {', '.join(unknown)[:200]}.")
    hits = await search.search(q, system or None, limit=limit)
    return {
        "query": q,
        "hits": [{"system": h.system, "code": h.code, "display": h.display, "matched": h.matched, "match": h.match} for h in hits],
    }


@get("/api/coding/{system:str}/{code:path}", opt=PERM, operation_id="getCode", tags=["coding"],
     responses=problems(s404="This code system is not loaded, or the code is not in its loaded version."))
async def api_concept(system: FromPath[str], code: FromPath[str]) -> Concept:
    """One code with its terms, properties, parents, children and mappings."""
    from plugins.coding import lookup

    found = await _system_or_404(system)
    concept = await lookup.concept(found["key"], code.lstrip("/"))
    if concept is None:
        raise NotFoundException("This code is not in the loaded version of the system.")
    return concept


def _routes() -> list:
    from plugins.coding.fhir import ROUTES as FHIR_ROUTES

    return [
        terminologies, browse, children, concept_page, picker_search, picker_equivalents,
        api_systems, api_search, api_concept, *FHIR_ROUTES,
    ]


ROUTES = _routes()
