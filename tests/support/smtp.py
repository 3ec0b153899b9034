"""A real SMTP server for tests: aiosmtpd on loopback, keeping every message it receives.

Use the ``smtp_server`` fixture (import it into the test module) and point the app at it
with ``make_settings(smtp_host="127.0.0.1", smtp_port=smtp_server.port)``.
"""

from __future__ import annotations

import email
import re
import socket
from dataclasses import dataclass, field
from email import policy

import pytest
from aiosmtpd.controller import Controller


def parse(raw: bytes, rcpt_tos, mail_from: str) -> dict:
    """A received message as a dict: "to" (the recipients, comma-separated), "recipients",
    "from" (envelope sender), "subject", "body" (the plain text) and "attachments"
    ((file name, MIME type, content) tuples)."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    body_part = msg.get_body(preferencelist=("plain",))
    return {
        "to": ", ".join(rcpt_tos),
        "recipients": list(rcpt_tos),
        "from": mail_from,
        "subject": str(msg["Subject"]),
        "body": body_part.get_content() if body_part is not None else "",
        "attachments": [
            (part.get_filename(), part.get_content_type(), _text(part.get_content())) for part in msg.iter_attachments()
        ],
    }


def link_in(mail: dict, path_prefix: str) -> str:
    """The path (with query) of the first URL in the mail's body whose path starts with ``path_prefix``."""
    match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"\S*)", mail["body"])
    if match is None:
        raise AssertionError(f"no link to {path_prefix} in mail {mail['subject']!r}")
    return match.group(1)


@dataclass
class _Collector:
    messages: list[dict] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(parse(envelope.content, envelope.rcpt_tos, envelope.mail_from))
        return "250 Message accepted for delivery"


def _text(content) -> str:
    return content.decode() if isinstance(content, bytes) else content


def free_port() -> int:
    """A loopback port nothing listens on (also what a "mail server down" test connects to)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._collector = _Collector()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[dict]:
        """Received so far. A message is stored before the server answers "250", so once a
        client's send has returned, its message is here."""
        return self._collector.messages

    def start(self) -> "SmtpServer":
        self._controller = Controller(self._collector, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_server():
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()
