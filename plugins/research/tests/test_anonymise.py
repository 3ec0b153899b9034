"""Anonymisation: k-anonymity of every output (own check and pycanon's), minimal generalisation,
risk figures, and the cell-key method against differencing."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycanon import anonymity

from plugins.research.anonymise import (
    AGE_AT_DIAGNOSIS,
    AGE_AT_ENROLMENT,
    AGE_AT_ONSET,
    COUNTRY,
    ENROLMENT_YEAR,
    SEX,
    WITHHELD_DIAGNOSES,
    Count,
    QuasiIdentifier,
    age_band,
    anonymise,
    diagnoses_qi,
    enrolment_period,
    generalise_codes,
    integer_key,
    perturb,
    protect_count,
    protect_sum,
    protect_table,
    quasi_identifiers,
    risk,
)
from plugins.research.model import SUPPRESSED, AnonymisedRecord, Code, ResearchRecord, Variant

# --- Synthetic but realistic data: a rare-disease registry ------------------------------------

COUNTRIES = {"DE": 18, "FR": 15, "IT": 14, "ES": 10, "NL": 8, "BE": 6, "PL": 6, "SE": 4, "AT": 4,
             "CZ": 3, "PT": 3, "DK": 2, "FI": 2, "IE": 2, "HU": 2, "RO": 2, "GR": 2, "BG": 1,
             "SI": 1, "SK": 1, "HR": 1, "LT": 1, "LV": 0.5, "EE": 0.5, "LU": 0.3, "CY": 0.3, "MT": 0.2}


def classification() -> dict[Code, list[Code]]:
    """An Orphanet-like tree: 8 groups > 5 subgroups > 25 disorders > 2 subtypes; nearest parent first."""
    parents: dict[Code, list[Code]] = {}
    for g in range(8):
        group = Code("ORPHA", f"G{g}")
        parents[group] = []
        for s in range(5):
            sub = Code("ORPHA", f"G{g}S{s}")
            parents[sub] = [group]
            for d in range(25):
                disorder = Code("ORPHA", f"G{g}S{s}D{d}")
                parents[disorder] = [sub, group]
                for t in range(2):
                    parents[Code("ORPHA", f"G{g}S{s}D{d}T{t}")] = [disorder, sub, group]
    return parents


TREE = classification()
LEAVES = [c for c, chain in TREE.items() if len(chain) >= 2]
LEAF_WEIGHTS = [1 / (i + 1) ** 0.8 for i in range(len(LEAVES))]  # a few common, a long tail


def ancestors(code: Code) -> list[Code]:
    return TREE.get(code, [])  # ICD-10 codes here are unknown to the classification


def realistic(n: int, seed: int = 1) -> list[ResearchRecord]:
    rnd = random.Random(seed)
    countries, weights = list(COUNTRIES), list(COUNTRIES.values())
    records = []
    for i in range(n):
        enrolment = rnd.randint(0, 17) if rnd.random() < 0.4 else min(int(rnd.triangular(18, 95, 45)), 95)
        onset = None if rnd.random() < 0.15 else rnd.randint(0, enrolment)
        diagnosis = None if rnd.random() < 0.1 else rnd.randint(onset or 0, enrolment)
        codes = rnd.choices(LEAVES, LEAF_WEIGHTS, k=rnd.choice([0, 1, 1, 1, 1, 1, 1, 1, 2, 2]))
        if rnd.random() < 0.2:
            codes.append(Code("ICD-10", rnd.choice(["E75.2", "G71.0", "Q87.4", "E84.9"])))
        records.append(ResearchRecord(
            subject_id=i, record_key=rnd.random(),
            sex=rnd.choices(["female", "male", "other", "unknown"], [49, 49, 0.5, 1.5])[0],
            age_at_enrolment=enrolment, age_at_onset=onset, age_at_diagnosis=diagnosis,
            enrolment_year=rnd.randint(2017, 2025), country=rnd.choices(countries, weights)[0],
            erns=(rnd.choice(["ERN RND", "ERN EURO-NMD", "ERN ITHACA"]),), diagnoses=tuple(codes),
            diagnosis_confirmed=rnd.random() < 0.7,
            phenotypes=tuple(Code("HPO", f"HP:{rnd.randint(1, 3000):07d}") for _ in range(rnd.randint(0, 4))),
            variants=tuple(Variant(rnd.choice(["SMN1", "DMD", "CFTR", "FMR1"]), f"NM_0001.1:c.{rnd.randint(1, 3000)}C>T",
                                   "heterozygous", rnd.choice(["pathogenic", "uncertain significance"]))
                           for _ in range(rnd.randint(0, 2))),
            fields={"plugin.value": i % 3}))
    return records


def rid(record: ResearchRecord) -> str:
    return f"r{record.subject_id:07d}"


def column(row: AnonymisedRecord, name: str):
    return getattr(row, name) if hasattr(row, name) else row.fields[name]


def class_sizes(rows, names) -> Counter:
    return Counter(tuple(column(r, n) for n in names) for r in rows)


STANDARD = quasi_identifiers(ancestors)
NAMES = [q.name for q in STANDARD]


def own_class_sizes_ok(rows, names, k) -> bool:
    return all(size >= k for size in class_sizes(rows, names).values())


# --- Hierarchies -------------------------------------------------------------------------------


def test_age_bands_climb_to_suppressed():
    assert [age_band(34, level) for level in range(5)] == ["34", "30-34", "30-39", "20-39", SUPPRESSED]
    assert [age_band(85, level) for level in range(5)] == ["85", "80+", "80+", "80+", SUPPRESSED]
    assert [age_band(None, level) for level in range(5)] == ["unknown"] * 4 + [SUPPRESSED]
    assert age_band(0, 3) == "0-19" and age_band(-1, 1) == "0-4"


def test_age_bands_nest():
    """Each level's band is a function of the level below's: what monotonicity needs."""
    for level in range(4):
        above: dict[str, str] = {}
        for age in range(0, 110):
            assert above.setdefault(age_band(age, level), age_band(age, level + 1)) == age_band(age, level + 1)


def test_enrolment_periods():
    assert [enrolment_period(2021, level) for level in range(4)] == ["2021", "2020-2024", "2020-2029", SUPPRESSED]
    assert enrolment_period(2019, 1) == "2015-2019"


def test_diagnoses_climb_the_classification():
    leaf, other = Code("ORPHA", "G1S2D3T0"), Code("ORPHA", "G1S2D3T1")
    icd = Code("ICD-10", "E75.2")
    assert generalise_codes([leaf, other, icd], 0, ancestors, 3) == (icd, leaf, other)
    assert generalise_codes([leaf, other], 1, ancestors, 3) == (Code("ORPHA", "G1S2D3"),)
    assert generalise_codes([leaf], 3, ancestors, 3) == (Code("ORPHA", "G1"),)
    assert generalise_codes([Code("ORPHA", "G1S2")], 3, ancestors, 3) == (Code("ORPHA", "G1"),)  # last there is
    assert generalise_codes([icd], 2, ancestors, 3) == (icd,)  # unknown to the classification
    assert generalise_codes([leaf, icd], 4, ancestors, 3) == (Code("ICD-10", SUPPRESSED), Code("ORPHA", SUPPRESSED))
    qi = diagnoses_qi(ancestors, depth=3)
    record = realistic(1)[0]
    assert qi.max_level == 4 and qi.generalise(record, 0) == generalise_codes(record.diagnoses, 0, ancestors, 3)
    assert diagnoses_qi(None).max_level == 1  # no classification: exact or suppressed


# --- k-anonymity -------------------------------------------------------------------------------

# Deterministic like the fuzz tests (tests/support/fuzz.py): a failure reproduces.
PROPERTIES = settings(deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ages = st.one_of(st.none(), st.integers(0, 95))
codes = st.sampled_from(LEAVES[:40] + [Code("ICD-10", "E84.9")])


@st.composite
def records(draw, max_size=60):
    n = draw(st.integers(0, max_size))
    return [ResearchRecord(
        subject_id=i, record_key=draw(st.floats(0, 1, exclude_max=True)),
        sex=draw(st.sampled_from(["female", "male", "other", "unknown"])),
        age_at_enrolment=draw(ages), age_at_onset=draw(ages), age_at_diagnosis=draw(ages),
        enrolment_year=draw(st.integers(2015, 2025)), country=draw(st.sampled_from(["DE", "FR", "MT"])),
        erns=("ERN RND",), diagnoses=tuple(draw(st.lists(codes, max_size=2))),
        fields={"x": i}) for i in range(n)]


@settings(PROPERTIES, max_examples=80)
@given(records(), st.integers(2, 10), st.sets(st.sampled_from(range(len(STANDARD)))),
       st.sampled_from([0.0, 0.05, 0.2]))
def test_k_holds_on_every_output(data, k, chosen, max_suppression):
    quasi = [STANDARD[i] for i in sorted(chosen)]
    names = [q.name for q in quasi]
    out = anonymise(data, k=k, research_id=rid, quasi=quasi, max_suppression=max_suppression)
    report = out.report
    assert own_class_sizes_ok(out.rows, names, k)
    assert report.rows_in == len(data) and report.rows_out == len(out.rows)
    assert report.suppressed == len(data) - len(out.rows)
    assert report.fallback or report.suppressed <= max_suppression * len(data) + 1e-9
    assert set(report.levels) == set(names)
    for row in out.rows:  # QIs left out are withheld, not released exact
        for name in set(NAMES) - set(names):
            assert getattr(row, name) == (WITHHELD_DIAGNOSES if name == "diagnoses" else SUPPRESSED)
    if out.rows:
        sizes = class_sizes(out.rows, names)
        assert report.smallest_class == min(sizes.values()) >= k
        assert report.classes == len(sizes)


def loss(levels, quasi) -> Fraction:
    return sum((Fraction(lv, q.max_level) for lv, q in zip(levels, quasi)), Fraction(0))


def dropped_at(data, quasi, levels, k) -> int:
    """Independently of the module's encoding: records in classes under k at these levels."""
    keys = [tuple(q.generalise(r, lv) for q, lv in zip(quasi, levels)) for r in data]
    sizes = Counter(keys)
    return sum(1 for key in keys if sizes[key] < k)


