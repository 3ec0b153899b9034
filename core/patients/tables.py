"""Patients: identity kept encrypted, everything else keyed by a random pseudonym."""

from piccolo.columns import Boolean, Date, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.orgs.tables import Ern, Hcp


class Patient(Table, tablename="patients_patient"):
    #: Random, meaningless identifier used everywhere outside the enrolling hospital.
    pseudonym = Varchar(length=20, unique=True)
    #: Readable, unique, not derived from identity ("Amber Heron 42").
    nickname = Varchar(length=60, unique=True)
    hcp = ForeignKey(Hcp, on_delete=OnDelete.restrict, index=True)
    #: Encrypted JSON: names, date of birth, record numbers, contact details.
    identity = Text()
    #: Keyed hashes (HMAC) for duplicate warnings within a hospital; not reversible.
    dup_record = Varchar(length=64, default="", index=True)
    dup_name_dob = Varchar(length=64, default="", index=True)
    sex = Varchar(length=10, default="unknown")
    summary = Text(default="")
    created_by = Integer(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    restricted = Boolean(default=False)
    erased_at = Timestamptz(null=True, default=None)


class PatientErn(Table, tablename="patients_patient_ern"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    ern = ForeignKey(Ern, on_delete=OnDelete.restrict)
    enrolled_by = Integer(null=True, default=None)
    enrolled_at = Timestamptz(default=TimestamptzNow())


class Document(Table, tablename="patients_document"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    kind = Varchar(length=30)
    #: Encrypted: titles and file names often carry the patient's name.
    title = Text()
    filename = Text()
    content_type = Varchar(length=100)
    size = Integer()
    sha256 = Varchar(length=64)
    storage_key = Varchar(length=100)
    uploaded_by = Integer(null=True, default=None)
    uploaded_at = Timestamptz(default=TimestamptzNow())
    deleted_at = Timestamptz(null=True, default=None)


class Consent(Table, tablename="patients_consent"):
    """Append-only: the current status of a kind is its newest row."""

    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    kind = Varchar(length=20)  # care, sharing, registry, research
    status = Varchar(length=10)  # given, refused, withdrawn
    date = Date()
    form_version = Varchar(length=40)
    document = ForeignKey(Document, null=True, default=None, on_delete=OnDelete.set_null)
    recorded_by = Integer(null=True, default=None)
    recorded_at = Timestamptz(default=TimestamptzNow())


class Diagnosis(Table, tablename="patients_diagnosis"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    label = Varchar(length=300)
    system = Varchar(length=30, default="")
    code = Varchar(length=40, default="")
    #: More codes for the same entry (JSON list of {system, code, display}), e.g. the ICD-10 of an ORPHAcode.
    codings = Text(default="[]")
    status = Varchar(length=12, default="suspected")  # confirmed, suspected
    onset = Varchar(length=60, default="")
    updated_by = Integer(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class Phenotype(Table, tablename="patients_phenotype"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    label = Varchar(length=300)
    system = Varchar(length=30, default="")
    code = Varchar(length=40, default="")
    #: More codes for the same entry (JSON list of {system, code, display}), e.g. the ICD-10 of an ORPHAcode.
    codings = Text(default="[]")
    observed = Boolean(default=True)
    onset = Varchar(length=60, default="")
    updated_by = Integer(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class GeneticFinding(Table, tablename="patients_genetic_finding"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    gene = Varchar(length=30)
    variant = Varchar(length=200)  # HGVS
    zygosity = Varchar(length=20, default="")
    classification = Varchar(length=30, default="")
    updated_by = Integer(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class Medication(Table, tablename="patients_medication"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    name = Varchar(length=200)
    dose = Varchar(length=100, default="")
    started = Date(null=True, default=None)
    stopped = Date(null=True, default=None)
    updated_by = Integer(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class ClinicalNote(Table, tablename="patients_note"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    text = Text()
    author = Integer(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class ChangeLog(Table, tablename="patients_change"):
    """Rectification history: who changed what, when, from what to what (values encrypted)."""

    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    entity = Varchar(length=30)
    entity_id = Integer(null=True, default=None)
    field = Varchar(length=40)
    old_value = Text(default="")
    new_value = Text(default="")
    actor = Integer(null=True, default=None)
    at = Timestamptz(default=TimestamptzNow())


class GdprRequest(Table, tablename="patients_gdpr_request"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, index=True)
    kind = Varchar(length=12)  # erasure, restriction
    status = Varchar(length=12, default="recorded")  # recorded, carried_out, refused, lifted
    reason = Text(default="")
    requested_by = Integer(null=True, default=None)
    requested_at = Timestamptz(default=TimestamptzNow())
    decided_by = Integer(null=True, default=None)
    decided_at = Timestamptz(null=True, default=None)
    note = Text(default="")
