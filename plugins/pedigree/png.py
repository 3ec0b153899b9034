"""PNG rendering: the SVG's drawing painted with Pillow (no SVG rasteriser with a licence CPMS can
ship is installed; Pillow comes with fpdf2). Same layout, same symbol rules and text (``symbols``),
same privacy levels; drawn at ``ZOOM`` times the SVG's pixel size so text stays sharp when printed.
"""

from __future__ import annotations

import io
import math
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageChops, ImageColor, ImageDraw, ImageFont

from plugins.pedigree.layout import Layout, layout as make_layout
from plugins.pedigree.model import Individual, Pedigree, assign_labels, roman
from plugins.pedigree.symbols import (
    ARROW_TAIL, ARROW_TIP, BRACKET, CARRIER_DOT, FONT, H, LEFT, LEGEND_ROW, LINE_H, PRIVACY, SLASH, condition_rects,
    fills_of, first_line_y, frame, legend_statuses, marks, polygon, shape_of, slashed, text_lines,
)

ZOOM = 2.0
STROKE = 1.5  # line width in SVG pixels, as in the SVG
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
BLACK, WHITE = (0, 0, 0), (255, 255, 255)


@lru_cache(maxsize=8)
def _font(size: int, bold: bool = False):
    """DejaVu Sans when installed (wide Unicode coverage), else Pillow's own default font."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return ImageFont.truetype(str(folder / name), size)
    return ImageFont.load_default(size)


def _rgb(colour: str) -> tuple[int, int, int]:
    try:
        return ImageColor.getrgb(colour)[:3]
    except ValueError:  # a colour CSS knows and Pillow does not: black keeps the shading visible
        return BLACK


def _tile(kind: str, colour: tuple[int, int, int], size: tuple[int, int]) -> Image.Image:
    """A fill of ``size`` in the pattern of the SVG's <pattern> (a 6-pixel cell, scaled)."""
    img = Image.new("RGB", size, WHITE if kind != "solid" else colour)
    if kind == "solid":
        return img
    d = ImageDraw.Draw(img)
    cell = 6 * ZOOM
    w, h = size
    lw = max(1, round(1.2 * ZOOM))
    for i in range(-int(h / cell) - 2, int((w + h) / cell) + 2):
        x0 = i * cell
        if kind in ("hatch", "cross"):
            d.line([(x0, h), (x0 + h, 0)], fill=colour, width=lw)  # "/" diagonals
        if kind == "cross":
            d.line([(x0, 0), (x0 + h, h)], fill=colour, width=lw)
    if kind in ("dots", "lines"):
        for row in range(int(h / cell) + 1):
            cy = row * cell + cell / 2
            if kind == "lines":
                d.line([(0, cy), (w, cy)], fill=colour, width=lw)
                continue
            for col in range(int(w / cell) + 1):
                cx = col * cell + cell / 2
                r = 1.3 * ZOOM
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    return img


def render_png(pedigree: Pedigree, lay: Layout | None = None, *, privacy: str = "full",
               labels: dict[str, str] | None = None) -> bytes:
    if privacy not in PRIVACY:
        raise ValueError(f"privacy must be one of {', '.join(PRIVACY)}")
    lay = lay or make_layout(pedigree)
    labels = labels or assign_labels(lay)
    page = frame(pedigree, lay)
    z = ZOOM
    img = Image.new("RGB", (math.ceil(page.width * z), math.ceil(page.height * z)), WHITE)
    d = ImageDraw.Draw(img)
    lw = max(1, round(STROKE * z))
    font, bold = _font(round(FONT * z)), _font(round(FONT * z), bold=True)

    for s in lay.segments:
        a = (page.px(s.x1) * z, page.py(s.y1) * z)
        b = (page.px(s.x2) * z, page.py(s.y2) * z)
        if s.dashed:
            _dashed(d, a, b, 4 * z, 3 * z, lw)
        else:
            d.line([a, b], fill=BLACK, width=lw)
    for gen, row in lay.rows.items():
        if row:
            d.text((12 * z, (page.py(lay.y[row[0]]) + 4) * z), roman(gen + 1), font=bold, fill=BLACK, anchor="ls")

    conditions = list(pedigree.conditions.values())
    cond_index = {c.id: i for i, c in enumerate(conditions)}
    fills = [(kind, _rgb(colour)) for kind, colour in fills_of(pedigree)]
    rects = condition_rects(len(conditions))
    full = privacy == "full"
    for pid, ind in pedigree.individuals.items():
        _individual(img, d, ind, labels.get(pid, ""), page.px(lay.x[pid]) * z, page.py(lay.y[pid]) * z, full,
                    fills, cond_index, rects, font, bold, lw)

    y = page.body_bottom
    for i, cond in enumerate(conditions):
        code = f" ({cond.system}:{cond.code})" if cond.system and cond.code else ""
        box = [(LEFT - H / 2) * z, (y - 7) * z, (LEFT - H / 2 + 14) * z, (y + 7) * z]
        size = (max(1, round(box[2] - box[0])), max(1, round(box[3] - box[1])))
        img.paste(_tile(*fills[i], size), (round(box[0]), round(box[1])))
        d.rectangle(box, outline=BLACK, width=max(1, round(z)))
        d.text(((LEFT + 16) * z, (y + 4) * z), cond.label + code, font=font, fill=BLACK, anchor="ls")
        y += LEGEND_ROW
    for status in legend_statuses(pedigree):
        cx, cy = (LEFT - 2) * z, y * z
        if status == "carrier":
            d.ellipse([cx - 4 * z, cy - 4 * z, cx + 4 * z, cy + 4 * z], fill=BLACK)
        else:
            d.line([(cx, cy - 7 * z), (cx, cy + 7 * z)], fill=BLACK, width=round(2 * z))
        d.text(((LEFT + 16) * z, (y + 4) * z), status, font=font, fill=BLACK, anchor="ls")
        y += LEGEND_ROW

    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _dashed(d: ImageDraw.ImageDraw, a, b, on: float, off: float, width: int) -> None:
    length = math.dist(a, b)
    if length == 0:
        return
    ux, uy = (b[0] - a[0]) / length, (b[1] - a[1]) / length
    t = 0.0
    while t < length:
        e = min(t + on, length)
        d.line([(a[0] + ux * t, a[1] + uy * t), (a[0] + ux * e, a[1] + uy * e)], fill=BLACK, width=width)
        t = e + off