@settings(PROPERTIES, max_examples=60)
@given(records(max_size=40), st.integers(2, 6),
       st.lists(st.sampled_from(range(len(STANDARD))), min_size=1, max_size=3, unique=True))
def test_the_chosen_levels_are_a_least_loss_qualifying_node(data, k, chosen):
    """Brute force over the whole lattice: the pruned search misses nothing."""
    quasi = [STANDARD[i] for i in chosen]
    out = anonymise(data, k=k, research_id=rid, quasi=quasi, max_suppression=0.1)
    allowed = int(0.1 * len(data) + 1e-9)
    qualifying = [levels for levels in itertools.product(*(range(q.max_level + 1) for q in quasi))
                  if dropped_at(data, quasi, levels, k) <= allowed]
    chosen_levels = tuple(out.report.levels[q.name] for q in quasi)
    if not qualifying:
        assert out.report.fallback and chosen_levels == tuple(q.max_level for q in quasi)
        return
    assert not out.report.fallback
    best = min((loss(levels, quasi), dropped_at(data, quasi, levels, k), levels) for levels in qualifying)
    assert (loss(chosen_levels, quasi), out.report.suppressed, chosen_levels) == best


def test_pycanon_agrees_on_realistic_data():
    data = realistic(3000, seed=11)
    for k in (3, 5, 10):
        out = anonymise(data, k=k, research_id=rid, ancestors=ancestors)
        frame = pd.DataFrame([{name: str(getattr(row, name)) for name in NAMES} for row in out.rows])
        assert anonymity.k_anonymity(frame, NAMES) >= k
        assert not out.report.fallback
        assert out.report.suppressed <= 0.05 * len(data)
        assert len(out.rows) >= 0.95 * len(data)
        assert out.report.smallest_class == anonymity.k_anonymity(frame, NAMES)


