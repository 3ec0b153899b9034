"""The Beacon v2 endpoints (``/api/beacon``): counts of consented patients across every ERN.

Behind a login with ``research.use``. A count goes through the same protection as every other
count (cell-key perturbation, then nothing under k: the answer drops to ``exists: false``), the
filtering terms list only codes held by at least k patients (a listed code would otherwise tell
that a patient with it exists), and every call is logged (``ResearchLog``, no project).
"""

from __future__ import annotations

from typing import Any, TypedDict

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec

from core.openapi import operation, query as query_parameter, unknown_fields
from plugins.research import USE, beacon, projects, query, stats
from plugins.research.query import Scope

BEACON_ID = "eu.cpms.research"
PREFIX = "/api/beacon"
JSON = "application/json"


class BeaconAnswer(TypedDict, total=False):
    """A Beacon v2 framework response (https://github.com/ga4gh-beacon/beacon-v2, framework/json/responses)."""

    meta: dict[str, Any]
    response: dict[str, Any]
    responseSummary: dict[str, Any]
    info: dict[str, Any]


class BeaconErrorBody(TypedDict):
    errorCode: int
    errorMessage: str


class BeaconErrorAnswer(TypedDict):
    """A Beacon v2 ``beaconErrorResponse``: the beacon's own refusals are in the Beacon's format."""

    meta: dict[str, Any]
    error: BeaconErrorBody


OPT = {"permission": USE}  # the core's own refusals (401, 403, 413) are problems, as on every route
API = dict(tags=["research beacon"], opt=OPT)
REFUSED = {400: ResponseSpec(data_container=BeaconErrorAnswer, media_type=JSON, generate_examples=False,
                             description="The request is not one this beacon answers (malformed, an unknown filter, an "
                                         "unsupported parameter): a Beacon error response.")}
_ID = ("HP:[0-9]{7}|ORPHA:[0-9]{1,7}|Orphanet:[0-9]{1,7}|ICD10:[A-Z][0-9]{2}([.][0-9]{1,2})?|ICD10CM:[A-Z][0-9][0-9A-Z]([.][0-9A-Z]{1,4})?"
       "|ICD11:[0-9A-Z]{4}([.][0-9A-Z]{1,3})?|OMIM:(PS)?[0-9]{6}|NCIT:C16576|NCIT:C20197|NCIT:C17998")
FILTER_ID = {"type": "string", "pattern": f"^({_ID})$", "maxLength": 40}
GRANULARITY = {"type": "string", "enum": list(beacon.GRANULARITIES)}
GENE = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9-]{0,19}$"}
PAGE = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
GET_PARAMETERS = [
    query_parameter("filters", {"type": "string", "maxLength": 2000, "pattern": f"^(({_ID})(,({_ID}))*)?$"},
                    "Filter ids, comma-separated, ANDed: HPO (`HP:0001250`), ORPHA, ICD-10, ICD-10-CM, ICD-11, OMIM "
                    "codes (with their descendants) and NCIT sex terms. `/filtering_terms` lists them."),
    query_parameter("requestedGranularity", GRANULARITY, "boolean or count (record is answered as count: no records leave)."),
    query_parameter("skip", PAGE, "Pagination (no records are returned: accepted for clients that send it)."),
    query_parameter("limit", PAGE, "Pagination (as skip)."),
    query_parameter("testMode", {"type": "boolean"}, "Accepted; this beacon has no test data set."),
    query_parameter("apiVersion", {"type": "string", "maxLength": 20}, "The Beacon API version the client speaks."),
]
BODY = {
    "type": "object", "required": ["meta"], "additionalProperties": False,
    "description": "A Beacon v2 request body (framework/json/requests/beaconRequestBody).",
    "properties": {
        "meta": {"type": "object", "required": ["apiVersion"], "additionalProperties": False, "properties": {
            "apiVersion": {"type": "string", "maxLength": 20},
            "requestedSchemas": {"type": "array", "maxItems": 5, "items": {"type": "object"}}}},
        "query": {"type": "object", "additionalProperties": False, "properties": {
            "filters": {"type": "array", "maxItems": beacon.MAX_FILTERS, "items": {
                "type": "object", "required": ["id"], "additionalProperties": False, "properties": {
                    "id": FILTER_ID, "includeDescendantTerms": {"type": "boolean"}, "similarity": {"enum": ["exact"]}}}},
            "requestedGranularity": GRANULARITY,
            "pagination": {"type": "object", "additionalProperties": False, "properties": {"skip": PAGE, "limit": PAGE}},
            "testMode": {"type": "boolean"},
        }},
    },
}
# g_variants are asked by gene: the gene is required (filters may narrow the patients further).
VARIANT_BODY = {**BODY, "required": ["meta", "query"], "properties": {**BODY["properties"], "query": {
    **BODY["properties"]["query"], "required": ["requestParameters"], "properties": {
        **BODY["properties"]["query"]["properties"],
        "requestParameters": {"type": "object", "additionalProperties": False, "required": ["geneId"],
                              "properties": {"geneId": GENE}}}}}}


async def _scope() -> Scope:
    from core.orgs.tables import Ern

    return Scope(tuple(sorted(r["acronym"] for r in await Ern.select(Ern.acronym))))


