"""Anonymisation of research records: k-anonymity by full-domain generalisation, risk figures,
and small-cell protection of counts by the cell-key method.

**Rows** (``anonymise``). The quasi-identifiers (QIs) are generalised along fixed hierarchies
(``QuasiIdentifier``; the default set is ``quasi_identifiers()``): sex, the three ages, the
enrolment year, the country and the set of diagnoses. One generalisation level is chosen per QI
for the whole data set (full-domain generalisation), then every record whose equivalence class
(records equal on every generalised QI) is smaller than ``k`` is dropped. The chosen levels are
the node of the lattice of level combinations with the least information loss, measured as the
sum over the QIs of ``level / max_level`` (0 exact, 1 fully suppressed; ties: fewer dropped
records, then lower levels in QI order), among the nodes that drop at most ``max_suppression``
of the records. The search is exact, not greedy: it relies on monotonicity (a node's
generalisations drop no more records than it does) so that each evaluation settles a whole cone
of the lattice, and evaluates only what could still beat the best node found (about 120 of the
10,000 default nodes for 10,000 records). When no node qualifies the top node is used and the
report says so (``fallback``). Whatever the node, the output is k-anonymous over the QI columns:
small classes are always dropped, even all of them.

A standard QI left out of ``quasi`` is withheld, not released exact (its column is
``SUPPRESSED``): an attribute outside the k-anonymity check would escape it.

**Risk** (``risk``): prosecutor re-identification risk of any rows over given columns: highest
``1 / smallest class``, average ``classes / rows``.

**Counts** (``protect_count``, ``protect_table``, ``protect_sum``): the cell-key method (the
Australian Bureau of Statistics' TableBuilder). Each patient has a secret random ``record_key`` in
[0, 1); a cell's key is the sum of its records' keys modulo 1, computed on the keys as 32-bit
integers (``integer_key``: exact, so the order of records does not matter, and SQL can sum them);
a fixed table indexed by the true count (0, 1, 2 and above) and by the cell key (scrambled with
the count to one of 256 columns) gives a noise in [-2, +2] that never makes a count negative and leaves 0 at 0.
The same set of patients always gets the same number, so repeating a query cannot average the
noise away, and two sets that differ by one patient get independent noises, so their difference
is the true 1 only about a quarter of the time. Then a published count below ``k`` is ``< k``.

Limits, honestly: the noise only blurs; an attacker who can build *many different* pairs of
cohorts differing by the same patient can average the differences (noise mean 0, variance about
1.2 each) and learn whether that patient is in. Perturbed cells do not add up to perturbed totals.
Everything rests on the record keys staying secret on the server. k-anonymity does not give
l-diversity: a class may share one sensitive value (a phenotype, a gene), and phenotypes, genes,
ERNs, outcomes and plugins' fields are passed through, not generalised. docs/research-anonymisation.md.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from operator import attrgetter
from typing import Any

import numpy as np

from plugins.research.model import SUPPRESSED, AnonymisedRecord, Code, ResearchRecord

UNKNOWN = "unknown"  # a missing age: a value of its own until the top level
TOP_AGE = 80  # ages from here are one band, "80+", at every band width
AGE_WIDTHS = (1, 5, 10, 20)  # level 0 is the age in whole years
PERIOD_WIDTHS = (1, 5, 10)  # level 0 is the year
DIAGNOSIS_DEPTH = 3  # how many classification levels a diagnosis may climb before it is suppressed
#: A withheld diagnosis set: the diagnoses were not part of this export's quasi-identifiers.
WITHHELD_DIAGNOSES = (Code(SUPPRESSED, SUPPRESSED),)

Ancestors = Callable[[Code], Sequence[Code]]


# --- Hierarchies ----------------------------------------------------------------------------


def age_band(age: int | None, level: int) -> str:
    """``34`` → ``"34"``, ``"30-34"``, ``"30-39"``, ``"20-39"``, ``SUPPRESSED`` at levels 0–4."""
    if level >= len(AGE_WIDTHS):
        return SUPPRESSED
    if age is None:
        return UNKNOWN
    age = max(age, 0)  # prenatal onset is recorded as 0 or below: the first band
    width = AGE_WIDTHS[level]
    if width == 1:
        return str(age)
    if age >= TOP_AGE:
        return f"{TOP_AGE}+"
    low = age - age % width
    return f"{low}-{low + width - 1}"


def enrolment_period(year: int, level: int) -> str:
    """``2021`` → ``"2021"``, ``"2020-2024"``, ``"2020-2029"``, ``SUPPRESSED`` at levels 0–3."""
    if level >= len(PERIOD_WIDTHS):
        return SUPPRESSED
    width = PERIOD_WIDTHS[level]
    if width == 1:
        return str(year)
    low = year - year % width
    return f"{low}-{low + width - 1}"


def generalise_code(code: Code, level: int, ancestors: Ancestors | None, depth: int) -> Code:
    """The code's ``level``-th ancestor (the last there is when fewer), suppressed above ``depth``."""
    if level > depth:
        return Code(code.system, SUPPRESSED)
    if level == 0 or ancestors is None:
        return code
    chain = ancestors(code)
    if not chain:
        return code  # unknown to the classification: stays as it is until suppressed
    return chain[min(level, len(chain)) - 1]


