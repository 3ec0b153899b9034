"""What plugins contribute to KPIs and research data (consumed by the kpi and research plugins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class KPI:
    """An ERN performance indicator; ``compute(ctx)`` returns (or awaits) a number."""

    name: str
    description: str
    compute: Callable[[Any], Any]


@dataclass(frozen=True)
class ResearchField:
    """A field added to anonymised research records; ``extract(patient)`` (a ``PatientRef``) returns,
    or awaits, a category: a bool, a number, a short string or a list of short strings.
    ``extract_many(patients)``, when given, returns (or awaits) ``{patient id: value}`` for many at once
    (a refresh of every patient asks it rather than ``extract`` per patient)."""

    name: str
    description: str
    extract: Callable[[Any], Any]
    extract_many: Callable[[list], Any] | None = None
