"""Panel lists at 100,000 panels: keyset pagination against OFFSET, filters, search, "my panels".

One run builds a fresh database (migrations, demo data, then 100,000 panels written with raw
executemany in one transaction), measures ``core.panels.views.panel_rows`` in-process, then
the list pages over HTTP (uvicorn, one worker, loopback, logged-in session cookies), and
prints ratios measured in the same run: a deep page by keyset against the first page (should
be ~1), and the same deep page by OFFSET (the naive reference) against keyset.

The data: 100,000 panels over 20 ERNs (a quarter in ERN RND, the demo coordinator's queue),
all statuses spread over the whole id range, 5% urgent, titles and questions of random clinical
words, 400 patients, 120 experts, 1-3 members a panel; the demo HP created 1,000 panels and is a
member of 1,000 more. Every panel refers, as in the app, to the version of the ERN's form it
uses (``form_template``; the definition itself is stored once per version).
Cases whose p50 exceeds 20 ms get their query plan printed (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE).

Usage: .venv/bin/python benchmarks/panels_bench.py [--database-url postgresql://postgres@127.0.0.1:5432/bench]
                                                  [--without-new-indexes]
With a PostgreSQL URL the database is dropped and created afresh, and dropped again at the end.
``--without-new-indexes`` drops the indexes of the panel-list migration: the "before" figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._load import run_load  # noqa: E402
from benchmarks.http_bench import free_port, serve  # noqa: E402

MAIN_ERN = "ERN RND"  # the demo coordinator's ERN: a quarter of all panels
N_ERNS = 20
STATUS_WEIGHTS = {  # spread over the whole id range (the harsh case for a filtered list)
    "draft": 5, "submitted": 8, "assembling": 5, "open": 12, "outcome_review": 5, "closed": 35, "archived": 25, "cancelled": 5,
}
URGENCY_WEIGHTS = {"routine": 75, "soon": 20, "urgent": 5}
KIND_WEIGHTS = {"diagnostic": 60, "therapeutic": 25, "follow_up": 15}
WORDS = """
ataxia dystonia chorea spasticity neuropathy myopathy dystrophy myotonia epilepsy seizure encephalopathy leukodystrophy
cardiomyopathy arrhythmia aneurysm dissection vasculitis nephropathy cystic tubulopathy glomerular hepatic cholestasis
cirrhosis fibrosis pulmonary interstitial bronchiectasis skeletal dysplasia scoliosis craniosynostosis cleft hearing
retinal dystrophy optic atrophy cataract glaucoma nystagmus ichthyosis epidermolysis albinism immunodeficiency anaemia
thrombocytopenia haemophilia lymphoma sarcoma neuroblastoma tumour polyposis syndrome metabolic lysosomal mitochondrial
peroxisomal storage acidosis hypoglycaemia hyperammonaemia growth delay intellectual disability autism regression
hypotonia weakness fatigue pain progressive episodic congenital juvenile adult onset late early familial sporadic de novo
variant pathogenic likely benign uncertain significance heterozygous homozygous compound mosaic deletion duplication
repeat expansion splice missense nonsense frameshift exome genome panel array karyotype methylation sequencing biopsy
imaging magnetic resonance tomography ultrasound echocardiography electromyography conduction study evoked potentials
enzyme assay biomarker creatine kinase lactate ammonia amino acids organic acids acylcarnitine transferrin glycosylation
treatment therapy trial gene replacement enzyme substitution transplant surgery rehabilitation physiotherapy orthosis
steroid immunosuppression chemotherapy radiotherapy diet supplement medication dosage response relapse remission
follow monitoring surveillance counselling prognosis diagnosis differential workup second opinion phenotype genotype
correlation segregation parents sibling cousin consanguinity pedigree ancestry cohort registry guideline consensus
""".split()
SPECIALTIES = """neurology neurogenetics paediatrics cardiology nephrology hepatology pulmonology ophthalmology dermatology
haematology oncology immunology endocrinology metabolism orthopaedics radiology pathology genetics surgery rehabilitation""".split()
SEARCH = "progressive ataxia"  # two vocabulary words: ~3% of panels hold both
SEARCH_NONE = "zebrafish"  # in no panel: the whole scope is read


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))


def _weighted(rng: random.Random, weights: dict, k: int) -> list:
    return rng.choices(list(weights), weights=list(weights.values()), k=k)


# --- the database ---------------------------------------------------------------------------


class Raw:
    """Bulk writes straight through the driver (sqlite3 / asyncpg), in one transaction."""

    def __init__(self, settings):
        self.pg = settings.uses_postgres
        self.settings = settings

    async def __aenter__(self):
        if self.pg:
            import asyncpg

            self.conn = await asyncpg.connect(self.settings.database_url)
            self.tx = self.conn.transaction()
            await self.tx.start()
        else:
            import sqlite3

            self.conn = sqlite3.connect(self.settings.sqlite_path, isolation_level=None)
            self.conn.execute("PRAGMA synchronous = OFF")
            self.conn.execute("BEGIN")
        return self

    async def __aexit__(self, exc_type, *_):
        if self.pg:
            await (self.tx.rollback() if exc_type else self.tx.commit())
            await self.conn.close()
        else:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
            self.conn.close()

    def ts(self, value: datetime):
        return value if self.pg else str(value)  # piccolo's SQLite text form: "2026-11-23 04:57:18.122977+00:00"

    def flag(self, value: bool):
        return value if self.pg else int(value)

    async def insert(self, table: str, columns: list[str], rows: list[tuple], chunk: int = 5000) -> None:
        cols = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join(f"${i + 1}" if self.pg else "?" for i in range(len(columns)))
        sql = f'INSERT INTO "{table}" ({cols}) VALUES ({marks})'
        for start in range(0, len(rows), chunk):
            if self.pg:
                await self.conn.executemany(sql, rows[start:start + chunk])
            else:
                self.conn.executemany(sql, rows[start:start + chunk])

    async def fetch(self, sql: str) -> list[tuple]:
        if self.pg:
            return [tuple(r) for r in await self.conn.fetch(sql)]
        return self.conn.execute(sql).fetchall()

    async def run(self, sql: str) -> None:
        if self.pg:
            await self.conn.execute(sql)
        else:
            self.conn.execute(sql)


async def seed(settings, ctx, n_panels: int, n_patients: int, rng: random.Random) -> dict:
    """Users, patients and ``n_panels`` panels with members; returns what the measurements need."""
    from core.patients import identity as ident
    from core.patients.nicknames import random_nickname

    hp, coordinator = ctx.users["hp"], ctx.users["coordinator"]
    main_ern = ctx.erns[MAIN_ERN]
    others = [e for a, e in sorted(ctx.erns.items()) if a != MAIN_ERN][: N_ERNS - 1]
    hp_erns = [main_ern, ctx.erns["ERN EURO-NMD"]]
    erns = [main_ern, *others]
    ern_weights = [25.0] + [75.0 / len(others)] * len(others)
    hcps = list(ctx.hcps.values())
    now = datetime.now(timezone.utc)
    phases: dict[str, float] = {}
    async with Raw(settings) as raw:
        definition = (await raw.fetch("SELECT form_template FROM panels_panel ORDER BY id LIMIT 1"))[0][0]
        first_panel = (await raw.fetch("SELECT COALESCE(MAX(id), 0) FROM panels_panel"))[0][0] + 1
        first_member = (await raw.fetch("SELECT COALESCE(MAX(id), 0) FROM panels_member"))[0][0] + 1

        # Experts at the demo hospitals: creators and members of the other panels.
        users = [(f"bench-hp-{i}@bench.cpms.eu", f"Dr. Bench Expert {i}", "", rng.choice(hcps), raw.flag(True), raw.flag(True), raw.ts(now)) for i in range(120)]
        await raw.insert("identity_user", ["email", "name", "password_hash", "hcp", "is_active", "email_verified", "created_at"], users)
        experts = [r[0] for r in await raw.fetch("SELECT id FROM identity_user WHERE email LIKE 'bench-hp-%' ORDER BY id")]
        await raw.insert("identity_role_assignment", ["user", "role", "ern", "granted_at"],
                         [(u, "hp", erns[i % len(erns)], raw.ts(now)) for i, u in enumerate(experts)])

        # Patients, each enrolled (with Consent for Care) in one ERN.
        nicknames: set[str] = set()
        while len(nicknames) < n_patients:
            nicknames.add(random_nickname())
        patients, home = [], []
        for nickname in sorted(nicknames):
            pseudonym = ident.new_pseudonym()
            identity = ident.encrypt_identity(settings, pseudonym, {"given_name": "Bench", "family_name": nickname.split()[1], "date_of_birth": "2001-01-01"})
            home.append(rng.choices(erns, weights=ern_weights)[0])
            patients.append((pseudonym, nickname, rng.choice(hcps), identity, "unknown", "Bench patient.", raw.ts(now), raw.flag(False)))
        await raw.insert("patients_patient", ["pseudonym", "nickname", "hcp", "identity", "sex", "summary", "created_at", "restricted"], patients)
        ids = dict(await raw.fetch("SELECT pseudonym, id FROM patients_patient"))
        patient_ids = [ids[p[0]] for p in patients]
        await raw.insert("patients_patient_ern", ["patient", "ern", "enrolled_at"], [(p, e, raw.ts(now)) for p, e in zip(patient_ids, home)])
        await raw.insert("patients_consent", ["patient", "kind", "status", "date", "form_version", "recorded_at"],
                         [(p, "care", "given", now.date() if raw.pg else now.date().isoformat(), "bench v1", raw.ts(now)) for p in patient_ids])
        by_ern: dict[int, list[int]] = {}
        for p, e in zip(patient_ids, home):
            by_ern.setdefault(e, []).append(p)
        for e in erns:  # every ERN has patients
            by_ern.setdefault(e, [patient_ids[0]])

        # Panels, oldest first (ids follow created_at), over three years.
        t = time.perf_counter()
        statuses = _weighted(rng, STATUS_WEIGHTS, n_panels)
        urgencies = _weighted(rng, URGENCY_WEIGHTS, n_panels)
        kinds = _weighted(rng, KIND_WEIGHTS, n_panels)
        mine = set(rng.sample(range(n_panels), 2000))  # the demo HP's panels: half created, half joined
        created_mine = set(rng.sample(sorted(mine), 1000))
        start = now - timedelta(days=3 * 365)
        step = (now - start) / n_panels
        panels, members = [], []
        mid = first_member
        for i in range(n_panels):
            pid = first_panel + i
            ern = rng.choice(hp_erns) if i in created_mine else rng.choices(erns, weights=ern_weights)[0]
            creator = hp if i in created_mine else rng.choice(experts)
            created = start + step * i
            updated = created + timedelta(hours=rng.randint(0, 24 * 30))
            status = statuses[i]
            panels.append((
                pid, rng.choice(by_ern[ern]), ern, status, _text(rng, 4, 9).capitalize()[:200], _text(rng, 15, 40).capitalize() + "?",
                kinds[i], urgencies[i], ", ".join(rng.sample(SPECIALTIES, rng.randint(1, 3))), definition, "Bench form v1", "{}",
                creator, raw.ts(created), creator, coordinator if status not in ("draft", "submitted") else None, raw.ts(updated),
                None if status == "draft" else raw.ts(created + timedelta(hours=2)),
                raw.ts(updated) if status in ("closed", "archived", "cancelled") else None, raw.flag(True), 1,
            ))
            joined = [u for u in rng.sample(experts, rng.randint(1, 3)) if u != creator]
            if i in mine and i not in created_mine:
                joined.append(hp)
            for u in joined:
                members.append((mid, pid, u, "member", "accepted" if status != "assembling" else "invited", creator, raw.ts(created)))
                mid += 1
        phases["generate"] = time.perf_counter() - t
        columns = [
            "id", "patient", "ern", "status", "title", "question", "kind", "urgency", "specialties", "form_template", "form_label",
            "form_answers", "created_by", "created_at", "lead", "assembler", "updated_at", "submitted_at", "closed_at",
            "counts_in_monitoring", "revision",
        ]
        t = time.perf_counter()
        await raw.insert("panels_panel", columns, panels)
        phases["insert panels"] = time.perf_counter() - t
        t = time.perf_counter()
        await raw.insert("panels_member", ["id", "panel", "user", "role", "status", "invited_by", "invited_at"], members)
        if raw.pg:
            for table in ("panels_panel", "panels_member"):
                await raw.run(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
        phases["insert members"] = time.perf_counter() - t
        t = time.perf_counter()
    phases["commit"] = time.perf_counter() - t
    if settings.uses_postgres:  # what autovacuum does soon after such a load (statistics, visibility map)
        import asyncpg

        t = time.perf_counter()
        conn = await asyncpg.connect(settings.database_url)
        await conn.execute("VACUUM ANALYZE")
        await conn.close()
        phases["vacuum analyze"] = time.perf_counter() - t
    return {"panels": len(panels), "members": len(members), "patients": len(patient_ids), "experts": len(experts), "phases": phases}


async def prepare(settings, n_panels: int, n_patients: int, without_new_indexes: bool = False) -> dict:
    from core import db
    from core.cli import migrate_all
    from core.demo import load_demo
    from core.identity.sessions import COOKIE_NAME, create_session, now
    from core.identity.tables import User
    from core.plugins import PluginHost

    host = PluginHost(settings)
    db.configure(settings, host)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # piccolo's migration report
        await migrate_all(host)
        ctx = await load_demo(host)
    if without_new_indexes:  # the "before" figures: drop what the list-index migration added
        migration = importlib.import_module("core.panels.piccolo_migrations.panels_2026_11_29t05_30_00_000000")
        for name, _ in migration.INDEXES:
            await db.engine().run_ddl(f"DROP INDEX IF EXISTS {name}")
    t1 = time.perf_counter()
    counts = await seed(settings, ctx, n_panels, n_patients, random.Random(20261129))
    t2 = time.perf_counter()
    # Roles that require two-step login: mark the users enrolled, as after their first login.
    await User.update({User.totp_enabled_at: now()}).where(User.id.is_in([ctx.users["coordinator"], ctx.users["hp"]]))
    cookies = {role: f"{COOKIE_NAME}={await create_session(settings, ctx.users[role])}" for role in ("coordinator", "hp")}
    print(f"seeded {counts['panels']:,} panels, {counts['members']:,} members, {counts['patients']} patients, "
          f"{counts['experts']} experts in {t2 - t1:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in counts["phases"].items())
          + f"; migrations + demo data before: {t1 - t0:.1f} s)")
    return {"host": host, "ctx": ctx, "cookies": cookies, "seed_s": t2 - t1}


# --- in-process -----------------------------------------------------------------------------


def _select(scope, *, status="", ern=None, urgency="", q="", before=None, limit=50):
    """The query panel_rows runs (same filters, columns, order): used for EXPLAIN and the OFFSET reference."""
    from core.panels.tables import Panel
    from core.panels.views import _filters

    where = [scope, *_filters(status, ern, urgency, q)]
    if before:
        where.append(Panel.id < before)
    condition = where[0]
    for w in where[1:]:
        condition = condition & w
    return Panel.select(
        Panel.id, Panel.title, Panel.status, Panel.urgency, Panel.kind, Panel.updated_at, Panel.created_at,
        Panel.ern.acronym.as_alias("ern_acronym"), Panel.patient.nickname.as_alias("nickname"),
    ).where(condition).order_by(Panel.id, ascending=False).limit(limit + 1)


async def offset_rows(scope, offset: int, limit: int = 50, **filters):
    """The naive reference: the same page reached with OFFSET instead of ``id < before``."""
    rows = await _select(scope, limit=limit, **filters).offset(offset)
    return rows[:limit]


async def ids_from_python(user_id: int) -> list[int]:
    """The reference for "my panels": the user's panel ids read into Python (three queries),
    to be bound back one by one into ``Panel.id.is_in(ids)``; the app uses one subquery
    instead (``core.panels.views.mine_scope``)."""
    from core.panels.tables import Panel, PanelMember

    ids = {r["panel"] for r in await PanelMember.select(PanelMember.panel).where((PanelMember.user == user_id) & PanelMember.status.is_in(["invited", "accepted"]))}
    ids |= {r["id"] for r in await Panel.select(Panel.id).where(Panel.created_by == user_id)}
    ids |= {r["id"] for r in await Panel.select(Panel.id).where(Panel.lead == user_id)}
    return sorted(ids)


async def explain(sql: str, pg: bool) -> str:
    from core import db

    eng = db.engine()
    if pg:
        rows = await eng.run_ddl(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
        return "\n".join("      " + r["QUERY PLAN"] for r in rows)
    rows = await eng.run_ddl(f"EXPLAIN QUERY PLAN {sql}")
    return "\n".join(f"      {r['detail']}" for r in rows)


async def timed(fns: dict, calls: int, budget_s: float) -> dict:
    """p50/p95 of each function; the functions are called in turn (round-robin), so that the
    ratios between them hold even on a machine whose load changes during the run."""
    times: dict = {name: [] for name in fns}
    for fn in fns.values():
        await fn()  # warm-up (statement caches, pages)
    deadline = time.perf_counter() + budget_s * len(fns)
    rounds = 0
    while rounds < calls and (rounds < 10 or time.perf_counter() < deadline):
        for name, fn in fns.items():
            t = time.perf_counter()
            await fn()
            times[name].append((time.perf_counter() - t) * 1000)
        rounds += 1
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"n": len(ts), "p50": statistics.median(ts), "p95": ts[max(0, int(len(ts) * 0.95) - 1)]}
    return out


async def in_process(settings, ctx, calls: int) -> tuple[dict, dict]:
    from core import db
    from core.panels.tables import Panel
    from core.panels.views import PER_PAGE, mine_scope, panel_rows

    await db.open_pool()
    coordinator_erns = [ctx.erns[MAIN_ERN]]
    queue = Panel.ern.is_in(coordinator_erns) & Panel.status.is_in(["submitted", "assembling"])
    queue_any = Panel.ern.is_in(coordinator_erns) & (Panel.status != "draft")  # the queue's scope once a status is chosen
    everything = Panel.id > 0  # the unfiltered list of all panels
    hp = ctx.users["hp"]

    async def page_start(scope, page: int, **filters) -> int | None:
        """The ``before`` that reaches ``page`` (1-based) by keyset: the last id of the page before."""
        if page <= 1:
            return None
        row = await _select(scope, limit=0, **filters).offset((page - 1) * PER_PAGE - 1)
        return row[0]["id"] if row else None

    total = await Panel.count()
    queue_total = await Panel.count().where(queue)
    deep_all = min(1000, total // PER_PAGE // 2)
    deepest_all = total // PER_PAGE - 10
    queue_pages = -(-queue_total // PER_PAGE)
    deep_queue = max(1, queue_pages - 1)
    before_all = await page_start(everything, deep_all)
    before_all_end = await page_start(everything, deepest_all)
    before_queue = await page_start(queue, deep_queue)

    async def my_first_reference(**filters):
        ids = await ids_from_python(hp)
        return await panel_rows(Panel.id.is_in(ids or [0]), **filters)

    # The keyset and OFFSET pages must be the same rows.
    for scope, before, page in ((everything, before_all, deep_all), (everything, before_all_end, deepest_all), (queue, before_queue, deep_queue)):
        keyset, _ = await panel_rows(scope, before=before)
        offset = await offset_rows(scope, (page - 1) * PER_PAGE)
        assert [r["id"] for r in keyset] == [r["id"] for r in offset] and keyset, "keyset and OFFSET pages differ"
    my_ids = await ids_from_python(hp)
    for filters in ({}, {"q": SEARCH}):  # the app's subquery lists the same panels as the reference
        reference, _ = await my_first_reference(**filters)
        app, _ = await panel_rows(mine_scope(hp), **filters)
        assert [r["id"] for r in reference] == [r["id"] for r in app], "my-panels subquery differs from the reference"
    cases = {
        "all: first page": (lambda: panel_rows(everything), everything, {}),
        f"all: page {deep_all:,} keyset": (lambda: panel_rows(everything, before=before_all), everything, {"before": before_all}),
        f"all: page {deep_all:,} OFFSET": (lambda: offset_rows(everything, (deep_all - 1) * PER_PAGE), None, None),
        f"all: page {deepest_all:,} keyset": (lambda: panel_rows(everything, before=before_all_end), everything, {"before": before_all_end}),
        f"all: page {deepest_all:,} OFFSET": (lambda: offset_rows(everything, (deepest_all - 1) * PER_PAGE), None, None),
        "queue: first page": (lambda: panel_rows(queue), queue, {}),
        f"queue: page {deep_queue} keyset": (lambda: panel_rows(queue, before=before_queue), queue, {"before": before_queue}),
        f"queue: page {deep_queue} OFFSET": (lambda: offset_rows(queue, (deep_queue - 1) * PER_PAGE), None, None),
        "queue: submitted+urgent": (lambda: panel_rows(queue_any, status="submitted", urgency="urgent"), queue_any, {"status": "submitted", "urgency": "urgent"}),
        f"queue: q={SEARCH!r}": (lambda: panel_rows(queue, q=SEARCH), queue, {"q": SEARCH}),
        f"queue: q={SEARCH_NONE!r} (none)": (lambda: panel_rows(queue, q=SEARCH_NONE), queue, {"q": SEARCH_NONE}),
        f"all: q={SEARCH_NONE!r} (none)": (lambda: panel_rows(everything, q=SEARCH_NONE), everything, {"q": SEARCH_NONE}),
        "my panels: first page": (lambda: panel_rows(mine_scope(hp)), mine_scope(hp), {}),
        f"my panels: q={SEARCH!r}": (lambda: panel_rows(mine_scope(hp), q=SEARCH), mine_scope(hp), {"q": SEARCH}),
        "my panels: first page, ids from Python (reference)": (lambda: my_first_reference(), Panel.id.is_in(my_ids), {}),
        f"my panels: q={SEARCH!r}, ids from Python (reference)": (lambda: my_first_reference(q=SEARCH), Panel.id.is_in(my_ids), {"q": SEARCH}),
    }
    print(f"\n{total:,} panels; the coordinator's queue ({MAIN_ERN}, submitted/assembling): {queue_total:,} ({queue_pages} pages); "
          f"the HP's panels: {len(my_ids):,}")
    print(f"{'in-process: panel_rows()':38} {'calls':>5} {'p50 ms':>8} {'p95 ms':>8}")
    # The pages whose ratios matter are timed together, in turn; the rest one by one.
    together = ["all: first page", f"all: page {deep_all:,} keyset", f"all: page {deepest_all:,} keyset",
                "queue: first page", f"queue: page {deep_queue} keyset"]
    groups = [together] + [[name] for name in cases if name not in together]
    results, slow = {}, {}
    for group in groups:
        results.update(await timed({name: cases[name][0] for name in group}, calls, budget_s=5.0))
    for name, (fn, scope, filters) in cases.items():
        r = results[name]
        print(f"{name:38} {r['n']:5} {r['p50']:8.2f} {r['p95']:8.2f}")
        if scope is not None and r["p50"] > 20:
            slow[name] = str(_select(scope, **filters))
    for name, sql in slow.items():
        print(f"\n  > 20 ms: {name}\n{await explain(sql, settings.uses_postgres)}")
    await db.close_pool()
    return results, {"before_queue": before_queue, "deep_queue": deep_queue, "deep_all": deep_all, "deepest_all": deepest_all}


# --- HTTP -----------------------------------------------------------------------------------


def over_http(env: dict, cookies: dict, deep: dict, requests: int, concurrency: int) -> dict:
    port = free_port()
    proc = serve("core.app:create_app_from_env", port, env, True)
    paths = {
        "GET /panels/queue": ("/panels/queue", cookies["coordinator"]),
        f"GET /panels/queue?before= (page {deep['deep_queue']})": (f"/panels/queue?before={deep['before_queue']}", cookies["coordinator"]),
        "GET /panels (HP)": ("/panels", cookies["hp"]),
        "GET /panels?q= (HP)": (f"/panels?q={SEARCH.replace(' ', '+')}", cookies["hp"]),
    }
    results = {}
    try:
        for name, (path, cookie) in paths.items():
            probe = asyncio.run(run_load("127.0.0.1", port, path, cookie, requests=5 * concurrency, concurrency=concurrency))  # warm-up
            # A slow page gets fewer requests (about 10 s' worth), so that a run stays within minutes.
            n = max(10 * concurrency, min(requests, int(probe["rps"] * 10) // concurrency * concurrency))
            results[name] = asyncio.run(run_load("127.0.0.1", port, path, cookie, requests=n, concurrency=concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"\n{f'HTTP (uvicorn, 1 worker, {concurrency} connections)':44} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for name, r in results.items():
        print(f"{name:44} {r['rps']:7.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}  {r['statuses']}")
        assert set(r["statuses"]) == {200}, f"{name} must answer 200"
    return results


# --- main -----------------------------------------------------------------------------------


async def _pg_admin(url: str, create: bool) -> None:
    import asyncpg
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default="", help="postgresql://… (dropped and re-created); default: SQLite in a temporary folder")
    parser.add_argument("--panels", type=int, default=100_000)
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--calls", type=int, default=200, help="in-process calls per case (fewer, at least 10, if a case would exceed ~5 s)")
    parser.add_argument("--requests", type=int, default=800, help="HTTP requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--without-new-indexes", action="store_true", help="drop the indexes of the panel-list migration (the 'before' figures)")
    args = parser.parse_args()
    # piccolo warns (in colour) on every SQLite ILIKE, which views.py uses for search.
    warnings.filterwarnings("ignore", message=".*SQLite doesn't support ILIKE")
    started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="cpms-panels-bench-"))
    os.environ.update({"CPMS_DATA_DIR": str(data_dir), "CPMS_ENV": "test"})
    if args.database_url:
        os.environ["CPMS_DATABASE_URL"] = args.database_url
        asyncio.run(_pg_admin(args.database_url, create=True))
    from core.settings import Settings

    settings = Settings.from_env()
    engine = "PostgreSQL" if settings.uses_postgres else "SQLite"
    try:
        async def in_process_part():
            prep = await prepare(settings, args.panels, args.patients, args.without_new_indexes)
            results, deep = await in_process(settings, prep["ctx"], args.calls)
            return prep, results, deep

        prep, results, deep = asyncio.run(in_process_part())
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore::Warning:core.panels.views"}
        http = over_http(env, prep["cookies"], deep, args.requests, args.concurrency)
    finally:
        if args.database_url:
            asyncio.run(_pg_admin(args.database_url, create=False))
        shutil.rmtree(data_dir, ignore_errors=True)  # half a gigabyte with SQLite

    r = results
    p50 = {name: x["p50"] for name, x in r.items()}
    first, queue_first = p50["all: first page"], p50["queue: first page"]
    k_all, o_all = p50[f"all: page {deep['deep_all']:,} keyset"], p50[f"all: page {deep['deep_all']:,} OFFSET"]
    k_end, o_end = p50[f"all: page {deep['deepest_all']:,} keyset"], p50[f"all: page {deep['deepest_all']:,} OFFSET"]
    k_q, o_q = p50[f"queue: page {deep['deep_queue']} keyset"], p50[f"queue: page {deep['deep_queue']} OFFSET"]
    hq, hdeep, hmine, hq_search = http.values()
    indexes = "without" if args.without_new_indexes else "with"
    print(f"\n=== summary: {engine}, {args.panels:,} panels, {indexes} the panel-list indexes; seeding {prep['seed_s']:.1f} s; "
          f"whole run {time.perf_counter() - started:.0f} s ===")
    lines = [
        f"all panels, page {deep['deep_all']:,}: keyset/first {k_all / first:.2f}, OFFSET/keyset {o_all / k_all:.1f}x "
        f"(p50 first {first:.2f} ms, keyset {k_all:.2f} ms, OFFSET {o_all:.2f} ms)",
        f"all panels, page {deep['deepest_all']:,}: keyset/first {k_end / first:.2f}, OFFSET/keyset {o_end / k_end:.1f}x (keyset {k_end:.2f} ms, OFFSET {o_end:.2f} ms)",
        f"queue, page {deep['deep_queue']}: keyset/first {k_q / queue_first:.2f}, OFFSET/keyset {o_q / k_q:.1f}x "
        f"(p50 first {queue_first:.2f} ms, keyset {k_q:.2f} ms, OFFSET {o_q:.2f} ms)",
        f"p50: queue submitted+urgent {p50['queue: submitted+urgent']:.1f} ms; queue search {p50[f'queue: q={SEARCH!r}']:.1f} ms "
        f"(no match {p50[f'queue: q={SEARCH_NONE!r} (none)']:.1f} ms; whole table, no match {p50[f'all: q={SEARCH_NONE!r} (none)']:.1f} ms); "
        f"my panels {p50['my panels: first page']:.1f} ms, searched {p50[f'my panels: q={SEARCH!r}']:.1f} ms "
        f"(ids bound from Python, the reference: {p50['my panels: first page, ids from Python (reference)']:.1f} / "
        f"{p50[f'my panels: q={SEARCH!r}, ids from Python (reference)']:.1f} ms)",
        "HTTP: " + "; ".join(f"{n} {x['rps']:.0f} req/s (p50 {x['p50_ms']:.1f}, p99 {x['p99_ms']:.1f} ms)" for n, x in http.items()),
        f"HTTP queue deep page/first page: throughput {hdeep['rps'] / hq['rps']:.2f}, p50 latency {hdeep['p50_ms'] / hq['p50_ms']:.2f}x",
    ]
    print("\n".join(lines))
    print("\nREADME row:")
    print(
        f"| `benchmarks/panels_bench.py` ({engine}) | {args.panels:,} panels over {N_ERNS} ERNs; `panel_rows()` in-process (p50) and "
        f"the list pages over HTTP (uvicorn, 1 worker, {args.concurrency} connections) | "
        f"page {deep['deep_all']:,} of all panels by keyset **{k_all / first:.2f}× the first page**, by OFFSET {o_all / k_all:.0f}× keyset "
        f"(page {deep['deepest_all']:,}: {o_end / k_end:.0f}×); queue page {deep['deep_queue']} keyset/first {k_q / queue_first:.2f}; "
        f"queue {queue_first:.1f} ms, status+urgency {p50['queue: submitted+urgent']:.1f} ms, search {p50[f'queue: q={SEARCH!r}']:.1f} ms; "
        f"my panels {p50['my panels: first page']:.1f} ms; HTTP queue {hq['rps']:.0f} req/s (p50 {hq['p50_ms']:.1f} ms), "
        f"deep/first throughput {hdeep['rps'] / hq['rps']:.2f}; my panels {hmine['rps']:.0f} req/s, searched {hq_search['rps']:.0f} req/s |"
    )

if __name__ == "__main__":
    main()
