"""What the coding plugin adds to anonymised research data: the organ systems of the observed HPO
phenotypes (the branches just under "Phenotypic abnormality" that they fall in)."""

from __future__ import annotations

PHENOTYPIC_ABNORMALITY = "HP:0000118"


async def hpo_categories(patient) -> list[str]:
    from core.patients.tables import Phenotype
    from plugins.coding.lookup import ancestors, children

    codes = [r["code"] for r in await Phenotype.select(Phenotype.code).where(
        (Phenotype.patient == patient.id) & (Phenotype.system == "HPO") & (Phenotype.observed == True))  # noqa: E712
        if r["code"]]
    if not codes:
        return []
    branches = {c["code"]: c["display"] for c in await children("HPO", PHENOTYPIC_ABNORMALITY)}
    found = await ancestors("HPO", codes) or {}
    return sorted({branches[c] for code in codes for c in [code] + found.get(code, []) if c in branches})