def generalise_codes(codes: Iterable[Code], level: int, ancestors: Ancestors | None,
                     depth: int) -> tuple[Code, ...]:
    """A diagnosis set generalised code by code, sorted and de-duplicated (one QI value)."""
    return _sorted_unique(generalise_code(c, level, ancestors, depth) for c in codes)


def _sorted_unique(codes: Iterable[Code]) -> tuple[Code, ...]:
    by_key = {(c.system, c.code, c.display): c for c in codes}  # str tuples hash fast; Codes do not
    return tuple(by_key[key] for key in sorted(by_key))


@dataclass(frozen=True)
class QuasiIdentifier:
    """One QI: ``generalise(record, level)`` for levels 0 (exact) to ``max_level`` (the top).

    ``name`` is the output column it fills (an ``AnonymisedRecord`` field, else a key of
    ``fields``). ``raw``, when given, is the full-precision value ``generalise`` depends on alone:
    each distinct value is then generalised once instead of once per record.
    """

    name: str
    max_level: int
    generalise: Callable[[ResearchRecord, int], Hashable]
    raw: Callable[[ResearchRecord], Hashable] | None = None


def _age_qi(name: str, attribute: str) -> QuasiIdentifier:
    get = attrgetter(attribute)
    return QuasiIdentifier(name, len(AGE_WIDTHS), lambda r, level: age_band(get(r), level), get)


def _top_or(value: Callable[[ResearchRecord], str]) -> Callable[[ResearchRecord, int], str]:
    return lambda r, level: SUPPRESSED if level else value(r)


SEX = QuasiIdentifier("sex", 1, _top_or(attrgetter("sex")), attrgetter("sex"))
AGE_AT_ENROLMENT = _age_qi("age_band_enrolment", "age_at_enrolment")
AGE_AT_ONSET = _age_qi("age_band_onset", "age_at_onset")
AGE_AT_DIAGNOSIS = _age_qi("age_band_diagnosis", "age_at_diagnosis")
ENROLMENT_YEAR = QuasiIdentifier(
    "enrolment_period", len(PERIOD_WIDTHS),
    lambda r, level: enrolment_period(r.enrolment_year, level), attrgetter("enrolment_year"))
COUNTRY = QuasiIdentifier("country", 1, _top_or(attrgetter("country")), attrgetter("country"))


def diagnoses_qi(ancestors: Ancestors | None = None, depth: int = DIAGNOSIS_DEPTH) -> QuasiIdentifier:
    """The diagnosis set as one QI: levels 0..depth climb the classification, depth + 1 suppresses."""
    depth = depth if ancestors is not None else 0
    # A classification lookup may be slow and codes repeat: each code climbs once per level,
    # cached under plain strings (a Code's own hash runs in Python, a str tuple's does not).
    climbed: dict[tuple[str, str, str, int], tuple[tuple[str, str, str], Code]] = {}

    def generalise(record: ResearchRecord, level: int) -> tuple[Code, ...]:
        found = {}
        for code in record.diagnoses:
            hit = climbed.get((code.system, code.code, code.display, level))
            if hit is None:
                up = generalise_code(code, level, ancestors, depth)
                hit = climbed[code.system, code.code, code.display, level] = ((up.system, up.code, up.display), up)
            found[hit[0]] = hit[1]
        return tuple(found[key] for key in sorted(found))

    return QuasiIdentifier("diagnoses", depth + 1, generalise, attrgetter("diagnoses"))


