"""The Beacon v2 endpoints (``/api/beacon``): counts of consented patients across every ERN.

Behind a login with ``research.use``. A count goes through the same protection as every other
count (cell-key perturbation, then nothing under k: the answer drops to ``exists: false``), the
filtering terms list only codes held by at least k patients (a listed code would otherwise tell
that a patient with it exists), and every call is logged (``ResearchLog``, no project).
"""

from __future__ import annotations

from litestar import Request, Response, get, route

from plugins.research import USE, beacon, projects, query, stats
from plugins.research.query import Scope

BEACON_ID = "eu.cpms.research"
PREFIX = "/api/beacon"
OPT = {"permission": USE}
JSON = "application/json"


async def _scope() -> Scope:
    from core.orgs.tables import Ern

    return Scope(tuple(sorted(r["acronym"] for r in await Ern.select(Ern.acronym))))


def _answer(body: dict, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def _error(exc: beacon.BeaconError, q=None) -> Response:
    return _answer(beacon.error_response(exc.status, exc.message, beacon_id=BEACON_ID, query=q), exc.status)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


@get([PREFIX, f"{PREFIX}/info"], opt=OPT, include_in_schema=False)
async def info(request: Request) -> Response:
    return _answer(beacon.info_response(BEACON_ID, "CPMS research beacon", "European Reference Networks (CPMS)",
                                        welcome_url=str(request.base_url).rstrip("/") + "/research",
                                        description="Counts of consented, anonymised rare-disease patients; counts under the threshold are not given."))


@get(f"{PREFIX}/configuration", opt=OPT, include_in_schema=False)
async def configuration(request: Request) -> Response:
    return _answer(beacon.configuration_response(beacon_id=BEACON_ID))


@get(f"{PREFIX}/map", opt=OPT, include_in_schema=False)
async def beacon_map(request: Request) -> Response:
    return _answer(beacon.map_response(_base(request), beacon_id=BEACON_ID))


@get(f"{PREFIX}/entry_types", opt=OPT, include_in_schema=False)
async def entry_types(request: Request) -> Response:
    return _answer(beacon.entry_types_response(beacon_id=BEACON_ID))


async def _terms(host, scope: Scope, k: int) -> list[tuple[str, str, str]]:
    from plugins.research import exports

    everyone = {"op": "and", "items": []}
    terms = []
    for kind in ("diagnosis", "phenotype"):
        for row in await query.group_terms(everyone, scope, kind, limit=5000, direct=False):
            if not stats.protect_sum(int(row["n"]), int(row["keys"] or 0), k).suppressed:
                terms.append(row["value"])
    names = await exports.displays_of(host, terms)
    out = [(_curie(t), names.get(t, ""), "ontologyTerm") for t in terms]
    return out + beacon.sex_filtering_terms()


def _curie(term: str) -> str:
    # Research terms are "ORPHA:98756", "ICD10:G11.2", "HP:0001250": Beacon CURIEs already.
    return term


@get(f"{PREFIX}/filtering_terms", opt=OPT, include_in_schema=False)
async def filtering_terms(request: Request) -> Response:
    scope = await _scope()
    k = await projects.k_for(scope.erns)
    terms = await _terms(request.app.state.host, scope, k)
    await projects.log(None, request.scope["user"], "beacon.filtering_terms", {"terms": len(terms)})
    return _answer(beacon.filtering_terms_response(terms, beacon_id=BEACON_ID))


async def _count(request: Request, entry_type: str) -> Response:
    try:
        body = await _body(request) if request.method == "POST" else None
        q = beacon.parse_request(request.method, dict(request.query_params), body, entry_type=entry_type)
    except beacon.BeaconError as exc:
        return _error(exc)
    scope = await _scope()
    k = await projects.k_for(scope.erns)
    definition = query.parse_definition(q.to_cohort())
    published = await stats.total(definition, scope, k)
    await projects.log(None, request.scope["user"], "beacon.query", {"entry_type": entry_type, "filters": [f.id for f in q.filters],
                                                                   "gene": q.gene_id, "shown": published.display})
    return _answer(beacon.count_response(q, published.value, beacon_id=BEACON_ID, threshold=k))


async def _body(request: Request):
    """The POST body through the core's JSON limits; a BeaconError (400) if it is not a JSON object."""
    from core.jsonbody import JsonRejected, parse

    try:
        body = parse(await request.body(), what="The Beacon request")
    except JsonRejected as exc:
        raise beacon.BeaconError(exc.status, exc.detail) from None
    if not isinstance(body, dict):
        raise beacon.BeaconError(400, "The Beacon request must be a JSON object.")
    return body


@route(f"{PREFIX}/individuals", http_method=["GET", "POST"], opt=OPT, include_in_schema=False, status_code=200)
async def individuals(request: Request) -> Response:
    return await _count(request, "individual")


@route(f"{PREFIX}/g_variants", http_method=["GET", "POST"], opt=OPT, include_in_schema=False, status_code=200)
async def g_variants(request: Request) -> Response:
    return await _count(request, "genomicVariant")


ROUTES = [info, configuration, beacon_map, entry_types, filtering_terms, individuals, g_variants]
