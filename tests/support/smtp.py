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


@dataclass(frozen=True)
class ReceivedMail:
    to: tuple[str, ...]
    sender: str
    subject: str
    body: str
    #: (file name, MIME type, content) of each attachment
    attachments: tuple[tuple[str, str, str], ...] = ()

    def link(self, path_prefix: str) -> str:
        """The first URL in the body whose path starts with ``path_prefix``."""
        match = re.search(r"https?://[^/\s]+(" + re.escape(path_prefix) + r"\S*)", self.body)
        if match is None:
            raise AssertionError(f"no link to {path_prefix} in mail {self.subject!r}")
        return match.group(1)


@dataclass
class _Collector:
    messages: list[ReceivedMail] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(parse(envelope.content, envelope.rcpt_tos, envelope.mail_from))
        return "250 Message accepted for delivery"


def parse(raw: bytes, rcpt_tos, mail_from: str) -> ReceivedMail:
    msg = email.message_from_bytes(raw, policy=policy.default)
    body_part = msg.get_body(preferencelist=("plain",))
    attachments = tuple(
        (part.get_filename(), part.get_content_type(), _text(part.get_content())) for part in msg.iter_attachments()
    )
    return ReceivedMail(
        to=tuple(rcpt_tos), sender=mail_from, subject=str(msg["Subject"]),
        body=body_part.get_content() if body_part is not None else "", attachments=attachments,
    )


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
    def messages(self) -> list[ReceivedMail]:
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
