"""Sending e-mail: every mail is written to the outbox first, then delivered by SMTP.

A mail server that is down or slow must never break what the user was doing, so delivery
failures are logged and the mail stays queued; ``flush_outbox`` (``cpms mail flush``, run
from cron or a timer) retries it. Logs name the mail by its outbox id only: bodies carry
one-time links and addresses are personal data.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from core.settings import Settings

log = logging.getLogger("cpms.mail")

#: Seconds one SMTP delivery may take before it counts as failed.
SMTP_TIMEOUT = 10.0
#: After this many failed deliveries a mail is marked "failed" and no longer retried.
MAX_ATTEMPTS = 10
#: ``flush_outbox`` leaves younger mails alone: their first delivery, made by ``send_mail``
#: in the request, may still be under way, and retrying it now would send it twice.
FIRST_ATTEMPT_GRACE = timedelta(seconds=SMTP_TIMEOUT + 5)

#: (file name, MIME type such as "text/calendar", content as text)
Attachment = tuple[str, str, str]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _one_line(text: str) -> str:
    """Header values must not contain line breaks (header injection); collapse all whitespace."""
    return " ".join(text.split())


async def send_mail(settings: Settings, to: str, subject: str, body: str, attachment: Attachment | None = None) -> int:
    """Queue a mail in the outbox, then try to deliver it at once; returns its outbox id.

    Never raises for delivery problems: the mail stays "pending" for ``flush_outbox``.
    """
    from core.mail.tables import OutboxMail

    name, mimetype, content = attachment or ("", "", "")
    row = OutboxMail(
        to_address=_one_line(to), subject=_one_line(subject)[:300], body=body,
        attachment_name=_one_line(name)[:100], attachment_type=_one_line(mimetype)[:100], attachment=content,
        status="pending", attempts=0, last_error="", created_at=_now(),
    )
    await row.save()
    if not settings.smtp_host:
        log.info("mail %s stored, SMTP not configured", row.id)
        return row.id
    await _deliver(settings, row.to_dict())
    return row.id


async def flush_outbox(settings: Settings, limit: int = 100, *, min_age: timedelta = FIRST_ATTEMPT_GRACE) -> tuple[int, int]:
    """Retry pending mails, oldest first; returns (delivered now, failed again now).

    A mail failing its ``MAX_ATTEMPTS``-th delivery is marked "failed" and left alone.
    """
    from core.mail.tables import OutboxMail

    if not settings.smtp_host:
        log.info("outbox not flushed, SMTP not configured")
        return 0, 0
    pending = await OutboxMail.select().where(
        (OutboxMail.status == "pending") & (OutboxMail.created_at <= _now() - min_age)
    ).order_by(OutboxMail.id).limit(limit)
    sent = failed = 0
    for mail in pending:
        outcome = await _deliver(settings, mail)
        if outcome is True:
            sent += 1
        elif outcome is False:
            failed += 1
    return sent, failed


async def _claim(mail: dict) -> bool:
    """Count the attempt before making it; the conditional update lets only one of two
    concurrent flushes deliver a given mail."""
    from core.mail.tables import OutboxMail

    claimed = await OutboxMail.update({OutboxMail.attempts: mail["attempts"] + 1}).where(
        (OutboxMail.id == mail["id"]) & (OutboxMail.status == "pending") & (OutboxMail.attempts == mail["attempts"])
    ).returning(OutboxMail.id)
    return bool(claimed)


async def _deliver(settings: Settings, mail: dict) -> bool | None:
    """One delivery attempt: True delivered, False failed, None taken by someone else."""
    from core.mail.tables import OutboxMail

    if not await _claim(mail):
        return None
    attempt = mail["attempts"] + 1
    try:
        await aiosmtplib.send(
            _message(settings, mail), hostname=settings.smtp_host, port=settings.smtp_port,
            # Port 465 speaks TLS from the start, 587 upgrades with STARTTLS; anything else
            # is a local relay spoken to in plain SMTP.
            use_tls=settings.smtp_port == 465, start_tls=settings.smtp_port == 587, timeout=SMTP_TIMEOUT,
        )
    except Exception as exc:  # whatever went wrong, the mail stays queued and the caller goes on
        error = f"{type(exc).__name__}: {exc}"[:1000]
        status = "failed" if attempt >= MAX_ATTEMPTS else "pending"
        await OutboxMail.update({OutboxMail.status: status, OutboxMail.last_error: error}).where(OutboxMail.id == mail["id"])
        log.warning("mail %s not delivered (attempt %d, now %s): %s", mail["id"], attempt, status, error)
        return False
    await OutboxMail.update({OutboxMail.status: "sent", OutboxMail.sent_at: _now(), OutboxMail.last_error: ""}).where(
        OutboxMail.id == mail["id"]
    )
    log.info("mail %s delivered", mail["id"])
    return True


def _message(settings: Settings, mail: dict) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = mail["to_address"]
    msg["Subject"] = mail["subject"]
    msg["Date"] = format_datetime(mail["created_at"] or _now())
    domain = settings.smtp_from.rpartition("@")[2].strip("> ") or "localhost"
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(mail["body"])
    if mail["attachment_name"]:
        _attach(msg, mail["attachment_name"], mail["attachment_type"] or "text/plain", mail["attachment"])
    return msg


def _attach(msg: EmailMessage, name: str, mimetype: str, content: str) -> None:
    maintype, _, subtype = mimetype.partition("/")
    if maintype == "text":
        msg.add_attachment(content, subtype=subtype or "plain", filename=name)
    else:  # the email package takes non-text parts as bytes only
        msg.add_attachment(content.encode(), maintype=maintype, subtype=subtype or "octet-stream", filename=name)
