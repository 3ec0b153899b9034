"""What the SVG and the PNG renderers share: the page geometry, the symbol rules of the nomenclature
(Bennett et al. 2008; NSGC 2022) and the text under each symbol, so the two drawings cannot drift apart.

Every coordinate is in pixels of the SVG (one layout unit is ``SCALE`` pixels); a symbol's marks are
relative to its centre. The PNG renderer multiplies them by its own zoom.
"""

from __future__ import annotations

from dataclasses import dataclass

from plugins.pedigree.layout import HALF, Layout
from plugins.pedigree.model import Individual, Pedigree

SCALE = 36.0  # pixels per layout unit (a symbol is one unit wide)
H = SCALE * HALF  # half a symbol, in pixels
LEFT = 70.0  # room for the generation numerals and a proband arrow
TOP = 30.0
LABEL_ROOM = 70.0  # under the bottom row: labels
FONT = 11
LINE_H = 12
LEGEND_ROW = 20
PRIVACY = ("full", "minimal")
# fill of each condition's segment: (kind, default colour); kinds beyond solid keep black-and-white prints readable
PATTERNS = [("solid", "#000"), ("hatch", "#000"), ("solid", "#888"), ("cross", "#000"), ("dots", "#000"),
            ("lines", "#000"), ("solid", "#1f5fa8"), ("hatch", "#b2361c")]
ASSIGNED = {"male": "AMAB", "female": "AFAB", "unknown": "UAAB"}  # sex assigned at birth, under the symbol (NSGC 2022)
SLASH = H * 1.35  # half the deceased slash, along each axis
BRACKET = (H * 1.3, H * 0.35)  # adoption brackets: half height (and distance from the centre), arm length
ARROW_TIP, ARROW_TAIL = H * 1.05, H * 2.3  # proband/consultand arrow, down and left of the symbol
CARRIER_DOT = H * 0.24
TRIANGLE = H * 0.7  # a miscarriage or termination is a small triangle


def shape_of(ind: Individual) -> str:
    """square / circle / diamond (or triangle for a miscarriage or termination): gender when recorded, else sex."""
    if ind.pregnancy in ("miscarriage", "termination"):
        return "triangle"
    gender = (ind.gender_identity or "").strip().lower()
    if gender:
        return {"man": "square", "male": "square", "woman": "circle", "female": "circle"}.get(gender, "diamond")
    return {"male": "square", "female": "circle"}.get(ind.sex, "diamond")


def polygon(shape: str) -> list[tuple[float, float]]:
    """The corners of a diamond or triangle (squares and circles are drawn natively by both renderers)."""
    if shape == "diamond":
        return [(0, -H), (H, 0), (0, H), (-H, 0)]
    t = TRIANGLE
    return [(0, -t), (t, t * 0.8), (-t, t * 0.8)]


def condition_rects(k: int) -> list[tuple[float, float, float, float]]:
    """The rectangle (x, y, w, h) each of ``k`` conditions shades, before clipping to the symbol."""
    s = 2 * H
    if k <= 1:
        return [(-H, -H, s, s)]
    if k == 2:
        return [(-H, -H, H, s), (0, -H, H, s)]
    if k <= 4:  # quadrants clockwise from the upper left
        return [(-H, -H, H, H), (0, -H, H, H), (0, 0, H, H), (-H, 0, H, H)][:k]
    w = s / k
    return [(-H + i * w, -H, w, s) for i in range(k)]


def fills_of(pedigree: Pedigree) -> list[tuple[str, str]]:
    """(pattern kind, colour) of each condition of the legend, in its order."""
    out = []
    for i, cond in enumerate(pedigree.conditions.values()):
        kind, colour = PATTERNS[(cond.pattern if cond.pattern is not None else i) % len(PATTERNS)]
        out.append((kind, cond.colour or colour))
    return out


def marks(ind: Individual, cond_index: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
    """(affected, carrier, presymptomatic) condition ids of the legend, in the person's order."""
    def having(status):
        return [c for c, s in ind.conditions.items() if s == status and c in cond_index]

    return having("affected"), having("carrier"), having("presymptomatic")


def slashed(ind: Individual) -> bool:
    return ind.deceased or ind.pregnancy in ("stillbirth", "termination")


def age_text(ind: Individual) -> list[str]:
    lines = []
    if ind.pregnancy == "stillbirth":
        lines.append("SB")
    if ind.deceased:
        lines.append(f"d. {ind.age} y" if ind.age is not None else "d.")
    elif ind.age is not None:
        lines.append(f"{ind.age} y")
    if ind.birth_year is not None and ind.death_year is not None:
        lines.append(f"{ind.birth_year}–{ind.death_year}")
    elif ind.birth_year is not None:
        lines.append(f"b. {ind.birth_year}")
    elif ind.death_year is not None:
        lines.append(f"d. {ind.death_year}")
    return lines


def text_lines(ind: Individual, label: str, full: bool) -> list[tuple[str, str]]:
    """(class, text) of each line under the symbol; ``full`` False leaves out ages, years, dates and notes."""
    lines = [("label", label)]
    if ind.gender_identity:
        lines.append(("assigned-sex", ASSIGNED.get(ind.sex, "UAAB")))
    if full:
        lines += [("age", text) for text in age_text(ind)]
    elif ind.pregnancy == "stillbirth":
        lines.append(("age", "SB"))
    for g in ind.genotypes:
        words = [g.gene, g.variant, g.zygosity, g.result] + ([g.date] if full and g.date else [])
        lines.append(("genotype", " ".join(w for w in words if w)))
    if full and ind.note:
        lines.append(("note", ind.note))
    return lines


def first_line_y(ind: Individual) -> float:
    """Baseline of the first text line, below the symbol (and below an infertility mark)."""
    return H + (0.8 * SCALE if (ind.infertility or ind.no_children_by_choice) else 0) + LINE_H + 1


@dataclass
class Frame:
    """The page: layout units to pixels, and the drawing's size (the legend below the bottom row)."""

    width: float
    height: float
    body_bottom: float  # the legend starts here

    @staticmethod
    def px(x: float) -> float:
        return LEFT + x * SCALE

    @staticmethod
    def py(y: float) -> float:
        return TOP + H + y * SCALE


def legend_statuses(pedigree: Pedigree) -> list[str]:
    """The marks the legend explains besides the conditions: carrier and presymptomatic, when used."""
    used = {s for ind in pedigree.individuals.values() for s in ind.conditions.values()}
    return [s for s in ("carrier", "presymptomatic") if s in used]


def frame(pedigree: Pedigree, lay: Layout) -> Frame:
    rows = len(pedigree.conditions) + len(legend_statuses(pedigree))
    body_bottom = Frame.py(lay.height) + LABEL_ROOM
    return Frame(Frame.px(lay.width) + 90, body_bottom + rows * LEGEND_ROW + 10, body_bottom)
