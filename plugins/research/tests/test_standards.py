"""The research exports against their standards: the EU RD Platform's 16 CDEs, GA4GH Phenopackets v2
(read back by GA4GH's protobuf classes) and Beacon v2 (validated against GA4GH's JSON schemas,
vendored under ``data/beacon-v2``)."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from google.protobuf import json_format
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from phenopackets import Phenopacket, Sex
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from plugins.research import beacon, cde
from plugins.research.beacon import BeaconError, BeaconQuery, Filter, parse_request
from plugins.research.model import SUPPRESSED, AnonymisedRecord, Code
from plugins.research.phenopackets_export import PhenopacketError, checked, phenopacket, phenopacket_files, phenopackets_zip

CREATED = "2026-03-01T09:30:00Z"
#: Anything that looks like a calendar date: 2021-03-04, 04/03/2021, 03/2021, 2021-03.
DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}|\b\d{1,2}/\d{1,2}/\d{4}\b|\b\d{1,2}/\d{4}\b|\b\d{4}-(0[1-9]|1[0-2])\b")


def record(**overrides) -> AnonymisedRecord:
    base = dict(
        research_id="a3f9c2e18b", sex="female", age_band_enrolment="30-39", age_band_onset="20-29",
        age_band_diagnosis="30-39", enrolment_period="2020-2024", country="DE", erns=("ERN-RND",),
        diagnoses=(Code("ORPHA", "98756", "Spinocerebellar ataxia type 2"), Code("ICD-10", "G11.2", "Late-onset cerebellar ataxia")),
        diagnosis_confirmed=True,
        phenotypes=(Code("HPO", "HP:0001251", "Ataxia"), Code("HPO", "HP:0002075", "Dysdiadochokinesis")),
        excluded_phenotypes=(Code("HPO", "HP:0001250", "Seizure"),),
        genes=("ATXN2",), variant_classes=(("ATXN2", "pathogenic"),), outcome="diagnosed", research_contact=True,
    )
    base.update(overrides)
    return AnonymisedRecord(**base)


def undiagnosed() -> AnonymisedRecord:
    """Quasi-identifiers suppressed for k-anonymity; no confirmed diagnosis; a VUS."""
    return record(research_id="7be01d44c9", sex=SUPPRESSED, age_band_enrolment=SUPPRESSED, age_band_onset="unknown",
                  age_band_diagnosis="unknown", enrolment_period=SUPPRESSED, country=SUPPRESSED,
                  diagnoses=(Code("ORPHA", SUPPRESSED),), diagnosis_confirmed=False,
                  phenotypes=(Code("HPO", "HP:0001263", "Global developmental delay"), Code("HPO", "HP:0001250", "Seizure")),
                  excluded_phenotypes=(), genes=("SCN1A",), variant_classes=(("SCN1A", "uncertain significance"),),
                  outcome="no_diagnosis", research_contact=False)


def elderly() -> AnonymisedRecord:
    """Top age band, one enrolment year, a generalised ORPHA ancestor, OMIM and ICD-10-CM codes, mixed classes."""
    return record(research_id="c0ffee1234", sex="male", age_band_enrolment="80+", age_band_onset="60-79",
                  age_band_diagnosis="80+", enrolment_period="2019", country="IT",
                  diagnoses=(Code("ORPHA", "183518", "Rare hereditary ataxia"), Code("OMIM", "164400"),
                             Code("ICD-10-CM", "G11.2")),
                  phenotypes=(Code("HPO", "HP:0001251", "Ataxia"),), excluded_phenotypes=(),
                  genes=("ATXN2", "CACNA1A"), variant_classes=(("CACNA1A", "benign"), ("CACNA1A", "likely pathogenic")),
                  research_contact=False)


RECORDS = (record(), undiagnosed(), elderly())


# --- CDE ----------------------------------------------------------------------------------------

JRC_ELEMENTS = (
    "Pseudonym", "Date of birth", "Sex", "Patient's status", "Date of death", "First contact with specialised centre",
    "Age at onset", "Age at diagnosis", "Diagnosis of the rare disease", "Genetic diagnosis", "Undiagnosed case",
    "Agreement to be contacted for research purposes", "Consent to the reuse of data", "Biological sample",
    "Link to a biobank", "Classification of functioning/disability",
)


def cde_csv(records=RECORDS) -> tuple[str, list[dict]]:
    out = io.StringIO()
    written = cde.write_cde_csv(records, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert written == len(rows)
    return out.getvalue(), rows


def test_cde_csv_has_the_16_elements_as_columns_and_one_row_per_record():
    text, rows = cde_csv()
    assert next(csv.reader(io.StringIO(text))) == list(JRC_ELEMENTS)
    assert len(JRC_ELEMENTS) == 16
    assert [r["Pseudonym"] for r in rows] == [r.research_id for r in RECORDS]


def test_cde_row_of_a_diagnosed_patient():
    row = cde.cde_row(record())
    assert row["Date of birth"] == "1980-1994"  # aged 30-39 some time in 2020-2024
    assert row["Sex"] == "Female"
    assert row["First contact with specialised centre"] == "2020-2024"
    assert (row["Age at onset"], row["Age at diagnosis"]) == ("20-29", "30-39")
    assert row["Diagnosis of the rare disease"] == "ORPHA:98756; ICD10:G11.2"
    assert row["Genetic diagnosis"] == "ATXN2 (pathogenic)"
    assert row["Undiagnosed case"] == ""
    assert row["Agreement to be contacted for research purposes"] == "Yes"
    assert row["Consent to the reuse of data"] == "Yes"


def test_cde_suppressed_and_unknown_values_are_written_as_the_dictionary_says():
    row = cde.cde_row(undiagnosed())
    assert row["Sex"] == SUPPRESSED and row["Date of birth"] == SUPPRESSED
    assert row["First contact with specialised centre"] == SUPPRESSED
    assert row["Age at onset"] == "Undetermined" and row["Age at diagnosis"] == "Undetermined"
    assert row["Diagnosis of the rare disease"] == ""  # no confirmed diagnosis: the case goes to 6.3
    assert row["Undiagnosed case"] == "HP:0001263; HP:0001250"
    assert row["Genetic diagnosis"] == "SCN1A (uncertain significance)"
    assert row["Agreement to be contacted for research purposes"] == "No"
    dictionary = {e["name"]: e for e in cde.data_dictionary()}
    assert "'*'" in dictionary["Sex"]["generalisation"] and "Undetermined" in dictionary["Age at onset"]["cpms_fill"]


def test_cde_generalised_values_stay_generalised():
    row = cde.cde_row(elderly())
    assert row["Date of birth"] == "<=1939"  # 80 or over in 2019: no lower bound is invented
    assert row["Age at diagnosis"] == "80+" and row["First contact with specialised centre"] == "2019"
    assert row["Diagnosis of the rare disease"] == "ORPHA:183518; OMIM:164400; ICD10CM:G11.2"
    assert row["Genetic diagnosis"] == "ATXN2; CACNA1A (benign, likely pathogenic)"
    assert cde.cde_row(record(diagnoses=(Code("ORPHA", "98756"), Code("ICD-10", SUPPRESSED))))[
        "Diagnosis of the rare disease"] == "ORPHA:98756; *"


def test_cde_elements_cpms_does_not_hold_are_empty_and_documented():
    _, rows = cde_csv()
    dictionary = {e["name"]: e for e in cde.data_dictionary()}
    for name in ("Patient's status", "Date of death", "Biological sample", "Link to a biobank",
                 "Classification of functioning/disability"):
        assert {r[name] for r in rows} == {""}, name
        assert "always empty" in dictionary[name]["cpms_fill"], name


def test_cde_export_holds_no_exact_date():
    text, _ = cde_csv()
    assert DATE.search(text) is None
    # The check itself finds dates in the CDE formats.
    assert DATE.search("04/03/2021") and DATE.search("2021-03-04") and DATE.search("03/2021")


def test_cde_data_dictionary_covers_every_element_in_order():
    entries = cde.data_dictionary()
    assert [e["element"] for e in entries] == ["1.1", "2.1", "2.2", "3.1", "3.2", "4.1", "5.1", "5.2", "6.1", "6.2",
                                               "6.3", "7.1", "7.2", "7.3", "7.4", "8.1"]
    assert tuple(e["name"] for e in entries) == JRC_ELEMENTS == cde.COLUMNS
    for e in entries:
        assert all(e[k] for k in ("definition", "value_set", "cpms_fill", "generalisation")), e["element"]
    out = io.StringIO()
    cde.write_data_dictionary_csv(out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == 16 and list(rows[0]) == list(cde.DICTIONARY_COLUMNS) and rows[8]["element"] == "6.1"


def test_cde_bands_and_periods_are_read_strictly():
    assert cde.age_band_bounds("30-39") == (30, 39) and cde.age_band_bounds("80+") == (80, None)
    assert cde.age_band_bounds("7") == (7, 7) and cde.age_band_bounds("unknown") is None
    assert cde.birth_years("0-9", "2021") == "2011-2021"
    for bad in ("30–39", "39-30", "thirty", "30-39y"):
        with pytest.raises(ValueError):
            cde.age_band_bounds(bad)
    with pytest.raises(ValueError):
        cde.period_bounds("2024-2020")


def test_cde_cells_that_would_run_as_formulas_are_defused():
    _, rows = cde_csv([record(research_id="=HYPERLINK(1)")])
    assert rows[0]["Pseudonym"] == "'=HYPERLINK(1)"


# --- Phenopackets --------------------------------------------------------------------------------

def packets() -> list[dict]:
    return [phenopacket(r, created_by="CPMS research export", created=CREATED) for r in RECORDS]


def _strings(node, path=""):
    """(path, text) of every key and string value."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}/{key}", key
            yield from _strings(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}/{i}")
    elif isinstance(node, str):
        yield path, node


