"""The terminology store: code systems (one loaded version each), concepts, their terms,
hierarchy and cross-walks. Nothing here is about a patient.

A release is written in one transaction (``release.write_release``): replacing a version
deletes the system's concepts (cascading to terms and links) and inserts the new ones, so
readers see the old version or the new one, never a mixture.
"""

from piccolo.columns import Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class CodeSystem(Table, tablename="coding_system"):
    #: Short key used in CPMS records and URLs: ORPHA, ICD-10, ICD-10-CM, HPO, OMIM, LOINC, MedDRA.
    key = Varchar(length=20, unique=True)
    name = Varchar(length=200)
    #: FHIR canonical URL (e.g. http://www.orpha.net, http://hl7.org/fhir/sid/icd-10).
    uri = Varchar(length=200, index=True)
    version = Varchar(length=100, default="")
    #: Licence and attribution shown wherever the system's content is shown.
    licence = Text(default="")
    #: Where this version came from: a bundled package or an imported file name.
    source = Varchar(length=300, default="")
    imported_at = Timestamptz(default=TimestamptzNow())
    imported_by = Varchar(length=200, default="")
    concepts = Integer(default=0)


class Concept(Table, tablename="coding_concept"):
    system = ForeignKey(CodeSystem, on_delete=OnDelete.cascade, index=True)
    code = Varchar(length=64)
    #: The preferred term (also stored as a "preferred" Designation, which search reads).
    display = Varchar(length=1000)
    #: chapter, block, category, term, disorder, group, subtype, soc, hlgt, hlt, pt, llt, observation...
    kind = Varchar(length=30, default="")
    #: Obsolete/deprecated/non-current codes stay resolvable but are not suggested.
    active = Boolean(default=True)
    #: System-specific facts as JSON (LOINC axes, MedDRA currency, Orphanet disorder type...).
    properties = Text(default="{}")


class Designation(Table, tablename="coding_designation"):
    """Every term a concept is found by: its preferred label, synonyms, inclusion terms."""

    concept = ForeignKey(Concept, on_delete=OnDelete.cascade, index=True)
    term = Varchar(length=1000)
    #: preferred, synonym, inclusion, abbreviation
    use = Varchar(length=20, default="synonym")
    language = Varchar(length=10, default="en")


class ConceptParent(Table, tablename="coding_parent"):
    """Hierarchy as a graph (HPO and Orphanet are polyhierarchies)."""

    child = ForeignKey(Concept, on_delete=OnDelete.cascade, index=True)
    parent = ForeignKey(Concept, on_delete=OnDelete.cascade, index=True)


class Mapping(Table, tablename="coding_mapping"):
    """A cross-walk from a concept to a code of another system (ORPHA -> ICD-10, ORPHA -> OMIM...).

    The target is a system key and code, not a row: a mapping survives replacing the target
    system's version, and may name a code whose system is not loaded."""

    source = ForeignKey(Concept, on_delete=OnDelete.cascade, index=True)
    target_system = Varchar(length=20)
    target_code = Varchar(length=64)
    #: FHIR ConceptMap relationship: equivalent, source-is-narrower-than-target,
    #: source-is-broader-than-target, related-to, not-related-to.
    relation = Varchar(length=40, default="equivalent")
    #: The publisher's own words (Orphanet: E, NTBT, BTNT, ND; validation status).
    note = Varchar(length=200, default="")
