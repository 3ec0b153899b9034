"""The real app under uvicorn on a loopback port, for tests that need a real HTTP server
(streaming responses, several app processes) but no browser.

    with live_app(settings) as base:            # "http://127.0.0.1:PORT"
        async with httpx.AsyncClient(base_url=base) as client: ...

The server reads the same settings as the tests (database, data folder with its keys, Redis,
secret key, the example plugin) through ``CPMS_*`` variables, so users made by the test
(``tests.conftest.make_user``) log in there. It serves the database as it is: no demo data.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.cli import cli_env
from tests.support.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]


def server_env(settings, port: int, host_name: str = "127.0.0.1", **extra: str) -> dict[str, str]:
    return cli_env(settings, CPMS_BASE_URL=f"http://{host_name}:{port}", **extra)


@contextlib.contextmanager
def live_app(settings, *, startup_timeout: float = 30.0, host_name: str = "127.0.0.1", **extra_env: str):
    """Serve ``create_app_from_env()`` with uvicorn; yields the base URL, stops it on exit.

    Started as ``cpms serve`` does, plus a short graceful-shutdown timeout: uvicorn otherwise
    waits for every open response to finish, and a live-update stream only ends by itself
    after its lifetime.
    """
    with live_app_process(settings, startup_timeout=startup_timeout, host_name=host_name, **extra_env) as (base, _):
        yield base


@contextlib.contextmanager
def live_app_process(settings, *, startup_timeout: float = 30.0, host_name: str = "127.0.0.1", **extra_env: str):
    """As ``live_app``, yielding ``(base_url, process)``: for tests that kill the server. ``host_name``
    names the site in its base URL (``localhost`` where WebAuthn needs a domain, not an address)."""
    port = free_port()
    log_path = Path(settings.data_dir) / f"server-{port}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "core.app:create_app_from_env", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "2", "--log-level", "warning",
        ],
        cwd=ROOT, env=server_env(settings, port, host_name, **extra_env), stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://{host_name}:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}): " + log_path.read_text()[-2000:])
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start: " + log_path.read_text()[-2000:])
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
