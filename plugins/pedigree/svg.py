"""SVG rendering in the standardized human pedigree nomenclature (Bennett et al. 2008; NSGC 2022 update).

A plain string, no library. Every individual is one ``<g class="individual …" data-id data-label>``
with a ``<title>``, so tests (and screen readers) can read the drawing's structure. Two privacy
levels: ``"full"`` shows ages, years, result dates and notes; ``"minimal"`` shows none of them.
"""

from __future__ import annotations

from html import escape

from plugins.pedigree.layout import Layout, layout as make_layout
from plugins.pedigree.model import Individual, Pedigree, assign_labels, roman
from plugins.pedigree.symbols import (  # noqa: F401  (PATTERNS: imported from here by the views)
    ARROW_TAIL, ARROW_TIP, ASSIGNED, BRACKET, CARRIER_DOT, FONT, H, LEFT, LEGEND_ROW, LINE_H, PATTERNS, PRIVACY,
    SLASH, age_text, condition_rects, fills_of, first_line_y, frame, legend_statuses, marks, polygon, shape_of,
    slashed, text_lines,
)


def _a(value) -> str:
    return escape(str(value), quote=True)


def _n(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _shape(shape: str, cls: str = "symbol", extra: str = "") -> str:
    if shape == "square":
        return f'<rect class="{cls} square" x="{_n(-H)}" y="{_n(-H)}" width="{_n(2 * H)}" height="{_n(2 * H)}"{extra}/>'
    if shape == "circle":
        return f'<circle class="{cls} circle" cx="0" cy="0" r="{_n(H)}"{extra}/>'
    points = " ".join(f"{_n(x)},{_n(y)}" for x, y in polygon(shape))
    return f'<polygon class="{cls} {shape}" points="{points}"{extra}/>'


def _defs(prefix: str, fills: list[tuple[str, str]]) -> str:
    out = ["<defs>"]
    for shape in ("square", "circle", "diamond", "triangle"):
        out.append(f'<clipPath id="{prefix}-clip-{shape}">{_shape(shape, "clip")}</clipPath>')
    for i, (kind, colour) in enumerate(fills):
        if kind == "solid":
            continue
        c = _a(colour)
        body = {
            "hatch": f'<path d="M-1,1 l2,-2 M0,6 l6,-6 M5,7 l2,-2" stroke="{c}" stroke-width="1.2"/>',
            "cross": f'<path d="M0,6 l6,-6 M0,0 l6,6" stroke="{c}" stroke-width="1"/>',
            "dots": f'<circle cx="3" cy="3" r="1.3" fill="{c}"/>',
            "lines": f'<path d="M0,3 h6" stroke="{c}" stroke-width="1.3"/>',
        }[kind]
        out.append(f'<pattern id="{prefix}-pat-{i}" patternUnits="userSpaceOnUse" width="6" height="6">'
                   f'<rect width="6" height="6" fill="#fff"/>{body}</pattern>')
    out.append("</defs>")
    return "".join(out)


def _fill(prefix: str, fills, i: int) -> str:
    kind, colour = fills[i]
    return _a(colour) if kind == "solid" else f"url(#{prefix}-pat-{i})"


def render_svg(pedigree: Pedigree, lay: Layout | None = None, *, privacy: str = "full",
               labels: dict[str, str] | None = None, id_prefix: str = "ped", title: str = "Pedigree") -> str:
    if privacy not in PRIVACY:
        raise ValueError(f"privacy must be one of {', '.join(PRIVACY)}")
    lay = lay or make_layout(pedigree)
    labels = labels or assign_labels(lay)
    full = privacy == "full"
    prefix = "".join(ch for ch in id_prefix if ch.isalnum() or ch in "-_") or "ped"
    conditions = list(pedigree.conditions.values())
    fills = fills_of(pedigree)
    cond_index = {c.id: i for i, c in enumerate(conditions)}
    segs = condition_rects(len(conditions))
    page = frame(pedigree, lay)
    px, py, width, height = page.px, page.py, page.width, page.height
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="pedigree" role="img" aria-labelledby="{prefix}-title" '
           f'width="{_n(width)}" height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" '
           f'font-family="sans-serif" font-size="{FONT}" data-privacy="{privacy}">',
           f'<title id="{prefix}-title">{_a(title)}</title>', _defs(prefix, fills),
           '<g class="lines" stroke="#000" stroke-width="1.5" fill="none">']
    for s in lay.segments:
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        out.append(f'<line class="line {s.kind}" data-ref="{_a(s.ref)}" x1="{_n(px(s.x1))}" y1="{_n(py(s.y1))}" '
                   f'x2="{_n(px(s.x2))}" y2="{_n(py(s.y2))}"{dash}/>')
    out.append("</g>")
    out.append('<g class="generations">')
    for gen, row in lay.rows.items():
        if row:
            out.append(f'<text class="generation" data-generation="{roman(gen + 1)}" x="12" '
                       f'y="{_n(py(lay.y[row[0]]) + 4)}" font-weight="bold">{roman(gen + 1)}</text>')
    out.append("</g>")
    for pid, ind in pedigree.individuals.items():
        out.append(_individual(ind, labels.get(pid, ""), px(lay.x[pid]), py(lay.y[pid]), full, prefix,
                               fills, cond_index, segs, pedigree))
    out.append(_legend(conditions, fills, prefix, legend_statuses(pedigree), page.body_bottom))
    out.append("</svg>")
    return "\n".join(out)


