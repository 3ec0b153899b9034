"""Look-ups: systems, a code with its terms, hierarchy and cross-walks both ways, equivalents
for the picker, and the browse tree."""

from __future__ import annotations

import pytest

from plugins.coding import lookup
from plugins.coding.release import ConceptIn, MappingIn, make_release, write_mappings, write_release


@pytest.fixture
async def store(sample_terminology):
    """The samples, plus mappings into ORPHA 95 from another system and one to a system that is
    not loaded."""
    await write_release(make_release(
        "XTEST", "1", "tests",
        concepts=[ConceptIn("X1", "Hereditary ataxias (test group)"), ConceptIn("X2", "Unrelated thing")],
        mappings=[
            MappingIn("X1", "ORPHA", "95", "source-is-broader-than-target"),
            MappingIn("X2", "ORPHA", "95", "not-related-to"),
        ],
    ))
    await write_mappings("ORPHA", [MappingIn("95", "ICD-11", "8A03.10", "equivalent")], target_system="ICD-11", source="test-icd11.xml")
    return sample_terminology


async def test_systems_are_listed_by_key_with_their_provenance(store):
    found = await lookup.systems()
    assert [s["key"] for s in found] == sorted(s["key"] for s in found)
    assert {"ORPHA", "ICD-10", "HPO", "OMIM", "XTEST"} <= {s["key"] for s in found}
    orpha = next(s for s in found if s["key"] == "ORPHA")
    assert set(orpha) == set(lookup.SYSTEM_FIELDS)
    assert orpha["uri"] == "http://www.orpha.net" and orpha["concepts"] == 9 and "CC BY 4.0" in orpha["licence"]
    assert orpha["imported_at"] is not None


async def test_a_system_by_key_uri_or_key_in_any_case(store):
    assert (await lookup.system("ORPHA"))["key"] == "ORPHA"
    assert (await lookup.system("http://hl7.org/fhir/sid/icd-10"))["key"] == "ICD-10"
    assert (await lookup.system("orpha"))["key"] == "ORPHA"
    assert await lookup.system("MedDRA") is None and await lookup.system("") is None


async def test_a_code_with_its_terms_parents_children_and_mappings_both_ways(store):
    c = await lookup.concept("ORPHA", "95")
    assert c["code"] == "95" and c["display"] == "Friedreich ataxia" and c["active"] is True
    assert c["system"]["key"] == "ORPHA" and "id" not in c["system"]
    assert c["designations"][0] == {"term": "Friedreich ataxia", "use": "preferred", "language": "en"}
    assert {"term": "Ataxie de Friedreich", "use": "synonym", "language": "fr"} in c["designations"]
    assert isinstance(c["properties"], dict)
    assert {"code": "183518", "display": "Rare hereditary ataxia"} in c["parents"]
    out = {(m["system"], m["code"]): m for m in c["mappings"]}
    assert out[("ICD-10", "G11.1")]["display"] == "Early-onset cerebellar ataxia"
    assert out[("ICD-10", "G11.1")]["relation"] == "equivalent" and out[("ICD-10", "G11.1")]["note"]
    assert out[("OMIM", "229300")]["display"] == "Friedreich ataxia 1"
    assert out[("ICD-11", "8A03.10")]["display"] is None  # ICD-11 is not loaded
    assert [(m["system"], m["code"]) for m in c["mappings"]] == sorted(out)
    assert {(m["system"], m["code"], m["relation"]) for m in c["mapped_from"]} == {
        ("XTEST", "X1", "source-is-broader-than-target"), ("XTEST", "X2", "not-related-to"),
    }
    assert next(m for m in c["mapped_from"] if m["code"] == "X1")["display"] == "Hereditary ataxias (test group)"

    # from the ICD-10 side: ORPHA's mappings to it, as stated (ORPHA 98756 is narrower)
    g112 = await lookup.concept("ICD-10", "G11.2")
    assert {(m["system"], m["code"], m["relation"]) for m in g112["mapped_from"]} >= {
        ("ORPHA", "98756", "source-is-narrower-than-target"),
    }
    assert g112["parents"] == [{"code": "G11", "display": "Hereditary ataxia"}]


async def test_unknown_codes_and_systems_are_none_or_empty(store):
    assert await lookup.concept("ORPHA", "404404") is None
    assert await lookup.concept("MedDRA", "10000001") is None
    assert await lookup.concept("ICD-10", "g11.1") is None  # codes are exact: search finds spellings
    assert await lookup.equivalents("ORPHA", "404404") == []
    assert await lookup.children("ORPHA", "404404") == [] and await lookup.roots("MedDRA") == []


