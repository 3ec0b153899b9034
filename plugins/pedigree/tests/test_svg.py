"""The SVG, parsed with xml.etree: symbols, shading, marks, lines, labels, privacy, escaping."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from plugins.pedigree.layout import Segment, _cross
from plugins.pedigree.model import Genotype, Pedigree
from plugins.pedigree.svg import H, render_svg
from plugins.pedigree.tests.families import ALL, autosomal_dominant, recessive_first_cousins, twins, x_linked

NS = {"s": "http://www.w3.org/2000/svg"}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def people(root) -> dict[str, ET.Element]:
    return {g.get("data-id"): g for g in root.iter("{http://www.w3.org/2000/svg}g")
            if "individual" in (g.get("class") or "").split()}


def classes(el) -> set[str]:
    return set((el.get("class") or "").split())


def centre(g) -> tuple[float, float]:
    x, y = re.match(r"translate\(([-\d.]+),([-\d.]+)\)", g.get("transform")).groups()
    return float(x), float(y)


def find(el, cls: str) -> list[ET.Element]:
    return [e for e in el.iter() if cls in classes(e)]


def lines(root, kind: str) -> list[ET.Element]:
    return [e for e in root.iter("{http://www.w3.org/2000/svg}line") if kind in classes(e) and "line" in classes(e)]


def symbol_tag(g) -> str:
    shapes = [e for e in g if "symbol" in classes(e)]
    assert shapes, g.get("data-id")
    return shapes[0].tag.split("}")[1] + ":" + g.get("data-shape")


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_family_renders_valid_svg_with_one_symbol_each(name):
    ped = ALL[name]()
    root = parse(render_svg(ped))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    found = people(root)
    assert set(found) == set(ped.individuals)
    for pid, g in found.items():
        assert g.find("s:title", NS) is not None and g.find("s:title", NS).text
        assert re.fullmatch(r"[IVX]+-\d+", g.get("data-label"))
    boxes = [centre(g) for g in found.values()]
    for i, (x1, y1) in enumerate(boxes):  # no two symbols (2H wide, plus the line width) overlap
        for x2, y2 in boxes[i + 1:]:
            assert abs(x1 - x2) >= 2 * H + 2 or abs(y1 - y2) >= 2 * H + 2
    segs = [Segment(e.get("class").split()[1], *(float(e.get(k)) for k in ("x1", "y1", "x2", "y2")), e.get("data-ref"))
            for e in root.iter("{http://www.w3.org/2000/svg}line") if "line" in classes(e)]
    crossing = [(s, t) for i, s in enumerate(segs) for t in segs[i + 1:]
                if s.kind in ("descent", "sibship", "child", "twin") and t.kind in ("descent", "sibship", "child", "twin",
                                                                                     "partnership", "consanguinity")
                and not (s.ref == t.ref and s.kind == t.kind) and _cross(s, t)]
    assert crossing == []


def test_autosomal_dominant_family():
    root = parse(render_svg(autosomal_dominant()))
    p = people(root)
    assert {pid: symbol_tag(g) for pid, g in p.items() if pid in ("gf", "gm", "c4")} == {
        "gf": "rect:square", "gm": "circle:circle", "c4": "rect:square"}
    affected = {pid for pid, g in p.items() if "affected" in classes(g)}
    assert affected == {"gf", "s1", "s3", "c1"}
    for pid in affected:
        shades = find(p[pid], "shade")
        assert [s.get("data-condition") for s in shades] == ["HD"]
    assert not find(p["gm"], "shade") and not find(p["c2"], "shade")
    assert [pid for pid, g in p.items() if find(g, "deceased-slash")] == ["gf"]
    assert find(p["c3"], "presymptomatic") and "presymptomatic" in classes(p["c3"])
    proband = [pid for pid, g in p.items() if find(g, "proband-arrow")]
    assert proband == ["c1"] and [t.text for t in find(p["c1"], "proband-p")] == ["P"]
    assert [pid for pid, g in p.items() if find(g, "consultand-arrow")] == ["c2"]
    assert find(p["s3"], "tested-mark")
    gens = {t.get("data-generation"): float(t.get("y")) for t in find(root, "generation")}
    assert sorted(gens) == ["I", "II", "III"]
    for pid, g in p.items():  # every symbol sits on its generation's numeral line
        numeral = g.get("data-label").split("-")[0]
        assert abs(centre(g)[1] + 4 - gens[numeral]) < 0.01
    assert p["gf"].get("data-label") == "I-1" and p["c1"].get("data-label") == "III-1"
    legend = find(root, "legend-item")
    assert [e.get("data-condition") for e in legend if e.get("data-condition")] == ["HD"]
    assert "Huntington disease (ORPHA:399)" in "".join(legend[0].itertext())


def test_recessive_first_cousins():
    root = parse(render_svg(recessive_first_cousins()))
    p = people(root)
    assert {pid for pid, g in p.items() if find(g, "carrier-dot")} == {"b1", "b2", "x", "y", "k2"}
    assert {pid for pid, g in p.items() if "affected" in classes(g)} == {"k1", "k3"}
    double = lines(root, "consanguinity")
    assert len(double) == 2 and {e.get("data-ref") for e in double} == {"x+y"}
    a, b = double
    assert a.get("x1") == b.get("x1") and a.get("x2") == b.get("x2") and a.get("y1") != b.get("y1")
    assert not [e for e in lines(root, "partnership") if e.get("data-ref") == "x+y"]
    ys = {pid: centre(g)[1] for pid, g in p.items()}
    assert ys["x"] == ys["y"] and ys["k1"] == ys["k2"] == ys["k3"] > ys["x"]


def test_x_linked_carrier_females():
    root = parse(render_svg(x_linked()))
    p = people(root)
    carriers = {pid for pid, g in p.items() if find(g, "carrier-dot")}
    assert carriers == {"mgm", "mother", "maunt", "sister"}
    assert all(symbol_tag(p[c]) == "circle:circle" for c in carriers)
    assert {pid for pid, g in p.items() if "affected" in classes(g)} == {"muncle", "proband"}
    assert find(p["muncle"], "deceased-slash") and find(p["muncle"], "shade")
    ys = {pid: centre(g)[1] for pid, g in p.items()}
    assert ys["pgf"] == ys["mgm"] < ys["father"] == ys["maunt"] < ys["proband"]
    assert {t.get("data-generation") for t in find(root, "generation")} == {"I", "II", "III"}


def test_twins():
    root = parse(render_svg(twins()))
    twin = lines(root, "twin")
    assert sorted(e.get("data-ref") for e in twin) == ["dz1", "dz2", "mz1", "mz2"]
    apex = {e.get("data-ref"): (e.get("x1"), e.get("y1")) for e in twin}
    assert apex["mz1"] == apex["mz2"] and apex["dz1"] == apex["dz2"]
    bars = lines(root, "mz-bar")
    assert len(bars) == 1 and bars[0].get("data-ref") == "mz1+mz2"
    assert not [e for e in lines(root, "child") if e.get("data-ref") in apex]


def test_several_conditions_get_segments_and_a_legend():
    p = Pedigree()
    p.condition("A", "Breast cancer")
    p.condition("B", "Ovarian cancer")
    p.condition("C", "Colon cancer", colour="#1f5fa8")
    p.person("x", "female", conditions={"A": "affected", "B": "affected", "C": "carrier"})
    p.person("y", "male", conditions={"C": "affected"})
    root = parse(render_svg(p))
    g = people(root)
    shades = find(g["x"], "shade")
    assert [s.get("data-condition") for s in shades] == ["A", "B"]
    assert len({(s.get("x"), s.get("y")) for s in shades}) == 2, "each condition its own quadrant"
    assert len({s.get("fill") for s in shades}) == 2
    assert all(s.get("clip-path") == "url(#ped-clip-circle)" for s in shades)
    assert find(g["x"], "carrier-dot")[0].get("data-condition") == "C"
    assert [s.get("fill") for s in find(g["y"], "shade")] == ["#1f5fa8"]
    legend = [e for e in find(root, "legend-item") if e.get("data-condition")]
    assert [e.get("data-condition") for e in legend] == ["A", "B", "C"]
    assert ["".join(e.itertext()) for e in legend] == ["Breast cancer", "Ovarian cancer", "Colon cancer"]
    pattern_ids = {e.get("id") for e in root.iter("{http://www.w3.org/2000/svg}pattern")}
    assert shades[1].get("fill") == "url(#ped-pat-1)" and "ped-pat-1" in pattern_ids


def test_special_symbols():
    p = Pedigree()
    p.person("f", "male", infertility=True)
    p.person("m", "female", no_children_by_choice=True)
    p.person("preg", "unknown", pregnancy="pregnancy")
    p.person("sab", "unknown", pregnancy="miscarriage")
    p.person("top", "female", pregnancy="termination")
    p.person("sb", "male", pregnancy="stillbirth")
    p.person("adopted", "female", adopted="in")
    p.person("nb", "female", gender_identity="non-binary")
    p.person("tw", "female", gender_identity="man")
    p.partner("f", "m")
    root = parse(render_svg(p))
    g = people(root)
    assert symbol_tag(g["preg"]) == "polygon:diamond" and [t.text for t in find(g["preg"], "pregnancy-p")] == ["P"]
    assert symbol_tag(g["sab"]) == "polygon:triangle" and not find(g["sab"], "deceased-slash")
    assert symbol_tag(g["top"]) == "polygon:triangle" and find(g["top"], "deceased-slash")
    assert symbol_tag(g["sb"]) == "rect:square" and find(g["sb"], "deceased-slash")
    assert "SB" in [t.text for t in find(g["sb"], "age")]
    assert len(find(g["adopted"], "adoption-bracket")) == 2
    assert symbol_tag(g["nb"]) == "polygon:diamond" and [t.text for t in find(g["nb"], "assigned-sex")] == ["AFAB"]
    assert symbol_tag(g["tw"]) == "rect:square" and [t.text for t in find(g["tw"], "assigned-sex")] == ["AFAB"]
    assert len([e for e in lines(root, "infertility") if e.get("data-ref") == "f"]) == 3  # stem and two bars
    assert len([e for e in lines(root, "no-children") if e.get("data-ref") == "m"]) == 2  # stem and one bar


def test_adopted_in_child_has_a_dashed_line_of_descent():
    ped = autosomal_dominant()
    ped.individuals["c4"].adopted = "in"
    root = parse(render_svg(ped))
    child = {e.get("data-ref"): e for e in lines(root, "child")}
    assert child["c4"].get("stroke-dasharray") and not child["c1"].get("stroke-dasharray")


def test_privacy_levels():
    ped = autosomal_dominant()
    ped.individuals["s1"].note = "lives abroad"
    ped.individuals["s1"].age = 68
    ped.individuals["s3"].genotypes.append(Genotype("HTT", "NM_002111.8:c.52CAG[42]", "heterozygous", "pathogenic", "2019-03-02"))
    full, minimal = render_svg(ped), render_svg(ped, privacy="minimal")
    rf, rm = parse(full), parse(minimal)
    assert rf.get("data-privacy") == "full" and rm.get("data-privacy") == "minimal"
    assert "b. 1955" in full and "68 y" in full and "lives abroad" in full and "2019-03-02" in full
    for secret in ("1955", "1930", "68 y", "lives abroad", "2019-03-02"):
        assert secret not in minimal
    assert not find(rm, "age") and not find(rm, "note")
    assert "HTT NM_002111.8:c.52CAG[42] heterozygous pathogenic" in minimal  # the result stays, its date goes
    assert len(people(rm)) == len(people(rf))
    with pytest.raises(ValueError):
        render_svg(ped, privacy="everything")


def test_text_is_escaped():
    ped = autosomal_dominant()
    ped.individuals["s1"].note = '<script>alert("x")</script> & co'
    ped.conditions["HD"].label = "H<D> & \"quoted\""
    svg = render_svg(ped, title="Family <1>")
    root = parse(svg)
    assert not list(root.iter("script")) and not list(root.iter("{http://www.w3.org/2000/svg}script"))
    assert '<script>' not in svg
    notes = [t.text for t in find(root, "note")]
    assert notes == ['<script>alert("x")</script> & co']
    assert root.find("s:title", NS).text == "Family <1>"
