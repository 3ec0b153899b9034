"""Annotation geometry on a DICOM frame: validation and server-side measurements (no I/O).

Geometry is kept in pixels of the frame (``tables.Annotation``), x to the right (column), y down
(row), the frame's top-left corner at (0, 0) and its bottom-right at (columns, rows), as in
``render``: ``{"points": [[x, y], …]}`` with

- ``arrow``: [tail, head]; ``text``: [anchor] (the text is required);
- ``length``: [start, end]; ``angle``: [a, vertex, c] (the angle at the vertex);
- ``ellipse``: [[x0, y0], [x1, y1]], the corners of its bounding box (kept as min/max corners).

Measurements come from the de-identified dataset through ``render`` (length_mm, angle_deg,
roi_stats), never from the client: every viewer, the API and the panel see the same figures.
"""

from __future__ import annotations

import math

KINDS = ("arrow", "text", "length", "angle", "ellipse")
KIND_LABELS = {"arrow": "Arrow", "text": "Text", "length": "Length", "angle": "Angle", "ellipse": "Ellipse ROI"}
POINTS = {"arrow": 2, "text": 1, "length": 2, "angle": 3, "ellipse": 2}
TEXT_MAX = 500


class GeometryError(ValueError):
    """The annotation (kind, frame, geometry or text) is not acceptable; the message says why."""


def validate(kind: object, geometry: object, text: object, *, columns: int, rows: int,
             frame: object = 1, frames: int = 1) -> tuple[str, dict, str, int]:
    """(kind, geometry, text, frame index from 0) cleaned up, or GeometryError.

    ``frame`` is the frame *number* as the API and the viewer's address give it (1 to ``frames``, as
    DICOM numbers frames); the returned index starts at 0, as stored and as ``render`` takes it."""
    if kind not in KINDS:
        raise GeometryError(f"kind must be one of: {', '.join(KINDS)}.")
    if frame is None:
        frame = 1
    if isinstance(frame, bool) or not isinstance(frame, int) or not 1 <= frame <= frames:
        raise GeometryError(f"frame must be a frame number from 1 to {frames}.")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise GeometryError("text must be a string.")
    text = text.replace("\r\n", "\n").strip()
    if len(text) > TEXT_MAX:
        raise GeometryError(f"text is at most {TEXT_MAX} characters.")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise GeometryError("text must not hold control characters.")
    if kind == "text" and not text:
        raise GeometryError("A text annotation needs its text.")
    if not isinstance(geometry, dict):
        raise GeometryError("geometry must be an object with points.")
    raw = geometry.get("points")
    want = POINTS[kind]
    if not isinstance(raw, list) or len(raw) != want:
        raise GeometryError(f"A {KIND_LABELS[kind].lower()} takes {want} point{'s' if want > 1 else ''}.")
    points = []
    for p in raw:
        if not (isinstance(p, list) and len(p) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
            raise GeometryError("Each point is [x, y] in pixels of the frame.")
        x, y = float(p[0]), float(p[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise GeometryError("Coordinates must be finite numbers.")
        if not (0 <= x <= columns and 0 <= y <= rows):
            raise GeometryError(f"Every point must lie on the image (0–{columns} × 0–{rows} pixels).")
        points.append([round(x, 2), round(y, 2)])
    if kind in ("arrow", "length") and points[0] == points[1]:
        raise GeometryError(f"A {kind} needs two different points.")
    if kind == "angle" and (points[1] == points[0] or points[1] == points[2]):
        raise GeometryError("An angle needs its two ends apart from its vertex.")
    if kind == "ellipse":
        (x0, y0), (x1, y1) = points
        if abs(x1 - x0) < 0.5 or abs(y1 - y0) < 0.5:
            raise GeometryError("An ellipse needs a width and a height of at least half a pixel.")
        points = [[min(x0, x1), min(y0, y1)], [max(x0, x1), max(y0, y1)]]
    return kind, {"points": points}, text, frame - 1


def ellipse_of(geometry: dict) -> tuple[float, float, float, float]:
    """(cx, cy, rx, ry) of an ellipse's bounding box."""
    (x0, y0), (x1, y1) = geometry["points"]
    return (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2


def _num(value: float) -> str:
    """Three significant figures (at least one decimal below 100), no trailing zeros."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    digits = max(1 if abs(value) < 100 else 0, 2 - int(math.floor(math.log10(abs(value)))))
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def measure(kind: str, geometry: dict, ds, frame: int = 0) -> dict:
    """The measurement of a validated annotation on frame ``frame`` (from 0) of dataset ``ds``:
    ``{"mm", "pixels", "source", "note", "label"}`` for a length, ``{"degrees", "label"}`` for an
    angle, ``{"mean", "sd", "min", "max", "count", "area_mm2", "unit", "label"}`` for an ellipse, ``{}``
    for arrows and text. GeometryError when the pixels cannot be measured (empty ellipse)."""
    from plugins.dicom_viewer import render

    pts = [tuple(p) for p in geometry["points"]]
    if kind == "length":
        length = render.length_mm(ds, pts[0], pts[1], frame)
        out = {"mm": round(length.mm, 3) if length.mm is not None else None, "pixels": round(length.pixels, 2),
               "source": length.source, "note": length.note}
        out["label"] = f"{_num(length.mm)} mm" if length.mm is not None else f"{_num(length.pixels)} px"
        return out
    if kind == "angle":
        spacing = render.pixel_spacing(ds, frame)
        degrees = render.angle_deg(pts[0], pts[1], pts[2], spacing[0] if spacing else None)
        return {"degrees": round(degrees, 2), "label": f"{degrees:.1f}°"}
    if kind == "ellipse":
        try:
            stats = render.roi_stats(ds, frame, ellipse_of(geometry))
        except render.UnsupportedPixelData as exc:
            # a colour image (or undecodable pixels): the outline is kept, without statistics
            return {"note": f"no statistics: {exc}", "label": "no statistics (colour image)"}
        except ValueError as exc:
            raise GeometryError(f"The ellipse holds no whole pixel: {exc}.") from None
        unit = stats["unit"]
        suffix = f" {unit}" if unit else ""
        out = {"mean": round(stats["mean"], 3), "sd": round(stats["std"], 3), "min": stats["min"], "max": stats["max"],
               "count": stats["count"], "area_mm2": round(stats["area_mm2"], 3) if stats["area_mm2"] is not None else None,
               "unit": unit}
        label = f"mean {_num(stats['mean'])}{suffix} · SD {_num(stats['std'])}{suffix}"
        label += f" · {_num(stats['area_mm2'])} mm²" if stats["area_mm2"] is not None else f" · {stats['count']} px"
        out["label"] = label
        return out
    return {}
