"""What the coding plugin adds to anonymised research data: the organ systems of the observed HPO
phenotypes (the branches just under "Phenotypic abnormality" that they fall in)."""

from __future__ import annotations

PHENOTYPIC_ABNORMALITY = "HP:0000118"


async def hpo_categories_many(patients) -> dict[int, list[str]]:
    """For many patients at once: one read of their phenotypes, one walk up the hierarchy."""
    from core.patients.tables import Phenotype
    from plugins.coding.lookup import ancestors, children

    ids = [p.id for p in patients]
    codes: dict[int, set[str]] = {pid: set() for pid in ids}
    for start in range(0, len(ids), 900):
        for r in await Phenotype.select(Phenotype.patient, Phenotype.code).where(
                Phenotype.patient.is_in(ids[start:start + 900]) & (Phenotype.system == "HPO")
                & (Phenotype.observed == True)):  # noqa: E712
            if r["code"]:
                codes[r["patient"]].add(r["code"])
    every = sorted({c for cs in codes.values() for c in cs})
    if not every:
        return {pid: [] for pid in ids}
    branches = {c["code"]: c["display"] for c in await children("HPO", PHENOTYPIC_ABNORMALITY)}
    found = await ancestors("HPO", every) or {}
    return {pid: sorted({branches[c] for code in cs for c in [code] + found.get(code, []) if c in branches})
            for pid, cs in codes.items()}


async def hpo_categories(patient) -> list[str]:
    return (await hpo_categories_many([patient]))[patient.id]
