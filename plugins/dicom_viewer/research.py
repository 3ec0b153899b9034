"""What the DICOM plugin adds to anonymised research data: the imaging modalities present (CT, MR...)."""

from __future__ import annotations


async def modalities(patient) -> list[str]:
    from plugins.dicom_viewer.tables import Series

    rows = await Series.select(Series.modality).where(Series.study.patient == patient.id)
    return sorted({r["modality"].upper() for r in rows if r["modality"]})