def _individual(ind: Individual, label: str, cx: float, cy: float, full: bool, prefix: str, fills,
                cond_index, segs, pedigree: Pedigree) -> str:
    shape = shape_of(ind)
    statuses = {s for s in ind.conditions.values()}
    classes = ["individual", {"square": "male", "circle": "female"}.get(shape, "unknown")]
    classes += [s for s in ("affected", "carrier", "presymptomatic") if s in statuses]
    flags = [("deceased", ind.deceased or ind.pregnancy in ("stillbirth",)), ("proband", ind.proband),
             ("consultand", ind.consultand), ("tested", ind.tested), ("infertility", ind.infertility),
             ("no-children", ind.no_children_by_choice)]
    classes += [name for name, on in flags if on]
    if ind.adopted:
        classes.append(f"adopted-{ind.adopted}")
    if ind.pregnancy:
        classes.append(ind.pregnancy)
    affected, carriers, presym = marks(ind, cond_index)
    attrs = (f'class="{" ".join(classes)}" data-id="{_a(ind.id)}" data-label="{_a(label)}" data-shape="{shape}" '
             f'transform="translate({_n(cx)},{_n(cy)})"')
    if affected:
        attrs += f' data-affected="{_a(" ".join(affected))}"'
    out = [f"<g {attrs}>", f"<title>{_a(_describe(ind, label, shape, full, pedigree))}</title>",
           _shape(shape, extra=' fill="#fff" stroke="none"')]
    clip = f"url(#{prefix}-clip-{shape})"
    for cid in affected:
        i = cond_index[cid]
        x, y, w, h = segs[i]
        out.append(f'<rect class="shade" data-condition="{_a(cid)}" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" '
                   f'height="{_n(h)}" fill="{_fill(prefix, fills, i)}" clip-path="{clip}"/>')
    out.append(_shape(shape, extra=' fill="none" stroke="#000" stroke-width="1.5"'))
    if carriers:  # a dot in the centre, white-ringed so it shows on shading (NSGC 2022: any inheritance)
        out.append(f'<circle class="carrier-dot" data-condition="{_a(" ".join(carriers))}" cx="0" cy="0" '
                   f'r="{_n(CARRIER_DOT)}" fill="#000" stroke="#fff" stroke-width="1"/>')
    if presym:
        out.append(f'<line class="presymptomatic" data-condition="{_a(" ".join(presym))}" x1="0" y1="{_n(-H)}" '
                   f'x2="0" y2="{_n(H)}" stroke="#000" stroke-width="2"/>')
    if ind.pregnancy == "pregnancy":
        out.append(f'<text class="pregnancy-p" x="0" y="4" text-anchor="middle" font-weight="bold">P</text>')
    if slashed(ind):
        r = SLASH
        out.append(f'<line class="deceased-slash" x1="{_n(-r)}" y1="{_n(r)}" x2="{_n(r)}" y2="{_n(-r)}" '
                   f'stroke="#000" stroke-width="1.5"/>')
    if ind.adopted:
        r, t = BRACKET
        for sign in (-1, 1):
            out.append(f'<path class="adoption-bracket" d="M{_n(sign * (r - t))},{_n(-r)} h{_n(sign * t)} '
                       f'v{_n(2 * r)} h{_n(-sign * t)}" fill="none" stroke="#000" stroke-width="1.5"/>')
    if ind.proband or ind.consultand:
        kind = "proband-arrow" if ind.proband else "consultand-arrow"
        tip, tail = ARROW_TIP, ARROW_TAIL
        out.append(f'<line class="{kind}" x1="{_n(-tail)}" y1="{_n(tail)}" x2="{_n(-tip - 4)}" y2="{_n(tip + 4)}" '
                   f'stroke="#000" stroke-width="1.5"/>')
        out.append(f'<polygon class="{kind} arrowhead" points="{_n(-tip)},{_n(tip)} {_n(-tip - 8)},{_n(tip + 3)} '
                   f'{_n(-tip - 3)},{_n(tip + 8)}" fill="#000"/>')
        if ind.proband:
            out.append(f'<text class="proband-p" x="{_n(-tail - 9)}" y="{_n(tail + 4)}" font-weight="bold">P</text>')
    if ind.tested:
        out.append(f'<text class="tested-mark" x="{_n(H + 2)}" y="{_n(H + 2)}">*</text>')
    y = first_line_y(ind)
    for cls, text in text_lines(ind, label, full):
        out.append(f'<text class="{cls}" x="0" y="{_n(y)}" text-anchor="middle">{_a(text)}</text>')
        y += LINE_H
    out.append("</g>")
    return "".join(out)