def test_every_phenopacket_is_read_by_the_ga4gh_classes():
    for rec, packet in zip(RECORDS, packets()):
        message = json_format.ParseDict(packet, Phenopacket())
        assert message.id == rec.research_id == message.subject.id
        assert message.meta_data.phenopacket_schema_version == "2.0"
        assert message.meta_data.created.ToJsonString() == CREATED
    first = json_format.ParseDict(packets()[0], Phenopacket())
    assert first.subject.sex == Sex.FEMALE
    assert [f.type.id for f in first.phenotypic_features if f.excluded] == ["HP:0001250"]


def test_phenopackets_hold_no_date_but_the_export_time_and_no_quasi_identifier_outside_the_schema():
    for rec, packet in zip(RECORDS, packets()):
        found = [(path, text) for path, text in _strings(packet) if DATE.search(text)]
        assert found == [("/metaData/created", CREATED)]
        texts = {text for _, text in _strings(packet)}
        assert rec.country not in texts and rec.enrolment_period not in texts and not set(rec.erns) & texts
        assert "dateOfBirth" not in packet["subject"] and "vitalStatus" not in packet["subject"]


def test_phenopacket_ages_are_iso8601_ranges_from_the_bands():
    first, second, third = packets()
    assert first["subject"]["timeAtLastEncounter"] == {
        "ageRange": {"start": {"iso8601duration": "P30Y"}, "end": {"iso8601duration": "P39Y"}}}
    assert third["subject"]["timeAtLastEncounter"] == {"ageRange": {"start": {"iso8601duration": "P80Y"}}}
    assert first["diseases"][0]["onset"]["ageRange"]["start"] == {"iso8601duration": "P20Y"}
    assert "timeAtLastEncounter" not in second["subject"]  # suppressed
    assert all("onset" not in f for p in packets() for f in p.get("phenotypicFeatures", []))


