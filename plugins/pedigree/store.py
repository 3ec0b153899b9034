"""Reading and writing a patient's pedigree: versions, optimistic locking, undo.

A patient without a stored pedigree has the starting one (the patient alone as proband, version 0),
built in memory; the first change stores it as version 0 and the change as version 1. Every write is
a compare-and-set on ``version`` inside a transaction, so of two people acting on the same version
one wins and the other gets :class:`Stale` (409), with nothing changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from plugins.pedigree import edit, serial
from plugins.pedigree.model import Pedigree, PedigreeError, validate


class Stale(Exception):
    """The form was built from an older version than the stored one."""


@dataclass
class Current:
    pedigree: Pedigree
    version: int
    record_id: int | None  # None: nothing stored yet
    can_undo: bool


async def load(patient: dict) -> Current:
    from plugins.pedigree.tables import PedigreeRecord, PedigreeVersion

    row = await PedigreeRecord.select().where(PedigreeRecord.patient == patient["id"]).first()
    if row is None:
        return Current(edit.new_proband(patient.get("sex") or "unknown"), 0, None, False)
    head = await PedigreeVersion.select(PedigreeVersion.parent).where(
        (PedigreeVersion.pedigree == row["id"]) & (PedigreeVersion.version == row["version"])
    ).first()
    return Current(serial.loads(row["data"]), row["version"], row["id"], bool(head and head["parent"] is not None))


async def save(patient: dict, current: Current, expected: int, new: Pedigree, action: str, actor_id: int | None,
               parent=..., audit=None) -> int:
    """Store ``new`` as the version after ``expected``; returns the new version number.
    ``parent`` (default: ``expected``) is the version the change started from (undo passes another, or None).
    ``audit(version)``, if given, is awaited in the same transaction: the change and its audit entry
    commit together or not at all."""
    from core.identity.sessions import now
    from plugins.pedigree.tables import PedigreeRecord, PedigreeVersion

    if expected != current.version:
        raise Stale()
    validate(new)
    data = serial.dumps(new)
    version = expected + 1
    db = PedigreeRecord._meta.db
    async with db.transaction():
        if current.record_id is None:
            record = PedigreeRecord(patient=patient["id"], version=version, data=data, updated_by=actor_id)
            try:
                await record.save()
            except Exception as exc:  # the unique patient column: someone stored the first change meanwhile
                raise Stale() from exc
            record_id = record.id
            await PedigreeVersion.insert(PedigreeVersion(
                pedigree=record_id, version=0, parent=None, action="start", data=serial.dumps(current.pedigree),
                created_by=actor_id))
        else:
            record_id = current.record_id
            done = await PedigreeRecord.update(
                {PedigreeRecord.version: version, PedigreeRecord.data: data, PedigreeRecord.updated_by: actor_id,
                 PedigreeRecord.updated_at: now()}
            ).where((PedigreeRecord.id == record_id) & (PedigreeRecord.version == expected)).returning(PedigreeRecord.id)
            if not done:
                raise Stale()
        await PedigreeVersion.insert(PedigreeVersion(
            pedigree=record_id, version=version, parent=expected if parent is ... else parent, action=action[:100],
            data=data, created_by=actor_id))
        if audit is not None:
            await audit(version)
    return version


async def undo_target(current: Current) -> tuple[Pedigree, int | None]:
    """(the pedigree before the last change, the version before *that*): what undo writes."""
    from plugins.pedigree.tables import PedigreeVersion

    if current.record_id is None or not current.can_undo:
        raise PedigreeError(["There is no change to undo."])
    head = await PedigreeVersion.select(PedigreeVersion.parent).where(
        (PedigreeVersion.pedigree == current.record_id) & (PedigreeVersion.version == current.version)).first()
    before = await PedigreeVersion.select(PedigreeVersion.data, PedigreeVersion.parent).where(
        (PedigreeVersion.pedigree == current.record_id) & (PedigreeVersion.version == head["parent"])).first()
    return serial.loads(before["data"]), before["parent"]


async def history(record_id: int | None, limit: int = 20) -> list[dict]:
    from plugins.pedigree.tables import PedigreeVersion

    if record_id is None:
        return []
    return await PedigreeVersion.select(
        PedigreeVersion.version, PedigreeVersion.action, PedigreeVersion.created_at, PedigreeVersion.created_by,
    ).where(PedigreeVersion.pedigree == record_id).order_by(PedigreeVersion.version, ascending=False).limit(limit)


async def export_for_gdpr(patient_id: int) -> dict:
    from plugins.pedigree.tables import PedigreeRecord, PedigreeVersion

    row = await PedigreeRecord.select().where(PedigreeRecord.patient == patient_id).first()
    if row is None:
        return {"pedigree": None, "versions": []}
    versions = await PedigreeVersion.select(
        PedigreeVersion.version, PedigreeVersion.parent, PedigreeVersion.action, PedigreeVersion.created_at,
        PedigreeVersion.data,
    ).where(PedigreeVersion.pedigree == row["id"]).order_by(PedigreeVersion.version)
    return {
        "pedigree": json.loads(row["data"]), "version": row["version"],
        "versions": [{**v, "data": json.loads(v["data"]), "created_at": v["created_at"].isoformat()} for v in versions],
    }


async def erase(pseudonym: str) -> None:
    from core.patients.tables import Patient
    from plugins.pedigree.tables import PedigreeRecord

    patient = await Patient.select(Patient.id).where(Patient.pseudonym == pseudonym).first()
    if patient is not None:
        await PedigreeRecord.delete().where(PedigreeRecord.patient == patient["id"])