async def test_equivalents_suggest_other_systems_codes_equivalent_first(store):
    found = await lookup.equivalents("ORPHA", "95")
    assert [(e["system"], e["code"], e["relation"]) for e in found] == [
        ("ICD-10", "G11.1", "equivalent"),
        ("ICD-11", "8A03.10", "equivalent"),
        ("OMIM", "229300", "equivalent"),
        # XTEST X1 is broader than ORPHA 95: read from 95, 95 is the narrower one
        ("XTEST", "X1", "source-is-narrower-than-target"),
    ]  # "not-related-to" is never suggested
    by_code = {e["code"]: e for e in found}
    assert by_code["G11.1"]["display"] == "Early-onset cerebellar ataxia" and by_code["8A03.10"]["display"] is None
    assert by_code["X1"]["display"] == "Hereditary ataxias (test group)"

    # ORPHA 98756 maps to the broader ICD-10 G11.2 and is equivalent to OMIM 183090
    found = await lookup.equivalents("ORPHA", "98756")
    assert [(e["system"], e["code"], e["relation"]) for e in found] == [
        ("OMIM", "183090", "equivalent"), ("ICD-10", "G11.2", "source-is-narrower-than-target"),
    ]
    # picked from the ICD-10 side: the ORPHA codes mapped to it, relation read from G11.2
    found = await lookup.equivalents("ICD-10", "G11.1")
    assert [(e["system"], e["code"], e["relation"]) for e in found] == [("ORPHA", "95", "equivalent")]
    assert found[0]["display"] == "Friedreich ataxia"


async def test_a_code_mapped_both_ways_is_suggested_once(store):
    await write_mappings("OMIM", [MappingIn("229300", "ORPHA", "95", "equivalent")], target_system="ORPHA", source="test")
    found = await lookup.equivalents("ORPHA", "95")
    assert [(e["system"], e["code"]) for e in found].count(("OMIM", "229300")) == 1


async def test_roots_are_the_top_of_each_tree(store):
    assert [(r["code"], r["kind"], r["has_children"]) for r in await lookup.roots("ICD-10")] == [("VI", "chapter", True)]
    hpo = await lookup.roots("HPO")
    assert [r["code"] for r in hpo] == ["HP:0000001"]  # the obsolete terms without parents are not roots
    assert hpo[0]["display"] == "All" and hpo[0]["has_children"] is True
    flat = await lookup.roots("OMIM")  # names only: no hierarchy, every code is a root
    assert [r["code"] for r in flat] == ["183090", "208900", "229300"]
    assert not any(r["has_children"] for r in flat)


async def test_children_in_code_order_with_has_children(store):
    g11 = await lookup.children("ICD-10", "G11")
    assert [n["code"] for n in g11] == ["G11.0", "G11.1", "G11.2", "G11.3", "G11.4", "G11.8", "G11.9"]
    assert not any(n["has_children"] for n in g11)
    block = await lookup.children("ICD-10", "G10-G14")
    assert [(n["code"], n["has_children"]) for n in block][:2] == [("G10", False), ("G11", True)]
    assert set(block[0]) == {"code", "display", "kind", "active", "has_children"}
    # ORPHA codes in numeric order (95 before 100), not as text
    ataxias = [n["code"] for n in await lookup.children("ORPHA", "183518")]
    assert ataxias.index("95") < ataxias.index("100") < ataxias.index("98755")
    page = await lookup.concept("ICD-10", "G11")
    assert [c["code"] for c in page["children"]] == [n["code"] for n in g11]
    assert set(page["children"][0]) == {"code", "display", "has_children"}


async def test_has_children_takes_one_query_per_list_not_one_per_node(store, monkeypatch):
    from plugins.coding.tables import ConceptParent

    calls = []
    real = ConceptParent.select

    def counting(*columns, **kw):
        calls.append(columns)
        return real(*columns, **kw)

    monkeypatch.setattr(ConceptParent, "select", counting)
    nodes = await lookup.children("ICD-10", "G10-G14")
    assert len(nodes) >= 4 and len(calls) == 2  # the children, then their has_children in one go


def test_codes_sort_naturally():
    codes = ["100", "95", "G11.9", "G11.10", "G11.1", "G2", "HP:0000118", "HP:0000005", "X1001-1", "X999-1"]
    assert sorted(codes, key=lookup.code_order) == [
        "95", "100", "G2", "G11.1", "G11.10", "G11.9", "HP:0000005", "HP:0000118", "X999-1", "X1001-1",
    ]
