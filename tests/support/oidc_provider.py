"""Start/stop the real OpenID Connect provider in ``tests/oidc_provider`` for tests.

The provider is the certified ``oidc-provider`` npm package run by node on loopback
(see ``tests/oidc_provider/server.mjs``), so tests exercise a genuine OIDC server
rather than a mock. No pytest import here: fixtures wrap :func:`run_oidc_provider`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

PROVIDER_DIR = Path(__file__).resolve().parent.parent / "oidc_provider"
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class RunningOidcProvider:
    """A started provider. ``issuer`` is e.g. ``http://127.0.0.1:54321``."""

    issuer: str
    port: int
    process: subprocess.Popen

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(
            f"`{tool}` not found on PATH: the OIDC test provider needs Node.js (>= 18) and npm"
        )
    return path


def ensure_node_modules() -> None:
    """Install the provider's pinned npm dependencies (``npm ci``) if not yet present."""
    _require("node")  # fail early and clearly even when node_modules already exists
    if (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = _require("npm")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=PROVIDER_DIR,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`npm ci` failed in {PROVIDER_DIR} (exit {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )


def _free_loopback_port() -> int:
    # Small race (the port is released before node binds it) is acceptable in tests.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def run_oidc_provider(
    clients: Sequence[Mapping[str, Any]],
    accounts: Sequence[Mapping[str, Any]],
    port: int | None = None,
) -> Iterator[RunningOidcProvider]:
    """Run the provider for the duration of the ``with`` block.

    ``clients``: dicts with ``client_id``, ``client_secret``, ``redirect_uris`` (other
    client metadata such as ``token_endpoint_auth_method`` is passed through; the
    default auth method is ``client_secret_basic``).
    ``accounts``: dicts with ``sub``, ``email``, ``email_verified``, ``name``, ``password``.
    """
    ensure_node_modules()
    node = _require("node")
    port = port or _free_loopback_port()
    issuer = f"http://127.0.0.1:{port}"

    with tempfile.TemporaryDirectory(prefix="oidc-provider-") as tmp:
        tmpdir = Path(tmp)
        cfg = tmpdir / "cfg.json"
        cfg.write_text(
            json.dumps(
                {"issuer": issuer, "port": port, "clients": list(clients), "accounts": list(accounts)}
            )
        )
        # Output goes to files, not pipes: nobody has to keep draining them, so node
        # can never block on a full pipe while the tests run.
        out_path, err_path = tmpdir / "stdout.log", tmpdir / "stderr.log"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [node, str(PROVIDER_DIR / "server.mjs"), str(cfg)],
                cwd=PROVIDER_DIR,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        try:
            _wait_ready(proc, out_path, err_path, issuer)
            yield RunningOidcProvider(issuer=issuer, port=port, process=proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen, out_path: Path, err_path: Path, issuer: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if f"READY {issuer}" in out_path.read_text(errors="replace").splitlines():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        status = f"not ready after {READY_TIMEOUT:.0f}s"
    else:
        status = f"exited with code {proc.returncode}"
    raise RuntimeError(
        f"OIDC test provider {status}.\nstdout:\n{out_path.read_text(errors='replace')}"
        f"\nstderr:\n{err_path.read_text(errors='replace')}"
    )
