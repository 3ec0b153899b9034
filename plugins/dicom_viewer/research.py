"""What the DICOM plugin adds to anonymised research data: the imaging modalities present (CT, MR...)."""

from __future__ import annotations


async def modalities_many(patients) -> dict[int, list[str]]:
    from plugins.dicom_viewer.tables import Series

    ids = [p.id for p in patients]
    out: dict[int, set[str]] = {pid: set() for pid in ids}
    for start in range(0, len(ids), 900):
        for r in await Series.select(Series.study.patient.as_alias("patient"), Series.modality).where(
                Series.study.patient.is_in(ids[start:start + 900])):
            if r["modality"]:
                out[r["patient"]].add(r["modality"].upper())
    return {pid: sorted(values) for pid, values in out.items()}


async def modalities(patient) -> list[str]:
    return (await modalities_many([patient]))[patient.id]
