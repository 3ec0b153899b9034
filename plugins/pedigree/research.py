"""What the family tree adds to anonymised research data (the research plugin's fields).

Two categorical values, never the tree itself: how many relatives are affected ("none", "one",
"two or more") and the pattern the drawn tree shows ("vertical": an affected person with an
affected parent, as dominant inheritance gives; "horizontal": affected siblings whose parents are
not affected, or an affected child of a consanguineous couple, as recessive inheritance gives;
"single case"; "no one affected"). A pattern in a drawing, not a diagnosis of the mode of
inheritance.
"""

from __future__ import annotations

from plugins.pedigree.model import Pedigree


def affected_ids(ped: Pedigree) -> set[str]:
    return {i.id for i in ped.individuals.values() if "affected" in i.conditions.values()}


def affected_relatives(ped: Pedigree) -> str:
    affected = affected_ids(ped)
    probands = {i.id for i in ped.individuals.values() if i.proband}
    n = len(affected - probands)
    return "none" if n == 0 else "one" if n == 1 else "two or more"


def pattern(ped: Pedigree) -> str:
    affected = affected_ids(ped)
    if not affected:
        return "no one affected"
    for person in affected:
        parents = ped.parents_of(person)
        if parents and affected & set(parents):
            return "vertical"
    for p in ped.partnerships:
        hit = affected & set(p.children)
        if hit and not affected & {p.a, p.b} and (len(hit) >= 2 or p.consanguineous):
            return "horizontal"
    return "single case"


async def _current(patient) -> Pedigree | None:
    from plugins.pedigree.serial import loads
    from plugins.pedigree.tables import PedigreeRecord

    row = await PedigreeRecord.select(PedigreeRecord.data).where(PedigreeRecord.patient == patient.id).first()
    return loads(row["data"]) if row and row["data"] else None


async def extract_relatives(patient) -> str | None:
    ped = await _current(patient)
    return affected_relatives(ped) if ped else None


async def extract_pattern(patient) -> str | None:
    ped = await _current(patient)
    return pattern(ped) if ped else None
