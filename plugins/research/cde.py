"""The EU RD Platform's set of 16 common data elements (CDEs) for rare disease registration, as CSV.

The set is the JRC's "Set of common data elements for rare diseases registration" (EU RD Platform,
ERDRI): 16 elements in 8 groups, numbered 1.1 to 8.1. One row per anonymised record, one column per
element, headed by the element's name. CPMS fills an element only from what an ``AnonymisedRecord``
holds: dates were never kept (the date of birth becomes a span of birth years, the first contact
the enrolment period), generalised values are written as generalised, a value the anonymisation
withheld is ``*``, and an element CPMS does not hold is empty. ``data_dictionary()`` says, per
element, which of these applies, so the CSV and its dictionary travel together.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import IO

from plugins.research.model import SUPPRESSED, AnonymisedRecord, Code

#: CURIE prefixes written for CPMS's code systems (the prefixes the Beacon and Phenopackets use too).
CODE_PREFIX = {"ORPHA": "ORPHA", "ICD-10": "ICD10", "ICD-10-CM": "ICD10CM", "ICD-11": "ICD11", "OMIM": "OMIM"}
SEX = {"female": "Female", "male": "Male", "other": "Undetermined", "unknown": ""}
#: Written where CPMS holds no value for an element (the dictionary says which).
NOT_HELD = ""
#: Written for an age CPMS has no value for: the JRC value set's own word for it.
UNDETERMINED = "Undetermined"

_BAND = re.compile(r"^(\d{1,3})(?:-(\d{1,3})|(\+))?$")
_PERIOD = re.compile(r"^(\d{4})(?:-(\d{4}))?$")


# (element, name, CPMS source, definition, value set/format, how CPMS fills it, how it is generalised)
_ELEMENTS: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("1.1", "Pseudonym", "research_id",
     "The patient's pseudonym in the registry.", "Text",
     "The research id: a keyed hash of the patient made per research project. The CPMS "
     "pseudonym is never exported.",
     "Different in every project, so two projects' exports cannot be joined."),
    ("2.1", "Date of birth", "age_band_enrolment, enrolment_period",
     "The patient's date of birth.", "Date (dd/mm/yyyy)",
     "Never a date: the span of birth years that the age band at enrolment and the enrolment "
     "period allow, as 'YYYY-YYYY', or '<=YYYY' for an open top band ('80+').",
     "Follows the generalisation of both: '*' when either was suppressed; empty when the age "
     "at enrolment is unknown."),
    ("2.2", "Sex", "sex",
     "The patient's sex at birth.", "Female / Male / Undetermined / Foetus (unknown)",
     "female -> Female, male -> Male, other -> Undetermined; unknown -> empty. CPMS records "
     "no foetuses.",
     "'*' when suppressed for k-anonymity."),
    ("3.1", "Patient's status", "",
     "Whether the patient is alive or dead.", "Alive / Dead / Lost in follow-up / Opted-out",
     "Not in the research data: always empty.", "None."),
    ("3.2", "Date of death", "",
     "The patient's date of death.", "Date",
     "Not in the research data (and an exact date would never be exported): always empty.",
     "None."),
    ("4.1", "First contact with specialised centre", "enrolment_period",
     "Date of the first contact with the specialised centre.", "Date (dd/mm/yyyy)",
     "CPMS does not record the first contact; the nearest date it holds is the enrolment in "
     "CPMS (at or after that contact), written as the enrolment year 'YYYY' or period "
     "'YYYY-YYYY'.",
     "The period widens with the generalisation; '*' when suppressed."),
    ("5.1", "Age at onset", "age_band_onset",
     "Age at which the first symptoms or signs appeared.",
     "Antenatal / At birth / Date (dd/mm/yyyy) / Undetermined",
     "An age band in whole years ('30-39', '80+'); Undetermined when CPMS has no onset age. "
     "Congenital and neonatal onsets are counted as age 0, so they fall in the band starting "
     "at 0 (Antenatal and At birth are not told apart).",
     "The band widens with the generalisation; '*' when suppressed."),
    ("5.2", "Age at diagnosis", "age_band_diagnosis",
     "Age at which the diagnosis was made.",
     "Antenatal / At birth / Date (dd/mm/yyyy) / Undetermined",
     "An age band in whole years, from when the first confirmed diagnosis was recorded; "
     "Undetermined when CPMS has none.",
     "The band widens with the generalisation; '*' when suppressed."),
    ("6.1", "Diagnosis of the rare disease", "diagnoses, diagnosis_confirmed",
     "The diagnosis retained by the specialised centre.",
     "ORPHAcode (recommended); ICD-10 / ICD-11; OMIM",
     "When at least one diagnosis is confirmed: every coded diagnosis, as 'ORPHA:98756; "
     "ICD10:G11.2' (the research data does not say which of several is the confirmed one). "
     "Empty for an undiagnosed case (see 6.3).",
     "A code may be replaced by an ancestor in its classification; a code withheld is '*'."),
    ("6.2", "Genetic diagnosis", "genes, variant_classes",
     "The genetic diagnosis retained by the specialised centre.", "HGVS / HGNC",
     "HGNC gene symbols with the ACMG class of their variants, as 'ATXN2 (pathogenic)'. "
     "HGVS expressions are never exported (an exact variant can identify a family).",
     "Reduced to gene level before export."),
    ("6.3", "Undiagnosed case", "phenotypes, diagnosis_confirmed",
     "A case without a confirmed diagnosis, described by its phenotype (and genetic findings, "
     "see 6.2).", "HPO codes (recommended)",
     "When no diagnosis is confirmed: the observed HPO terms, as 'HP:0001250; HP:0001251'. "
     "Empty for a diagnosed case.",
     "Phenotypes are kept as recorded."),
    ("7.1", "Agreement to be contacted for research purposes", "research_contact",
     "Whether the patient agreed to be contacted about research.", "Yes / No",
     "Yes or No, from the patient's consent.", "None."),
    ("7.2", "Consent to the reuse of data", "",
     "Whether the patient consented to the reuse of their data for research.", "Yes / No",
     "Always Yes: a patient is in the research data only while their current consent allows "
     "registry use.", "None."),
    ("7.3", "Biological sample", "",
     "Whether a biological sample of the patient is available for research.", "Yes / No",
     "Not in the research data: always empty.", "None."),
    ("7.4", "Link to a biobank", "",
     "The biobank holding the patient's sample.", "Text (biobank name or identifier)",
     "Not in the research data: always empty.", "None."),
    ("8.1", "Classification of functioning/disability", "",
     "The patient's disability profile under the WHO International Classification of "
     "Functioning, Disability and Health (ICF).", "ICF profile / score",
     "Not in the research data: always empty.", "None."),
)

#: The CSV header: the 16 element names, in the set's order.
COLUMNS: tuple[str, ...] = tuple(e[1] for e in _ELEMENTS)
DICTIONARY_COLUMNS = ("element", "name", "cpms_source", "definition", "value_set", "cpms_fill", "generalisation")


def data_dictionary() -> list[dict]:
    """One entry per element: number, name, CPMS source, definition, value set, how filled and generalised."""
    return [dict(zip(DICTIONARY_COLUMNS, e)) for e in _ELEMENTS]


def write_data_dictionary_csv(stream: IO[str]) -> None:
    writer = csv.DictWriter(stream, fieldnames=DICTIONARY_COLUMNS)
    writer.writeheader()
    writer.writerows(data_dictionary())


# -- bands and periods -------------------------------------------------------------------------

def age_band_bounds(band: str) -> tuple[int, int | None] | None:
    """(lowest, highest or None for an open band) of an age band; None for "unknown" or suppressed.

    Bands are inclusive whole years: "30-39", "80+", or a single age "35". Anything else is a bug
    upstream, so it raises rather than being guessed at.
    """
    if band in (SUPPRESSED, "unknown", ""):
        return None
    m = _BAND.match(band)
    if not m:
        raise ValueError(f"not an age band: {band!r}")
    lo = int(m.group(1))
    if m.group(3):
        return lo, None
    hi = int(m.group(2)) if m.group(2) else lo
    if hi < lo:
        raise ValueError(f"not an age band: {band!r}")
    return lo, hi


def period_bounds(period: str) -> tuple[int, int] | None:
    """(first, last) year of an enrolment period ("2021", "2020-2024"); None when suppressed."""
    if period == SUPPRESSED:
        return None
    m = _PERIOD.match(period)
    if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
        raise ValueError(f"not an enrolment period: {period!r}")
    return int(m.group(1)), int(m.group(2) or m.group(1))


def birth_years(age_band: str, period: str) -> str:
    """The birth years an age at enrolment and an enrolment period allow ("1981-1991", "<=1941").

    Someone aged A (whole years) during year E was born in E - A or E - A - 1.
    """
    if SUPPRESSED in (age_band, period):
        return SUPPRESSED
    ages, years = age_band_bounds(age_band), period_bounds(period)
    if ages is None or years is None:
        return NOT_HELD
    (lo, hi), (first, last) = ages, years
    latest = last - lo
    return f"<={latest}" if hi is None else f"{first - hi - 1}-{latest}"


# -- one row -------------------------------------------------------------------------------------

def code_curie(code: Code) -> str:
    """A diagnosis as "ORPHA:98756" (stored codes are bare; a prefix already there is kept once)."""
    if code.code == SUPPRESSED:
        return SUPPRESSED
    prefix = CODE_PREFIX.get(code.system, code.system)
    bare = code.code.removeprefix(f"{prefix}:").removeprefix("Orphanet:")
    return f"{prefix}:{bare}"


def _age(band: str) -> str:
    if band == SUPPRESSED:
        return SUPPRESSED
    return UNDETERMINED if age_band_bounds(band) is None else band


def _genes(record: AnonymisedRecord) -> str:
    classes: dict[str, list[str]] = {}
    for gene, cls in record.variant_classes:
        if cls and cls not in classes.setdefault(gene, []):
            classes[gene].append(cls)
    genes = sorted(set(record.genes) | set(classes))
    return "; ".join(f"{g} ({', '.join(classes[g])})" if classes.get(g) else g for g in genes)


def _joined(values: Iterable[str]) -> str:
    return "; ".join(values)


def cde_row(record: AnonymisedRecord) -> dict[str, str]:
    diagnosed = record.diagnosis_confirmed
    values = (
        record.research_id,
        birth_years(record.age_band_enrolment, record.enrolment_period),
        SUPPRESSED if record.sex == SUPPRESSED else SEX[record.sex],
        NOT_HELD,
        NOT_HELD,
        record.enrolment_period,
        _age(record.age_band_onset),
        _age(record.age_band_diagnosis),
        _joined(code_curie(c) for c in record.diagnoses) if diagnosed else NOT_HELD,
        _genes(record),
        NOT_HELD if diagnosed else _joined(c.code for c in record.phenotypes),
        "Yes" if record.research_contact else "No",
        "Yes",  # in the research data only under a consent that allows it (see the dictionary)
        NOT_HELD,
        NOT_HELD,
        NOT_HELD,
    )
    return dict(zip(COLUMNS, values))


def cde_rows(records: Iterable[AnonymisedRecord]) -> list[dict[str, str]]:
    return [cde_row(r) for r in records]


def _cell(value: str) -> str:
    # A cell starting like a formula would run in a spreadsheet (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def write_cde_csv(records: Iterable[AnonymisedRecord], stream: IO[str]) -> int:
    """Write the header and one row per record; returns the number of rows."""
    writer = csv.DictWriter(stream, fieldnames=COLUMNS)
    writer.writeheader()
    n = 0
    for row in cde_rows(records):
        writer.writerow({k: _cell(v) for k, v in row.items()})
        n += 1
    return n