def quasi_identifiers(ancestors: Ancestors | None = None,
                      depth: int = DIAGNOSIS_DEPTH) -> list[QuasiIdentifier]:
    """The default QIs: sex, the three ages, the enrolment year, the country, the diagnoses."""
    return [SEX, AGE_AT_ENROLMENT, AGE_AT_ONSET, AGE_AT_DIAGNOSIS, ENROLMENT_YEAR, COUNTRY,
            diagnoses_qi(ancestors, depth)]


#: The output columns of the default QIs: withheld when a caller leaves their QI out.
STANDARD_COLUMNS = {q.name: (WITHHELD_DIAGNOSES if q.name == "diagnoses" else SUPPRESSED)
                    for q in quasi_identifiers()}


# --- Encoding: each QI level as integer class codes per record -----------------------------


@dataclass
class _Levels:
    """One QI's generalisations: per level, an integer code per record and the values they stand for."""

    codes: list[np.ndarray]
    values: list[list[Hashable]]


def _factorise(items: Iterable[Hashable]) -> tuple[np.ndarray, list[Hashable]]:
    index: dict[Hashable, int] = {}
    codes = [index.setdefault(item, len(index)) for item in items]
    return np.array(codes, dtype=np.int64), list(index)


def _encode(records: Sequence[ResearchRecord], qi: QuasiIdentifier) -> _Levels:
    # Generalise each distinct full-precision value once, then spread by index: records share values.
    if qi.raw is not None:
        raw_codes, _ = _factorise(qi.raw(r) for r in records)
        first = np.unique(raw_codes, return_index=True)[1]
        representatives = [records[i] for i in first]
    else:
        raw_codes, representatives = np.arange(len(records), dtype=np.int64), list(records)
    levels = _Levels([], [])
    for level in range(qi.max_level + 1):
        codes, values = _factorise(qi.generalise(r, level) for r in representatives)
        levels.codes.append(codes[raw_codes])
        levels.values.append(values)
    return levels


def _class_ids(columns: Sequence[np.ndarray], cardinalities: Sequence[int], n: int) -> np.ndarray:
    """One integer per record, equal exactly when the records are equal on every column."""
    key, span = np.zeros(n, dtype=np.int64), 1
    for column, cardinality in zip(columns, cardinalities):
        if span * cardinality >= 2**62:  # renumber densely before the mixed-radix key overflows
            key = np.unique(key, return_inverse=True)[1].astype(np.int64)
            span = int(key.max()) + 1
        key = key * cardinality + column
        span *= cardinality
    return key


