"""HTTP benchmark: CPMS's logged-in dashboard against a bare Litestar hello-world, in one run.

Both apps are served the same way (uvicorn, one worker, loopback) and loaded by the same
client; the figures that matter are the ratios, which hold across machines better than
absolute numbers. Usage: .venv/bin/python benchmarks/http_bench.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._load import run_load  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(target: str, port: int, env: dict, factory: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    if factory:
        cmd.append("--factory")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    for _ in range(150):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{target} did not start")


async def prepare(data_dir: Path) -> str:
    """Migrate a fresh SQLite database, create a demo set and return a session cookie."""
    os.environ.update({"CPMS_DATA_DIR": str(data_dir), "CPMS_ENV": "test"})
    from core import db
    from core.cli import migrate_all
    from core.demo import load_demo
    from core.identity.sessions import COOKIE_NAME, create_session
    from core.plugins import PluginHost
    from core.settings import Settings

    settings = Settings.from_env()
    host = PluginHost(settings)
    db.configure(settings, host)
    await migrate_all(host)
    ctx = await load_demo(host)
    from core.identity.sessions import now
    from core.identity.tables import User

    # The coordinator's roles require two-step login: mark it enrolled, as after first login.
    await User.update({User.totp_enabled_at: now()}).where(User.id == ctx.users["coordinator"])
    token = await create_session(settings, ctx.users["coordinator"])
    return f"{COOKIE_NAME}={token}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="cpms-bench-"))
    cookie = asyncio.run(prepare(data_dir))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CPMS_DATA_DIR": str(data_dir), "CPMS_ENV": "test"}
    results = {}
    for name, target, factory, path, ck in (
        ("hello world (bare Litestar)", "benchmarks.hello_app:app", False, "/", ""),
        ("dashboard (logged in)", "core.app:create_app_from_env", True, "/", cookie),
    ):
        port = free_port()
        proc = serve(target, port, env, factory)
        try:
            asyncio.run(run_load("127.0.0.1", port, path, ck, requests=400, concurrency=args.concurrency))  # warm-up
            results[name] = asyncio.run(run_load("127.0.0.1", port, path, ck, requests=args.requests, concurrency=args.concurrency))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"{'endpoint':32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for name, r in results.items():
        print(f"{name:32} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}  {r['statuses']}")
    hello, dash = results.values()
    assert set(dash["statuses"]) == {200}, "the dashboard must answer 200 to a logged-in session"
    print(f"ratio dashboard/hello: throughput {dash['rps'] / hello['rps']:.3f}, p50 latency {dash['p50_ms'] / hello['p50_ms']:.1f}x")


if __name__ == "__main__":
    main()
