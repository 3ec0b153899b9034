"""What the pathology plugin adds to anonymised research data: whether whole-slide images exist."""

from __future__ import annotations


async def slides_present_many(patients) -> dict[int, bool]:
    from plugins.pathology_viewer.tables import Slide

    ids = [p.id for p in patients]
    having: set[int] = set()
    for start in range(0, len(ids), 900):
        having.update(r["patient"] for r in await Slide.select(Slide.patient).where(Slide.patient.is_in(ids[start:start + 900])))
    return {pid: pid in having for pid in ids}


async def slides_present(patient) -> bool:
    return (await slides_present_many([patient]))[patient.id]
