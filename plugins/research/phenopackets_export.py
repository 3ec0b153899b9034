"""GA4GH Phenopackets v2, one per anonymised record (JSON with the schema's camelCase names).

What goes in is what an ``AnonymisedRecord`` holds, and no more: the research id (as the packet's
and the subject's id), sex, ages only as ISO 8601 age ranges from the bands (never a date), HPO
phenotypes observed and excluded, coded diagnoses as they came out of the anonymisation (an
ancestor stays an ancestor; a withheld code is left out), and genes at gene level (a gene
descriptor with the ACMG class turned into an interpretation status: exact variants are not
exported). The only timestamp is ``metaData.created``, the export's own time. Country, ERNs and
the enrolment period have no place in a phenopacket and are left out.

Each packet is read back by GA4GH's protobuf classes (``phenopackets`` package) before it is
returned, so a field the schema lacks or a wrong enum value fails here, not in the reader's tool.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import IO

from google.protobuf import json_format
from phenopackets import Phenopacket

from plugins.research.cde import CODE_PREFIX, age_band_bounds, code_curie
from plugins.research.model import SUPPRESSED, AnonymisedRecord

SCHEMA_VERSION = "2.0"
SEX = {"female": "FEMALE", "male": "MALE", "other": "OTHER_SEX", "unknown": "UNKNOWN_SEX", SUPPRESSED: "UNKNOWN_SEX"}

#: ACMG class of a gene's variants -> GenomicInterpretation status. Pathogenic findings are
#: "related to the diagnosis" (CONTRIBUTORY), not CAUSATIVE: without zygosity and inheritance
#: (not exported) one cannot say a gene alone explains the disease.
STATUS = {"pathogenic": "CONTRIBUTORY", "likely pathogenic": "CONTRIBUTORY",
          "uncertain significance": "CANDIDATE", "likely benign": "REJECTED", "benign": "REJECTED"}
_STATUS_RANK = ("UNKNOWN_STATUS", "REJECTED", "CANDIDATE", "CONTRIBUTORY")

#: metaData resources by CURIE prefix (phenopacket ``Resource``; versions are not carried by the
#: anonymised records, so they are left empty as the schema allows for unknown versions).
RESOURCES = {
    "HP": {"id": "hp", "name": "Human Phenotype Ontology", "url": "http://purl.obolibrary.org/obo/hp.owl",
           "namespacePrefix": "HP", "iriPrefix": "http://purl.obolibrary.org/obo/HP_"},
    "ORPHA": {"id": "ordo", "name": "Orphanet Rare Disease Ontology", "url": "https://www.orpha.net",
              "namespacePrefix": "ORPHA", "iriPrefix": "http://www.orpha.net/ORDO/Orphanet_"},
    "OMIM": {"id": "omim", "name": "Online Mendelian Inheritance in Man", "url": "https://www.omim.org",
             "namespacePrefix": "OMIM", "iriPrefix": "https://omim.org/entry/"},
    "ICD10": {"id": "icd10", "name": "International Classification of Diseases, 10th Revision (WHO)",
              "url": "https://icd.who.int/browse10/2019/en", "namespacePrefix": "ICD10",
              "iriPrefix": "https://icd.who.int/browse10/2019/en#/"},
    "ICD10CM": {"id": "icd10cm", "name": "ICD-10 Clinical Modification", "url": "https://www.cdc.gov/nchs/icd/icd-10-cm/",
                "namespacePrefix": "ICD10CM", "iriPrefix": "http://purl.bioontology.org/ontology/ICD10CM/"},
    "ICD11": {"id": "icd11", "name": "International Classification of Diseases, 11th Revision (WHO)",
              "url": "https://icd.who.int/browse/latest-release/mms/en", "namespacePrefix": "ICD11", "iriPrefix": ""},
    # Symbols, not HGNC's numeric ids (the records carry symbols): identifiers.org's namespace for them.
    "hgnc.symbol": {"id": "hgnc.symbol", "name": "HGNC gene symbol", "url": "https://www.genenames.org",
                    "namespacePrefix": "hgnc.symbol", "iriPrefix": "https://identifiers.org/hgnc.symbol:"},
    "HGNC": {"id": "hgnc", "name": "HUGO Gene Nomenclature Committee", "url": "https://www.genenames.org",
             "namespacePrefix": "HGNC", "iriPrefix": "https://www.genenames.org/data/gene-symbol-report/#!/hgnc_id/"},
}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


class PhenopacketError(ValueError):
    """A packet the GA4GH schema does not accept (a bug here, never the researcher's)."""


def age_range(band: str) -> dict | None:
    """A TimeElement ``ageRange`` for an age band ("30-39" -> P30Y..P39Y, "80+" -> from P80Y); None if unknown."""
    bounds = age_band_bounds(band)
    if bounds is None:
        return None
    lo, hi = bounds
    rng = {"start": {"iso8601duration": f"P{lo}Y"}}
    if hi is not None:
        rng["end"] = {"iso8601duration": f"P{hi}Y"}
    return {"ageRange": rng}


def _term(curie: str, label: str) -> dict:
    return {"id": curie, "label": label} if label else {"id": curie}


def _hpo(code: str) -> str:
    return code if code.startswith("HP:") else f"HP:{code}"


def _subject(record: AnonymisedRecord) -> dict:
    subject = {"id": record.research_id, "sex": SEX[record.sex]}
    # The age at enrolment is the only age CPMS keeps at an encounter.
    if (when := age_range(record.age_band_enrolment)) is not None:
        subject["timeAtLastEncounter"] = when
    return subject


def _features(record: AnonymisedRecord) -> list[dict]:
    # No onset per feature: CPMS holds one onset per patient, given to the diseases below.
    observed = [{"type": _term(_hpo(c.code), c.display)} for c in record.phenotypes if c.code != SUPPRESSED]
    excluded = [{"type": _term(_hpo(c.code), c.display), "excluded": True}
                for c in record.excluded_phenotypes if c.code != SUPPRESSED]
    return observed + excluded


def _diseases(record: AnonymisedRecord) -> list[dict]:
    onset = age_range(record.age_band_onset)
    out = []
    for code in record.diagnoses:
        if code.code == SUPPRESSED or code.system not in CODE_PREFIX:
            continue
        disease = {"term": _term(code_curie(code), code.display)}
        if onset is not None:
            disease["onset"] = onset
        out.append(disease)
    return out


def _gene_status(record: AnonymisedRecord, gene: str) -> str:
    statuses = [STATUS.get(cls.strip().lower(), "UNKNOWN_STATUS") for g, cls in record.variant_classes if g == gene]
    return max(statuses, key=_STATUS_RANK.index, default="UNKNOWN_STATUS")


def _gene(symbol: str, hgnc_ids: Mapping[str, str]) -> dict:
    value_id = hgnc_ids.get(symbol) or f"hgnc.symbol:{symbol}"
    if not re.match(r"^(HGNC:\d+|hgnc\.symbol:.+)$", value_id):
        raise ValueError(f"not an HGNC id: {value_id!r}")
    return {"valueId": value_id, "symbol": symbol}


def _interpretations(record: AnonymisedRecord, diseases: list[dict], hgnc_ids: Mapping[str, str]) -> list[dict]:
    """One interpretation holding the genes, on the first disease; none without a disease to hang it on.

    The schema puts genomic interpretations inside a diagnosis, whose disease is required; the
    records do not say which diagnosis a gene explains, so the first exported one is used.
    """
    genes = sorted(set(record.genes) | {g for g, _ in record.variant_classes})
    if not genes or not diseases:
        return []
    calls = [{"subjectOrBiosampleId": record.research_id, "interpretationStatus": _gene_status(record, g),
              "gene": _gene(g, hgnc_ids)} for g in genes]
    return [{"id": f"{record.research_id}-genes", "progressStatus": "UNKNOWN_PROGRESS",
             "diagnosis": {"disease": diseases[0]["term"], "genomicInterpretations": calls}}]


def _prefixes(packet: dict) -> list[str]:
    ids = [f["type"]["id"] for f in packet.get("phenotypicFeatures", [])]
    ids += [d["term"]["id"] for d in packet.get("diseases", [])]
    for i in packet.get("interpretations", []):
        ids += [g["gene"]["valueId"] for g in i["diagnosis"]["genomicInterpretations"]]
    return sorted({i.split(":", 1)[0] for i in ids})


def _timestamp(created: datetime | str) -> str:
    if isinstance(created, datetime):
        if created.tzinfo is None:
            raise ValueError("created must be timezone-aware")
        return created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return created


def phenopacket(record: AnonymisedRecord, *, created_by: str, created: datetime | str,
                hgnc_ids: Mapping[str, str] | None = None) -> dict:
    """The record's phenopacket (JSON dict), checked against the schema (PhenopacketError if not).

    ``created`` is the export's time (aware datetime or RFC 3339 text); ``hgnc_ids`` optionally
    maps gene symbols to HGNC ids ("ATXN2" -> "HGNC:10555"); without it genes are identified by
    symbol in identifiers.org's ``hgnc.symbol`` namespace.
    """
    packet: dict = {"id": record.research_id, "subject": _subject(record)}
    if features := _features(record):
        packet["phenotypicFeatures"] = features
    diseases = _diseases(record)
    if interpretations := _interpretations(record, diseases, hgnc_ids or {}):
        packet["interpretations"] = interpretations
    if diseases:
        packet["diseases"] = diseases
    packet["metaData"] = {
        "created": _timestamp(created), "createdBy": created_by,
        "resources": [dict(RESOURCES[p], version="") for p in _prefixes(packet)],
        "phenopacketSchemaVersion": SCHEMA_VERSION,
    }
    return checked(packet)


def checked(packet: dict) -> dict:
    """The packet, if GA4GH's protobuf classes read it; PhenopacketError otherwise."""
    try:
        json_format.ParseDict(packet, Phenopacket())
    except (json_format.ParseError, KeyError, TypeError, ValueError) as exc:
        raise PhenopacketError(f"not a valid Phenopacket v2: {exc}") from exc
    return packet


def phenopacket_files(records: Iterable[AnonymisedRecord], *, created_by: str, created: datetime | str,
                      hgnc_ids: Mapping[str, str] | None = None) -> Iterator[tuple[str, bytes]]:
    """(file name, JSON bytes) per record: ``<research_id>.json``."""
    seen: set[str] = set()
    for record in records:
        name = f"{record.research_id}.json"
        # Research ids are keyed hashes; anything else in a zip member name is refused, not mangled.
        if not _SAFE_NAME.match(name) or name in seen:
            raise ValueError(f"unusable or repeated research id: {record.research_id!r}")
        seen.add(name)
        packet = phenopacket(record, created_by=created_by, created=created, hgnc_ids=hgnc_ids)
        yield name, json.dumps(packet, indent=2, ensure_ascii=False).encode("utf-8")


def phenopackets_zip(records: Iterable[AnonymisedRecord], stream: IO[bytes], *, created_by: str,
                     created: datetime | str, hgnc_ids: Mapping[str, str] | None = None) -> int:
    """Write one JSON file per record into a zip on ``stream``; returns the number of files.

    Member times are fixed (1980-01-01, zip's epoch) so the archive carries no time but the
    packets' own ``created``.
    """
    n = 0
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in phenopacket_files(records, created_by=created_by, created=created, hgnc_ids=hgnc_ids):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
            n += 1
    return n
