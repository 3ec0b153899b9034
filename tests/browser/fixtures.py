"""Browser tests: Debian's Chromium driven by Playwright against the real app served by uvicorn.

Locally they skip with a clear message when /usr/bin/chromium is missing; in CI (CI=true)
that is a failure, because a skipped browser test proves nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CPMS_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need_chromium():
    if not (Path(CHROMIUM).exists() and shutil.which(CHROMIUM)):
        msg = f"browser tests need Debian's chromium at {CHROMIUM} (./dev test installs it as root)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


class MailBox:
    """A real SMTP server (aiosmtpd) on loopback that keeps what the app sends."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[dict] = []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                import email
                from email import policy

                msg = email.message_from_bytes(envelope.content, policy=policy.default)
                body = msg.get_body(preferencelist=("plain",))
                box.messages.append({"to": envelope.rcpt_tos[0], "subject": str(msg["subject"]), "body": body.get_content() if body else ""})
                return "250 OK"

        self.port = _free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def wait_for(self, to: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in reversed(self.messages):
                if m["to"] == to:
                    return m
            time.sleep(0.1)
        raise AssertionError(f"no mail to {to}")

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def mailbox():
    box = MailBox()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def live_server(settings, migrated, demo_snapshot, mailbox):
    """The real app on a free loopback port, with demo data, as `./dev demo` serves it.

    Every module starts from the demo as `cpms demo` leaves it (run once per test process,
    tests/support/snapshot.py), with a server of its own."""
    from core import db
    from tests.support import snapshot
    from tests.support.cli import cli_env

    _need_chromium()
    port = _free_port()
    env = cli_env(
        settings, CPMS_SMTP_HOST="127.0.0.1", CPMS_SMTP_PORT=str(mailbox.port),
        CPMS_BASE_URL=f"http://127.0.0.1:{port}",
    )
    db.configure(settings, migrated)
    snapshot.restore(demo_snapshot, settings, db.all_tables())
    log = open(settings.data_dir / f"server-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.terminate()
        raise RuntimeError("server did not start: " + (settings.data_dir / f"server-{port}.log").read_text()[-2000:])
    yield base
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


@pytest.fixture(scope="module")
def browser():
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    p.js_errors = errors
    yield p
    context.close()
