"""Cohort definitions, and the SQL that counts and fetches them, always within consent and scope.

A definition is a small JSON tree::

    {"op": "and" | "or", "items": [node, ...]}   {"op": "not", "item": node}   leaf

with leaves ``{"field": F, ...}``:

| field | keys | matches |
|---|---|---|
| ``diagnosis`` | ``system`` (ORPHA, ICD-10, ICD-10-CM, OMIM, ICD-11), ``code``, ``descendants`` | a coded diagnosis (or one below it in the classification) |
| ``phenotype`` | ``code`` (``HP:…``), ``descendants`` | an observed HPO term (or one below it) |
| ``gene`` | ``value`` (HGNC symbol) | a genetic finding in that gene |
| ``variant_class`` | ``value`` (ACMG class) | a finding of that class |
| ``ern`` | ``value`` (acronym) | enrolled in that ERN |
| ``sex`` / ``country`` / ``outcome`` | ``value`` | equal |
| ``age`` | ``at`` (enrolment, onset, diagnosis), ``min``, ``max`` (years, inclusive) | age in range |
| ``enrolment_year`` | ``min``, ``max`` | year in range |
| ``field`` | ``name``, ``value`` | a plugin's research field |

Every query is wrapped in the same two conditions: ``INCLUDED`` (the patient's current registry
consent is the one the research row was built from and it allowed registry use; processing not
restricted; not erased) and the project's scope (enrolled in one of its approved ERNs).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from litestar.exceptions import ClientException

from plugins.research.model import SEXES

MAX_NODES = 40
MAX_DEPTH = 4
OUTCOMES = {"none": "No panel", "in_progress": "Panel under way", "diagnosed": "Panel outcome: diagnosis",
            "no_diagnosis": "Panel outcome: no diagnosis"}
AGES = ("enrolment", "onset", "diagnosis")
DIAGNOSIS_SYSTEMS = ("ORPHA", "ICD-10", "ICD-10-CM", "OMIM", "ICD-11")
VARIANT_CLASSES = ("pathogenic", "likely pathogenic", "uncertain significance", "likely benign", "benign")
_CODE = re.compile(r"^[A-Za-z0-9:._-]{1,40}$")
_WORD = re.compile(r"^[A-Za-z0-9 ._:=/-]{1,80}$")

#: The one inclusion rule, in SQL (``s`` is research_subject, ``p`` patients_patient).
INCLUDED = (
    "s.included = {} AND p.restricted = {} AND p.erased_at IS NULL "
    "AND s.consent_id = (SELECT MAX(c.id) FROM patients_consent c WHERE c.patient = s.patient AND c.kind = 'registry')"
)
INCLUDED_ARGS = (True, False)


class DefinitionError(ClientException):
    """A cohort definition that cannot be run (400); ``detail`` says what to change."""


@dataclass(frozen=True)
class Scope:
    """Whose data a query may touch: patients enrolled in one of these ERNs (acronyms)."""

    erns: tuple[str, ...]


def parse_definition(value: Any) -> dict:
    """Validate a definition (a dict or its JSON text) and return it normalised; DefinitionError if bad."""
    if isinstance(value, (str, bytes)):
        from core.jsonbody import JsonRejected, parse

        try:
            value = parse(value or '{"op": "and", "items": []}', max_bytes=20_000, max_depth=2 * MAX_DEPTH + 2,
                          what="The cohort definition")
        except JsonRejected as exc:
            raise DefinitionError(exc.detail) from None
    count = [0]
    return _node(value, 0, count)


def _node(node: Any, depth: int, count: list[int]) -> dict:
    count[0] += 1
    if count[0] > MAX_NODES or depth > MAX_DEPTH:
        raise DefinitionError(f"A cohort may have at most {MAX_NODES} conditions, nested {MAX_DEPTH} deep.")
    if not isinstance(node, dict):
        raise DefinitionError("Each condition must be an object.")
    op = node.get("op")
    if op in ("and", "or"):
        items = node.get("items", [])
        if not isinstance(items, list):
            raise DefinitionError("'items' must be a list.")
        return {"op": op, "items": [_node(i, depth + 1, count) for i in items]}
    if op == "not":
        return {"op": "not", "item": _node(node.get("item"), depth + 1, count)}
    if op is not None:
        raise DefinitionError(f"Unknown operator {op!r}: use and, or, not.")
    return _leaf(node)


def _int(node: dict, key: str, lo: int, hi: int) -> int | None:
    value = node.get(key)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DefinitionError(f"{key} must be a whole number.") from None
    if not lo <= number <= hi:
        raise DefinitionError(f"{key} must be between {lo} and {hi}.")
    return number


def _text(node: dict, key: str, pattern: re.Pattern = _WORD) -> str:
    value = node.get(key)
    if not isinstance(value, str) or not pattern.match(value.strip()):
        raise DefinitionError(f"Give a valid {key}.")
    return value.strip()


def _leaf(node: dict) -> dict:
    field = node.get("field")
    if field == "diagnosis":
        system = node.get("system")
        if system not in DIAGNOSIS_SYSTEMS:
            raise DefinitionError(f"Diagnosis system must be one of {', '.join(DIAGNOSIS_SYSTEMS)}.")
        code = _text(node, "code", _CODE)
        for prefix in ("ORPHA:", "Orphanet:", "ICD10:", "ICD10CM:", "OMIM:", "ICD11:"):
            code = code.removeprefix(prefix)
        return {"field": field, "system": system, "code": code, "descendants": bool(node.get("descendants", True))}
    if field == "phenotype":
        code = _text(node, "code", _CODE).upper()
        if not re.match(r"^HP:\d{7}$", code):
            raise DefinitionError("A phenotype is an HPO code such as HP:0001250.")
        return {"field": field, "code": code, "descendants": bool(node.get("descendants", True))}
    if field in ("gene",):
        return {"field": field, "value": _text(node, "value").upper()}
    if field == "variant_class":
        value = _text(node, "value").lower()
        if value not in VARIANT_CLASSES:
            raise DefinitionError(f"Variant class must be one of {', '.join(VARIANT_CLASSES)}.")
        return {"field": field, "value": value}
    if field in ("ern", "country"):
        value = _text(node, "value")
        return {"field": field, "value": value.upper() if field == "country" else value}
    if field == "sex":
        if node.get("value") not in SEXES:
            raise DefinitionError(f"Sex must be one of {', '.join(SEXES)}.")
        return {"field": field, "value": node["value"]}
    if field == "outcome":
        if node.get("value") not in OUTCOMES:
            raise DefinitionError(f"Outcome must be one of {', '.join(OUTCOMES)}.")
        return {"field": field, "value": node["value"]}
    if field == "age":
        if node.get("at") not in AGES:
            raise DefinitionError(f"Age must be at {', '.join(AGES)}.")
        lo, hi = _int(node, "min", 0, 130), _int(node, "max", 0, 130)
        if lo is None and hi is None:
            raise DefinitionError("Give a lowest or highest age.")
        return {"field": field, "at": node["at"], "min": lo, "max": hi}
    if field == "enrolment_year":
        lo, hi = _int(node, "min", 1900, 2200), _int(node, "max", 1900, 2200)
        if lo is None and hi is None:
            raise DefinitionError("Give a first or last year.")
        return {"field": field, "min": lo, "max": hi}
    if field == "field":
        return {"field": field, "name": _text(node, "name"), "value": _text(node, "value")}
    raise DefinitionError(f"Unknown field {field!r}.")


_TERM = "s.id IN (SELECT t.subject FROM research_term t WHERE t.value = {} AND t.kind = {}%s)"
_COLUMN = {"sex": "s.sex", "country": "s.country", "outcome": "s.outcome"}
_AGE_COLUMN = {"enrolment": "s.age_enrolment", "onset": "s.age_onset", "diagnosis": "s.age_diagnosis"}


def to_sql(node: dict) -> tuple[str, list]:
    """SQL for a parsed definition (piccolo ``{}`` placeholders) and its arguments."""
    op = node.get("op")
    if op in ("and", "or"):
        parts = [to_sql(i) for i in node["items"]]
        if not parts:
            return ("1 = 1" if op == "and" else "1 = 0"), []
        sql = f" {op.upper()} ".join(f"({p})" for p, _ in parts)
        return sql, [a for _, args in parts for a in args]
    if op == "not":
        sql, args = to_sql(node["item"])
        return f"NOT ({sql})", args
    field = node["field"]
    if field == "diagnosis":
        from plugins.research.projection import term_value

        return _term("diagnosis", term_value(node["system"], node["code"]), node["descendants"])
    if field == "phenotype":
        return _term("phenotype", node["code"], node["descendants"])
    if field in ("gene", "variant_class", "ern"):
        return _term(field, node["value"], True)
    if field == "field":
        return _term("field", f"{node['name']}={node['value']}", True)
    if field in _COLUMN:
        return f"{_COLUMN[field]} = {{}}", [node["value"]]
    column = _AGE_COLUMN[node["at"]] if field == "age" else "s.enrolment_year"
    conds, args = [], []
    if node.get("min") is not None:
        conds.append(f"{column} >= {{}}")
        args.append(node["min"])
    if node.get("max") is not None:
        conds.append(f"{column} <= {{}}")
        args.append(node["max"])
    return " AND ".join(conds), args


def _term(kind: str, value: str, descendants: bool) -> tuple[str, list]:
    if descendants:
        return _TERM % "", [value, kind]
    return _TERM % " AND t.direct = {}", [value, kind, True]


def where(definition: dict, scope: Scope) -> tuple[str, list]:
    """The full WHERE clause: inclusion, scope, then the cohort."""
    cohort, args = to_sql(definition)
    if not scope.erns:
        return "1 = 0", []
    marks = ", ".join("{}" for _ in scope.erns)
    # Correlated: checked per candidate the cohort's own filters found (an IN list of the whole ERN
    # would be built on every query).
    scope_sql = f"EXISTS (SELECT 1 FROM research_term e WHERE e.subject = s.id AND e.kind = 'ern' AND e.value IN ({marks}))"
    return f"{INCLUDED} AND {scope_sql} AND ({cohort})", [*INCLUDED_ARGS, *scope.erns, *args]


FROM = "FROM research_subject s JOIN patients_patient p ON p.id = s.patient"


async def count(definition: dict, scope: Scope) -> tuple[int, int]:
    """(number of patients, sum of their integer record keys) for the cell-key method."""
    from plugins.research.tables import ResearchSubject

    sql, args = where(definition, scope)
    rows = await ResearchSubject.raw(f"SELECT COUNT(*) AS n, SUM(s.record_key) AS keys {FROM} WHERE {sql}", *args)
    return int(rows[0]["n"] or 0), int(rows[0]["keys"] or 0)


async def excluded(scope: Scope) -> tuple[int, int]:
    """(number, key sum) of the scope's patients left out of the research data (no registry consent given,
    processing restricted, or a consent newer than their row): shown so that the exclusion is visible."""
    from plugins.research.tables import ResearchSubject

    if not scope.erns:
        return 0, 0
    marks = ", ".join("{}" for _ in scope.erns)
    rows = await ResearchSubject.raw(
        f"SELECT COUNT(*) AS n, SUM(s.record_key) AS keys {FROM} WHERE p.erased_at IS NULL AND NOT ({INCLUDED}) "
        f"AND EXISTS (SELECT 1 FROM research_term e WHERE e.subject = s.id AND e.kind = 'ern' AND e.value IN ({marks}))",
        *INCLUDED_ARGS, *scope.erns)
    return int(rows[0]["n"] or 0), int(rows[0]["keys"] or 0)


async def group(definition: dict, scope: Scope, column: str) -> list[dict]:
    """Counts by a subject column: [{"value", "n", "keys"}]."""
    from plugins.research.tables import ResearchSubject

    if column not in ("sex", "country", "outcome", "enrolment_year", "age_enrolment", "age_onset", "age_diagnosis"):
        raise ValueError(column)
    sql, args = where(definition, scope)
    return await ResearchSubject.raw(
        f"SELECT s.{column} AS value, COUNT(*) AS n, SUM(s.record_key) AS keys {FROM} WHERE {sql} GROUP BY s.{column}", *args)


async def group_terms(definition: dict, scope: Scope, kind: str, limit: int = 15, direct: bool = True) -> list[dict]:
    """The most frequent terms of one kind among the cohort: [{"value", "n", "keys"}]."""
    from plugins.research.tables import ResearchSubject

    sql, args = where(definition, scope)
    direct_sql = " AND t.direct = {}" if direct else ""
    direct_args = [True] if direct else []
    return await ResearchSubject.raw(
        f"SELECT t.value AS value, COUNT(*) AS n, SUM(s.record_key) AS keys {FROM} "
        f"JOIN research_term t ON t.subject = s.id WHERE t.kind = {{}}{direct_sql} AND {sql} "
        f"GROUP BY t.value ORDER BY COUNT(*) DESC, t.value LIMIT {int(limit)}", kind, *direct_args, *args)


async def rows(definition: dict, scope: Scope, limit: int | None = None, ancestors: dict | None = None) -> list:
    """The cohort's research records (``model.ResearchRecord``; internal: anonymised before anything leaves).
    ``ancestors``, if given, is filled with each diagnosis's ancestors (``{term value: [term values]}``)."""
    from plugins.research.model import Code, ResearchRecord, Variant
    from plugins.research.tables import ResearchSubject, ResearchTerm

    sql, args = where(definition, scope)
    tail = f" LIMIT {int(limit)}" if limit else ""
    found = await ResearchSubject.raw(
        f"SELECT s.id, s.patient, s.record_key, s.sex, s.age_enrolment, s.age_onset, s.age_diagnosis, s.enrolment_year, "
        f"s.country, s.outcome, s.confirmed, s.research_contact, s.data {FROM} WHERE {sql} ORDER BY s.id{tail}", *args)
    erns: dict[int, list[str]] = {}
    ids = [r["id"] for r in found]
    for start in range(0, len(ids), 900):
        for t in await ResearchTerm.select(ResearchTerm.subject, ResearchTerm.value).where(
                (ResearchTerm.kind == "ern") & ResearchTerm.subject.is_in(ids[start:start + 900])):
            erns.setdefault(t["subject"], []).append(t["value"])
    out = []
    for r in found:
        data = json.loads(r["data"] or "{}")
        if ancestors is not None:
            ancestors.update(data.get("ancestors", {}))
        out.append(ResearchRecord(
            subject_id=r["patient"], record_key=int(r["record_key"]) / 2**32, sex=r["sex"],
            age_at_enrolment=r["age_enrolment"], age_at_onset=r["age_onset"], age_at_diagnosis=r["age_diagnosis"],
            enrolment_year=r["enrolment_year"], country=r["country"], erns=tuple(sorted(erns.get(r["id"], []))),
            diagnoses=tuple(Code(d["system"], d["code"]) for d in data.get("diagnoses", [])),
            diagnosis_confirmed=bool(r["confirmed"]),
            phenotypes=tuple(Code("HPO", c) for c in data.get("phenotypes", [])),
            excluded_phenotypes=tuple(Code("HPO", c) for c in data.get("excluded_phenotypes", [])),
            variants=tuple(Variant(g, "", "", c) for g, c in data.get("variants", [])),
            outcome=r["outcome"], research_contact=bool(r["research_contact"]), fields=data.get("fields", {}),
        ))
    return out
