"""Layout: levels, order, spacing, centring and crossings, on known and generated families."""

from __future__ import annotations

import time

import pytest

from plugins.pedigree.layout import CLOSE, crossings, layout
from plugins.pedigree.model import Pedigree
from plugins.pedigree.synthetic import generate
from plugins.pedigree.tests.families import ALL, half_siblings, recessive_first_cousins, twins, x_linked, autosomal_dominant


def adjacent(lay, a, b) -> bool:
    row = lay.rows[lay.generation[a]]
    return lay.generation[a] == lay.generation[b] and abs(row.index(a) - row.index(b)) == 1


@pytest.mark.parametrize("name", sorted(ALL))
def test_known_family_geometry(name):
    ped = ALL[name]()
    lay = layout(ped)
    assert set(lay.x) == set(ped.individuals)
    for gen, row in lay.rows.items():
        assert {lay.y[pid] for pid in row} == {lay.y[row[0]]}, "a generation is level"
        xs = [lay.x[pid] for pid in row]
        assert all(b - a >= CLOSE - 1e-9 for a, b in zip(xs, xs[1:])), "left to right, never closer than CLOSE"
    ys = sorted({lay.y[row[0]] for row in lay.rows.values()})
    assert ys == sorted(ys) and len(ys) == len(lay.rows)
    for p in ped.partnerships:
        assert adjacent(lay, p.a, p.b), f"partners {p.a} and {p.b} side by side"
        for c in p.children:
            assert lay.generation[c] == lay.generation[p.a] + 1
    assert crossings(lay) == []


def test_generations_follow_descent_and_married_in_partners():
    lay = layout(autosomal_dominant())
    assert [lay.generation[p] for p in ("gf", "gm", "s1", "s1w", "d2h", "c1", "c4")] == [0, 0, 1, 1, 1, 2, 2]
    lay = layout(x_linked())  # both grandparent couples on top, though only the father's line was climbed
    assert {lay.generation[p] for p in ("pgf", "pgm", "mgf", "mgm")} == {0}


def test_parents_of_a_married_in_spouse_sit_one_row_above_the_spouse():
    p = Pedigree()
    for pid, sex in [("g1", "male"), ("g2", "female"), ("a", "male"), ("aw", "female"), ("kid", "male"),
                     ("spouse", "female"), ("sf", "male"), ("sm", "female"), ("baby", "unknown")]:
        p.person(pid, sex)
    p.partner("g1", "g2", children=["a"])
    p.partner("a", "aw", children=["kid"])
    p.partner("kid", "spouse", children=["baby"])
    p.partner("sf", "sm", children=["spouse"])
    lay = layout(p)
    assert lay.generation["sf"] == lay.generation["sm"] == lay.generation["a"] == 1
    assert lay.generation["spouse"] == lay.generation["kid"] == 2
    assert crossings(lay) == []


def test_siblings_in_birth_order():
    lay = layout(autosomal_dominant())
    assert lay.x["s1"] < lay.x["d2"] < lay.x["s3"]
    assert lay.x["c1"] < lay.x["c2"] < lay.x["c3"]
    lay = layout(twins())
    assert lay.x["a"] < lay.x["mz1"] < lay.x["mz2"] < lay.x["dz1"] < lay.x["dz2"]
    lay = layout(x_linked())
    assert lay.x["proband"] < lay.x["sister"] < lay.x["brother"]
    # the father moves to the end of his sibship, next to the mother's family; the others keep their order
    assert lay.x["aunt"] < lay.x["uncle"] < lay.x["father"] < lay.x["mother"] < lay.x["muncle"] < lay.x["maunt"]


def test_sibships_centred_under_their_parents():
    for make in (autosomal_dominant, x_linked, twins, recessive_first_cousins):
        ped = make()
        lay = layout(ped)
        for p in ped.partnerships:
            if p.children:
                kids = [lay.x[c] for c in p.children]
                assert abs((min(kids) + max(kids)) / 2 - (lay.x[p.a] + lay.x[p.b]) / 2) < 0.05, (make.__name__, p)


def test_first_cousin_marriage_closes_the_loop_with_the_cousins_side_by_side():
    ped = recessive_first_cousins()
    lay = layout(ped)
    assert adjacent(lay, "x", "y")
    assert lay.generation["x"] == lay.generation["y"] == 2 and lay.generation["k1"] == 3
    assert [s.kind for s in lay.segments if s.ref == "x+y" and s.kind == "consanguinity"] == ["consanguinity"] * 2
    assert len(ped.individuals) == sum(len(r) for r in lay.rows.values()), "everyone drawn once"


def test_several_partners_and_half_siblings():
    lay = layout(half_siblings())
    assert lay.rows[0] == ["h1", "w", "h2", "ex"]
    assert lay.x["a1"] < lay.x["a2"] < lay.x["b1"] < lay.x["b2"] < lay.x["c1"]
    assert [s.kind for s in lay.segments if s.ref == "h1+w" and s.kind == "separation"] == ["separation"] * 2


def test_twin_lines_share_an_apex_and_only_monozygotic_twins_get_a_bar():
    lay = layout(twins())
    twin = [s for s in lay.segments if s.kind == "twin"]
    assert sorted(s.ref for s in twin) == ["dz1", "dz2", "mz1", "mz2"]
    apex = {s.ref: (s.x1, s.y1) for s in twin}
    assert apex["mz1"] == apex["mz2"] != apex["dz1"] == apex["dz2"]
    assert [s.ref for s in lay.segments if s.kind == "mz-bar"] == ["mz1+mz2"]


def test_unrelated_families_and_a_partnership_across_generations_still_lay_out():
    p = recessive_first_cousins()
    p.person("lone", "female")
    p.partner("b1", "y", children=[])  # an uncle with his niece: partners on different rows
    lay = layout(p)
    assert set(lay.x) == set(p.individuals)
    for row in lay.rows.values():
        xs = [lay.x[pid] for pid in row]
        assert all(b - a >= CLOSE - 1e-9 for a, b in zip(xs, xs[1:]))


@pytest.mark.parametrize("n", [20, 100, 500])
def test_generated_families_levels_and_spacing(n):
    ped = generate(n, seed=1)
    assert len(ped.individuals) == n
    assert any(p.consanguineous and p.children for p in ped.partnerships), "the generator closes a loop"
    started = time.perf_counter()
    lay = layout(ped)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0  # ~30 ms for 500 here; generous for a shared 2-core machine
    assert sum(len(r) for r in lay.rows.values()) == n
    for p in ped.partnerships:
        for c in p.children:
            assert lay.generation[c] > max(lay.generation[p.a], lay.generation[p.b])
    for row in lay.rows.values():
        xs = [lay.x[pid] for pid in row]
        assert all(b - a >= CLOSE - 1e-9 for a, b in zip(xs, xs[1:]))