def test_phenopacket_diseases_as_generalised_and_suppressed_left_out():
    first, second, third = packets()
    assert first["diseases"][0]["term"] == {"id": "ORPHA:98756", "label": "Spinocerebellar ataxia type 2"}
    assert [d["term"]["id"] for d in third["diseases"]] == ["ORPHA:183518", "OMIM:164400", "ICD10CM:G11.2"]
    assert "diseases" not in second and second["subject"]["sex"] == "UNKNOWN_SEX"


def test_phenopacket_genes_at_gene_level_with_a_status_from_the_acmg_class():
    first, second, third = packets()
    calls = {g["gene"]["symbol"]: g for g in third["interpretations"][0]["diagnosis"]["genomicInterpretations"]}
    assert calls["CACNA1A"]["interpretationStatus"] == "CONTRIBUTORY"  # the strongest class of its variants
    assert calls["ATXN2"]["interpretationStatus"] == "UNKNOWN_STATUS"  # no class recorded
    assert calls["CACNA1A"]["gene"]["valueId"] == "hgnc.symbol:CACNA1A"
    assert third["interpretations"][0]["diagnosis"]["disease"]["id"] == "ORPHA:183518"
    assert "variantInterpretation" not in json.dumps(packets())
    assert "interpretations" not in second  # no disease to attach the genes to (documented)
    with_id = phenopacket(record(), created_by="CPMS", created=CREATED, hgnc_ids={"ATXN2": "HGNC:10555"})
    assert with_id["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]["gene"]["valueId"] == "HGNC:10555"
    assert "HGNC" in {r["namespacePrefix"] for r in with_id["metaData"]["resources"]}
    vus = phenopacket(record(variant_classes=(("ATXN2", "Uncertain significance"),)), created_by="CPMS", created=CREATED)
    assert vus["interpretations"][0]["diagnosis"]["genomicInterpretations"][0]["interpretationStatus"] == "CANDIDATE"


def test_phenopacket_resources_name_exactly_the_prefixes_used():
    for packet in packets():
        used = {text.split(":", 1)[0] for path, text in _strings(packet)
                if path.endswith(("/id", "/valueId")) and ":" in text and "/metaData/" not in path}
        assert {r["namespacePrefix"] for r in packet["metaData"]["resources"]} == used
        assert all(r["iriPrefix"].startswith("http") and r["url"].startswith("http")
                   for r in packet["metaData"]["resources"])


def test_an_invalid_phenopacket_is_refused():
    with pytest.raises(PhenopacketError):
        checked({"id": "x", "subject": {"id": "x", "sex": "NOT_A_SEX"}})
    with pytest.raises(PhenopacketError):
        checked({"id": "x", "notAField": 1})
    with pytest.raises(ValueError):
        phenopacket(record(age_band_onset="20 to 29"), created_by="CPMS", created=CREATED)


def test_phenopackets_zip_one_file_per_record_with_no_time_of_its_own():
    out = io.BytesIO()
    assert phenopackets_zip(RECORDS, out, created_by="CPMS research export", created=CREATED) == 3
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as archive:
        assert archive.namelist() == [f"{r.research_id}.json" for r in RECORDS]
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert json.loads(archive.read("c0ffee1234.json")) == packets()[2]
    with pytest.raises(ValueError):
        list(phenopacket_files([record(), record()], created_by="CPMS", created=CREATED))
    with pytest.raises(ValueError):
        list(phenopacket_files([record(research_id="../evil")], created_by="CPMS", created=CREATED))


# --- Beacon v2 ----------------------------------------------------------------------------------

SCHEMAS = Path(__file__).parent / "data" / "beacon-v2" / "framework" / "json"


def _registry() -> Registry:
    resources = [(p.as_uri(), Resource.from_contents(json.loads(p.read_text()), default_specification=DRAFT202012))
                 for p in SCHEMAS.rglob("*.json")]
    return Registry().with_resources(resources)


REGISTRY = _registry()
BEACON = dict(beacon_id="eu.ern-net.cpms.beacon")


def validate(instance: dict, schema: str) -> None:
    """Validate against a vendored schema file (relative $refs resolved through the registry)."""
    Draft202012Validator({"$ref": (SCHEMAS / schema).as_uri()}, registry=REGISTRY).validate(instance)


def test_the_vendored_schemas_do_reject_a_wrong_document():
    good = beacon.count_response(BeaconQuery(), 42, **BEACON)
    validate(good, "responses/beaconCountResponse.json")
    del good["responseSummary"]["numTotalResults"]
    with pytest.raises(ValidationError):
        validate(good, "responses/beaconCountResponse.json")
    with pytest.raises(ValidationError):
        validate({"meta": {"beaconId": "x"}, "error": {"errorCode": "400"}}, "responses/beaconErrorResponse.json")


def test_informational_responses_validate():
    validate(beacon.info_response("eu.ern-net.cpms.beacon", "CPMS research beacon", "European Reference Networks",
                                  environment="test", welcome_url="https://cpms.example.org/research",
                                  description="Counts of consented, anonymised rare disease patients."),
             "responses/beaconInfoResponse.json")
    validate(beacon.configuration_response(**BEACON), "responses/beaconConfigurationResponse.json")
    validate(beacon.map_response("https://cpms.example.org/api/beacon/", **BEACON), "responses/beaconMapResponse.json")
    validate(beacon.entry_types_response(**BEACON), "responses/beaconEntryTypesResponse.json")
    validate(beacon.entry_types_response(variants=False, **BEACON), "responses/beaconEntryTypesResponse.json")
    terms = [("HP:0001250", "Seizure", "ontologyTerm"), ("ORPHA:98756", "Spinocerebellar ataxia type 2", "ontologyTerm"),
             ("Orphanet:98756", "", "ontologyTerm"), *beacon.sex_filtering_terms()]
    response = beacon.filtering_terms_response(terms, **BEACON)
    validate(response, "responses/beaconFilteringTermsResponse.json")
    assert [r["nameSpacePrefix"] for r in response["response"]["resources"]] == ["HP", "ORPHA", "Orphanet", "NCIT"]


def test_informational_responses_say_what_this_beacon_is():
    mapped = beacon.map_response("https://cpms.example.org/api/beacon/", **BEACON)["response"]["endpointSets"]
    assert mapped["individual"]["rootUrl"] == "https://cpms.example.org/api/beacon/individuals"
    assert mapped["genomicVariant"]["rootUrl"] == "https://cpms.example.org/api/beacon/g_variants"
    config = beacon.configuration_response(variants=False, **BEACON)["response"]
    assert config["securityAttributes"]["defaultGranularity"] == "count" and list(config["entryTypes"]) == ["individual"]
    with pytest.raises(ValueError):
        beacon.info_response("b", "n", "o", environment="production")


def test_count_responses_validate_and_never_give_a_small_count():
    query = parse_request("GET", {"filters": "HP:0001250", "requestedGranularity": "count"}, None)
    above = beacon.count_response(query, 17, **BEACON)
    validate(above, "responses/beaconCountResponse.json")
    assert above["responseSummary"] == {"exists": True, "numTotalResults": 17}
    assert above["meta"]["returnedGranularity"] == "count"
    below = beacon.count_response(query, None, **BEACON)
    validate(below, "responses/beaconBooleanResponse.json")
    assert below["responseSummary"] == {"exists": False} and below["meta"]["returnedGranularity"] == "boolean"
    assert "threshold" in below["info"]["note"]
    guarded = beacon.count_response(query, 3, threshold=5, **BEACON)
    assert guarded["responseSummary"] == {"exists": False} and "3" not in json.dumps(guarded["responseSummary"])
    with pytest.raises(ValueError):
        beacon.count_response(query, -1, **BEACON)


def test_count_response_granularity_follows_the_request_and_the_entry_type():
    boolean = parse_request("POST", {}, {"meta": {"apiVersion": "v2.0.0"},
                                         "query": {"requestedGranularity": "boolean"}})
    answer = beacon.count_response(boolean, 17, **BEACON)
    validate(answer, "responses/beaconBooleanResponse.json")
    assert answer["responseSummary"] == {"exists": True}
    record_level = parse_request("GET", {"requestedGranularity": "record"}, None)
    assert beacon.count_response(record_level, 17, **BEACON)["meta"]["returnedGranularity"] == "count"
    variants = parse_request("GET", {"geneId": "ATXN2", "requestedGranularity": "count"}, None, entry_type="genomicVariant")
    answer = beacon.count_response(variants, 17, **BEACON)
    validate(answer, "responses/beaconBooleanResponse.json")
    assert answer["responseSummary"] == {"exists": True} and answer["meta"]["returnedSchemas"][0]["entityType"] == "genomicVariant"
    assert answer["meta"]["receivedRequestSummary"]["requestParameters"] == {"g_variant": {"geneId": "ATXN2"}}


def test_error_responses_validate():
    with pytest.raises(BeaconError) as caught:
        parse_request("GET", {"filters": "DOID:1234"}, None)
    response = beacon.error_response(caught.value.status, caught.value.message, **BEACON)
    validate(response, "responses/beaconErrorResponse.json")
    assert response["error"]["errorCode"] == 400 and "DOID:1234" in response["error"]["errorMessage"]
    validate(beacon.error_response(404, "No such entry type.", query=BeaconQuery(), **BEACON),
             "responses/beaconErrorResponse.json")


POST_BODY = {
    "meta": {"apiVersion": "2.0"},
    "query": {
        "filters": [{"id": "HP:0001250", "includeDescendantTerms": False}, {"id": "Orphanet:98756", "scope": "individuals"},
                    {"id": "ICD10:G11.2"}, {"id": "ICD10CM:G11.2"}, {"id": "OMIM:164400"}, {"id": "NCIT:C20197"}],
        "requestedGranularity": "count", "pagination": {"skip": 0, "limit": 10}, "testMode": False,
    },
}


def test_post_request_parses_into_the_cohort_tree():
    validate(POST_BODY, "requests/beaconRequestBody.json")
    query = parse_request("POST", {}, POST_BODY)
    assert query.requested_granularity == "count" and query.api_version == "2.0"
    assert query.to_cohort() == {"op": "and", "items": [
        {"field": "phenotype", "system": "HPO", "code": "HP:0001250", "descendants": False},
        {"field": "diagnosis", "system": "ORPHA", "code": "98756", "descendants": True},
        {"field": "diagnosis", "system": "ICD-10", "code": "G11.2", "descendants": True},
        {"field": "diagnosis", "system": "ICD-10-CM", "code": "G11.2", "descendants": True},
        {"field": "diagnosis", "system": "OMIM", "code": "164400", "descendants": True},
        {"field": "sex", "value": "male"},
    ]}
    validate(beacon.count_response(query, 25, **BEACON), "responses/beaconCountResponse.json")


def test_get_request_parses_with_the_spec_defaults():
    query = parse_request("GET", {"filters": "HP:0001250, ORPHA:98756,NCIT:C16576", "testMode": "true", "limit": "5"}, None)
    assert query.filters == (Filter("HP:0001250"), Filter("ORPHA:98756"), Filter("NCIT:C16576"))
    assert query.test_mode is True and query.pagination == {"skip": 0, "limit": 5}
    assert query.requested_granularity == "count"  # none requested: the beacon's default
    assert query.to_cohort()["items"][1:] == [
        {"field": "diagnosis", "system": "ORPHA", "code": "98756", "descendants": True}, {"field": "sex", "value": "female"}]
    assert parse_request("GET", {"filters": ["HP:0001250", "HP:0001251"]}, None).to_cohort()["items"][1]["code"] == "HP:0001251"
    assert parse_request("GET", {}, None).to_cohort() == {"op": "and", "items": []}


def test_gene_queries_on_g_variants():
    for body in ({"meta": {"apiVersion": "v2.0.0"}, "query": {"requestParameters": {"geneId": "ATXN2"}}},
                 {"meta": {"apiVersion": "v2.0.0"}, "query": {"requestParameters": {"g_variant": {"geneId": "ATXN2"}},
                                                              "filters": [{"id": "HP:0001251"}]}}):
        query = parse_request("POST", {}, body, entry_type="genomicVariant")
        assert query.to_cohort()["items"][-1] == {"field": "gene", "value": "ATXN2"}
    validate({"meta": {"apiVersion": "v2.0.0"}, "query": {"requestParameters": {"g_variant": {"geneId": "ATXN2"}}}},
             "requests/beaconRequestBody.json")


def test_cohort_trees_are_read_by_the_cohort_query_parser():
    from plugins.research.query import parse_definition

    tree = parse_request("POST", {}, POST_BODY).to_cohort()
    tree["items"].append({"field": "gene", "value": "ATXN2"})
    parsed = parse_definition(tree)
    assert parsed["op"] == "and" and len(parsed["items"]) == len(tree["items"])
    for ours, theirs in zip(tree["items"], parsed["items"]):
        assert {k: v for k, v in ours.items() if k != "system" or ours["field"] != "phenotype"} == theirs


BAD_REQUESTS = [
    ("GET", {"filters": "DOID:1234"}, None, "individual"),  # unknown prefix
    ("GET", {"filters": "HP0001250"}, None, "individual"),  # not a CURIE
    ("GET", {"filters": "HP:123"}, None, "individual"),  # not an HPO code
    ("GET", {"filters": "ORPHA:abc"}, None, "individual"),
    ("GET", {"filters": "NCIT:C3262"}, None, "individual"),  # an NCIT term that is not a sex
    ("GET", {"filters": "HP:0001250", "filter": "HP:0001251"}, None, "individual"),  # unknown parameter
    ("GET", {"requestedGranularity": "everything"}, None, "individual"),
    ("GET", {"testMode": "maybe"}, None, "individual"),
    ("GET", {"limit": "-1"}, None, "individual"),
    ("GET", {"geneId": "ATXN2"}, None, "individual"),  # genes are a g_variants parameter
    ("GET", {"filters": "HP:0001250"}, None, "genomicVariant"),  # g_variants need a gene
    ("GET", {"geneId": "ATXN2; DROP"}, None, "genomicVariant"),
    ("GET", {"filters": ",".join(f"HP:{n:07d}" for n in range(1, 23))}, None, "individual"),  # too many
    ("POST", {}, None, "individual"),
    ("POST", {}, ["not", "an", "object"], "individual"),
    ("POST", {}, {"query": {}}, "individual"),  # meta.apiVersion missing
    ("POST", {}, {"meta": {"apiVersion": "2.0"}, "query": {"filters": "HP:0001250"}}, "individual"),
    ("POST", {}, {"meta": {"apiVersion": "2.0"}, "query": {"filters": ["HP:0001250"]}}, "individual"),
    ("POST", {}, {"meta": {"apiVersion": "2.0"}, "query": {"filters": [{"id": "HP:0032443", "operator": "=",
                                                                        "value": "%ataxia%"}]}}, "individual"),
    ("POST", {}, {"meta": {"apiVersion": "2.0"}, "query": {"filters": [{"id": "HP:0001250", "similarity": "high"}]}},
     "individual"),
    ("POST", {}, {"meta": {"apiVersion": "2.0"}, "query": {"filters": [{"id": "HP:0001250",
                                                                        "includeDescendantTerms": "yes"}]}}, "individual"),
    ("POST", {}, {"meta": {"apiVersion": "2.0"}, "query": {"requestParameters": {"assemblyId": "GRCh38"}}},
     "genomicVariant"),
]


@pytest.mark.parametrize(("method", "params", "body", "entry_type"), BAD_REQUESTS)
def test_bad_requests_are_refused_with_400(method, params, body, entry_type):
    with pytest.raises(BeaconError) as caught:
        parse_request(method, params, body, entry_type=entry_type)
    assert caught.value.status == 400 and caught.value.message


def test_other_refusals():
    with pytest.raises(BeaconError) as caught:
        parse_request("PUT", {}, None)
    assert caught.value.status == 405
    with pytest.raises(BeaconError) as caught:
        parse_request("GET", {"filters": "HP:0001250"}, None, supported_ids={"HP:0001251"})
    assert caught.value.status == 400
    assert parse_request("GET", {"filters": "HP:0001251"}, None, supported_ids={"HP:0001251"}).filters