def _answer(body: dict, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def _error(exc: beacon.BeaconError, q=None) -> Response:
    return _answer(beacon.error_response(exc.status, exc.message, beacon_id=BEACON_ID, query=q), exc.status)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + PREFIX


@get([PREFIX, f"{PREFIX}/info"], **API)
async def info(request: Request) -> Response[BeaconAnswer]:
    """The beacon's description (Beacon v2 ``beaconInfoResponse``)."""
    return _answer(beacon.info_response(BEACON_ID, "CPMS research beacon", "European Reference Networks (CPMS)",
                                        welcome_url=str(request.base_url).rstrip("/") + "/research",
                                        description="Counts of consented, anonymised rare-disease patients; counts under the threshold are not given."))


@get(f"{PREFIX}/configuration", operation_id="beaconConfiguration", **API)
async def configuration(request: Request) -> Response[BeaconAnswer]:
    """Entry types, granularity and security level (``beaconConfigurationResponse``)."""
    return _answer(beacon.configuration_response(beacon_id=BEACON_ID))


@get(f"{PREFIX}/map", operation_id="beaconMap", **API)
async def beacon_map(request: Request) -> Response[BeaconAnswer]:
    """The endpoints of each entry type (``beaconMapResponse``)."""
    return _answer(beacon.map_response(_base(request), beacon_id=BEACON_ID))


@get(f"{PREFIX}/entry_types", operation_id="beaconEntryTypes", **API)
async def entry_types(request: Request) -> Response[BeaconAnswer]:
    """The entry types this beacon answers (``beaconEntryTypesResponse``)."""
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
    # Research terms are "ORPHA:98756", "ICD10:G11.2", "HP:0001250": Beacon CURIEs already.
    out = [(t, names.get(t, ""), "ontologyTerm") for t in terms]
    return out + beacon.sex_filtering_terms()



@get(f"{PREFIX}/filtering_terms", operation_id="beaconFilteringTerms", **API)
async def filtering_terms(request: Request) -> Response[BeaconAnswer]:
    """The codes at least k patients hold, and the sex terms (``beaconFilteringTermsResponse``)."""
    scope = await _scope()
    k = await projects.k_for(scope.erns)
    terms = await _terms(request.app.state.host, scope, k)
    await projects.log(None, request.scope["user"], "beacon.filtering_terms", {"terms": len(terms)})
    return _answer(beacon.filtering_terms_response(terms, beacon_id=BEACON_ID))


async def _count(request: Request, entry_type: str) -> Response:
    try:
        body = await _body(request, VARIANT_BODY if entry_type == "genomicVariant" else BODY) if request.method == "POST" else None
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


async def _body(request: Request, schema: dict):
    """The POST body through the core's JSON limits; a BeaconError (400) if it is not a JSON object or holds
    fields the document does not list."""
    from core.jsonbody import JsonRejected, parse

    try:
        body = parse(await request.body(), what="The Beacon request")
    except JsonRejected as exc:
        raise beacon.BeaconError(exc.status, exc.detail) from None
    if not isinstance(body, dict):
        raise beacon.BeaconError(400, "The Beacon request must be a JSON object.")
    unknown = unknown_fields(body, schema)
    if unknown:
        raise beacon.BeaconError(400, f"Unsupported field(s): {', '.join(unknown[:5])}.")
    return body


@get(f"{PREFIX}/individuals", operation_id="beaconIndividuals", responses=REFUSED,
     operation_class=operation(parameters=GET_PARAMETERS), **API)
async def individuals(request: Request) -> Response[BeaconAnswer]:
    """How many consented patients match the filters (``beaconCountResponse`` / ``beaconBooleanResponse``)."""
    return await _count(request, "individual")


@post(f"{PREFIX}/individuals", operation_id="beaconIndividualsQuery", status_code=200, responses=REFUSED,
      operation_class=operation(body=BODY), **API)
async def individuals_post(request: Request) -> Response[BeaconAnswer]:
    """As the GET, with a Beacon request body (filters with ``includeDescendantTerms``)."""
    return await _count(request, "individual")


@get(f"{PREFIX}/g_variants", operation_id="beaconGenomicVariants", responses=REFUSED,
     operation_class=operation(parameters=[*GET_PARAMETERS, query_parameter("geneId", GENE, "An HGNC gene symbol.", required=True)]), **API)
async def g_variants(request: Request) -> Response[BeaconAnswer]:
    """Whether patients with a finding in a gene exist (yes/no: CPMS counts patients, not variants)."""
    return await _count(request, "genomicVariant")


@post(f"{PREFIX}/g_variants", operation_id="beaconGenomicVariantsQuery", status_code=200, responses=REFUSED,
      operation_class=operation(body=VARIANT_BODY), **API)
async def g_variants_post(request: Request) -> Response[BeaconAnswer]:
    """As the GET, with a Beacon request body (``requestParameters.geneId``)."""
    return await _count(request, "genomicVariant")


ROUTES = [info, configuration, beacon_map, entry_types, filtering_terms, individuals, individuals_post, g_variants, g_variants_post]
