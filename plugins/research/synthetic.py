"""Invented rare-disease patients for the demo, the tests and the benchmark (seeded: the same each run).

Real codes (ORPHA, ICD-10, HPO, HGNC) of neurological and neuromuscular rare diseases; invented
people. ``people(n, seed)`` gives plain dicts; ``demo.load`` stores them through the core's tables
(identity encrypted as for any patient), the benchmark writes research rows directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Disease:
    orpha: str
    name: str
    icd10: str
    genes: tuple[str, ...]
    phenotypes: tuple[str, ...]  # HPO
    onset: tuple[int, int]  # typical age range at onset
    ern: str


DISEASES = (
    Disease("98756", "Spinocerebellar ataxia type 2", "G11.2", ("ATXN2",), ("HP:0002066", "HP:0001260", "HP:0000570"), (20, 50), "ERN RND"),
    Disease("98757", "Spinocerebellar ataxia type 3", "G11.2", ("ATXN3",), ("HP:0002066", "HP:0001260", "HP:0001332"), (20, 50), "ERN RND"),
    Disease("95", "Friedreich ataxia", "G11.1", ("FXN",), ("HP:0001251", "HP:0001638", "HP:0001761"), (5, 20), "ERN RND"),
    Disease("399", "Huntington disease", "G10", ("HTT",), ("HP:0002072", "HP:0000726", "HP:0000716"), (30, 55), "ERN RND"),
    Disease("685", "Hereditary spastic paraplegia", "G11.4", ("SPAST", "ATL1"), ("HP:0001258", "HP:0002061"), (5, 45), "ERN RND"),
    Disease("256", "Early-onset generalized torsion dystonia", "G24.1", ("TOR1A",), ("HP:0001332",), (5, 20), "ERN RND"),
    Disease("262", "Duchenne muscular dystrophy", "G71.0", ("DMD",), ("HP:0003560", "HP:0003236", "HP:0003707"), (2, 5), "ERN EURO-NMD"),
    Disease("263", "Limb-girdle muscular dystrophy", "G71.0", ("CAPN3", "DYSF"), ("HP:0003701", "HP:0003236"), (10, 40), "ERN EURO-NMD"),
    Disease("70", "Proximal spinal muscular atrophy", "G12.1", ("SMN1",), ("HP:0003202", "HP:0001252"), (0, 3), "ERN EURO-NMD"),
    Disease("273", "Steinert myotonic dystrophy", "G71.1", ("DMPK",), ("HP:0002486", "HP:0000518", "HP:0003701"), (15, 45), "ERN EURO-NMD"),
    Disease("101081", "Charcot-Marie-Tooth disease type 1A", "G60.0", ("PMP22",), ("HP:0009830", "HP:0001761"), (5, 25), "ERN EURO-NMD"),
)
#: How common each disease is among the invented patients (rarer ones stand out: generalisation at work).
WEIGHTS = (14, 8, 12, 10, 9, 4, 12, 9, 8, 10, 4)
CLASSES = ("pathogenic", "pathogenic", "likely pathogenic", "uncertain significance")
#: Registry consent: given, refused, withdrawn (given, then withdrawn) or never asked.
CONSENTS = (("given", 78), ("refused", 8), ("withdrawn", 6), (None, 8))


def people(n: int, seed: int = 16, today: date = date(2026, 11, 30)) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        disease = rng.choices(DISEASES, WEIGHTS)[0]
        onset_age = rng.randint(*disease.onset)
        birth = date(rng.randint(max(1940, today.year - 85), today.year - 1 - onset_age), rng.randint(1, 12), rng.randint(1, 28))
        onset_year = birth.year + onset_age
        enrolled = min(today, date(max(2018, onset_year), 1, 1) + timedelta(days=rng.randint(0, 8 * 365)))
        confirmed = rng.random() < 0.7
        registry = rng.choices([c for c, _ in CONSENTS], [w for _, w in CONSENTS])[0]
        phenotypes = [p for p in disease.phenotypes if rng.random() < 0.8] or [disease.phenotypes[0]]
        out.append({
            "i": i, "disease": disease, "sex": "male" if disease.orpha == "262" else rng.choice(("female", "male", "female", "male", "unknown")),
            "birth": birth, "enrolled": enrolled, "onset": str(onset_year), "confirmed": confirmed,
            "phenotypes": phenotypes, "absent": [] if rng.random() < 0.7 else ["HP:0001250"],
            "gene": rng.choice(disease.genes) if confirmed or rng.random() < 0.3 else None,
            "class": rng.choice(CLASSES), "registry": registry, "research": rng.random() < 0.5,
        })
    return out
