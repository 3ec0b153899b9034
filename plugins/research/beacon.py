"""A GA4GH Beacon v2 that answers with counts only: pure builders for requests and responses.

The routes and the counting are wired elsewhere; this module turns a request into a
``BeaconQuery`` (``parse_request``), the query into a CPMS cohort definition
(``BeaconQuery.to_cohort``, the tree ``query.parse_definition`` reads), and builds every response
as the Beacon v2 framework schemas describe it (the tests validate them against the GA4GH
schemas).

Entry types: ``individual`` (``/individuals``: filters on HPO phenotypes, diagnoses and sex) and
``genomicVariant`` (``/g_variants``: ``geneId`` only, answered as a Boolean, because CPMS counts
patients with a finding in a gene, not distinct variants, so a number would be in the wrong unit).

Small counts: the caller passes ``count=None`` when the (perturbed) count is below its threshold;
the answer then drops to Boolean granularity with ``"exists": false`` and a note in ``info``. The
spec lets a beacon return a lower granularity than requested and says so in
``meta.returnedGranularity``; an exact small count is never returned. "exists": false therefore
means "nothing at or above the threshold", not "none".

Filters the beacon does not know are an error (400), as the Beacon maintainers advise (an
ignored filter would silently widen the count).
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from plugins.research.phenopackets_export import RESOURCES

API_VERSION = "v2.0.0"
SPEC = "Beacon v2.0.0"
GRANULARITIES = ("boolean", "count", "record")
ENVIRONMENTS = ("prod", "test", "dev", "staging")
MAX_FILTERS = 20
_SCHEMA_BASE = "https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main"
_DRAFT = "https://json-schema.org/draft/2020-12/schema"

ENTRY_TYPES: dict[str, dict[str, Any]] = {
    "individual": {
        "endpoint": "individuals", "name": "Individual", "term": {"id": "NCIT:C25190", "label": "Person"},
        "schema": "ga4gh-beacon-individual-v2.0.0", "model": "individuals",
        "description": "A patient in CPMS's research data (consented, anonymised); counts only.",
    },
    "genomicVariant": {
        "endpoint": "g_variants", "name": "Genomic Variants", "term": {"id": "ENSGLOSSARY:0000092", "label": "Variant"},
        "schema": "ga4gh-beacon-variant-v2.0.0", "model": "genomicVariations",
        "description": "Gene-level findings (HGNC symbol) of patients; queried by geneId, answered yes/no only.",
    },
}

#: NCIT sex terms (Beacon v2 individuals' ``sex``) -> CPMS sex.
SEX_TERMS = {"NCIT:C16576": "female", "NCIT:C20197": "male", "NCIT:C17998": "unknown"}
SEX_LABELS = {"NCIT:C16576": "female", "NCIT:C20197": "male", "NCIT:C17998": "unknown"}

#: Filter CURIE prefix (upper-cased) -> (cohort field, CPMS system, code pattern).
_PREFIXES: dict[str, tuple[str, str, re.Pattern]] = {
    "HP": ("phenotype", "HPO", re.compile(r"^\d{7}$")),
    "ORPHA": ("diagnosis", "ORPHA", re.compile(r"^\d{1,7}$")),
    "ORPHANET": ("diagnosis", "ORPHA", re.compile(r"^\d{1,7}$")),
    "ICD10": ("diagnosis", "ICD-10", re.compile(r"^[A-Z]\d{2}(\.\d{1,2})?$|^[A-Z]\d{2}-[A-Z]\d{2}$")),
    "ICD10CM": ("diagnosis", "ICD-10-CM", re.compile(r"^[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?$")),
    "ICD11": ("diagnosis", "ICD-11", re.compile(r"^[0-9A-Z]{4}(\.[0-9A-Z]{1,3})?$")),
    "OMIM": ("diagnosis", "OMIM", re.compile(r"^(PS)?\d{6}$")),
    "NCIT": ("sex", "", re.compile(r"^C\d+$")),
}
_CURIE = re.compile(r"^\w[^:]+:.+$")  # the spec's CURIE pattern
_GENE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,19}$")
_GET_PARAMS = {"filters", "requestedGranularity", "skip", "limit", "includeResultsetResponses", "testMode",
               "requestedSchema", "apiVersion"}


class BeaconError(Exception):
    """A request the beacon cannot answer: ``status`` (HTTP) and a message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Filter:
    id: str
    include_descendants: bool = True


