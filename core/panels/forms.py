"""Consultation forms: an ERN's case template (sections and fields) as data.

Pure Python, no database: the definition format, its validation, reading a posted form into
JSON-safe answers, and turning answers back into rows for display. The format is described
in ``docs/consultation-forms.md``.

A definition::

    {"title": "ERN RND case", "sections": [
        {"title": "Investigations", "help": "...", "fields": [
            {"key": "ck", "label": "Creatine kinase", "type": "number", "unit": "U/L",
             "min": 0, "max": 100000, "ref_low": 30, "ref_high": 200}]}]}

Posted form fields are named ``f_<key>`` (a code field: ``f_<key>_label``, ``f_<key>_system``,
``f_<key>_code``; a multiple choice: the same name repeated).
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

TYPES = ("text", "longtext", "number", "date", "choice", "code")
KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SYSTEM = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,29}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: A suggestion picked from a code search arrives as "SYSTEM:CODE label" (as in the clinical record).
CODED_LABEL = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,29}):(\S{1,40})\s+(.+)$")

MAX_SECTIONS = 30
MAX_FIELDS = 200
MAX_LABEL = 200
MAX_TITLE = 200
MAX_HELP = 1000
MAX_UNIT = 20
MAX_CHOICES = 100
MAX_SYSTEMS = 10
MAX_DECIMALS = 6
#: Default and largest ``max_length`` per text type.
TEXT_LIMITS = {"text": (500, 2000), "longtext": (5000, 20000)}
CODE_LIMITS = {"label": 300, "system": 30, "code": 40}

COMMON_ATTRS = {"key", "label", "type", "required", "help"}
TYPE_ATTRS = {
    "text": {"max_length"},
    "longtext": {"max_length"},
    "number": {"unit", "min", "max", "ref_low", "ref_high", "decimals"},
    "date": set(),
    "choice": {"choices", "multiple"},
    "code": {"systems"},
}


# --- the definition ---------------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(text) -> str:
    text = str(text)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_definition(obj: Any) -> list[str]:
    """Every problem of a definition, in words a coordinator can act on; empty when valid."""
    if not isinstance(obj, dict):
        return ["The template must be a JSON object with a title and sections."]
    problems: list[str] = []
    for name in sorted(set(obj) - {"title", "sections"}):
        problems.append(f"unknown attribute '{_short(name)}' (a template has only a title and sections)")
    title = obj.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append("title: missing (a non-empty text)")
    elif len(title) > MAX_TITLE:
        problems.append(f"title: too long (at most {MAX_TITLE} characters)")
    sections = obj.get("sections")
    if not isinstance(sections, list) or not sections:
        problems.append("sections: missing (a non-empty list of sections)")
        return problems
    if len(sections) > MAX_SECTIONS:
        problems.append(f"sections: {len(sections)} sections, at most {MAX_SECTIONS}")
    seen: dict[str, str] = {}  # key -> where it was first defined
    code_keys: list[tuple[str, str]] = []
    total = 0
    for s_no, section in enumerate(sections, 1):
        where = f"section {s_no}"
        if not isinstance(section, dict):
            problems.append(f"{where}: must be an object with a title and fields")
            continue
        for name in sorted(set(section) - {"title", "help", "fields"}):
            problems.append(f"{where}: unknown attribute '{_short(name)}'")
        s_title = section.get("title")
        if not isinstance(s_title, str) or not s_title.strip():
            problems.append(f"{where}: title missing")
        elif len(s_title) > MAX_TITLE:
            problems.append(f"{where}: title too long (at most {MAX_TITLE} characters)")
        if "help" in section and (not isinstance(section["help"], str) or len(section["help"]) > MAX_HELP):
            problems.append(f"{where}: help must be a text of at most {MAX_HELP} characters")
        fields = section.get("fields")
        if not isinstance(fields, list) or not fields:
            problems.append(f"{where}: fields missing (a non-empty list)")
            continue
        total += len(fields)
        for f_no, field in enumerate(fields, 1):
            problems.extend(_field_problems(where, f_no, field, seen, code_keys))
    if total > MAX_FIELDS:
        problems.append(f"sections: {total} fields in all, at most {MAX_FIELDS}")
    # A code field posts f_<key>_label, f_<key>_system and f_<key>_code: no other key may take those names.
    for key, where in code_keys:
        for suffix in ("label", "system", "code"):
            other = f"{key}_{suffix}"
            if other in seen:
                problems.append(f"{seen[other]}: key clashes with the code field '{key}' ({where}); choose another key")
    return problems


def _field_problems(section_where: str, f_no: int, field, seen: dict, code_keys: list) -> list[str]:
    if not isinstance(field, dict):
        return [f"{section_where}, field {f_no}: must be an object with key, label and type"]
    key = field.get("key")
    where = f"{section_where}, field '{_short(key)}'" if isinstance(key, str) and key else f"{section_where}, field {f_no}"
    out: list[str] = []
    if not isinstance(key, str) or not KEY.match(key):
        out.append(f"{where}: key must be a lower-case slug (a letter, then letters, digits or _; at most 40)")
    elif key in seen:
        out.append(f"{where}: key '{key}' is used twice (also {seen[key]})")
    else:
        seen[key] = where
    label = field.get("label")
    if not isinstance(label, str) or not label.strip():
        out.append(f"{where}: label missing")
    elif len(label) > MAX_LABEL:
        out.append(f"{where}: label too long (at most {MAX_LABEL} characters)")
    kind = field.get("type")
    if kind not in TYPES:
        out.append(f"{where}: unknown type '{_short(kind)}' (one of: {', '.join(TYPES)})")
        return out
    for name in sorted(set(field) - COMMON_ATTRS - TYPE_ATTRS[kind]):
        out.append(f"{where}: unknown attribute '{_short(name)}' for a {kind} field")
    if "required" in field and not isinstance(field["required"], bool):
        out.append(f"{where}: required must be true or false")
    if "help" in field and (not isinstance(field["help"], str) or len(field["help"]) > MAX_HELP):
        out.append(f"{where}: help must be a text of at most {MAX_HELP} characters")
    if kind in TEXT_LIMITS and "max_length" in field:
        limit = TEXT_LIMITS[kind][1]
        value = field["max_length"]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
            out.append(f"{where}: max_length must be a whole number from 1 to {limit}")
    elif kind == "number":
        out.extend(_number_problems(where, field))
    elif kind == "choice":
        choices = field.get("choices")
        if not isinstance(choices, list) or not choices:
            out.append(f"{where}: choices missing (a non-empty list of texts)")
        elif len(choices) > MAX_CHOICES:
            out.append(f"{where}: {len(choices)} choices, at most {MAX_CHOICES}")
        elif not all(isinstance(c, str) and c.strip() and len(c) <= MAX_LABEL for c in choices):
            out.append(f"{where}: every choice must be a non-empty text of at most {MAX_LABEL} characters")
        elif len({c.strip() for c in choices}) != len(choices) or any(c != c.strip() for c in choices):
            out.append(f"{where}: choices must be unique (and have no leading or trailing spaces)")
        if "multiple" in field and not isinstance(field["multiple"], bool):
            out.append(f"{where}: multiple must be true or false")
    elif kind == "code":
        if isinstance(key, str) and KEY.match(key):
            code_keys.append((key, where))
        if "systems" in field:
            systems = field["systems"]
            if not isinstance(systems, list) or not systems or len(systems) > MAX_SYSTEMS:
                out.append(f"{where}: systems must be a non-empty list of at most {MAX_SYSTEMS} coding systems")
            elif not all(isinstance(s, str) and SYSTEM.match(s) for s in systems):
                out.append(f"{where}: every system must be a short name such as ORPHA, ICD-10, HPO, OMIM")
            elif len({s.upper() for s in systems}) != len(systems):
                out.append(f"{where}: systems must be unique")
    return out


def _number_problems(where: str, field: dict) -> list[str]:
    out = []
    if "unit" in field:
        if not isinstance(field["unit"], str):
            out.append(f"{where}: unit must be a text")
        elif len(field["unit"]) > MAX_UNIT:
            out.append(f"{where}: unit too long (at most {MAX_UNIT} characters)")
    for name in ("min", "max", "ref_low", "ref_high"):
        if name in field and not _is_number(field[name]):
            out.append(f"{where}: {name} must be a number")
    numbers = {n: field[n] for n in ("min", "max", "ref_low", "ref_high") if _is_number(field.get(n))}
    if "min" in numbers and "max" in numbers and numbers["min"] > numbers["max"]:
        out.append(f"{where}: min is above max")
    if "ref_low" in numbers and "ref_high" in numbers and numbers["ref_low"] > numbers["ref_high"]:
        out.append(f"{where}: ref_low is above ref_high")
    if "decimals" in field:
        value = field["decimals"]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_DECIMALS:
            out.append(f"{where}: decimals must be a whole number from 0 to {MAX_DECIMALS}")
    return out


def iter_fields(definition: dict):
    """Every field of a (valid) definition, in order."""
    for section in definition.get("sections", []):
        yield from section.get("fields", [])


def code_search_kind(field: dict) -> str:
    """Which code search (``code_search_url`` hook kind) suits a code field: phenotype for HPO only."""
    systems = [s.upper() for s in field.get("systems") or []]
    return "phenotype" if systems and all(s == "HPO" for s in systems) else "diagnoses"


# --- answers ------------------------------------------------------------------------------------------


def _get(form, name: str) -> str:
    value = form.get(name, "") if form is not None else ""
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    return "" if value is None else str(value)


def _getall(form, name: str) -> list[str]:
    if form is None:
        return []
    if hasattr(form, "getall"):
        try:
            values = form.getall(name)
        except KeyError:
            values = []
    else:
        values = form.get(name, [])
    if values is None:
        values = []
    if isinstance(values, str):
        values = [values]
    return [str(v) for v in values]


def _format_number(value: float | int, decimals: int | None = None) -> str:
    if decimals is not None:
        return f"{value:.{decimals}f}"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


NUMBER_TEXT = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


def _parse_number(field: dict, raw: str) -> tuple[Any, str | None]:
    text = raw.strip().replace("\u2212", "-").replace(" ", "")
    if not NUMBER_TEXT.match(text):
        return None, "Enter a number (e.g. 12.5)."
    text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None, "Enter a number (e.g. 12.5)."
    if not math.isfinite(value):
        return None, "Enter a number (e.g. 12.5)."
    decimals = field.get("decimals")
    mantissa = text.split("e")[0].split("E")[0]
    given = len(mantissa.split(".")[1].rstrip("0")) if "." in mantissa else 0
    if decimals is not None and given > decimals:
        return None, "Enter a whole number." if decimals == 0 else f"At most {decimals} decimal{'s' if decimals > 1 else ''}."
    unit = f" {field['unit']}" if field.get("unit") else ""
    if "min" in field and value < field["min"]:
        return None, f"At least {_format_number(field['min'])}{unit}."
    if "max" in field and value > field["max"]:
        return None, f"At most {_format_number(field['max'])}{unit}."
    if value.is_integer() and (decimals == 0 or given == 0) and abs(value) < 2**53:
        return int(value), None
    return value, None


def _parse_date(raw: str) -> tuple[Any, str | None]:
    text = raw.strip()
    if not ISO_DATE.match(text):
        return None, "Enter the date as YYYY-MM-DD."
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None, "This date does not exist; enter it as YYYY-MM-DD."
    if not 1900 <= day.year <= 2100:
        return None, "Enter a date between 1900 and 2100."
    return day.isoformat(), None


def _parse_code(field: dict, form, name: str) -> tuple[Any, str | None]:
    label = " ".join(_get(form, f"{name}_label").split())
    system = _get(form, f"{name}_system").strip()
    code = _get(form, f"{name}_code").strip()
    if not system and not code:
        match = CODED_LABEL.match(label)
        if match:
            system, code, label = match.group(1).upper(), match.group(2), match.group(3).strip()
    if not (label or system or code):
        return None, None
    systems = field.get("systems") or []
    if len(label) > CODE_LIMITS["label"]:
        return None, f"At most {CODE_LIMITS['label']} characters."
    if (system or code) and not label:
        return None, "Enter the label of the code too."
    if code and not system:
        return None, "Choose the coding system of this code."
    if system and not code:
        return None, f"Enter the {system} code, or leave the system empty."
    if system:
        canonical = {s.upper(): s for s in systems}
        if systems and system.upper() not in canonical:
            return None, f"Use one of these coding systems: {', '.join(systems)}."
        if not SYSTEM.match(system):
            return None, "Enter a coding system such as ORPHA or ICD-10."
        system = canonical.get(system.upper(), system)
        if len(code) > CODE_LIMITS["code"] or any(c.isspace() for c in code):
            return None, f"A code has no spaces and at most {CODE_LIMITS['code']} characters."
    return {"label": label, "system": system, "code": code}, None


def parse_code(field: dict, form, name: str) -> tuple[Any, str | None]:
    """One coded value posted as ``<name>_label``, ``<name>_system``, ``<name>_code`` (also used
    outside templates, e.g. the outcome's diagnosis): ``({"label", "system", "code"} or None, error)``."""
    return _parse_code(field, form, name)


def parse_answers(definition: dict, form, *, require: bool = True) -> tuple[dict, dict[str, str]]:
    """Read a posted panel form against a (valid) definition.

    Returns JSON-safe ``values`` (absent keys for empty answers) and ``errors`` by field key.
    ``require=False`` (saving a draft) skips "required" errors but still refuses malformed values.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in iter_fields(definition):
        key, kind = field["key"], field["type"]
        name = f"f_{key}"
        value: Any = None
        error: str | None = None
        if kind in ("text", "longtext"):
            text = _get(form, name).replace("\r\n", "\n").replace("\r", "\n").strip()
            if kind == "text":
                text = " ".join(text.split())
            limit = field.get("max_length", TEXT_LIMITS[kind][0])
            if len(text) > limit:
                error = f"At most {limit:,} characters ({len(text):,} entered)."
            elif text:
                value = text
        elif kind == "number":
            raw = _get(form, name)
            if raw.strip():
                value, error = _parse_number(field, raw)
        elif kind == "date":
            raw = _get(form, name)
            if raw.strip():
                value, error = _parse_date(raw)
        elif kind == "choice":
            choices = field["choices"]
            picked = [v.strip() for v in _getall(form, name)]
            picked = [v for v in picked if v]
            unknown = [v for v in picked if v not in choices]
            if unknown:
                error = f"Choose from the list ({_short(unknown[0])!r} is not one of the choices)."
            elif field.get("multiple"):
                value = [c for c in choices if c in picked] or None
            elif len(picked) > 1:
                error = "Choose only one."
            elif picked:
                value = picked[0]
        elif kind == "code":
            value, error = _parse_code(field, form, name)
        if error:
            errors[key] = error
        elif value is not None:
            values[key] = value
        elif require and field.get("required"):
            errors[key] = "Required."
    return values, errors


def _answered(value) -> bool:
    if value is None or value == "" or value == []:
        return False
    if isinstance(value, dict):
        return bool(str(value.get("label") or "").strip() or str(value.get("code") or "").strip())
    return True


def missing_required(definition: dict, values: dict) -> list[str]:
    """Labels of the required fields without an answer (a panel cannot be submitted so)."""
    return [f["label"] for f in iter_fields(definition) if f.get("required") and not _answered((values or {}).get(f["key"]))]


def reference_flag(field: dict, value) -> str:
    """"low" or "high" when a number lies outside the field's reference range, else ""."""
    if field.get("type") != "number" or not _is_number(value):
        return ""
    if _is_number(field.get("ref_low")) and value < field["ref_low"]:
        return "low"
    if _is_number(field.get("ref_high")) and value > field["ref_high"]:
        return "high"
    return ""


def reference_text(field: dict) -> str:
    """The reference range in words, e.g. "30–200 U/L", "≥ 30 U/L"; "" without one."""
    low, high = field.get("ref_low"), field.get("ref_high")
    unit = f" {field['unit']}" if field.get("unit") else ""
    if _is_number(low) and _is_number(high):
        return f"{_format_number(low)}–{_format_number(high)}{unit}"
    if _is_number(low):
        return f"≥ {_format_number(low)}{unit}"
    if _is_number(high):
        return f"≤ {_format_number(high)}{unit}"
    return ""


def answer_text(field: dict, value) -> str:
    """One answer as text (with the unit for numbers, "label (SYSTEM:CODE)" for codes)."""
    if not _answered(value):
        return ""
    kind = field.get("type")
    if kind == "number" and _is_number(value):
        text = _format_number(value, field.get("decimals"))
        return f"{text} {field['unit']}" if field.get("unit") else text
    if kind == "code" and isinstance(value, dict):
        label = str(value.get("label") or "")
        if value.get("system") and value.get("code"):
            return f"{label} ({value['system']}:{value['code']})".strip()
        return label
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def display_answers(definition: dict, values: dict) -> list[dict]:
    """The answers by section, for display: ``[{"title", "rows": [{"label", "text", "flag"}]}]``.

    Every field has a row (``text`` empty and ``answered`` false when not answered); ``flag`` is
    "low"/"high" for a number outside its reference range, and ``reference`` the range in words.
    """
    values = values or {}
    out = []
    for section in definition.get("sections", []):
        rows = []
        for field in section.get("fields", []):
            value = values.get(field["key"])
            rows.append({
                "key": field["key"], "label": field["label"], "type": field["type"],
                "text": answer_text(field, value), "flag": reference_flag(field, value),
                "reference": reference_text(field), "answered": _answered(value),
                "multiline": field["type"] == "longtext",
            })
        out.append({"title": section.get("title", ""), "rows": rows})
    return out


def posted_values(definition: dict, form) -> dict[str, Any]:
    """What was posted, by field key, to show a refused form again exactly as entered
    (texts as typed; a code field as {"label", "system", "code"}; a multiple choice as a list).
    ``form_fields`` takes these as well as stored answers."""
    out: dict[str, Any] = {}
    for field in iter_fields(definition):
        key = field["key"]
        name = f"f_{key}"
        if field["type"] == "code":
            out[key] = {part: _get(form, f"{name}_{part}") for part in ("label", "system", "code")}
        elif field["type"] == "choice" and field.get("multiple"):
            out[key] = _getall(form, name)
        else:
            out[key] = _get(form, name)
    return out