def _mask(shape: str, size: int) -> Image.Image:
    """The symbol's area (white on black), ``size`` pixels square, centred: the shading's clip."""
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    c, r = size / 2, H * ZOOM
    if shape == "square":
        d.rectangle([c - r, c - r, c + r, c + r], fill=255)
    elif shape == "circle":
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
    else:
        d.polygon([(c + x * ZOOM, c + y * ZOOM) for x, y in polygon(shape)], fill=255)
    return m


def _outline(d: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, lw: int, fill=None) -> None:
    r = H * ZOOM
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "square":
        d.rectangle(box, outline=BLACK, width=lw, fill=fill)
    elif shape == "circle":
        d.ellipse(box, outline=BLACK, width=lw, fill=fill)
    else:
        d.polygon([(cx + x * ZOOM, cy + y * ZOOM) for x, y in polygon(shape)], outline=BLACK, width=lw, fill=fill)


def _individual(img, d, ind: Individual, label: str, cx: float, cy: float, full: bool, fills, cond_index, rects,
                font, bold, lw: int) -> None:
    z = ZOOM
    shape = shape_of(ind)
    affected, carriers, presym = marks(ind, cond_index)
    _outline(d, shape, cx, cy, lw, fill=WHITE)
    if affected:
        size = math.ceil(2 * H * z) + 2
        clip = _mask(shape, size)
        ox, oy = round(cx - size / 2), round(cy - size / 2)
        for cid in affected:
            i = cond_index[cid]
            x, y, w, h = rects[i]
            part = Image.new("L", (size, size), 0)
            ImageDraw.Draw(part).rectangle([size / 2 + x * z, size / 2 + y * z, size / 2 + (x + w) * z,
                                            size / 2 + (y + h) * z], fill=255)
            img.paste(_tile(*fills[i], (size, size)), (ox, oy), ImageChops.multiply(clip, part))
        _outline(d, shape, cx, cy, lw)
    if carriers:  # white-ringed, so it shows on shading
        r = CARRIER_DOT * z
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=BLACK, outline=WHITE, width=max(1, round(z)))
    if presym:
        d.line([(cx, cy - H * z), (cx, cy + H * z)], fill=BLACK, width=round(2 * z))
    if ind.pregnancy == "pregnancy":
        d.text((cx, cy + 4 * z), "P", font=bold, fill=BLACK, anchor="ms")
    if slashed(ind):
        r = SLASH * z
        d.line([(cx - r, cy + r), (cx + r, cy - r)], fill=BLACK, width=lw)
    if ind.adopted:
        r, t = BRACKET[0] * z, BRACKET[1] * z
        for sign in (-1, 1):
            x_in, x_out = cx + sign * (r - t), cx + sign * r
            d.line([(x_in, cy - r), (x_out, cy - r), (x_out, cy + r), (x_in, cy + r)], fill=BLACK, width=lw,
                   joint="curve")
    if ind.proband or ind.consultand:
        tip, tail = ARROW_TIP * z, ARROW_TAIL * z
        d.line([(cx - tail, cy + tail), (cx - tip - 4 * z, cy + tip + 4 * z)], fill=BLACK, width=lw)
        d.polygon([(cx - tip, cy + tip), (cx - tip - 8 * z, cy + tip + 3 * z), (cx - tip - 3 * z, cy + tip + 8 * z)],
                  fill=BLACK)
        if ind.proband:
            d.text((cx - tail - 9 * z, cy + tail + 4 * z), "P", font=bold, fill=BLACK, anchor="ls")
    if ind.tested:
        d.text((cx + (H + 2) * z, cy + (H + 2) * z), "*", font=font, fill=BLACK, anchor="ls")
    y = first_line_y(ind)
    for _, text in text_lines(ind, label, full):
        d.text((cx, cy + y * z), text, font=font, fill=BLACK, anchor="ms")
        y += LINE_H