@dataclass(frozen=True)
class BeaconQuery:
    entry_type: str = "individual"
    filters: tuple[Filter, ...] = ()
    gene_id: str | None = None
    requested_granularity: str = "count"  # when the request names none: this beacon's default
    api_version: str = API_VERSION
    test_mode: bool = False
    pagination: dict = field(default_factory=lambda: {"skip": 0, "limit": 10})

    def to_cohort(self) -> dict:
        """The cohort definition: every filter (and the gene) ANDed, as Beacon v2 prescribes."""
        items = [_leaf(f) for f in self.filters]
        if self.gene_id:
            items.append({"field": "gene", "value": self.gene_id})
        return {"op": "and", "items": items}

    def summary(self) -> dict:
        """``receivedRequestSummary``: the request as this beacon understood it."""
        out = {"apiVersion": self.api_version, "requestedSchemas": [], "pagination": dict(self.pagination),
               "requestedGranularity": self.requested_granularity, "testMode": self.test_mode}
        if self.filters:
            out["filters"] = [f.id for f in self.filters]
        if self.gene_id:
            # Keyed by entry type: the framework's requestParameters is a map of objects.
            out["requestParameters"] = {"g_variant": {"geneId": self.gene_id}}
        return out


# -- filters -> cohort leaves ----------------------------------------------------------------------

def _split(curie: str) -> tuple[str, str, tuple[str, str, re.Pattern]]:
    if not _CURIE.match(curie):
        raise BeaconError(400, f"Filter {curie!r} is not a CURIE (prefix:code).")
    prefix, code = curie.split(":", 1)
    rule = _PREFIXES.get(prefix.upper())
    if rule is None:
        raise BeaconError(400, f"Unsupported filter {curie!r}: this beacon filters on HP, ORPHA (Orphanet), ICD10, "
                               "ICD10CM, ICD11, OMIM and NCIT sex terms; see /filtering_terms.")
    code = code.strip().upper()
    if not rule[2].match(code):
        raise BeaconError(400, f"Filter {curie!r}: not a valid {prefix} code.")
    return prefix.upper(), code, rule


def _leaf(f: Filter) -> dict:
    prefix, code, (kind, system, _) = _split(f.id)
    if kind == "phenotype":
        return {"field": "phenotype", "system": "HPO", "code": f"HP:{code}", "descendants": f.include_descendants}
    if kind == "sex":
        sex = SEX_TERMS.get(f"NCIT:{code}")
        if sex is None:
            raise BeaconError(400, f"Unsupported filter {f.id!r}: of NCIT, only the sex terms "
                                   f"{', '.join(SEX_TERMS)} are supported.")
        return {"field": "sex", "value": sex}
    return {"field": "diagnosis", "system": system, "code": code, "descendants": f.include_descendants}


# -- requests ----------------------------------------------------------------------------------------

def parse_request(method: str, query_params: Mapping[str, Any], body: Mapping | None, *,
                  entry_type: str = "individual", supported_ids: Container[str] | None = None) -> BeaconQuery:
    """A Beacon GET (``?filters=HP:0001250,ORPHA:98756``) or POST (request body) as a BeaconQuery.

    ``supported_ids``, if given, are the filter ids this beacon lists at /filtering_terms; any
    other id is refused. Raises BeaconError(400) for anything malformed or unsupported.
    """
    if entry_type not in ENTRY_TYPES:
        raise BeaconError(404, f"Unknown entry type {entry_type!r}.")
    method = method.upper()
    if method == "GET":
        query = _from_get(query_params or {}, entry_type)
    elif method == "POST":
        query = _from_post(body, entry_type)
    else:
        raise BeaconError(405, f"Method {method} is not allowed: use GET or POST.")
    _check(query, supported_ids)
    return query


def _check(query: BeaconQuery, supported_ids: Container[str] | None) -> None:
    if len(query.filters) > MAX_FILTERS:
        raise BeaconError(400, f"At most {MAX_FILTERS} filters per request.")
    for f in query.filters:
        if supported_ids is not None and f.id not in supported_ids:
            raise BeaconError(400, f"Unsupported filter {f.id!r}: see /filtering_terms.")
    query.to_cohort()  # every filter translates, or BeaconError
    if query.entry_type == "genomicVariant" and not query.gene_id:
        raise BeaconError(400, "g_variants are queried by geneId (an HGNC symbol) only.")


