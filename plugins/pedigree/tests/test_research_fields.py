"""The pedigree's research fields: the pattern a drawn tree shows and how many relatives are affected."""

from plugins.pedigree.model import Pedigree
from plugins.pedigree.research import affected_relatives, pattern


def _family(affected: set[str], consanguineous: bool = False) -> Pedigree:
    ped = Pedigree()
    ped.condition("c1", "SCA2")
    for pid, sex in (("gf", "male"), ("gm", "female"), ("f", "male"), ("m", "female"), ("p", "female"), ("s", "male")):
        ped.person(pid, sex, proband=pid == "p", conditions={"c1": "affected" if pid in affected else "unaffected"})
    ped.partner("gf", "gm", children=["f"])
    ped.partner("f", "m", children=["p", "s"], consanguineous=consanguineous)
    return ped


def test_an_affected_parent_of_an_affected_person_is_vertical():
    assert pattern(_family({"gf", "f", "p"})) == "vertical"
    assert affected_relatives(_family({"gf", "f", "p"})) == "two or more"


def test_affected_siblings_of_unaffected_parents_or_consanguinity_are_horizontal():
    assert pattern(_family({"p", "s"})) == "horizontal"
    assert pattern(_family({"p"}, consanguineous=True)) == "horizontal"
    assert affected_relatives(_family({"p", "s"})) == "one"


def test_one_affected_person_is_a_single_case_and_none_is_said():
    assert pattern(_family({"p"})) == "single case"
    assert affected_relatives(_family({"p"})) == "none"
    assert pattern(_family(set())) == "no one affected"
