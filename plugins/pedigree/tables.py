"""A pedigree per patient and every version of it.

``PedigreeRecord.data`` is the current version as JSON (``serial.dumps``); each change also writes
a ``PedigreeVersion`` row with the same JSON, who made it and when. ``parent`` is the version a
change started from: undo restores the parent's JSON as a new version whose own ``parent`` is the
parent's parent, so undoing again walks further back and nothing is ever overwritten.
Relatives carry no names: the JSON holds labels, sexes, statuses, ages/years and the clinician's notes.
"""

from piccolo.columns import ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.patients.tables import Patient


class PedigreeRecord(Table, tablename="pedigree_pedigree"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, unique=True, index=True)
    #: Increases by one with every change; forms carry it (optimistic locking).
    version = Integer(default=0)
    data = Text()
    updated_at = Timestamptz(default=TimestamptzNow())
    updated_by = Integer(null=True, default=None)


class PedigreeVersion(Table, tablename="pedigree_version"):
    pedigree = ForeignKey(PedigreeRecord, on_delete=OnDelete.cascade, index=True)
    version = Integer()
    #: The version this one was made from (None for the starting point, version 0).
    parent = Integer(null=True, default=None)
    #: What changed, in a few words ("add parents", "edit II-1", "undo").
    action = Varchar(length=100, default="")
    data = Text()
    created_at = Timestamptz(default=TimestamptzNow())
    created_by = Integer(null=True, default=None)