def _class_sizes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(size of each class, each record's class index)."""
    _, inverse, sizes = np.unique(ids, return_inverse=True, return_counts=True)
    return sizes, inverse


class _Data:
    """The records encoded for the lattice search: evaluates a node's suppression."""

    def __init__(self, records: Sequence[ResearchRecord], quasi: Sequence[QuasiIdentifier], k: int):
        self.n, self.k = len(records), k
        self.levels = [_encode(records, q) for q in quasi]

    def ids(self, node: Sequence[int]) -> np.ndarray:
        columns = [q.codes[lv] for q, lv in zip(self.levels, node)]
        return _class_ids(columns, [max(len(q.values[lv]), 1) for q, lv in zip(self.levels, node)], self.n)

    def suppressed(self, node: Sequence[int]) -> int:
        """How many records sit in classes smaller than k at this node."""
        ids = self.ids(node)
        if not self.n:
            return 0
        if int(ids.max()) < 4 * self.n + 1024:  # dense keys: counting beats sorting
            sizes = np.bincount(ids)
        else:
            sizes = np.unique(ids, return_counts=True)[1]
        return int(sizes[(sizes > 0) & (sizes < self.k)].sum())


# --- The lattice search ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Choice:
    node: tuple[int, ...]
    suppressed: int
    fallback: bool
    evaluated: int
    lattice: int


class _Lattice:
    """Every combination of levels (a node), its loss, and what is known of it: 0 unknown,
    1 qualifies, -1 fails. Settling a node settles its cone (monotonicity)."""

    def __init__(self, max_levels: Sequence[int]):
        self.top = np.array(max_levels, dtype=np.int64)
        shape = [m + 1 for m in max_levels]
        self.nodes = np.indices(shape).reshape(len(shape), -1).T if shape else np.zeros((1, 0), np.int64)
        # loss: sum of level / max_level, scaled to integers so that ties are exact
        self.weights = np.array([math.lcm(*max_levels) // m for m in max_levels], dtype=np.int64)
        self.loss = self.nodes @ self.weights
        self.status = np.zeros(len(self.nodes), dtype=np.int8)
        self.strides = np.array([math.prod(shape[i + 1:]) for i in range(len(shape))], dtype=np.int64)

    def settle(self, i: int, qualifies: bool) -> None:
        node = self.nodes[i]
        if qualifies:
            self.status[(self.nodes >= node).all(axis=1)] = 1
        else:
            self.status[(self.nodes <= node).all(axis=1)] = -1

    def open(self, bound: int) -> np.ndarray:
        """Unsettled nodes that could still beat a node of loss ``bound``, in order of loss."""
        found = np.flatnonzero((self.status == 0) & (self.loss <= bound))
        return found[np.argsort(self.loss[found], kind="stable")]

    def chain(self, i: int) -> list[int]:
        """A path from node i to the top, raising the least generalised QI (relative to its
        height) first: balanced nodes split the lattice best."""
        node, path = self.nodes[i].copy(), [i]
        while (below := np.flatnonzero(node < self.top)).size:
            relative = node[below] * self.weights[below]
            node[below[np.lexsort((self.weights[below], relative))[0]]] += 1
            path.append(int(node @ self.strides))
        return path


def _search(data: _Data, max_levels: Sequence[int], allowed: int) -> _Choice:
    """The least-loss node that drops at most ``allowed`` records, else the top node.

    Each evaluation settles a cone: a qualifying node's generalisations qualify, a failing node's
    specialisations fail (monotonicity). While unsettled nodes could beat the best so far, take
    the median one by loss and binary-search the path from it to the top for where failing turns
    into qualifying: both ends of that step settle large cones.
    """
    lattice = _Lattice(max_levels)
    best: tuple[int, int, tuple[int, ...]] | None = None
    evaluated = 0
    while (open_ := lattice.open(best[0] if best else np.iinfo(np.int64).max)).size:
        path = lattice.chain(int(open_[len(open_) // 2]))
        while (step := _unsettled_step(lattice.status[path])) is not None:
            i = path[step]
            dropped = data.suppressed(lattice.nodes[i])
            evaluated += 1
            lattice.settle(i, dropped <= allowed)
            if dropped <= allowed:
                candidate = (int(lattice.loss[i]), dropped, tuple(map(int, lattice.nodes[i])))
                best = min(best or candidate, candidate)
    if best is not None:
        return _Choice(best[2], best[1], False, evaluated, len(lattice.nodes))
    top = tuple(max_levels)
    return _Choice(top, data.suppressed(top), True, evaluated, len(lattice.nodes))


def _unsettled_step(status: np.ndarray) -> int | None:
    """The middle unsettled position between the path's last failing and first qualifying node."""
    fails, qualifies = np.flatnonzero(status == -1), np.flatnonzero(status == 1)
    low = fails[-1] + 1 if fails.size else 0
    high = qualifies[0] if qualifies.size else len(status)
    between = low + np.flatnonzero(status[low:high] == 0)
    return int(between[len(between) // 2]) if between.size else None


# --- Output -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What ``anonymise`` did, for the audit trail and the researcher."""

    k: int
    levels: dict[str, int]  # the chosen generalisation level per QI (0 = exact)
    max_levels: dict[str, int]
    loss: float  # sum over QIs of level / max_level: the metric the search minimised
    rows_in: int
    rows_out: int
    suppressed: int  # records dropped because their class was smaller than k
    max_suppression: float
    fallback: bool  # no node kept suppression within max_suppression: the top node was used
    classes: int  # equivalence classes in the output
    smallest_class: int  # 0 when nothing is output
    highest_risk: float  # prosecutor risk: 1 / smallest class
    average_risk: float  # prosecutor risk: classes / rows
    nodes_evaluated: int
    lattice_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Anonymised:
    """What may leave: the k-anonymous rows, and the report of how they were made."""

    rows: list[AnonymisedRecord]
    report: Report


_ATTRIBUTES = {f.name for f in fields(AnonymisedRecord)} - {"research_id", "fields"}


def _row(record: ResearchRecord, generalised: Mapping[str, Hashable], research_id: str) -> AnonymisedRecord:
    columns: dict[str, Any] = {
        **STANDARD_COLUMNS,
        "erns": record.erns, "diagnosis_confirmed": record.diagnosis_confirmed,
        "phenotypes": record.phenotypes, "excluded_phenotypes": record.excluded_phenotypes,
        "genes": record.genes,
        # an exact HGVS can identify a family: only the gene and its classification leave
        "variant_classes": tuple(sorted({(v.gene, v.classification) for v in record.variants})),
        "outcome": record.outcome, "research_contact": record.research_contact,
        "fields": dict(record.fields),
    }
    for name, value in generalised.items():
        if name in _ATTRIBUTES:
            columns[name] = value
        else:
            columns["fields"][name] = value
    return AnonymisedRecord(research_id=research_id, **columns)


def _rows(records: Sequence[ResearchRecord], kept: list[int], quasi: Sequence[QuasiIdentifier],
          data: _Data, node: Sequence[int], research_id: Callable[[ResearchRecord], str]) -> list[AnonymisedRecord]:
    chosen = [(q.name, lv.values[level], lv.codes[level].tolist()) for q, lv, level in zip(quasi, data.levels, node)]
    rows = [_row(records[i], {name: values[codes[i]] for name, values, codes in chosen}, research_id(records[i]))
            for i in kept]
    return sorted(rows, key=attrgetter("research_id"))


def anonymise(records: Iterable[ResearchRecord], *, k: int = 5,
              research_id: Callable[[ResearchRecord], str], ancestors: Ancestors | None = None,
              max_suppression: float = 0.05,
              quasi: Sequence[QuasiIdentifier] | None = None) -> Anonymised:
    """k-anonymous rows of ``records`` over the QIs (default ``quasi_identifiers(ancestors)``).

    ``ancestors`` is the diagnoses' classification for the default QIs only; with ``quasi``, build
    the diagnoses QI with ``diagnoses_qi(ancestors)``. Rows come out ordered by research id, not in
    the input's order (which follows enrolment).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    if not 0 <= max_suppression <= 1:
        raise ValueError("max_suppression must be between 0 and 1")
    records = list(records)
    quasi = list(quasi) if quasi is not None else quasi_identifiers(ancestors)
    if len({q.name for q in quasi}) != len(quasi) or any(q.max_level < 1 for q in quasi):
        raise ValueError("QI names must be distinct and each QI must have a level above 0")
    data = _Data(records, quasi, k)
    choice = _search(data, [q.max_level for q in quasi], int(max_suppression * len(records) + 1e-9))
    sizes, inverse = _class_sizes(data.ids(choice.node))
    kept = np.flatnonzero(sizes[inverse] >= k).tolist()  # k holds whatever the node
    rows = _rows(records, kept, quasi, data, choice.node, research_id)
    report = Report(
        k=k, levels={q.name: level for q, level in zip(quasi, choice.node)},
        max_levels={q.name: q.max_level for q in quasi},
        loss=sum(level / q.max_level for q, level in zip(quasi, choice.node)),
        rows_in=len(records), rows_out=len(rows), suppressed=len(records) - len(rows),
        max_suppression=max_suppression, fallback=choice.fallback,
        **_risk_figures(sizes[sizes >= k].tolist()),
        nodes_evaluated=choice.evaluated, lattice_size=choice.lattice)
    return Anonymised(rows, report)


# --- Risk ---------------------------------------------------------------------------------


def _risk_figures(sizes: Sequence[int]) -> dict[str, Any]:
    rows = sum(sizes)
    if not rows:
        return {"classes": 0, "smallest_class": 0, "highest_risk": 0.0, "average_risk": 0.0}
    smallest = min(sizes)
    return {"classes": len(sizes), "smallest_class": smallest,
            "highest_risk": 1 / smallest, "average_risk": len(sizes) / rows}


@dataclass(frozen=True)
class Risk:
    """Prosecutor re-identification risk: the attacker knows their target is in the rows."""

    rows: int
    classes: int
    smallest_class: int
    highest_risk: float  # 1 / smallest class
    average_risk: float  # classes / rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _value(row: Any, name: str) -> Hashable:
    if isinstance(row, Mapping):
        return _hashable(row[name])
    if hasattr(row, name):
        return _hashable(getattr(row, name))
    return _hashable(row.fields[name])  # a custom QI's column


def _hashable(value: Any) -> Hashable:
    """Rows read back from JSON carry lists and dicts where records carry tuples and Codes."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return frozenset(_hashable(v) for v in value)
    return value


def risk(rows: Iterable[Any], qi_names: Sequence[str]) -> Risk:
    """The risk figures of rows (dicts or records) over the named QI columns."""
    classes = Counter(tuple(_value(row, name) for name in qi_names) for row in rows)
    figures = _risk_figures(list(classes.values()))
    return Risk(rows=sum(classes.values()), **figures)


# --- Counts: the cell-key method --------------------------------------------------------------

KEY_BITS = 32  # a record key m / 2**32 is the integer m (as stored): sums are exact and order-free
KEY_SPACE = 2**KEY_BITS
#: Perturbation table. Row: the true count (0, 1, and 2 or more); each row gives, for each of the
#: 256 cell-key columns, a noise; here as how many columns carry each noise. Every row has mean 0;
#: row 0 keeps zeros zero and row 1 never goes below zero. Two independent draws from the last
#: row agree with probability sum(p^2) = 0.26: how often a difference of two cells is exact.
_NOISE_SHARES = ({0: 256},
                 {-1: 77, 0: 115, 1: 51, 2: 13},
                 {-2: 26, -1: 51, 0: 102, 1: 51, 2: 26})


def _expand(shares: Mapping[int, int]) -> tuple[int, ...]:
    row = tuple(noise for noise, columns in sorted(shares.items()) for _ in range(columns))
    if len(row) != 256:
        raise ValueError("a perturbation row covers the 256 cell-key columns")
    return row


PERTURBATION = tuple(_expand(s) for s in _NOISE_SHARES)


def integer_key(record_key: float) -> int:
    """A record key in [0, 1) as the integer SQL may sum (``SUM`` of these is ``protect_sum``'s input)."""
    if not 0 <= record_key < 1:
        raise ValueError(f"a record key is in [0, 1), not {record_key!r}")
    return int(record_key * KEY_SPACE)


def _column(count: int, key_sum: int) -> int:
    # The cell key (the sum modulo 1) is scrambled, with the count, before picking a column: with
    # its top bits directly, a patient whose record key is near 0 or 1 would leave the column
    # unchanged, and a difference with and without them would carry equal noises that cancel.
    cell = count.to_bytes(8, "big") + (key_sum % KEY_SPACE).to_bytes(4, "big")
    return hashlib.blake2b(cell, digest_size=1).digest()[0]


def perturb(count: int, key_sum: int) -> int:
    """The published count before thresholding: true count + the table's noise for this cell."""
    if count < 0:
        raise ValueError("a count is not negative")
    return count + PERTURBATION[min(count, len(PERTURBATION) - 1)][_column(count, key_sum)]


@dataclass(frozen=True)
class Count:
    """A published count: ``value`` None and ``display`` ``"< k"`` when suppressed."""

    value: int | None
    display: str
    suppressed: bool


def protect_sum(count: int, key_sum: int | None, k: int) -> Count:
    """A cell given as (number of records, sum of their ``integer_key``s), as SQL aggregates it."""
    if k < 1:
        raise ValueError("k must be at least 1")
    published = perturb(count, key_sum or 0)  # SQL's SUM over no rows is NULL
    if published < k:
        return Count(None, f"< {k}", True)
    return Count(published, str(published), False)


def protect_count(record_keys: Iterable[float], k: int) -> Count:
    """A cell's count perturbed by the cell-key method, then shown as ``< k`` when below k."""
    keys = [integer_key(key) for key in record_keys]
    return protect_sum(len(keys), sum(keys), k)


def protect_table(cells: Mapping[Hashable, Iterable[float]], k: int) -> dict[Hashable, Count]:
    """Each cell protected on its own; a total is a cell of its own (its records' keys), not a sum."""
    return {label: protect_count(keys, k) for label, keys in cells.items()}
