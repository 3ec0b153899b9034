"""Pedigree layout and SVG rendering for generated families of 20, 100 and 500 individuals.

The families come from ``plugins.pedigree.synthetic.generate`` (fixed seed): several generations,
married-in partners (some with their own parents drawn), second partners with half-siblings,
twins and a first-cousin marriage with children (a consanguineous loop). For each size it times
``layout`` alone, ``render_svg`` of a finished layout, and both together, round-robin over
``--runs`` repetitions, and prints p50/p95. As a reference measured in the same run it times the
floor: joining as many bare SVG elements as the drawing holds (its ``<line>``, ``<text>``,
``<rect>``… count) into one string, and prints the ratio of the whole job to that floor.
Pass/fail against the target of issue 9: layout + SVG p50 under 50 ms for 100 individuals.

Usage: .venv/bin/python benchmarks/pedigree_bench.py [--runs 200] [--seed 1] [--sizes 20 100 500]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plugins.pedigree.layout import crossings, layout  # noqa: E402
from plugins.pedigree.svg import render_svg  # noqa: E402
from plugins.pedigree.synthetic import generate  # noqa: E402

TARGET_P50_MS_100 = 50.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered))) - 1))]


def figures(ms: list[float]) -> dict:
    return {"n": len(ms), "p50": statistics.median(ms), "p95": percentile(ms, 95), "max": max(ms)}


def floor_job(n_elements: int):
    """The least any renderer must do: format and join ``n_elements`` elements with a few numbers each."""
    def run() -> str:
        return "\n".join(f'<line class="line" x1="{i:.2f}" y1="{i * 0.5:.2f}" x2="{i + 1:.2f}" y2="{i * 0.5:.2f}"/>'
                         for i in range(n_elements))
    return run


def measure(n: int, seed: int, runs: int) -> dict:
    ped = generate(n, seed)
    lay = layout(ped)
    svg = render_svg(ped, lay)
    n_elements = len(re.findall(r"<(?!/)[a-zA-Z]", svg))
    floor = floor_job(n_elements)
    jobs = {
        "layout": lambda: layout(ped),
        "svg": lambda: render_svg(ped, lay),
        "both": lambda: render_svg(ped, layout(ped)),
        "floor": floor,
    }
    for job in jobs.values():  # warm up
        job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(runs):
        for name, job in jobs.items():  # round-robin, so drifts of a shared machine hit all alike
            started = time.perf_counter()
            job()
            times[name].append((time.perf_counter() - started) * 1000)
    return {
        "n": len(ped.individuals), "generations": len(lay.rows), "partnerships": len(ped.partnerships),
        "loops": sum(1 for p in ped.partnerships if p.consanguineous), "elements": n_elements,
        "kb": len(svg.encode()) / 1024, "crossings": len(crossings(lay)) if n <= 200 else None,
        **{name: figures(ms) for name, ms in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500])
    args = parser.parse_args()
    results = [measure(n, args.seed, args.runs) for n in args.sizes]

    print(f"\n=== pedigree layout + SVG: generated families, seed {args.seed}, {args.runs} runs each ===")
    print(f"{'people':>6} {'gens':>4} {'loops':>5} {'elems':>6} {'KiB':>6} {'cross':>5} | "
          f"{'layout p50/p95':>15} {'svg p50/p95':>13} {'both p50/p95':>14} | {'floor p50':>9} {'ratio':>6}  (ms)")
    for r in results:
        cross = "-" if r["crossings"] is None else str(r["crossings"])
        print(f"{r['n']:>6} {r['generations']:>4} {r['loops']:>5} {r['elements']:>6} {r['kb']:>6.1f} {cross:>5} | "
              f"{r['layout']['p50']:>7.2f}/{r['layout']['p95']:<7.2f} {r['svg']['p50']:>6.2f}/{r['svg']['p95']:<6.2f} "
              f"{r['both']['p50']:>6.2f}/{r['both']['p95']:<7.2f} | {r['floor']['p50']:>9.3f} "
              f"{r['both']['p50'] / r['floor']['p50']:>6.1f}x")
    print("floor: joining the same number of bare SVG elements into one string (no layout, no logic);\n"
          "ratio: layout + SVG against that floor; cross: line crossings found (not counted above 200 people)")
    hundred = next((r for r in results if r["n"] == 100), None)
    if hundred:
        ok = hundred["both"]["p50"] < TARGET_P50_MS_100
        print(f"target: layout + SVG for 100 individuals under {TARGET_P50_MS_100:.0f} ms (p50): "
              f"{hundred['both']['p50']:.2f} ms -> {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
