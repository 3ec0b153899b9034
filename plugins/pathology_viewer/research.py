"""What the pathology plugin adds to anonymised research data: whether whole-slide images exist."""

from __future__ import annotations


async def slides_present(patient) -> bool:
    from plugins.pathology_viewer.tables import Slide

    return await Slide.exists().where(Slide.patient == patient.id)
