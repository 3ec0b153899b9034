"""The CanRisk / BOADICEA pedigree file: columns, cancers, genetic tests, twins, what is left out and said so."""

from __future__ import annotations

import pytest

from plugins.pedigree.canrisk import COLUMNS, HEADER, cancer_of, export_canrisk
from plugins.pedigree.layout import layout
from plugins.pedigree.model import Genotype, Pedigree, PedigreeError, assign_labels
from plugins.pedigree.tests.families import twins


def brca_family() -> Pedigree:
    """A mother with breast cancer (BRCA1 positive), her sister negative, a daughter with a VUS, an
    unknown-sex father, a pregnancy, and a tested relative with a gene CanRisk does not model."""
    p = Pedigree(family_id="BR CA")  # whitespace goes: CanRisk splits on it
    p.condition("bc", "Breast cancer", system="ICD-10", code="C50.9")
    p.condition("oc", "Ovarian carcinoma")  # by name
    p.condition("hd", "Huntington disease")
    p.person("gf", "male", deceased=True, age=70, birth_year=1930)
    p.person("gm", "female", birth_year=1932, conditions={"oc": "affected"})
    p.person("mum", "female", birth_year=1958, conditions={"bc": "affected"},
             genotypes=[Genotype("BRCA1", "c.68_69del", "heterozygous", "pathogenic")])
    p.person("aunt", "female", birth_year=1960, genotypes=[Genotype("brca1", result="negative")])
    p.person("dad", "unknown", birth_year=1955, genotypes=[Genotype("ATXN2", result="pathogenic")])
    p.person("me", "female", birth_year=1985, proband=True, genotypes=[Genotype("PALB2", result="VUS")])
    p.person("preg", "unknown", pregnancy="pregnancy")
    p.partner("gf", "gm", children=["mum", "aunt"])
    p.partner("dad", "mum", children=["me", "preg"])
    return p


def rows(text: str) -> dict[str, dict[str, str]]:
    lines = text.splitlines()
    assert lines[0] == HEADER and lines[1] == "##" + "\t".join(COLUMNS)
    out = {}
    for line in lines[2:]:
        fields = line.split("\t")
        assert len(fields) == len(COLUMNS) == 27
        out[fields[3]] = dict(zip(COLUMNS, fields))
    return out


def test_a_breast_cancer_family():
    ped = brca_family()
    labels = assign_labels(layout(ped))
    text, warnings = export_canrisk(ped, labels)
    people = rows(text)
    assert set(people) == {labels[x] for x in ("gf", "gm", "mum", "aunt", "dad", "me")}  # the pregnancy is left out
    mum, me, dad, gm = (people[labels[x]] for x in ("mum", "me", "dad", "gm"))
    assert mum["BC1"] == "AU" and mum["OC"] == "0" and mum["BRCA1"] == "T:P" and mum["Yob"] == "1958"
    assert gm["OC"] == "AU" and gm["BC1"] == "0"
    assert people[labels["aunt"]]["BRCA1"] == "T:N"
    assert me["Target"] == "1" and sum(r["Target"] == "1" for r in people.values()) == 1
    assert (me["FathID"], me["MothID"]) == (labels["dad"], labels["mum"]) and dad["Sex"] == "M"
    assert me["PALB2"] == "0:0" and me["Name"] == labels["me"]
    assert people[labels["gf"]]["Dead"] == "1" and people[labels["gf"]]["Age"] == "70"
    assert all(r["FamID"] == "BRCA" for r in people.values())
    assert all((r["FathID"] == "0") == (r["MothID"] == "0") for r in people.values())  # both parents or none
    said = " | ".join(warnings)
    for words in ("Huntington disease", "AU", labels["preg"], f"{labels['dad']}: sex unknown", "ATXN2",
                  "'VUS' is written as untested", "direct tests"):
        assert words in said, words


def test_identical_twins_share_a_code_and_fraternal_ones_are_reported():
    ped = twins()
    labels = assign_labels(layout(ped))
    text, warnings = export_canrisk(ped, labels)
    people = rows(text)
    assert people[labels["mz1"]]["MZtwin"] == people[labels["mz2"]]["MZtwin"] == "1"
    assert people[labels["dz1"]]["MZtwin"] == "0" and people[labels["a"]]["MZtwin"] == "0"
    assert any("dizygotic" in w for w in warnings) and any("Type 1 diabetes" in w for w in warnings)


def test_parents_of_the_same_sex_are_refused():
    p = Pedigree()
    p.person("a", "female")
    p.person("b", "female")
    p.person("c", "male", proband=True)
    p.partner("a", "b", children=["c"])
    with pytest.raises(PedigreeError, match="both female"):
        export_canrisk(p, {"a": "I-1", "b": "I-2", "c": "II-1"})


@pytest.mark.parametrize("system,code,label,column", [
    ("ICD-10", "C50.4", "anything", "BC1"), ("ICD-10", "C56", "x", "OC"), ("HPO", "HP:0012125", "x", "PRO"),
    (None, None, "Pancreatic adenocarcinoma", "PAN"), (None, None, "Prostate cancer", "PRO"),
    (None, None, "Hereditary breast and ovarian cancer syndrome", None), (None, None, "Breast cyst", None),
    ("ICD-10", "C18", "Colon cancer", None),
])
def test_which_conditions_are_cancers(system, code, label, column):
    assert cancer_of(system, code, label) == column
