"""The model's validation and the generation/number labels."""

from __future__ import annotations

import pytest

from plugins.pedigree.layout import layout
from plugins.pedigree.model import Pedigree, PedigreeError, assign_labels, roman, validate
from plugins.pedigree.tests.families import ALL, autosomal_dominant


def problems_of(ped: Pedigree) -> list[str]:
    with pytest.raises(PedigreeError) as err:
        validate(ped)
    assert isinstance(err.value, ValueError)
    return err.value.problems


@pytest.mark.parametrize("name", sorted(ALL))
def test_known_families_are_valid(name):
    assert validate(ALL[name]()) is None


def test_someone_their_own_ancestor():
    p = Pedigree()
    for pid, sex in [("a", "male"), ("b", "female"), ("c", "male"), ("d", "female")]:
        p.person(pid, sex)
    p.partner("a", "b", children=["c"])
    p.partner("c", "d", children=["a"])  # a is c's child and c's parent
    problems = problems_of(p)
    assert any("own ancestor" in m and "→" in m for m in problems), problems


def test_more_than_two_parents():
    p = Pedigree()
    for pid in ("a", "b", "c", "d", "kid"):
        p.person(pid)
    p.partner("a", "b", children=["kid"])
    p.partner("c", "d", children=["kid"])
    assert problems_of(p) == ["kid has more than two parents (a, b, c, d)"]


def test_child_older_than_parent_and_parent_too_young():
    p = Pedigree()
    p.person("f", "male", birth_year=1970)
    p.person("m", "female", birth_year=1990)
    p.person("kid", "female", birth_year=1980)
    p.partner("f", "m", children=["kid"])
    problems = problems_of(p)
    assert problems == ["kid (born 1980) is older than their parent m (born 1990)"]  # f at 10 is allowed
    p.individuals["m"].birth_year = 1975  # 5 at the birth: not an adult
    p.individuals["f"].birth_year = 1950
    problems = problems_of(p)
    assert len(problems) == 1 and "m (born 1975) was 5 at the birth of kid" in problems[0]
    p.individuals["m"].birth_year = 1955
    validate(p)


def test_twins_must_share_parents_and_monozygotic_twins_one_sex():
    p = Pedigree()
    for pid, sex in [("f", "male"), ("m", "female"), ("x", "male"), ("a", "male"), ("b", "female"), ("c", "unknown")]:
        p.person(pid, sex)
    p.partner("f", "m", children=["a", "b", "c"])
    p.add_twins(["a", "x"])  # x has no parents here
    p.add_twins(["a", "b"], monozygotic=True)
    problems = problems_of(p)
    assert "twins a+x do not share the same parents" in problems
    assert "monozygotic twins a+b have different sexes" in problems
    p.twins = [p.twins[1]]
    p.twins[0].ids = ["a", "c"]  # a male and an unknown: allowed
    validate(p)


def test_unknown_references_and_bad_values_are_listed_together():
    p = Pedigree()
    p.condition("X", "Something")
    p.person("a", "male", conditions={"X": "sick", "Y": "affected"}, adopted="maybe")
    p.person("b", "robot", birth_year=2000, death_year=1990)
    p.partner("a", "ghost", children=["b"])
    problems = problems_of(p)
    text = "\n".join(problems)
    for expected in ("status 'sick'", "unknown condition 'Y'", "adopted 'maybe'", "sex 'robot'",
                     "died (1990) before being born (2000)", "unknown individual 'ghost'"):
        assert expected in text
    assert str(PedigreeError(problems)).count(";") == len(problems) - 1


def test_duplicate_id_is_refused():
    p = Pedigree()
    p.person("a")
    with pytest.raises(PedigreeError, match="duplicate individual id 'a'"):
        p.person("a")


def test_parents_are_father_then_mother_whatever_the_entry_order():
    p = Pedigree()
    p.person("m", "female")
    p.person("f", "male")
    p.person("kid")
    p.partner("m", "f", children=["kid"])
    assert p.parents_of("kid") == ("f", "m")
    assert p.parents_of("f") is None


def test_roman_numerals():
    assert [roman(n) for n in (1, 2, 3, 4, 5, 9, 14, 40)] == ["I", "II", "III", "IV", "V", "IX", "XIV", "XL"]


def test_labels_generation_then_left_to_right():
    ped = autosomal_dominant()
    lay = layout(ped)
    labels = assign_labels(lay)
    assert labels["gf"] == "I-1" and labels["gm"] == "I-2"
    assert labels["c1"] == "III-1" and labels["c4"] == "III-4"
    for gen, row in lay.rows.items():
        assert [labels[pid] for pid in row] == [f"{roman(gen + 1)}-{i}" for i in range(1, len(row) + 1)]
