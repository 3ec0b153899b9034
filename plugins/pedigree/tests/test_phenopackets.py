"""The Phenopackets v2 Family: subjects by label, coded diseases, the pedigree block, its warnings."""

from __future__ import annotations

from plugins.pedigree.layout import layout
from plugins.pedigree.model import assign_labels
from plugins.pedigree.phenopackets import export_family
from plugins.pedigree.tests.families import autosomal_dominant, recessive_first_cousins


def test_family_of_an_autosomal_dominant_pedigree():
    ped = autosomal_dominant()
    labels = assign_labels(layout(ped))
    family, warnings = export_family(ped, labels, created="2026-11-29T00:00:00Z")
    assert family["proband"]["subject"]["id"] == labels["c1"]
    assert family["proband"]["diseases"] == [{"term": {"id": "ORPHA:399", "label": "Huntington disease"}}]
    grandfather = next(p for p in family["relatives"] if p["subject"]["id"] == labels["gf"])
    assert grandfather["subject"]["vitalStatus"] == {"status": "DECEASED"} and grandfather["subject"]["sex"] == "MALE"
    persons = {p["individualId"]: p for p in family["pedigree"]["persons"]}
    assert persons[labels["c1"]]["paternalId"] == labels["s1"] and persons[labels["c1"]]["maternalId"] == labels["s1w"]
    assert persons[labels["c3"]]["affectedStatus"] == "MISSING"  # presymptomatic is not "affected"
    assert persons[labels["gm"]]["affectedStatus"] == "UNAFFECTED" and persons[labels["gf"]]["paternalId"] == "0"
    assert family["metaData"]["phenopacketSchemaVersion"] == "2.0" and warnings == []
    assert len(family["relatives"]) == len(ped.individuals) - 1


def test_uncoded_conditions_are_reported_and_consanguinity_is_kept():
    ped = recessive_first_cousins()
    ped.individuals["k1"].proband = True
    family, warnings = export_family(ped, assign_labels(layout(ped)))
    assert any("Cystic fibrosis" in w for w in warnings)
    assert "diseases" not in family["proband"]
    assert family.get("consanguinousParents") is True


def test_the_export_is_read_by_the_phenopackets_package():
    """The GA4GH classes read the JSON back: every field is in the schema, every enum value valid."""
    from google.protobuf import json_format
    from phenopackets import Family, Sex

    ped = autosomal_dominant()
    labels = assign_labels(layout(ped))
    family, _ = export_family(ped, labels, created="2026-11-29T00:00:00Z")
    message = json_format.ParseDict(family, Family())
    assert message.proband.subject.id == labels["c1"] and message.proband.subject.sex in (Sex.MALE, Sex.FEMALE)
    assert message.proband.diseases[0].term.id == "ORPHA:399"
    assert len(message.pedigree.persons) == len(ped.individuals)


def test_a_field_outside_the_schema_is_refused():
    import pytest
    from google.protobuf.json_format import ParseError

    from plugins.pedigree.phenopackets import _checked

    with pytest.raises(ParseError):
        _checked({"id": "F", "notAField": 1})
