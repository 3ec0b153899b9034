"""Removing slides (one, or all of an erased patient) and the GDPR export of what the plugin holds.

A stored file may back two slide rows (the same file uploaded for two patients: the core store names
files by content), so the file and its working copy go only with the last row that uses it.
"""

from __future__ import annotations

import json

from plugins.pathology_viewer import access, slides

_known: dict[str, object] = {}


def remember_settings(settings) -> None:
    """Settings of the apps this process serves: ``handle_event`` receives only the event, and erasure
    must find the data folder whose files it removes."""
    _known.setdefault(str(settings.data_dir), settings)


def known_settings() -> list:
    if _known:
        return list(_known.values())
    from core.settings import Settings

    return [Settings.from_env()]


async def remove_files(settings_list, file_keys: set[str]) -> None:
    """Stored files and working copies of ``file_keys`` no slide row uses any more."""
    from core.storage import Storage
    from plugins.pathology_viewer.tables import Slide

    for key in file_keys:
        if await Slide.exists().where(Slide.file_key == key):
            continue
        slides.forget_everywhere(key)
        for settings in settings_list:
            try:
                await Storage(settings).delete(key)
            except (ValueError, OSError):
                pass
            try:
                slides.files_for(settings).remove_copy(key)
            except (ValueError, OSError):
                pass


async def delete_slide(settings, slide: dict) -> None:
    """The row (annotations and share links cascade), then its file if no other row uses it."""
    from plugins.pathology_viewer.tables import Slide

    await Slide.delete().where(Slide.id == slide["id"])
    access.forget(slide["id"])
    await remove_files([settings, *[s for s in known_settings() if s is not settings]], {slide["file_key"]})


async def erase(pseudonym: str) -> int:
    """All slides of an erased patient: rows, stored files, working copies, cached tiles."""
    from core.patients.tables import Patient
    from plugins.pathology_viewer.tables import Slide

    patient = await Patient.select(Patient.id).where(Patient.pseudonym == pseudonym).first()
    if patient is None:
        return 0
    rows = await Slide.select(Slide.id, Slide.file_key).where(Slide.patient == patient["id"])
    await Slide.delete().where(Slide.patient == patient["id"])
    for row in rows:
        access.forget(row["id"])
    await remove_files(known_settings(), {r["file_key"] for r in rows})
    return len(rows)


async def export_for_gdpr(patient_id: int) -> dict:
    from plugins.pathology_viewer.tables import Annotation, ShareLink, Slide

    rows = await Slide.select().where(Slide.patient == patient_id).order_by(Slide.id)
    out = []
    for r in rows:
        notes = await Annotation.select(Annotation.id, Annotation.author, Annotation.kind, Annotation.geometry,
                                        Annotation.text, Annotation.created_at, Annotation.updated_at).where(
            Annotation.slide == r["id"]).order_by(Annotation.id)
        links = await ShareLink.select(ShareLink.id, ShareLink.note, ShareLink.created_by, ShareLink.expires_at,
                                       ShareLink.revoked_at, ShareLink.created_at).where(ShareLink.slide == r["id"])
        out.append({
            "id": r["id"], "title": r["title"], "container": r["container"], "vendor": r["vendor"],
            "sha256": r["sha256"], "size": r["size"], "width": r["width"], "height": r["height"],
            "level_count": r["level_count"], "mpp_x": r["mpp_x"], "mpp_y": r["mpp_y"],
            "objective_power": r["objective_power"], "properties": _json(r["properties"], {}),
            "associated_images": _json(r["associated"], []), "hidden_from_panels": r["hidden_from_panels"],
            "uploaded_by": r["uploaded_by"], "created_at": _iso(r["created_at"]),
            "annotations": [{**a, "geometry": _json(a["geometry"], {}), "created_at": _iso(a["created_at"]),
                             "updated_at": _iso(a["updated_at"])} for a in notes],
            "share_links": [{k: _iso(v) for k, v in link.items()} for link in links],
        })
    return {"slides": out}


def _json(value, default):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return default
    return value if value is not None else default


def _iso(value):
    return value.isoformat() if hasattr(value, "isoformat") else value