def test_pycanon_agrees_with_a_subset_of_qis():
    data = realistic(2000, seed=12)
    quasi = [SEX, AGE_AT_ENROLMENT, COUNTRY, diagnoses_qi(ancestors, depth=2)]
    names = [q.name for q in quasi]
    out = anonymise(data, k=4, research_id=rid, quasi=quasi)
    frame = pd.DataFrame([{name: str(getattr(row, name)) for name in names} for row in out.rows])
    assert anonymity.k_anonymity(frame, names) >= 4
    assert {(row.age_band_onset, row.enrolment_period) for row in out.rows} == {(SUPPRESSED, SUPPRESSED)}


def test_already_k_anonymous_data_is_not_generalised():
    base = realistic(12, seed=5)
    data = [ResearchRecord(**{**r.__dict__, "subject_id": 100 * i + j, "record_key": j / 10})
            for i, r in enumerate(base) for j in range(5)]
    out = anonymise(data, k=5, research_id=rid, ancestors=ancestors, max_suppression=0)
    assert set(out.report.levels.values()) == {0} and out.report.suppressed == 0
    assert out.report.classes == 12 and out.report.smallest_class == 5
    assert {(r.age_band_onset, r.country) for r in out.rows} == {(age_band(r.age_at_onset, 0), r.country) for r in base}


