"""The research record: what the research plugin knows of one patient, before anonymisation.

A ``ResearchRecord`` is built from the core's tables (and the plugins' research fields) by
``projection`` and stored, already reduced, in ``research_subject``; nothing identifying is in
it (no name, pseudonym, nickname, hospital, free text, exact date). It still holds quasi-
identifiers at full precision (age in years, country, exact codes): ``anonymise`` generalises
them before anything leaves the database, and the exports (``cde``, ``phenopackets``,
``beacon``) only ever see anonymised rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEXES = ("female", "male", "other", "unknown")


@dataclass(frozen=True)
class Code:
    """A coded concept: ``system`` is CPMS's key (``ORPHA``, ``ICD-10``, ``ICD-10-CM``, ``OMIM``, ``HPO``)."""

    system: str
    code: str
    display: str = ""


@dataclass(frozen=True)
class Variant:
    gene: str  # HGNC symbol
    hgvs: str  # HGVS expression, e.g. NM_002973.4:c.496C>T
    zygosity: str = ""  # heterozygous, homozygous, hemizygous, ...
    classification: str = ""  # ACMG: pathogenic, likely pathogenic, uncertain significance, ...


@dataclass(frozen=True)
class ResearchRecord:
    """One patient in the research data (only patients whose current consent allows it)."""

    subject_id: int  # internal row id: never leaves the server
    #: A random number in [0, 1) fixed per patient: the cell-key method perturbs counts with it.
    record_key: float
    sex: str  # one of SEXES
    age_at_enrolment: int | None  # whole years
    age_at_onset: int | None
    age_at_diagnosis: int | None
    enrolment_year: int
    country: str  # ISO 3166-1 alpha-2 of the enrolling hospital
    erns: tuple[str, ...]  # ERN short names, e.g. ("ERN RND",)
    diagnoses: tuple[Code, ...] = ()  # confirmed or suspected, as recorded
    diagnosis_confirmed: bool = False  # at least one confirmed diagnosis
    phenotypes: tuple[Code, ...] = ()  # observed HPO terms
    excluded_phenotypes: tuple[Code, ...] = ()  # HPO terms recorded as not observed
    variants: tuple[Variant, ...] = ()
    outcome: str = ""  # the latest panel's outcome status, "" when none
    research_contact: bool = False  # the patient agreed to be contacted about studies
    fields: dict[str, Any] = field(default_factory=dict)  # plugins' research fields by name

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(sorted({v.gene for v in self.variants}))


#: What a generalised-away value becomes.
SUPPRESSED = "*"


@dataclass(frozen=True)
class AnonymisedRecord:
    """One row that may leave the server: quasi-identifiers generalised until k-anonymity holds.

    Quasi-identifiers (generalised together by ``anonymise``): sex, the three age bands, the
    enrolment period, the country and the diagnoses. Age bands are ``"30-39"``-style strings
    (inclusive; the width depends on the generalisation level), ``"80+"`` at the top, or
    ``SUPPRESSED``; the enrolment period is ``"2021"`` or ``"2020-2024"`` or ``SUPPRESSED``;
    the country an ISO code or ``SUPPRESSED``; a diagnosis may be replaced by an ancestor in its
    classification (or dropped as ``Code(system, SUPPRESSED)``). Variants are reduced to gene
    and classification (an exact HGVS can identify a family); phenotypes are kept.
    """

    research_id: str  # keyed hash per research project: two projects' exports do not join
    sex: str
    age_band_enrolment: str
    age_band_onset: str
    age_band_diagnosis: str
    enrolment_period: str
    country: str
    erns: tuple[str, ...]
    diagnoses: tuple[Code, ...]
    diagnosis_confirmed: bool
    phenotypes: tuple[Code, ...]
    excluded_phenotypes: tuple[Code, ...]
    genes: tuple[str, ...]
    variant_classes: tuple[tuple[str, str], ...]  # (gene, classification)
    outcome: str
    research_contact: bool
    fields: dict[str, Any] = field(default_factory=dict)