def _describe(ind: Individual, label: str, shape: str, full: bool, pedigree: Pedigree) -> str:
    words = [label or ind.id + ":"] if not label else [label + ":"]
    words.append({"square": "male", "circle": "female", "diamond": "sex unknown",
                  "triangle": ind.pregnancy or "pregnancy loss"}[shape] if not ind.gender_identity
                 else f"{ind.gender_identity}, {ASSIGNED.get(ind.sex, 'UAAB')}")
    parts = []
    for cid, status in ind.conditions.items():
        if status in ("affected", "carrier", "presymptomatic"):
            cond = pedigree.conditions.get(cid)
            parts.append(f"{status} ({cond.label if cond else cid})")
    if ind.deceased:
        parts.append("deceased")
    for flag in ("proband", "consultand"):
        if getattr(ind, flag):
            parts.append(flag)
    if ind.adopted:
        parts.append(f"adopted {ind.adopted}")
    if ind.pregnancy == "pregnancy":
        parts.append("pregnancy")
    if ind.infertility:
        parts.append("infertility")
    if ind.no_children_by_choice:
        parts.append("no children by choice")
    if ind.tested:
        parts.append("evaluated")
    if full:
        parts += age_text(ind)
    return " ".join(words) + (", " + ", ".join(parts) if parts else "")


def _legend(conditions, fills, prefix: str, statuses: list[str], top: float) -> str:
    out = ['<g class="legend">']
    y = top
    for i, cond in enumerate(conditions):
        code = f" ({cond.system}:{cond.code})" if cond.system and cond.code else ""
        out.append(f'<g class="legend-item" data-condition="{_a(cond.id)}" transform="translate({_n(LEFT)},{_n(y)})">'
                   f'<rect x="{_n(-H / 2)}" y="-7" width="14" height="14" fill="{_fill(prefix, fills, i)}" '
                   f'stroke="#000"/><text x="16" y="4">{_a(cond.label + code)}</text></g>')
        y += LEGEND_ROW
    for status, mark in (("carrier", '<circle cx="-2" cy="0" r="4" fill="#000"/>'),
                         ("presymptomatic", '<line x1="-2" y1="-7" x2="-2" y2="7" stroke="#000" stroke-width="2"/>')):
        if status in statuses:
            out.append(f'<g class="legend-item" data-status="{status}" transform="translate({_n(LEFT)},{_n(y)})">'
                       f'{mark}<text x="16" y="4">{status}</text></g>')
            y += LEGEND_ROW
    out.append("</g>")
    return "".join(out)