def test_an_outlier_is_dropped_rather_than_everyone_generalised():
    base = realistic(1, seed=5)[0]
    data = [ResearchRecord(**{**base.__dict__, "subject_id": i}) for i in range(40)]
    data.append(ResearchRecord(**{**base.__dict__, "subject_id": 99, "country": "MT", "age_at_enrolment": 91}))
    out = anonymise(data, k=5, research_id=rid, ancestors=ancestors)
    assert set(out.report.levels.values()) == {0} and out.report.suppressed == 1
    out = anonymise(data, k=5, research_id=rid, ancestors=ancestors, max_suppression=0)
    assert out.report.suppressed == 0 and out.report.levels["country"] == 1
    assert out.report.levels["age_band_enrolment"] == 4  # 91 and the others' age share no band below


@pytest.mark.parametrize(("n", "k"), [(0, 5), (3, 5), (1, 2), (4, 10)])
def test_small_inputs(n, k):
    out = anonymise(realistic(n), k=k, research_id=rid, ancestors=ancestors)
    assert out.rows == [] and out.report.rows_out == 0 and out.report.smallest_class == 0
    assert out.report.highest_risk == 0 and out.report.average_risk == 0
    assert out.report.fallback == (n > 0)  # nothing but dropping everyone: more than 5 %
    if n:
        assert out.report.levels == out.report.max_levels and out.report.suppressed == n


def test_identical_records_form_one_class():
    base = realistic(1, seed=9)[0]
    data = [ResearchRecord(**{**base.__dict__, "subject_id": i}) for i in range(7)]
    out = anonymise(data, k=7, research_id=rid, ancestors=ancestors)
    assert len(out.rows) == 7 and out.report.classes == 1 and out.report.highest_risk == 1 / 7
    assert set(out.report.levels.values()) == {0}


def test_rows_carry_what_may_leave():
    data = realistic(500, seed=2)
    out = anonymise(data, k=2, research_id=rid, ancestors=ancestors)
    by_id = {rid(r): r for r in data}
    assert [r.research_id for r in out.rows] == sorted(r.research_id for r in out.rows)
    for row in out.rows:
        record = by_id[row.research_id]
        assert row.genes == record.genes and row.phenotypes == record.phenotypes
        assert row.variant_classes == tuple(sorted({(v.gene, v.classification) for v in record.variants}))
        assert not any(v.hgvs in str(row) for v in record.variants)
        assert row.fields["plugin.value"] == record.fields["plugin.value"] and row.erns == record.erns
        assert row.sex == SEX.generalise(record, out.report.levels["sex"])
        assert row.age_band_onset == AGE_AT_ONSET.generalise(record, out.report.levels["age_band_onset"])


def test_a_custom_qi_goes_to_fields_and_counts():
    parity = QuasiIdentifier("parity", 1, lambda r, level: SUPPRESSED if level else r.subject_id % 2)
    data = realistic(300, seed=4)
    out = anonymise(data, k=5, research_id=rid, quasi=[AGE_AT_DIAGNOSIS, ENROLMENT_YEAR, parity])
    assert own_class_sizes_ok(out.rows, ["age_band_diagnosis", "enrolment_period", "parity"], 5)
    assert {row.fields["parity"] for row in out.rows} <= {0, 1, SUPPRESSED}
    assert out.rows[0].country == SUPPRESSED and out.rows[0].age_band_enrolment == SUPPRESSED


def test_the_search_prunes():
    """The lattice has 10,000 nodes; the search must settle it with a few hundred evaluations."""
    out = anonymise(realistic(10_000, seed=7), k=5, research_id=rid, ancestors=ancestors)
    assert out.report.lattice_size == 10_000
    assert out.report.nodes_evaluated < 300
    assert not out.report.fallback and out.report.suppressed <= 500


def test_bad_arguments():
    with pytest.raises(ValueError):
        anonymise([], k=0, research_id=rid)
    with pytest.raises(ValueError):
        anonymise([], research_id=rid, max_suppression=1.5)
    with pytest.raises(ValueError):
        anonymise([], research_id=rid, quasi=[SEX, SEX])


# --- Risk --------------------------------------------------------------------------------------


def test_risk_by_hand():
    rows = ([{"sex": "female", "age": "30-39"}] * 2 + [{"sex": "male", "age": "30-39"}] * 3
            + [{"sex": "male", "age": "40-49"}] * 5)
    figures = risk(rows, ["sex", "age"])
    assert (figures.rows, figures.classes, figures.smallest_class) == (10, 3, 2)
    assert figures.highest_risk == 0.5 and figures.average_risk == pytest.approx(0.3)
    assert risk(rows, ["age"]).to_dict() == {"rows": 10, "classes": 2, "smallest_class": 5,
                                             "highest_risk": 0.2, "average_risk": 0.2}
    assert risk([], ["sex"]).highest_risk == 0


