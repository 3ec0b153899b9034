"""The numbers a researcher sees: every count protected before it is shown.

Each count goes through the cell-key method and small-cell suppression (``anonymise``): the
count of the same patients is always the same published number, and anything under k is shown
as "< k". Distributions are lists of ``Bar`` (label, protected count), drawn as charts with a
table beside each (``templates/research/_chart.html``).
"""

from __future__ import annotations

from dataclasses import dataclass

from plugins.research import query
from plugins.research.anonymise import protect_sum

AGE_BANDS = [(0, 4), (5, 9), (10, 17), (18, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 79), (80, 130)]
DELAY_BANDS = [(0, 0), (1, 2), (3, 5), (6, 10), (11, 20), (21, 130)]


@dataclass(frozen=True)
class Bar:
    label: str
    count: object  # anonymise.Count: .value (None when suppressed), .display, .suppressed


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    bars: list[Bar]
    note: str = ""

    @property
    def top(self) -> int:
        return max([b.count.value or 0 for b in self.bars] + [1])


def band_label(lo: int, hi: int) -> str:
    return f"{lo}+" if hi >= 130 else (f"{lo}" if lo == hi else f"{lo}–{hi}")


def _banded(rows: list[dict], bands) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for lo, hi in bands:
        out[band_label(lo, hi)] = (0, 0)
    out["unknown"] = (0, 0)
    for r in rows:
        value = r["value"]
        label = "unknown" if value is None else next((band_label(lo, hi) for lo, hi in bands if lo <= value <= hi), "unknown")
        n, keys = out[label]
        out[label] = (n + int(r["n"]), keys + int(r["keys"] or 0))
    return out


def _bars(cells: dict[str, tuple[int, int]], k: int, labels: dict | None = None) -> list[Bar]:
    return [Bar((labels or {}).get(label, label), protect_sum(n, keys, k)) for label, (n, keys) in cells.items()]


async def total(definition: dict, scope: query.Scope, k: int):
    n, keys = await query.count(definition, scope)
    return protect_sum(n, keys, k)


async def charts(definition: dict, scope: query.Scope, k: int, displays: dict[str, str] | None = None,
                 field_titles: dict[str, str] | None = None) -> list[Chart]:
    displays = displays or {}
    out = []
    sexes = {r["value"]: (int(r["n"]), int(r["keys"] or 0)) for r in await query.group(definition, scope, "sex")}
    out.append(Chart("sex", "Sex", _bars({s: sexes.get(s, (0, 0)) for s in ("female", "male", "other", "unknown")}, k)))
    out.append(Chart("age", "Age at enrolment (years)", _bars(_banded(await query.group(definition, scope, "age_enrolment"), AGE_BANDS), k)))
    out.append(Chart("onset", "Age at onset (years)", _bars(_banded(await query.group(definition, scope, "age_onset"), AGE_BANDS), k)))
    countries = sorted(await query.group(definition, scope, "country"), key=lambda r: (-int(r["n"]), r["value"] or ""))
    out.append(Chart("country", "Country of the enrolling hospital",
                     _bars({(r["value"] or "unknown"): (int(r["n"]), int(r["keys"] or 0)) for r in countries}, k)))
    outcomes = {r["value"]: (int(r["n"]), int(r["keys"] or 0)) for r in await query.group(definition, scope, "outcome")}
    out.append(Chart("outcome", "Panel outcome", _bars({o: outcomes.get(o, (0, 0)) for o in query.OUTCOMES}, k, query.OUTCOMES)))
    for kind, title in (("diagnosis", "Top diagnoses"), ("phenotype", "Top phenotypes (HPO)"), ("gene", "Genes")):
        rows = await query.group_terms(definition, scope, kind)
        cells = {r["value"]: (int(r["n"]), int(r["keys"] or 0)) for r in rows}
        labels = {v: f"{v} {displays[v]}" if v in displays else v for v in cells}
        out.append(Chart(kind, title, _bars(cells, k, labels), "As coded by the clinicians (not counting ancestors)."))
    out.append(Chart("delay", "Time from onset to diagnosis (years)", _bars(await _delays(definition, scope), k),
                     "Age at diagnosis minus age at onset, where both are known."))
    # Plugins' research fields (register_research_fields): one chart per field, by value.
    by_field: dict[str, dict[str, tuple[int, int]]] = {}
    for r in await query.group_terms(definition, scope, "field", limit=200):
        name, _, value = r["value"].partition("=")
        by_field.setdefault(name, {})[value] = (int(r["n"]), int(r["keys"] or 0))
    for name, cells in sorted(by_field.items()):
        out.append(Chart(f"field-{name}", (field_titles or {}).get(name, name), _bars(dict(sorted(cells.items())), k),
                         f"From a plugin ({name})."))
    return out


async def _delays(definition: dict, scope: query.Scope) -> dict[str, tuple[int, int]]:
    from plugins.research.tables import ResearchSubject

    sql, args = query.where(definition, scope)
    rows = await ResearchSubject.raw(
        f"SELECT s.age_diagnosis - s.age_onset AS value, COUNT(*) AS n, SUM(s.record_key) AS keys {query.FROM} "
        f"WHERE {sql} AND s.age_onset IS NOT NULL AND s.age_diagnosis IS NOT NULL AND s.age_diagnosis >= s.age_onset "
        f"GROUP BY s.age_diagnosis - s.age_onset", *args)
    cells = _banded(rows, DELAY_BANDS)
    cells.pop("unknown", None)
    return cells
