"""Demo images for ``cpms demo``: the first demo patient (core.patients.demo) gets a small synthetic
CT series (12 slices of 256 x 256, a few MB), ingested through the same pipeline as an upload
(de-identified, encrypted at rest), so the patient page and the panel about that patient show a
study to open in the viewer. A CT declares no burned-in text: no review is needed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from anyio import to_thread

SLICES, SIZE = 12, 256


async def load(ctx) -> None:
    from core.patients.tables import Patient
    from plugins.dicom_viewer import store, synthetic

    pseudonyms = ctx.extra.get("patients") or []
    if not pseudonyms:  # the core's demo patients are not there: nothing to attach images to
        return
    patient = await Patient.select(Patient.id, Patient.pseudonym, Patient.hcp).where(
        Patient.pseudonym == pseudonyms[0]).first()
    if patient is None:
        return
    settings = ctx.settings
    store.remember_settings(settings)
    with tempfile.TemporaryDirectory(prefix="cpms-demo-ct-") as tmp:
        paths = await to_thread.run_sync(lambda: synthetic.ct_series(Path(tmp), n=SLICES, size=SIZE))
        items = [(p.read_bytes(), p.name) for p in paths]
    folder = await to_thread.run_sync(store.new_folder, settings)
    try:
        got = await store.receive_bytes(settings, folder, items)
        await store.ingest(settings, patient, got, ctx.users.get("hp"))
    finally:
        store.discard(folder)  # synchronous: it must run on cancellation too
