"""The GA4GH Pedigree FHIR Bundle: valid FHIR resources, KIN-coded relationships, lossless round trip,
readable without CPMS's extensions, and clear errors for bad bundles."""

from __future__ import annotations

import copy

import pytest

from plugins.pedigree import serial
from plugins.pedigree.fhir import EXT_INDIVIDUAL, EXT_PEDIGREE, KIN, export_bundle, import_bundle
from plugins.pedigree.model import Genotype, PedigreeError
from plugins.pedigree.tests.families import ALL, autosomal_dominant, twins


def relations(bundle: dict) -> list[tuple[str, str, str]]:
    out = []
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "FamilyMemberHistory":
            relative = r["extension"][0]["valueReference"]["reference"].split("/")[1]
            out.append((r["patient"]["reference"].split("/")[1], r["relationship"]["coding"][0]["code"], relative))
    return out


@pytest.mark.parametrize("name", sorted(ALL))
def test_round_trip_is_lossless(name):
    ped = ALL[name]()
    if name == "autosomal_dominant":
        ped.individuals["c1"].genotypes.append(Genotype("HTT", "NM_002111.8:c.52CAG[45]", "heterozygous", "pathogenic", "2020-01-02"))
        ped.individuals["c1"].note = "onset at 38"
    assert serial.to_dict(import_bundle(export_bundle(ped))) == serial.to_dict(ped)


def test_relationships_are_kin_coded():
    bundle = export_bundle(autosomal_dominant(), when="2026-11-29")
    rels = relations(bundle)
    assert ("gf", "KIN:026", "gm") in rels  # partners
    assert ("gf", "KIN:028", "s1") in rels and ("gm", "KIN:027", "s1") in rels  # father, mother
    assert all(r["resource"]["relationship"]["coding"][0]["system"] == KIN for r in bundle["entry"]
               if r["resource"]["resourceType"] == "FamilyMemberHistory")
    composition = bundle["entry"][0]["resource"]
    assert composition["subject"] == {"reference": "Patient/c1"}  # the proband


def test_twins_are_coded_by_zygosity():
    rels = relations(export_bundle(twins()))
    codes = {code for _, code, _ in rels}
    assert {"KIN:010", "KIN:011"} & codes


def test_resources_are_valid_fhir_r4():
    # the GA4GH Pedigree IG is built on FHIR R4; fhir.resources' R4B models are the closest it has
    fhir = pytest.importorskip("fhir.resources.R4B")
    from fhir.resources.R4B import get_fhir_model_class

    bundle = export_bundle(autosomal_dominant(), when="2026-11-29")
    for e in bundle["entry"]:
        r = e["resource"]
        get_fhir_model_class(r["resourceType"]).model_validate(r)  # raises on an invalid resource
    assert fhir is not None


def test_another_tools_bundle_keeps_the_standard_parts():
    bundle = export_bundle(autosomal_dominant())
    plain = copy.deepcopy(bundle)
    for e in plain["entry"]:
        e["resource"]["extension"] = [x for x in e["resource"].get("extension", []) if x["url"] not in (EXT_INDIVIDUAL, EXT_PEDIGREE)]
    ped = import_bundle(plain)
    original = autosomal_dominant()
    assert set(ped.individuals) == set(original.individuals)
    assert {i: p.sex for i, p in ped.individuals.items()} == {i: p.sex for i, p in original.individuals.items()}
    assert ped.individuals["gf"].deceased and ped.individuals["c1"].proband
    assert ped.parents_of("c1") == original.parents_of("c1")
    assert ped.individuals["c1"].conditions == {}  # statuses live in the CPMS extension only


def test_bad_bundles_are_refused_with_reasons():
    with pytest.raises(PedigreeError, match="not a FHIR Bundle"):
        import_bundle({"resourceType": "Patient"})
    bundle = export_bundle(autosomal_dominant())
    one_parent = copy.deepcopy(bundle)
    one_parent["entry"] = [e for e in one_parent["entry"] if not (
        e["resource"]["resourceType"] == "FamilyMemberHistory" and e["resource"]["patient"]["reference"] == "Patient/gm")]
    with pytest.raises(PedigreeError, match="biological parent"):
        import_bundle(one_parent)
    unknown = copy.deepcopy(bundle)
    unknown["entry"].append({"resource": {"resourceType": "FamilyMemberHistory", "id": "x", "status": "completed",
                                        "patient": {"reference": "Patient/c1"},
                                        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/familymemberhistory-patient-record",
                                                       "valueReference": {"reference": "Patient/gf"}}],
                                        "relationship": {"coding": [{"system": KIN, "code": "KIN:999"}]}}})
    with pytest.raises(PedigreeError, match="KIN:999"):  # a code CPMS does not draw
        import_bundle(unknown)
    older = copy.deepcopy(bundle)
    # c2 (born 1982) recorded as a parent of her brother c1 (born 1980): the model's validation refuses it
    for e in older["entry"]:
        r = e["resource"]
        if r["resourceType"] == "FamilyMemberHistory" and r["patient"]["reference"] == "Patient/s1" \
                and r["extension"][0]["valueReference"]["reference"] == "Patient/c1":
            r["patient"]["reference"] = "Patient/c2"
    with pytest.raises(PedigreeError, match="older than their parent"):
        import_bundle(older)
