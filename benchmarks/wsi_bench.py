"""Whole-slide tile serving: HTTP cold and warm against the floor, on one generated slide, in one run.

The slide: a synthetic tissue-like pyramidal TIFF (``plugins.pathology_viewer.synthetic``, default
16384 x 16384 px, 256-px tiles, levels halving to 256 px), written with tifffile. Its tiles are
zlib-compressed, not JPEG: tifffile writes JPEG tiles only through imagecodecs, which CPMS does not
depend on; a zlib tile costs OpenSlide a little more to decode than a scanner's JPEG tile, which makes
the floor and cold figures somewhat slower than with a real SVS, not the ratios. The slide is stored
through the plugin's own ingest path (validated, encrypted, working copy made) for a demo patient.

The tile set: ``--tiles`` distinct Deep Zoom tiles (254 px + 1 px overlap, JPEG quality 75, the
defaults), drawn at random (fixed seed) from the two most detailed levels, where a viewer spends its
requests.

1. Floor: in this process, a bare loop of ``DeepZoomGenerator.get_tile`` + JPEG encode over the tile
   set, on a freshly opened OpenSlide handle (the file is in the OS page cache for every phase).
2. HTTP cold: ``uvicorn --workers 2`` on loopback, a logged-in session cookie (the enrolling
   hospital's clinician), ``--clients`` keep-alive connections fetching the tile set once: every tile
   is computed by the server (session lookup, access check, Deep Zoom, encode, response).
3. HTTP warm: the same clients fetch the same tiles again (``--warm-rounds`` times): each worker
   answers from its hot-tile memory, or from the slide's tiles folder when the other worker made the
   tile (then from memory).

The clients take the next tile from one shared queue as each connection becomes free, as a viewer's
connections do; the kernel hands each keep-alive connection to one of the workers.

Targets (issue 8): cold throughput >= 0.8 x floor with two workers; warm >= 10 x floor.

Usage: .venv/bin/python benchmarks/wsi_bench.py [--size 16384] [--tiles 1500] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_COLD, TARGET_WARM = 0.8, 10.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered))) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def prepare(data_dir: Path, size: int) -> tuple[str, int, dict, float]:
    """Migrate, load the demo, store the benchmark slide for the first demo patient; returns the session
    cookie of the demo clinician, the slide id, its row and the seconds spent writing the slide."""
    os.environ.update({"CPMS_DATA_DIR": str(data_dir), "CPMS_ENV": "test"})
    from core import db
    from core.cli import migrate_all
    from core.demo import load_demo
    from core.identity.sessions import COOKIE_NAME, create_session, now
    from core.identity.tables import User
    from core.patients.tables import Patient
    from core.plugins import PluginHost
    from core.settings import Settings
    from plugins.pathology_viewer import ingest, synthetic
    from plugins.pathology_viewer.tables import Slide

    settings = Settings.from_env()
    host = PluginHost(settings)
    db.configure(settings, host)
    await migrate_all(host)
    ctx = await load_demo(host)
    hp = ctx.users["hp"]
    await User.update({User.totp_enabled_at: now()}).where(User.id == hp)  # as after the first login
    patient = await Patient.select(Patient.id, Patient.pseudonym, Patient.hcp).where(
        Patient.pseudonym == ctx.extra["patients"][0]).first()
    path = data_dir / "bench-slide.tiff"
    started = time.perf_counter()
    synthetic.write_generic_tiff(path, size, size, mpp=0.25, seed=16)
    written = time.perf_counter() - started
    folder = ingest.new_folder(settings)
    try:
        got = await ingest.receive_file(settings, path, folder)
        row = await ingest.commit(settings, patient, got, "benchmark slide", hp)
    finally:
        ingest.discard(folder)
    path.unlink()
    slide = await Slide.select().where(Slide.id == row["id"]).first()
    token = await create_session(settings, hp)
    # A browser also sends the CSRF cookie it got with the first page; without it every response
    # would carry a fresh one.
    import secrets

    csrf = secrets.token_hex(32)
    return f"{COOKIE_NAME}={token}; csrftoken={csrf}", row["id"], slide, written


def tile_set(slide: dict, count: int, seed: int, tile_size: int) -> list[tuple[int, int, int]]:
    from plugins.pathology_viewer.tiles import geometry

    levels = geometry(slide["width"], slide["height"], tile_size)
    pool = [(lv, c, r) for lv in (len(levels) - 2, len(levels) - 1)
            for c in range(levels[lv][0]) for r in range(levels[lv][1])]
    return random.Random(seed).sample(pool, min(count, len(pool)))


def floor(settings, slide: dict, tiles: list, tile_size: int) -> dict:
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    from plugins.pathology_viewer import slides
    from plugins.pathology_viewer.tiles import encode

    entry = slides.files_for(settings).entry_path(slides.copy_name(slide["file_key"]))
    dz = DeepZoomGenerator(openslide.OpenSlide(str(entry)), tile_size, 1)
    times = []
    started = time.perf_counter()
    for level, col, row in tiles:
        t = time.perf_counter()
        encode(dz.get_tile(level, (col, row)), "JPEG", 75)
        times.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    return {"tiles": len(tiles), "tps": len(tiles) / elapsed, "p50_ms": statistics.median(times) * 1000,
            "p95_ms": percentile(times, 95) * 1000, "seconds": elapsed}


class Client:
    """One keep-alive HTTP/1.1 connection fetching its share of tiles (bodies read, statuses counted)."""

    def __init__(self, host: str, port: int, cookie: str) -> None:
        self.host, self.port, self.cookie = host, port, cookie
        self.reader = self.writer = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def fetch(self, queue, latencies: list[float], statuses: dict, sizes: list[int]) -> None:
        while queue:
            path = queue.popleft()
            request = (f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: image/jpeg\r\n"
                       f"Cookie: {self.cookie}\r\n\r\n").encode()
            start = time.perf_counter()
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await self.reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
            sizes.append(len(body))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def run_pass(clients: list[Client], paths: list[str]) -> dict:
    """The clients take the next tile from one queue as each becomes free (as a viewer's connections do),
    so a slower worker process does not hold the others back."""
    from collections import deque

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    sizes: list[int] = []
    queue = deque(paths)
    started = time.perf_counter()
    await asyncio.gather(*[c.fetch(queue, latencies, statuses, sizes) for c in clients])
    elapsed = time.perf_counter() - started
    return {"tiles": len(latencies), "tps": len(latencies) / elapsed, "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000, "statuses": statuses, "seconds": elapsed,
            "kb": sum(sizes) / max(1, len(sizes)) / 1024}


def serve(port: int, env: dict, workers: int, stock: bool) -> subprocess.Popen:
    import httpx

    args = ["core.app:create_app_from_env", "--factory", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    launcher = ["-m", "uvicorn"] if stock else [str(Path(__file__).resolve()), "--uvicorn"]
    proc = subprocess.Popen([sys.executable, *launcher, *args], cwd=ROOT, env=env)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                time.sleep(1.0)  # every worker up
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


async def over_http(port: int, cookie: str, slide_id: int, tiles: list, n_clients: int, warm_rounds: int) -> dict:
    paths = [f"/pathology/slides/{slide_id}/image_files/{lv}/{c}_{r}.jpeg" for lv, c, r in tiles]
    clients = [Client("127.0.0.1", port, cookie) for _ in range(n_clients)]
    for c in clients:
        await c.connect()
    # Warm-up outside the tile set: the descriptor on every connection (access decision cached).
    await run_pass(clients, [f"/pathology/slides/{slide_id}/image.dzi"] * n_clients)
    out = {"cold": await run_pass(clients, paths)}
    warm = [await run_pass(clients, paths) for _ in range(warm_rounds)]
    out["warm"] = {"tiles": sum(w["tiles"] for w in warm), "tps": sum(w["tiles"] for w in warm) / sum(w["seconds"] for w in warm),
                   "p50_ms": statistics.median([w["p50_ms"] for w in warm]), "p95_ms": max(w["p95_ms"] for w in warm),
                   "statuses": {k: sum(w["statuses"].get(k, 0) for w in warm) for k in {s for w in warm for s in w["statuses"]}},
                   "kb": warm[0]["kb"]}
    for c in clients:
        c.close()
    return out


def uvicorn_nodelay(argv: list[str]) -> None:
    """uvicorn with TCP_NODELAY on its listening socket. With ``--workers`` uvicorn binds the socket
    itself (``socket.socket(family)``, protocol 0), and asyncio then skips TCP_NODELAY on the accepted
    connections (it sets it only when the protocol is IPPROTO_TCP): a response written in two parts
    waits for the client's delayed ACK, about 40 ms per request on Linux. Set on the listening socket,
    Linux hands it down to every accepted one. (One worker binds through asyncio and is not affected.)"""
    import socket as sk

    import uvicorn.config
    import uvicorn.main

    bind = uvicorn.config.Config.bind_socket

    def bind_nodelay(self):
        sock = bind(self)
        if sock.family in (sk.AF_INET, sk.AF_INET6):
            sock.setsockopt(sk.IPPROTO_TCP, sk.TCP_NODELAY, 1)
        return sock

    uvicorn.config.Config.bind_socket = bind_nodelay
    sys.argv = ["uvicorn", *argv]
    sys.exit(uvicorn.main.main())


def main() -> None:
    if sys.argv[1:2] == ["--uvicorn"]:
        return uvicorn_nodelay(sys.argv[2:])
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=16384, help="slide width and height in pixels")
    parser.add_argument("--tiles", type=int, default=1500, help="distinct tiles in the set")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warm-rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--tile-size", type=int, default=254, help="Deep Zoom tile size (CPMS_PATHOLOGY_TILE_SIZE)")
    parser.add_argument("--stock-uvicorn", action="store_true",
                        help="serve with plain `uvicorn --workers` (no TCP_NODELAY: ~40 ms per response)")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="cpms-wsi-bench-"))
    try:
        cookie, slide_id, slide, written = asyncio.run(prepare(data_dir, args.size))
        from core.settings import Settings

        settings = Settings.from_env()
        tiles = tile_set(slide, args.tiles, args.seed, args.tile_size)
        print(f"slide {slide['width']}x{slide['height']} px, {slide['level_count']} levels, {slide['size'] / 1024**2:.0f} MB "
              f"(zlib tiles), written in {written:.1f} s; {len(tiles)} distinct tiles of the two most detailed levels; "
              f"{args.tile_size}-px tiles; {args.clients} clients, {args.workers} workers"
              f"{' (stock uvicorn)' if args.stock_uvicorn else ''}", flush=True)
        fl = floor(settings, slide, tiles, args.tile_size)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CPMS_DATA_DIR": str(data_dir), "CPMS_ENV": "test",
               "CPMS_PATHOLOGY_TILE_SIZE": str(args.tile_size)}
        port = free_port()
        proc = serve(port, env, args.workers, args.stock_uvicorn)
        try:
            http = asyncio.run(over_http(port, cookie, slide_id, tiles, args.clients, args.warm_rounds))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{'phase':38} {'tiles':>6} {'tiles/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'x floor':>8}  statuses")
    print(f"{'floor (get_tile + JPEG, 1 process)':38} {fl['tiles']:6} {fl['tps']:9.0f} {fl['p50_ms']:8.2f} {fl['p95_ms']:8.2f} {1:8.2f}")
    for name, key in (("HTTP cold (first fetch)", "cold"), (f"HTTP warm (same tiles again, x{args.warm_rounds})", "warm")):
        r = http[key]
        print(f"{name:38} {r['tiles']:6} {r['tps']:9.0f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['tps'] / fl['tps']:8.2f}  {r['statuses']}")
    print(f"mean tile {http['cold']['kb']:.1f} KB")
    cold, warm = http["cold"]["tps"] / fl["tps"], http["warm"]["tps"] / fl["tps"]
    assert set(http["cold"]["statuses"]) == {200} and set(http["warm"]["statuses"]) == {200}, "every tile must be a 200"
    print(f"cold/floor {cold:.2f} (target >= {TARGET_COLD}): {'met' if cold >= TARGET_COLD else 'NOT met'}; "
          f"warm/floor {warm:.2f} (target >= {TARGET_WARM}): {'met' if warm >= TARGET_WARM else 'NOT met'}")


if __name__ == "__main__":
    main()
