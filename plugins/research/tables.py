"""The research plugin's tables.

``ResearchSubject`` and ``ResearchTerm`` are a projection of the core's patient record, reduced to
what research may use (no identity, pseudonym, nickname, hospital, free text or exact date), kept
current by events (``projection``). Whether a subject counts is decided at query time against the
patient's current registry consent (``query.INCLUDED``): the projection cannot keep a withdrawn
patient in the data even if an event was missed.

A project is filed by a researcher and decided per ERN by that ERN's coordinators; access is
per project, per approved ERN, until the project's end date. Everything done with a project is
logged in ``ResearchLog``; every export is recorded with its manifest and the subjects it held,
so the coordinators can see who got a patient's data before a withdrawal.
"""

from piccolo.columns import BigInt, Boolean, Date, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.orgs.tables import Ern
from core.patients.tables import Patient


class ResearchSubject(Table, tablename="research_subject"):
    patient = ForeignKey(Patient, on_delete=OnDelete.cascade, unique=True, index=True)
    #: The registry rule held when the row was refreshed (core.patients.consent_rules "registry").
    included = Boolean(default=False, index=True)
    #: The registry consent row that allowed it: a newer row (given or not) makes the row stale,
    #: and a stale row counts as excluded until it is refreshed (fail closed).
    consent_id = Integer(null=True, default=None)
    #: A random 32-bit number fixed per patient (the cell-key method, ``anonymise``): SQL sums it exactly.
    record_key = BigInt(default=0)
    sex = Varchar(length=10, default="unknown", index=True)
    age_enrolment = Integer(null=True, default=None)
    age_onset = Integer(null=True, default=None)
    age_diagnosis = Integer(null=True, default=None)
    enrolment_year = Integer(default=0, index=True)
    country = Varchar(length=2, default="", index=True)
    #: none, in_progress, diagnosed, no_diagnosis (the latest panel's signed outcome)
    outcome = Varchar(length=20, default="none")
    confirmed = Boolean(default=False)
    research_contact = Boolean(default=False)
    #: JSON: coded diagnoses, phenotypes, variants (gene, class) and plugins' research fields.
    data = Text(default="{}")
    refreshed_at = Timestamptz(default=TimestamptzNow())


class ResearchTerm(Table, tablename="research_term"):
    """What a cohort filters on: ERNs, codes (with their ancestors, ``direct`` false), genes, classes."""

    subject = ForeignKey(ResearchSubject, on_delete=OnDelete.cascade, index=True)
    #: ern, diagnosis, phenotype, gene, variant_class
    kind = Varchar(length=16)
    #: "ERN RND", "ORPHA:98756", "HP:0001250", "ATXN2", "pathogenic"
    value = Varchar(length=80, index=True)
    direct = Boolean(default=True)


class ResearchSetting(Table, tablename="research_setting"):
    """k per ERN (the threshold of k-anonymity and of small-cell suppression)."""

    ern = ForeignKey(Ern, on_delete=OnDelete.cascade, unique=True)
    k = Integer(default=5)


class ResearchProject(Table, tablename="research_project"):
    title = Varchar(length=200)
    aims = Text()
    ethics_ref = Varchar(length=100)
    data_wanted = Text()
    starts = Date()
    ends = Date()
    researcher = Integer(index=True)
    #: Encrypted (site keyring) key of this project's research identifiers.
    id_key = Text()
    created_at = Timestamptz(default=TimestamptzNow())


class ResearchProjectErn(Table, tablename="research_project_ern"):
    project = ForeignKey(ResearchProject, on_delete=OnDelete.cascade, index=True)
    ern = ForeignKey(Ern, on_delete=OnDelete.restrict, index=True)
    #: pending, approved, rejected
    status = Varchar(length=10, default="pending", index=True)
    reason = Text(default="")
    decided_by = Integer(null=True, default=None)
    decided_at = Timestamptz(null=True, default=None)


class ResearchCohort(Table, tablename="research_cohort"):
    project = ForeignKey(ResearchProject, on_delete=OnDelete.cascade, index=True)
    name = Varchar(length=120)
    #: JSON cohort definition (query.parse_definition)
    definition = Text()
    created_by = Integer(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class ResearchExport(Table, tablename="research_export"):
    project = ForeignKey(ResearchProject, on_delete=OnDelete.cascade, index=True)
    #: cde, phenopackets, rows
    kind = Varchar(length=20)
    manifest = Text()
    rows = Integer(default=0)
    #: JSON list of the patient row ids it held (never leaves the server; for withdrawals).
    subjects = Text(default="[]")
    sha256 = Varchar(length=64, default="")
    created_by = Integer(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class ResearchLog(Table, tablename="research_log"):
    """Every query, view, export and Beacon call, against its project (None for the Beacon)."""

    project = Integer(null=True, default=None, index=True)
    actor = Integer(null=True, default=None)
    action = Varchar(length=30)
    detail = Text(default="{}")
    at = Timestamptz(default=TimestamptzNow())