def test_risk_of_anonymised_rows_matches_the_report():
    out = anonymise(realistic(1000, seed=3), k=4, research_id=rid, ancestors=ancestors)
    figures = risk(out.rows, NAMES)
    report = json.loads(json.dumps(out.report.to_dict()))
    assert report["levels"] == out.report.levels and report["rows_in"] == 1000
    assert figures.highest_risk == report["highest_risk"] <= 1 / 4
    assert figures.average_risk == pytest.approx(report["average_risk"])
    as_json = [{"diagnoses": [{"system": c.system, "code": c.code} for c in row.diagnoses], "sex": row.sex}
               for row in out.rows]  # rows read back from JSON: lists, not tuples
    assert risk(as_json, ["diagnoses", "sex"]).classes == risk(out.rows, ["diagnoses", "sex"]).classes


# --- Counts: the cell-key method ---------------------------------------------------------------


def keys(n: int, rnd: random.Random) -> list[float]:
    return [rnd.random() for _ in range(n)]


def test_same_records_same_number_in_any_order():
    rnd = random.Random(1)
    for n in range(0, 60):
        cohort = keys(n, rnd)
        first = protect_count(cohort, 5)
        assert protect_count(list(reversed(cohort)), 5) == first
        assert protect_count(rnd.sample(cohort, len(cohort)), 5) == first


def test_zero_stays_zero_and_nothing_goes_negative():
    rnd = random.Random(2)
    assert all(perturb(0, rnd.randrange(2**60)) == 0 for _ in range(2000))
    assert protect_count([], 5) == Count(None, "< 5", True)
    for _ in range(3000):
        n = rnd.randint(0, 6)
        cohort = [integer_key(key) for key in keys(n, rnd)]
        published = perturb(n, sum(cohort))
        assert published >= 0 and abs(published - n) <= 2 and (published == 0) >= (n == 0)


def test_counts_below_k_are_suppressed():
    rnd = random.Random(3)
    seen = set()
    for _ in range(2000):
        n = rnd.randint(0, 12)
        count = protect_count(keys(n, rnd), 5)
        if count.suppressed:
            assert count.value is None and count.display == "< 5"
        else:
            assert count.value >= 5 and count.display == str(count.value)
        seen.add(count.suppressed)
        assert n >= 3 or count.suppressed  # at most +2: a true 1 or 2 never reaches 5
    assert seen == {True, False}


def test_noise_is_unbiased_and_small():
    rnd = random.Random(4)
    errors = [protect_count(keys(n, rnd), 1).value - n for n in (rnd.randint(10, 200) for _ in range(4000))]
    assert max(map(abs, errors)) <= 2
    assert abs(sum(errors) / len(errors)) < 0.1
    assert Counter(errors)[0] / len(errors) < 0.5  # most counts are moved


def differencing(extra: float | None, rnd: random.Random, pairs: int = 2000) -> float:
    """How often the published difference of two cohorts differing by one patient is the true 1."""
    exact = 0
    for _ in range(pairs):
        cohort = keys(rnd.randint(10, 300), rnd)
        target = rnd.random() if extra is None else extra
        a, b = protect_count(cohort, 5), protect_count(cohort + [target], 5)
        assert abs(a.value - len(cohort)) <= 2 and abs(b.value - len(cohort) - 1) <= 2
        exact += b.value - a.value == 1
    return exact / pairs


def test_differencing_rarely_isolates_a_patient():
    share = differencing(None, random.Random(5))
    assert 0.15 < share < 0.40  # measured 0.26 (the table's sum of p^2 is 0.259)


@pytest.mark.parametrize("extra", [0.0, 1e-12, 0.999999999, 0.5])
def test_differencing_fails_for_any_record_key(extra):
    """Even a patient whose key does not move the cell key, or barely, gets independent noise."""
    assert differencing(extra, random.Random(6), pairs=1000) < 0.40


def test_protect_table_and_sql_sums_agree():
    rnd = random.Random(7)
    cells = {label: keys(rnd.randint(0, 40), rnd) for label in ("a", "b", "c", "d")}
    table = protect_table(cells, 5)
    assert set(table) == set(cells)
    for label, cohort in cells.items():
        assert table[label] == protect_count(cohort, 5)
        assert table[label] == protect_sum(len(cohort), sum(integer_key(k) for k in cohort) or None, 5)
    with pytest.raises(ValueError):
        protect_count([1.0], 5)