def _one(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if isinstance(value, (list, tuple)):
        if len(set(value)) > 1:
            raise BeaconError(400, f"Give {key} once.")
        value = value[0] if value else None
    if value is not None and not isinstance(value, str):
        raise BeaconError(400, f"{key} must be text.")
    return value


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BeaconError(400, f"{key} must be true or false.")


def _granularity(value: Any) -> str:
    # Unnamed: this beacon's defaultGranularity (count), as its configuration declares.
    if value is None:
        return "count"
    if value not in GRANULARITIES:
        raise BeaconError(400, f"requestedGranularity must be one of {', '.join(GRANULARITIES)}.")
    return value


def _pagination(skip: Any, limit: Any) -> dict:
    out = {}
    for key, value in (("skip", skip), ("limit", limit)):
        default = 0 if key == "skip" else 10
        try:
            number = default if value in (None, "") else int(value)
        except (TypeError, ValueError):
            raise BeaconError(400, f"{key} must be a whole number.") from None
        if isinstance(value, bool) or number < 0:
            raise BeaconError(400, f"{key} must be a whole number.")
        out[key] = number
    return out


def _gene(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _GENE.match(value.strip()):
        raise BeaconError(400, "geneId must be an HGNC gene symbol, e.g. ATXN2.")
    return value.strip()


def _from_get(params: Mapping[str, Any], entry_type: str) -> BeaconQuery:
    allowed = _GET_PARAMS | ({"geneId"} if entry_type == "genomicVariant" else set())
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise BeaconError(400, f"Unsupported request parameter(s): {', '.join(unknown)}.")
    raw = params.get("filters") or []
    raw = [raw] if isinstance(raw, str) else list(raw)
    ids = [part.strip() for item in raw for part in str(item).split(",") if part.strip()]
    test_mode = _one(params, "testMode")
    return BeaconQuery(
        entry_type=entry_type,
        filters=tuple(Filter(i) for i in ids),  # GET filters take the spec's defaults (descendants included)
        gene_id=_gene(_one(params, "geneId")),
        requested_granularity=_granularity(_one(params, "requestedGranularity")),
        api_version=_one(params, "apiVersion") or API_VERSION,
        test_mode=False if test_mode is None else _bool(test_mode, "testMode"),
        pagination=_pagination(_one(params, "skip"), _one(params, "limit")),
    )


def _post_filter(item: Any) -> Filter:
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
        raise BeaconError(400, "Each filter must be an object with an id.")
    if "operator" in item or "value" in item:
        raise BeaconError(400, f"Filter {item['id']!r}: alphanumeric filters are not supported.")
    if item.get("similarity", "exact") != "exact":
        raise BeaconError(400, f"Filter {item['id']!r}: only exact matches are supported (similarity).")
    descendants = item.get("includeDescendantTerms", True)
    return Filter(item["id"].strip(), _bool(descendants, "includeDescendantTerms"))


def _post_gene(params: Any, entry_type: str) -> str | None:
    if params in (None, {}):
        return None
    if not isinstance(params, Mapping) or entry_type != "genomicVariant":
        raise BeaconError(400, "requestParameters are supported on g_variants only (geneId).")
    # Accept the flat form most clients send and the framework's map keyed by entry type.
    nested = params.get("g_variant", params.get("genomicVariant"))
    flat = nested if isinstance(nested, Mapping) else params
    unknown = sorted(set(flat) - {"geneId"})
    if unknown or (nested is not None and len(params) > 1):
        raise BeaconError(400, f"Unsupported request parameter(s): {', '.join(unknown) or ', '.join(params)}.")
    return _gene(flat.get("geneId"))


def _from_post(body: Mapping | None, entry_type: str) -> BeaconQuery:
    if not isinstance(body, Mapping):
        raise BeaconError(400, "The request body must be a JSON object.")
    meta = body.get("meta")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("apiVersion"), str):
        raise BeaconError(400, "The request body needs meta.apiVersion.")
    query = body.get("query", {})
    if not isinstance(query, Mapping):
        raise BeaconError(400, "query must be an object.")
    filters = query.get("filters", [])
    if not isinstance(filters, list):
        raise BeaconError(400, "query.filters must be a list.")
    pagination = query.get("pagination", {})
    if not isinstance(pagination, Mapping):
        raise BeaconError(400, "query.pagination must be an object.")
    return BeaconQuery(
        entry_type=entry_type,
        filters=tuple(_post_filter(f) for f in filters),
        gene_id=_post_gene(query.get("requestParameters"), entry_type),
        requested_granularity=_granularity(query.get("requestedGranularity")),
        api_version=meta["apiVersion"],
        test_mode=_bool(query.get("testMode", False), "testMode"),
        pagination=_pagination(pagination.get("skip"), pagination.get("limit")),
    )


# -- responses ---------------------------------------------------------------------------------------

def _schemas(entry_type: str | None) -> list[dict]:
    if entry_type is None:
        return []
    return [{"entityType": entry_type, "schema": ENTRY_TYPES[entry_type]["schema"]}]


def _informational_meta(beacon_id: str, api_version: str) -> dict:
    return {"beaconId": beacon_id, "apiVersion": api_version, "returnedSchemas": []}


def info_response(beacon_id: str, name: str, org_name: str, api_version: str = API_VERSION, environment: str = "prod",
                  welcome_url: str | None = None, *, org_id: str | None = None, description: str | None = None,
                  contact_url: str | None = None, org_welcome_url: str | None = None) -> dict:
    """``/`` and ``/info``: the beacon and who runs it."""
    if environment not in ENVIRONMENTS:
        raise ValueError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
    organization = {"id": org_id or org_name, "name": org_name}
    if contact_url:
        organization["contactUrl"] = contact_url
    if org_welcome_url:
        organization["welcomeUrl"] = org_welcome_url
    response = {"id": beacon_id, "name": name, "apiVersion": api_version, "environment": environment,
                "organization": organization}
    if description:
        response["description"] = description
    if welcome_url:
        response["welcomeUrl"] = welcome_url
    return {"meta": _informational_meta(beacon_id, api_version), "response": response}


def _entry_type_definition(entry_type: str) -> dict:
    e = ENTRY_TYPES[entry_type]
    return {
        "id": entry_type, "name": e["name"], "ontologyTermForThisType": dict(e["term"]),
        "partOfSpecification": SPEC, "description": e["description"],
        "defaultSchema": {
            "id": e["schema"], "name": f"Default schema for {e['name'].lower()}",
            "referenceToSchemaDefinition":
                f"{_SCHEMA_BASE}/models/json/beacon-v2-default-model/{e['model']}/defaultSchema.json",
            "schemaVersion": "v2.0.0",
        },
        "additionallySupportedSchemas": [],
        # A count of the whole research population is harmless; variants need a gene.
        "nonFilteredQueriesAllowed": entry_type == "individual",
    }


def _entry_types(variants: bool) -> dict:
    return {t: _entry_type_definition(t) for t in ENTRY_TYPES if variants or t == "individual"}


def configuration_response(*, beacon_id: str, api_version: str = API_VERSION, production_status: str = "PROD",
                           security_levels: tuple[str, ...] = ("CONTROLLED",), variants: bool = True) -> dict:
    """``/configuration``: maturity, security (counts by default) and entry types."""
    if production_status not in ("DEV", "TEST", "PROD"):
        raise ValueError("production_status must be DEV, TEST or PROD")
    response = {
        "$schema": f"{_SCHEMA_BASE}/framework/json/configuration/beaconConfigurationSchema.json",
        "maturityAttributes": {"productionStatus": production_status},
        "securityAttributes": {"defaultGranularity": "count", "securityLevels": list(security_levels)},
        "entryTypes": _entry_types(variants),
    }
    return {"meta": _informational_meta(beacon_id, api_version), "response": response}


def map_response(base_url: str, *, beacon_id: str, api_version: str = API_VERSION, variants: bool = True) -> dict:
    """``/map``: where each entry type is queried (no single-entry URLs: there are no records)."""
    base = base_url.rstrip("/")
    sets = {t: {"entryType": t, "rootUrl": f"{base}/{ENTRY_TYPES[t]['endpoint']}"}
            for t in ENTRY_TYPES if variants or t == "individual"}
    response = {"$schema": f"{_SCHEMA_BASE}/framework/json/configuration/beaconMapSchema.json", "endpointSets": sets}
    return {"meta": _informational_meta(beacon_id, api_version), "response": response}


def entry_types_response(*, beacon_id: str, api_version: str = API_VERSION, variants: bool = True) -> dict:
    return {"meta": _informational_meta(beacon_id, api_version), "response": {"entryTypes": _entry_types(variants)}}


def _beacon_resource(prefix: str) -> dict | None:
    """A filtering-terms ``Resource`` for a CURIE prefix (Beacon spells it ``nameSpacePrefix``)."""
    if prefix.upper() == "NCIT":
        base = {"id": "ncit", "name": "NCI Thesaurus OBO Edition", "url": "http://purl.obolibrary.org/obo/ncit.owl",
                "iriPrefix": "http://purl.obolibrary.org/obo/NCIT_"}
    else:
        known = RESOURCES.get({"ORPHANET": "ORPHA"}.get(prefix.upper(), prefix.upper()))
        if known is None:
            return None
        base = {k: v for k, v in known.items() if k != "namespacePrefix"}
    return {**base, "nameSpacePrefix": prefix, "version": ""}


def filtering_terms_response(terms: list[tuple[str, str, str]], *, beacon_id: str,
                             api_version: str = API_VERSION) -> dict:
    """``/filtering_terms``: (id, label, type) triples, e.g. ("HP:0001250", "Seizure", "ontologyTerm"),
    with a resource entry for each ontology prefix used."""
    items, prefixes = [], []
    for term_id, label, kind in terms:
        if not _CURIE.match(term_id) or not kind:
            raise ValueError(f"not a filtering term: {term_id!r}")
        item = {"id": term_id, "type": kind, "scopes": ["individual"]}
        if label:
            item["label"] = label
        items.append(item)
        prefix = term_id.split(":", 1)[0]
        if prefix not in prefixes:
            prefixes.append(prefix)
    resources = [r for r in (_beacon_resource(p) for p in prefixes) if r]
    return {"meta": _informational_meta(beacon_id, api_version),
            "response": {"filteringTerms": items, "resources": resources}}


def sex_filtering_terms() -> list[tuple[str, str, str]]:
    return [(term, label, "ontologyTerm") for term, label in SEX_LABELS.items()]


def _returned_granularity(query: BeaconQuery, count: int | None, wanted: str) -> str:
    if count is None or query.entry_type == "genomicVariant":
        return "boolean"
    order = ("boolean", "count")
    requested = "count" if query.requested_granularity == "record" else query.requested_granularity
    wanted = "count" if wanted == "record" else wanted
    return min(requested, wanted, key=order.index)


def count_response(query: BeaconQuery, count: int | None, *, returned_granularity: str = "count", beacon_id: str,
                   api_version: str = API_VERSION, threshold: int | None = None) -> dict:
    """A count (or Boolean) response for ``count`` matches; ``None`` = below the threshold.

    ``threshold``, if given, is checked here too: a count under it is treated as ``None``.
    """
    if count is not None and (isinstance(count, bool) or count < 0):
        raise ValueError("count must be a whole number >= 0 or None")
    if returned_granularity not in GRANULARITIES:
        raise ValueError(f"returned_granularity must be one of {', '.join(GRANULARITIES)}")
    if count is not None and threshold is not None and count < threshold:
        count = None
    granularity = _returned_granularity(query, count, returned_granularity)
    summary = {"exists": bool(count)}
    if granularity == "count":
        summary["numTotalResults"] = count
    out = {
        "meta": {"beaconId": beacon_id, "apiVersion": api_version, "returnedSchemas": _schemas(query.entry_type),
                 "returnedGranularity": granularity, "receivedRequestSummary": query.summary(),
                 "testMode": query.test_mode},
        "responseSummary": summary,
    }
    if count is None:
        out["info"] = {"note": "No count at or above this beacon's disclosure threshold; small counts are "
                               "never given, so exists=false does not mean that no patient matches."}
    return out


def error_response(status: int, message: str, *, beacon_id: str, api_version: str = API_VERSION,
                   query: BeaconQuery | None = None) -> dict:
    """A ``beaconErrorResponse``; ``query`` when the request was understood far enough to have one."""
    summary = query.summary() if query else {
        "apiVersion": api_version, "requestedSchemas": [], "pagination": {"skip": 0, "limit": 10},
        "requestedGranularity": "count"}
    return {
        "meta": {"beaconId": beacon_id, "apiVersion": api_version,
                 "returnedSchemas": _schemas(query.entry_type if query else None),
                 "returnedGranularity": "boolean", "receivedRequestSummary": summary},
        "error": {"errorCode": int(status), "errorMessage": message},
    }
