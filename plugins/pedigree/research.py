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


async def _trees(patients) -> dict[int, Pedigree]:
    from plugins.pedigree.serial import loads
    from plugins.pedigree.tables import PedigreeRecord

    ids = [p.id for p in patients]
    out = {}
    for start in range(0, len(ids), 900):
        for row in await PedigreeRecord.select(PedigreeRecord.patient, PedigreeRecord.data).where(
                PedigreeRecord.patient.is_in(ids[start:start + 900])):
            if row["data"]:
                out[row["patient"]] = loads(row["data"])
    return out


async def relatives_many(patients) -> dict[int, str]:
    return {pid: affected_relatives(ped) for pid, ped in (await _trees(patients)).items()}


async def pattern_many(patients) -> dict[int, str]:
    return {pid: pattern(ped) for pid, ped in (await _trees(patients)).items()}


async def extract_relatives(patient) -> str | None:
    return (await relatives_many([patient])).get(patient.id)


async def extract_pattern(patient) -> str | None:
    return (await pattern_many([patient])).get(patient.id)
