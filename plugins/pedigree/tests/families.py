"""Known families shared by the tests: built with the model's own helpers, ids only (no names)."""

from __future__ import annotations

from plugins.pedigree.model import Pedigree


def autosomal_dominant() -> Pedigree:
    """Three generations, affected in each, male-to-male transmission; the proband is III-? (his grandfather was affected)."""
    p = Pedigree(family_id="AD")
    p.condition("HD", "Huntington disease", system="ORPHA", code="399")
    p.person("gf", "male", deceased=True, birth_year=1930, death_year=1990, conditions={"HD": "affected"})
    p.person("gm", "female", birth_year=1933, conditions={"HD": "unaffected"})
    p.person("s1", "male", birth_year=1955, conditions={"HD": "affected"})
    p.person("s1w", "female", birth_year=1957)
    p.person("d2", "female", birth_year=1958, conditions={"HD": "unaffected"})
    p.person("d2h", "male", birth_year=1956)
    p.person("s3", "male", birth_year=1961, conditions={"HD": "affected"}, tested=True)
    for kid, sex, year, status in [("c1", "male", 1980, "affected"), ("c2", "female", 1982, "unaffected"),
                                   ("c3", "female", 1985, "presymptomatic")]:
        p.person(kid, sex, birth_year=year, conditions={"HD": status})
    p.person("c4", "male", birth_year=1984)
    p.partner("gf", "gm", children=["s1", "d2", "s3"])
    p.partner("s1", "s1w", children=["c1", "c2", "c3"])
    p.partner("d2h", "d2", children=["c4"])
    p.individuals["c1"].proband = True
    p.individuals["c2"].consultand = True
    return p


def recessive_first_cousins() -> Pedigree:
    """Autosomal recessive: first cousins (their fathers are brothers) marry; two of their three children are affected."""
    p = Pedigree(family_id="AR")
    p.condition("CF", "Cystic fibrosis")
    p.person("g1", "male", deceased=True)
    p.person("g2", "female", deceased=True)
    p.person("b1", "male", order=1, conditions={"CF": "carrier"})
    p.person("w1", "female")
    p.person("b2", "male", order=2, conditions={"CF": "carrier"})
    p.person("w2", "female")
    p.person("sis", "female", order=3)
    p.person("x", "male", order=1, conditions={"CF": "carrier"})
    p.person("xs", "female", order=2)
    p.person("y0", "male", order=1)
    p.person("y", "female", order=2, conditions={"CF": "carrier"})
    for kid, sex, status in [("k1", "female", "affected"), ("k2", "male", "carrier"), ("k3", "male", "affected")]:
        p.person(kid, sex, conditions={"CF": status})
    p.partner("g1", "g2", children=["b1", "b2", "sis"])
    p.partner("b1", "w1", children=["x", "xs"])
    p.partner("b2", "w2", children=["y0", "y"])
    p.partner("x", "y", children=["k1", "k2", "k3"], consanguineous=True)
    p.individuals["k1"].proband = True
    return p


def x_linked() -> Pedigree:
    """X-linked recessive: carrier grandmother, an affected uncle, carrier mother, affected proband, both sides drawn."""
    p = Pedigree(family_id="XL")
    p.condition("DMD", "Duchenne muscular dystrophy")
    p.person("pgf", "male")
    p.person("pgm", "female")
    p.person("mgf", "male")
    p.person("mgm", "female", conditions={"DMD": "carrier"})
    p.person("aunt", "female", birth_year=1960)
    p.person("father", "male", birth_year=1962)
    p.person("uncle", "male", birth_year=1963)
    p.person("mother", "female", birth_year=1964, conditions={"DMD": "carrier"})
    p.person("muncle", "male", birth_year=1966, deceased=True, death_year=1984, conditions={"DMD": "affected"})
    p.person("maunt", "female", birth_year=1968, conditions={"DMD": "carrier"})
    p.person("proband", "male", birth_year=1990, conditions={"DMD": "affected"}, proband=True)
    p.person("sister", "female", birth_year=1992, conditions={"DMD": "carrier"})
    p.person("brother", "male", birth_year=1995, conditions={"DMD": "unaffected"})
    p.partner("pgf", "pgm", children=["aunt", "father", "uncle"])
    p.partner("mgf", "mgm", children=["mother", "muncle", "maunt"])
    p.partner("father", "mother", children=["proband", "sister", "brother"])
    return p


def twins() -> Pedigree:
    """A sibship with monozygotic twin girls, dizygotic twins (boy and girl) and a singleton."""
    p = Pedigree(family_id="TW")
    p.condition("T1D", "Type 1 diabetes")
    p.person("f", "male")
    p.person("m", "female")
    p.person("a", "male", order=1)
    p.person("mz1", "female", order=2, conditions={"T1D": "affected"}, proband=True)
    p.person("mz2", "female", order=2, conditions={"T1D": "affected"})
    p.person("dz1", "male", order=3)
    p.person("dz2", "female", order=3)
    p.partner("f", "m", children=["a", "mz1", "mz2", "dz1", "dz2"])
    p.add_twins(["mz1", "mz2"], monozygotic=True)
    p.add_twins(["dz1", "dz2"], monozygotic=False)
    return p


def half_siblings() -> Pedigree:
    """A woman with two partners (children with each), whose second partner also had a child before."""
    p = Pedigree(family_id="HS")
    p.person("h1", "male")
    p.person("w", "female")
    p.person("h2", "male")
    p.person("ex", "female")
    for kid in ("a1", "a2", "b1", "b2", "c1"):
        p.person(kid, "unknown" if kid == "c1" else "male")
    p.partner("h1", "w", children=["a1", "a2"], separated=True)
    p.partner("w", "h2", children=["b1", "b2"])
    p.partner("h2", "ex", children=["c1"])
    return p


ALL = {"autosomal_dominant": autosomal_dominant, "recessive_first_cousins": recessive_first_cousins,
       "x_linked": x_linked, "twins": twins, "half_siblings": half_siblings}
