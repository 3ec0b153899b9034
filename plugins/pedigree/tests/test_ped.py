"""The PED format: exact round trips of the canonical form, lossy export warnings, import errors."""

from __future__ import annotations

import pytest

from plugins.pedigree.model import Pedigree, PedigreeError
from plugins.pedigree.ped import export_ped, import_ped
from plugins.pedigree.tests.families import ALL, autosomal_dominant, recessive_first_cousins, twins

CANONICAL = """\
F1 gf 0 0 1 2
F1 gm 0 0 2 1
F1 s1 gf gm 1 2
F1 d2 gf gm 2 1
F1 w 0 0 2 0
F1 c1 s1 w 1 2
F1 c2 s1 w 0 0
F2 a 0 0 1 1
F2 b 0 0 2 1
F2 k a b 2 2
"""


def errors(text: str) -> list[str]:
    with pytest.raises(PedigreeError) as err:
        import_ped(text)
    return err.value.problems


def test_canonical_file_round_trips_exactly():
    peds = import_ped(CANONICAL)
    assert [p.family_id for p in peds] == ["F1", "F2"]
    f1 = peds[0]
    assert f1.parents_of("c1") == ("s1", "w")
    assert f1.individuals["gf"].conditions == {"phenotype": "affected"}
    assert f1.individuals["c2"].sex == "unknown" and f1.individuals["c2"].conditions == {}
    text, warnings = export_ped(peds)
    assert text == CANONICAL
    assert warnings == []


def test_whitespace_comments_and_minus_nine_read_to_the_canonical_form():
    messy = "# a comment\n\nF1\tgf  0 0 1 2   # trailing\nF1 gm 0 0 2 -9\nF1 kid gf gm 2 1\n"
    text, _ = export_ped(import_ped(messy))
    assert text == "F1 gf 0 0 1 2\nF1 gm 0 0 2 0\nF1 kid gf gm 2 1\n"


def test_several_phenotype_columns():
    text = "F a 0 0 1 2 1\nF b 0 0 2 1 2\nF c a b 0 0 2\n"
    [ped] = import_ped(text, condition_ids=["ataxia", "deafness"])
    assert ped.individuals["c"].conditions == {"deafness": "affected"}
    # several affection columns are named in a header comment, so the file reads back alone
    exported = export_ped(ped)[0]
    assert exported == "# CPMS affection columns: ataxia deafness\n" + text
    [again] = import_ped(exported)
    assert list(again.conditions) == ["ataxia", "deafness"] and again.individuals["c"].conditions == {"deafness": "affected"}
    assert export_ped(ped, conditions=["deafness"])[0] == "F a 0 0 1 1\nF b 0 0 2 2\nF c a b 0 2\n"


def test_genotype_columns_are_left_out_and_said_so_not_read_as_diseases():
    """A LINKAGE/PLINK genotype file: one affection column, then pairs of alleles per marker."""
    linkage = "FAM7 1 0 0 1 2 A C 1 2\nFAM7 2 0 0 2 1 C C 2 2\nFAM7 3 1 2 1 2 A C 1 1\n"
    notes: list[str] = []
    [ped] = import_ped(linkage, notes=notes)
    assert list(ped.conditions) == ["phenotype"]
    assert {i: p.conditions for i, p in ped.individuals.items()} == {
        "1": {"phenotype": "affected"}, "2": {"phenotype": "unaffected"}, "3": {"phenotype": "affected"}}
    assert notes == ["The file holds genotypes for 2 marker(s); CPMS keeps no genotype columns, so they were not imported."]
    # numeric alleles 1/2 look like affection codes: still genotypes, not a second disease
    [ped] = import_ped("F a 0 0 1 2 1 2\nF b 0 0 2 1 2 2\n")
    assert list(ped.conditions) == ["phenotype"] and ped.individuals["b"].conditions == {"phenotype": "unaffected"}
    assert "an odd number" in errors("F a 0 0 1 2 A\nF b 0 0 2 1 C\n")[0]


def test_a_plink_file_with_one_known_parent_adds_the_other_as_unknown():
    plink = "F dad 0 0 1 2\nF k1 dad 0 1 1\nF k2 dad 0 2 2\nF mum 0 0 2 1\nF k3 0 mum 1 0\n"
    notes: list[str] = []
    [ped] = import_ped(plink, notes=notes)
    assert ped.parents_of("k1") == ped.parents_of("k2") == ("dad", "dad-partner")  # full siblings
    assert ped.individuals["dad-partner"].sex == "female" and ped.individuals["dad-partner"].conditions == {}
    assert ped.parents_of("k3") == ("mum-partner", "mum") and ped.individuals["mum-partner"].sex == "male"
    assert notes == ["Family F: 2 parent(s) not in the file were added as people of unknown status (PLINK allows one known parent)."]


