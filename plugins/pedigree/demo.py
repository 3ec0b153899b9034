"""Demo family for ``cpms demo``: the first demo patient (Mila, suspected SCA2; core.patients.demo)
gets a three-generation autosomal-dominant family, so the patient page shows a tree.

Invented and nameless like every relative: an affected maternal grandfather (deceased), an affected
mother and uncle, an unaffected aunt, the proband and a younger brother not tested (a minor).
Earlier onset down the generations is SCA2's anticipation (CAG repeat expansion in ATXN2).
"""

from __future__ import annotations

from plugins.pedigree.model import Genotype, Pedigree

SCA2 = "c1"


def demo_family(sex: str = "female") -> Pedigree:
    p = Pedigree(family_id="DEMO1")
    p.condition(SCA2, "Spinocerebellar ataxia type 2", system="ORPHA", code="98756")
    # i1 is always the patient (edit.new_proband): the editor and the tests rely on it
    p.person("i1", sex if sex in ("male", "female") else "unknown", proband=True, birth_year=2012, age=14,
             conditions={SCA2: "affected"}, tested=True,
             genotypes=[Genotype("ATXN2", "NM_002973.4:c.496C>T", "heterozygous", "VUS")])
    p.person("i2", "male", birth_year=1981, age=45, conditions={SCA2: "unaffected"})
    p.person("i3", "female", birth_year=1984, age=42, conditions={SCA2: "affected"}, tested=True,
             genotypes=[Genotype("ATXN2", "NM_002973.4:c.496C>T", result="VUS")], note="onset at 34")
    p.person("i4", "male", birth_year=2015, age=11)  # not tested: a minor without symptoms
    p.person("i5", "male", deceased=True, birth_year=1950, death_year=2016, age=66, conditions={SCA2: "affected"},
             note="onset at 52")
    p.person("i6", "female", birth_year=1953, age=73, conditions={SCA2: "unaffected"})
    p.person("i7", "male", birth_year=1979, age=47, conditions={SCA2: "affected"}, order=1)
    # evaluated and unaffected; her result stays in the record (a third text line would crowd her sister's)
    p.person("i8", "female", birth_year=1987, age=39, conditions={SCA2: "unaffected"}, order=3, tested=True)
    p.individuals["i3"].order = 2
    p.partner("i2", "i3", children=["i1", "i4"])
    p.partner("i5", "i6", children=["i7", "i3", "i8"])
    return p


async def load(ctx) -> None:
    from core.patients.tables import Patient
    from plugins.pedigree import store

    pseudonyms = ctx.extra.get("patients") or []
    if not pseudonyms:  # the core's demo patients are not there (patients disabled): nothing to draw for
        return
    row = await Patient.select(Patient.id, Patient.pseudonym, Patient.sex).where(
        Patient.pseudonym == pseudonyms[0]).first()
    if row is None:
        return
    current = await store.load(row)
    await store.save(row, current, current.version, demo_family(row["sex"] or "unknown"), "demo family (8 people)",
                     ctx.users.get("hp"))
