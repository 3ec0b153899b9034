"""Demo slide for ``cpms demo``: the first demo patient (core.patients.demo) gets one synthetic,
tissue-like pyramidal TIFF (4096 x 3072 px at 0.25 µm/px, about a second to write), stored through the
same path as an upload (validated by OpenSlide, encrypted at rest, working copy made), so the patient
page and the panel about that patient show a slide to open in the viewer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from anyio import to_thread

WIDTH, HEIGHT = 4096, 3072


async def load(ctx) -> None:
    from core.patients.tables import Patient
    from plugins.pathology_viewer import ingest, synthetic
    from plugins.pathology_viewer.store import remember_settings

    pseudonyms = ctx.extra.get("patients") or []
    if not pseudonyms:  # the core's demo patients are not there: nothing to attach a slide to
        return
    patient = await Patient.select(Patient.id, Patient.pseudonym, Patient.hcp).where(
        Patient.pseudonym == pseudonyms[0]).first()
    if patient is None:
        return
    settings = ctx.settings
    remember_settings(settings)
    with tempfile.TemporaryDirectory(prefix="cpms-demo-slide-") as tmp:
        path = Path(tmp) / "demo-slide.tiff"
        await to_thread.run_sync(lambda: synthetic.write_generic_tiff(path, WIDTH, HEIGHT, mpp=0.25, seed=2026))
        folder = await to_thread.run_sync(ingest.new_folder, settings)
        try:
            got = await ingest.receive_file(settings, path, folder)
            await ingest.commit(settings, patient, got, "H&E, cerebellar biopsy (synthetic demo slide)", ctx.users.get("hp"))
        finally:
            await to_thread.run_sync(ingest.discard, folder)
