"""The pedigree as JSON: what the tables store (current version and every past version).

:func:`from_dict` trusts nothing (stored rows outlive code changes, and imports come from outside):
every field is type-checked, unknown keys are refused, and :func:`model.validate` runs at the end,
so a bad document raises :class:`PedigreeError` instead of producing a half-built model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields

from plugins.pedigree.model import Condition, Genotype, Individual, Partnership, Pedigree, PedigreeError, Twins, validate

FORMAT = 1  # bumped when the JSON changes shape; from_dict refuses newer documents


def to_dict(ped: Pedigree) -> dict:
    return {
        "format": FORMAT,
        "family_id": ped.family_id,
        "conditions": [asdict(c) for c in ped.conditions.values()],
        "individuals": [asdict(i) for i in ped.individuals.values()],
        "partnerships": [asdict(p) for p in ped.partnerships],
        "twins": [asdict(t) for t in ped.twins],
    }


def dumps(ped: Pedigree) -> str:
    return json.dumps(to_dict(ped), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def loads(text: str) -> Pedigree:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PedigreeError([f"not JSON: {exc}"]) from None
    return from_dict(data)


_TYPES = {"str": str, "int": int, "bool": bool}


def _build(cls, raw, where: str, problems: list[str], **nested):
    """An instance of dataclass ``cls`` from a dict, checking each field's type against its annotation."""
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object")
        return None
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, f in known.items():
        if name not in raw:
            continue
        value = raw[name]
        if name in nested:
            value = nested[name](value, f"{where}.{name}", problems)
        else:
            annotation = str(f.type)
            allowed = [t for key, t in _TYPES.items() if key in annotation.replace("Sex", "str")]
            ok = (value is None and "None" in annotation) or any(
                isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed)
            if annotation.startswith("dict[str, str]"):
                ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            elif annotation.startswith("list[str]"):
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            if not ok:
                problems.append(f"{where}.{name}: {value!r} is not a valid value")
                continue
        values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        problems.append(f"{where}: {exc}")
        return None


def _genotypes(value, where, problems):
    if not isinstance(value, list):
        problems.append(f"{where}: expected a list")
        return []
    return [g for i, raw in enumerate(value) if (g := _build(Genotype, raw, f"{where}[{i}]", problems)) is not None]


def from_dict(data) -> Pedigree:
    problems: list[str] = []
    if not isinstance(data, dict):
        raise PedigreeError(["a pedigree must be a JSON object"])
    if not isinstance(data.get("format"), int) or data["format"] > FORMAT:
        raise PedigreeError([f"unsupported pedigree format {data.get('format')!r}"])
    family = data.get("family_id", "FAM1")
    ped = Pedigree(family_id=family if isinstance(family, str) and family else "FAM1")
    for key in ("conditions", "individuals", "partnerships", "twins"):
        if not isinstance(data.get(key, []), list):
            problems.append(f"{key}: expected a list")
    if problems:
        raise PedigreeError(problems)
    for i, raw in enumerate(data.get("conditions", [])):
        c = _build(Condition, raw, f"conditions[{i}]", problems)
        if c is not None:
            if c.id in ped.conditions:
                problems.append(f"duplicate condition id {c.id!r}")
            ped.conditions[c.id] = c
    for i, raw in enumerate(data.get("individuals", [])):
        ind = _build(Individual, raw, f"individuals[{i}]", problems, genotypes=_genotypes)
        if ind is not None:
            if ind.id in ped.individuals:
                problems.append(f"duplicate individual id {ind.id!r}")
            ped.individuals[ind.id] = ind
    for i, raw in enumerate(data.get("partnerships", [])):
        p = _build(Partnership, raw, f"partnerships[{i}]", problems)
        if p is not None:
            ped.partnerships.append(p)
    for i, raw in enumerate(data.get("twins", [])):
        t = _build(Twins, raw, f"twins[{i}]", problems)
        if t is not None:
            ped.twins.append(t)
    if problems:
        raise PedigreeError(problems)
    validate(ped)
    return ped
