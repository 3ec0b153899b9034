"""The cohort builder's form <-> a cohort definition (``query``).

The form is a GET form (a cohort is a bookmarkable address): ``combine`` (``and``/``or``) and
numbered conditions ``f0, v0, at0, lo0, hi0, d0, n0`` (field, value, age at, from, to, with
descendants, NOT). Values are typed as researchers write them: ``ORPHA:98756``, ``ICD10:G11.2``,
``HP:0001250``, ``ATXN2``, ``female``, ``DE``; ranges in ``lo``/``hi``.
"""

from __future__ import annotations

from dataclasses import dataclass

from plugins.research.query import DefinitionError, parse_definition

MAX_CONDITIONS = 12
FIELDS = {
    "diagnosis": "Diagnosis (ORPHA:…, ICD10:…, OMIM:…)",
    "phenotype": "Phenotype (HPO, HP:…)",
    "gene": "Gene (HGNC symbol)",
    "variant_class": "Variant class (ACMG)",
    "sex": "Sex",
    "age": "Age (years)",
    "country": "Country (ISO code)",
    "ern": "ERN",
    "outcome": "Panel outcome",
    "enrolment_year": "Year of enrolment",
    "field": "Other field (name=value)",
}
_SYSTEMS = (("ORPHA:", "ORPHA"), ("ORPHANET:", "ORPHA"), ("ICD10CM:", "ICD-10-CM"), ("ICD10:", "ICD-10"),
            ("ICD11:", "ICD-11"), ("OMIM:", "OMIM"))


@dataclass
class Condition:
    field: str = ""
    value: str = ""
    at: str = "enrolment"
    lo: str = ""
    hi: str = ""
    descendants: bool = True
    negate: bool = False


def conditions_from(params) -> tuple[str, list[Condition]]:
    combine = "or" if params.get("combine") == "or" else "and"
    out = []
    for i in range(MAX_CONDITIONS):
        field = str(params.get(f"f{i}", "") or "").strip()
        if not field:
            continue
        out.append(Condition(
            field=field, value=str(params.get(f"v{i}", "") or "").strip(), at=str(params.get(f"at{i}", "enrolment")),
            lo=str(params.get(f"lo{i}", "") or "").strip(), hi=str(params.get(f"hi{i}", "") or "").strip(),
            descendants=params.get(f"d{i}") is not None,
            negate=params.get(f"n{i}") is not None,
        ))
    return combine, out


def _leaf(c: Condition) -> dict:
    if c.field == "diagnosis":
        upper = c.value.upper()
        for prefix, system in _SYSTEMS:
            if upper.startswith(prefix):
                return {"field": "diagnosis", "system": system, "code": c.value[len(prefix):], "descendants": c.descendants}
        if c.value.isdigit():
            return {"field": "diagnosis", "system": "ORPHA", "code": c.value, "descendants": c.descendants}
        raise DefinitionError(f"Write a diagnosis as ORPHA:98756, ICD10:G11.2, ICD10CM:…, ICD11:… or OMIM:…, not {c.value!r}.")
    if c.field == "phenotype":
        return {"field": "phenotype", "code": c.value, "descendants": c.descendants}
    if c.field == "age":
        return {"field": "age", "at": c.at, "min": c.lo, "max": c.hi}
    if c.field == "enrolment_year":
        return {"field": "enrolment_year", "min": c.lo, "max": c.hi}
    if c.field == "field":
        name, _, value = c.value.partition("=")
        return {"field": "field", "name": name.strip(), "value": value.strip()}
    if c.field in FIELDS:
        return {"field": c.field, "value": c.value.lower() if c.field in ("sex", "outcome", "variant_class") else c.value}
    raise DefinitionError(f"Unknown field {c.field!r}.")


def definition_from(params) -> tuple[dict, str, list[Condition]]:
    """The parsed definition of a builder form; DefinitionError (with a message for the page) if bad."""
    combine, conditions = conditions_from(params)
    items = []
    for c in conditions:
        leaf = _leaf(c)
        items.append({"op": "not", "item": leaf} if c.negate else leaf)
    return parse_definition({"op": combine, "items": items}), combine, conditions


def params_from(definition: dict) -> dict[str, str]:
    """A saved definition back into builder parameters (one level of and/or, each item maybe NOT)."""
    params = {"combine": definition.get("op", "and") if definition.get("op") in ("and", "or") else "and"}
    items = definition.get("items", []) if definition.get("op") in ("and", "or") else [definition]
    for i, item in enumerate(items[:MAX_CONDITIONS]):
        negate = item.get("op") == "not"
        leaf = item["item"] if negate else item
        params[f"f{i}"] = leaf.get("field", "")
        if negate:
            params[f"n{i}"] = "on"
        if leaf.get("descendants", True):
            params[f"d{i}"] = "on"
        if leaf.get("field") == "diagnosis":
            prefix = {"ORPHA": "ORPHA:", "ICD-10": "ICD10:", "ICD-10-CM": "ICD10CM:", "ICD-11": "ICD11:", "OMIM": "OMIM:"}[leaf["system"]]
            params[f"v{i}"] = prefix + leaf["code"]
        elif leaf.get("field") == "phenotype":
            params[f"v{i}"] = leaf["code"]
        elif leaf.get("field") in ("age", "enrolment_year"):
            params[f"lo{i}"] = "" if leaf.get("min") is None else str(leaf["min"])
            params[f"hi{i}"] = "" if leaf.get("max") is None else str(leaf["max"])
            if leaf.get("field") == "age":
                params[f"at{i}"] = leaf["at"]
        elif leaf.get("field") == "field":
            params[f"v{i}"] = f"{leaf['name']}={leaf['value']}"
        else:
            params[f"v{i}"] = str(leaf.get("value", ""))
    return params


def describe(definition: dict) -> str:
    """The cohort in words, for manifests, the log and the page."""
    op = definition.get("op")
    if op in ("and", "or"):
        parts = [describe(i) for i in definition["items"]]
        return f" {op.upper()} ".join(f"({p})" if " AND " in p or " OR " in p else p for p in parts) or "all patients"
    if op == "not":
        return f"NOT {describe(definition['item'])}"
    f = definition["field"]
    if f == "diagnosis":
        return f"diagnosis {definition['system']}:{definition['code']}{' or below' if definition['descendants'] else ''}"
    if f == "phenotype":
        return f"phenotype {definition['code']}{' or below' if definition['descendants'] else ''}"
    if f in ("age", "enrolment_year"):
        label = f"age at {definition['at']}" if f == "age" else "year of enrolment"
        lo, hi = definition.get("min"), definition.get("max")
        return f"{label} {'' if lo is None else lo}–{'' if hi is None else hi}"
    if f == "field":
        return f"{definition['name']} = {definition['value']}"
    return f"{f.replace('_', ' ')} = {definition['value']}"