def test_couples_who_share_an_ancestor_are_marked_consanguineous():
    first_cousins = (
        "F gf 0 0 1 1\nF gm 0 0 2 1\nF s1 gf gm 1 1\nF s2 gf gm 2 1\nF w1 0 0 2 1\nF h2 0 0 1 1\n"
        "F c1 s1 w1 1 1\nF c2 h2 s2 2 1\nF kid c1 c2 1 2\n"
    )
    notes: list[str] = []
    [ped] = import_ped(first_cousins, notes=notes)
    flags = {(p.a, p.b): p.consanguineous for p in ped.partnerships}
    assert flags == {("gf", "gm"): False, ("s1", "w1"): False, ("h2", "s2"): False, ("c1", "c2"): True}
    assert notes == ["Family F: c1 and c2 share an ancestor: marked consanguineous."]
    assert any("consanguinity" in w for w in export_ped(ped)[1])


@pytest.mark.parametrize("name", sorted(ALL))
def test_known_families_round_trip_through_ped(name):
    text, _ = export_ped(ALL[name]())
    assert export_ped(import_ped(text))[0] == text


def test_export_is_lossy_and_says_so():
    text, warnings = export_ped(autosomal_dominant())
    assert text.splitlines()[0] == "AD gf 0 0 1 2"
    joined = "\n".join(warnings)
    for lost in ("deceased", "ages and years", "proband/consultand", "presymptomatic status is written as unaffected",
                 "tested"):
        assert lost in joined
    _, warnings = export_ped(recessive_first_cousins())
    assert any("consanguinity" in w for w in warnings) and any("carrier status" in w for w in warnings)
    _, warnings = export_ped(twins())
    assert any("twins are dropped" in w for w in warnings)
    ped = autosomal_dominant()
    ped.condition("X", "Other")
    _, warnings = export_ped(ped, conditions=["HD"])
    assert "family AD: conditions not exported: X" in warnings
    assert len(warnings) == len(set(warnings)), "each loss said once"


def test_export_refuses_ids_ped_cannot_hold():
    ped = Pedigree(family_id="F")
    ped.person("has space")
    with pytest.raises(PedigreeError, match="has space"):
        export_ped(ped)


def test_mother_written_as_mother_whatever_the_partnership_order():
    ped = Pedigree(family_id="F")
    ped.person("m", "female")
    ped.person("f", "male")
    ped.person("k", "male")
    ped.partner("m", "f", children=["k"])
    assert export_ped(ped, conditions=[])[0].splitlines()[2] == "F k f m 1 0"


def test_malformed_lines_are_reported_with_their_numbers():
    bad = "\n".join([
        "F a 0 0 1 1",         # 1
        "F b 0 0 2",           # 2: five columns
        "F c a 0 1 1",         # 3: one parent only (allowed, as in PLINK)
        "F d 0 0 x 1",         # 4: bad sex
        "F e a z 1 1",         # 5: mother not in the file
        "F a 0 0 1 2",         # 6: duplicate
        "F g b2 a 1 7",        # 7: father b2 is female, mother a male; bad phenotype
        "F b2 0 0 2 1",        # 8
        "F h 0 0 1 1 1",       # 9: more columns than the first line
    ])
    problems = errors(bad)
    assert problems == [
        "line 2: expected at least 6 columns (family, individual, father, mother, sex, phenotype), got 5",
        "line 9: expected 6 columns like the first line, got 7",
        "line 4: sex code 'x' of d is not 1 (male), 2 (female) or 0 (unknown)",
        "line 6: duplicate individual 'a' in family 'F' (first on line 1)",
        "line 7: phenotype '7' of g is not 2 (affected), 1 (unaffected), 0 or -9 (unknown)",
        "line 5: mother 'z' of e is not in the file (family F)",
        "line 7: father 'b2' of g is female (line 8)",
        "line 7: mother 'a' of g is male (line 1)",
    ]


def test_cycles_in_a_ped_file():
    problems = errors("F a c d 1 0\nF b 0 0 2 0\nF c a b 1 0\nF d 0 0 2 0\n")
    assert problems == ["line 3: c is their own ancestor (c → a → c)"]
    assert errors("F a a 0 1 0\n")[0] == "line 1: a is their own parent"

