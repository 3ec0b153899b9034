"""Annotation geometry: validation and measurements (pure functions, no I/O).

Geometry is kept in level-0 image pixels (``tables.Annotation``): ``{"points": [[x, y], …]}``,
plus ``"closed": true`` for a freehand outline whose end meets its start. Measurements are
computed here, on the server, from the slide's microns per pixel (``mpp_x``/``mpp_y``, which
can differ), so every viewer and the API show the same figures; without a calibration they are
given in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("point", "rect", "polygon", "freehand", "text")
KIND_LABELS = {"point": "Point", "rect": "Rectangle", "polygon": "Polygon", "freehand": "Freehand", "text": "Text"}
#: How many points each kind takes (min, max): bounded so one annotation stays small.
POINTS = {"point": (1, 1), "text": (1, 1), "rect": (2, 2), "polygon": (3, 1000), "freehand": (2, 5000)}
TEXT_MAX = 500


class GeometryError(ValueError):
    """The geometry (or text) of an annotation is not acceptable; the message says why."""


@dataclass(frozen=True)
class Measurement:
    #: Length in µm (rectangle and polygon: perimeter; freehand: path length), or in pixels without mpp.
    length: float | None = None
    #: Area in µm² (or px² without mpp).
    area: float | None = None
    #: Sides of a rectangle (width, height), same unit as ``length``.
    sides: tuple[float, float] | None = None
    calibrated: bool = True

    def as_dict(self) -> dict:
        unit = "um" if self.calibrated else "px"
        out: dict = {"unit": unit, "label": self.label}
        if self.length is not None:
            out[f"length_{unit}"] = round(self.length, 3)
        if self.area is not None:
            out[f"area_{unit}2"] = round(self.area, 3)
        if self.sides is not None:
            out[f"width_{unit}"], out[f"height_{unit}"] = (round(s, 3) for s in self.sides)
        return out

    @property
    def label(self) -> str:
        parts = []
        if self.sides is not None:
            parts.append(f"{format_length(self.sides[0], self.calibrated)} × {format_length(self.sides[1], self.calibrated)}")
        elif self.length is not None:
            parts.append(format_length(self.length, self.calibrated))
        if self.area is not None:
            parts.append(format_area(self.area, self.calibrated))
        return " · ".join(parts)


def _num(value: float) -> str:
    """Three significant figures, without a trailing ".0"."""
    if value == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_length(um: float, calibrated: bool = True) -> str:
    if not calibrated:
        return f"{_num(um)} px"
    return f"{_num(um / 1000)} mm" if um >= 1000 else f"{_num(um)} µm"


def format_area(um2: float, calibrated: bool = True) -> str:
    if not calibrated:
        return f"{_num(um2)} px²"
    # 0.01 mm² = 10,000 µm²: below that, µm² read better
    return f"{_num(um2 / 1e6)} mm²" if um2 >= 10_000 else f"{_num(um2)} µm²"


def validate(kind: object, geometry: object, text: object, width: int, height: int) -> tuple[str, dict, str]:
    """The annotation cleaned up (points rounded to 1/100 pixel), or GeometryError."""
    if kind not in KINDS:
        raise GeometryError(f"kind must be one of: {', '.join(KINDS)}.")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise GeometryError("text must be a string.")
    text = text.replace("\r\n", "\n").strip()
    if len(text) > TEXT_MAX:
        raise GeometryError(f"text is at most {TEXT_MAX} characters.")
    if kind == "text" and not text:
        raise GeometryError("A text annotation needs its text.")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise GeometryError("text must not hold control characters.")
    if not isinstance(geometry, dict):
        raise GeometryError("geometry must be an object with points.")
    if not isinstance(geometry.get("closed", False), bool):
        raise GeometryError("closed must be true or false.")
    raw = geometry.get("points")
    low, high = POINTS[kind]
    if not isinstance(raw, list) or not low <= len(raw) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise GeometryError(f"A {KIND_LABELS[kind].lower()} takes {want} points.")
    points = []
    for p in raw:
        if not (isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
            raise GeometryError("Each point is [x, y] in level-0 pixels.")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise GeometryError("Coordinates must be finite numbers.")
        if not (0 <= x <= width and 0 <= y <= height):
            raise GeometryError(f"Every point must lie on the slide (0–{width} × 0–{height} pixels).")
        points.append([round(x, 2), round(y, 2)])
    out: dict = {"points": points}
    if kind == "rect":
        (x0, y0), (x1, y1) = points
        if x0 == x1 or y0 == y1:
            raise GeometryError("A rectangle needs a width and a height.")
        out["points"] = [[min(x0, x1), min(y0, y1)], [max(x0, x1), max(y0, y1)]]
    if kind == "polygon" and shoelace(points) == 0:
        raise GeometryError("A polygon needs an area (its points are all on one line).")
    if kind == "freehand":
        closed = geometry.get("closed", False)
        if not isinstance(closed, bool):
            raise GeometryError("closed must be true or false.")
        if closed and len(points) < 3:
            raise GeometryError("A closed outline needs at least 3 points.")
        out["closed"] = closed
    return kind, out, text


def shoelace(points: list[list[float]], sx: float = 1.0, sy: float = 1.0) -> float:
    """Area of the polygon (absolute value of the shoelace sum), with x and y scaled."""
    total = 0.0
    n = len(points)
    for i in range(n):
        x0, y0 = points[i]
        x1, y1 = points[(i + 1) % n]
        total += (x0 * sx) * (y1 * sy) - (x1 * sx) * (y0 * sy)
    return abs(total) / 2


def path_length(points: list[list[float]], sx: float, sy: float, closed: bool) -> float:
    seq = points + [points[0]] if closed else points
    return sum(math.hypot((b[0] - a[0]) * sx, (b[1] - a[1]) * sy) for a, b in zip(seq, seq[1:]))


def measure(kind: str, geometry: dict, mpp_x: float | None, mpp_y: float | None) -> Measurement | None:
    """Lengths and areas of an annotation; None for points and text (nothing to measure).
    ``mpp_y`` falls back to ``mpp_x`` (most slides report both, and they are nearly equal)."""
    points = geometry.get("points") or []
    calibrated = bool(mpp_x and mpp_x > 0)
    sx = mpp_x if calibrated else 1.0
    sy = (mpp_y if mpp_y and mpp_y > 0 else mpp_x) if calibrated else 1.0
    if kind == "rect":
        (x0, y0), (x1, y1) = points
        w, h = abs(x1 - x0) * sx, abs(y1 - y0) * sy
        return Measurement(length=2 * (w + h), area=w * h, sides=(w, h), calibrated=calibrated)
    if kind == "polygon":
        return Measurement(length=path_length(points, sx, sy, True), area=shoelace(points, sx, sy), calibrated=calibrated)
    if kind == "freehand":
        closed = bool(geometry.get("closed"))
        return Measurement(length=path_length(points, sx, sy, closed),
                           area=shoelace(points, sx, sy) if closed else None, calibrated=calibrated)
    return None


def bounds(geometry: dict) -> tuple[float, float, float, float]:
    """(x, y, width, height) of the points' bounding box, in level-0 pixels."""
    xs = [p[0] for p in geometry.get("points") or [[0, 0]]]
    ys = [p[1] for p in geometry.get("points") or [[0, 0]]]
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
