"""Reference data every installation needs: the 24 ERNs (applied by ``cpms migrate``)."""

from core.orgs import ern_reference


async def seed_erns() -> int:
    """Insert ERNs that are missing, update names of existing ones; returns how many were added."""
    from core.orgs.tables import Ern

    existing = {e["acronym"]: e["id"] for e in await Ern.select(Ern.id, Ern.acronym)}
    added = 0
    for item in ern_reference():
        if item["acronym"] in existing:
            await Ern.update({Ern.name: item["name"], Ern.area: item["area"]}).where(Ern.id == existing[item["acronym"]])
        else:
            await Ern.insert(Ern(acronym=item["acronym"], name=item["name"], area=item["area"]))
            added += 1
    return added
