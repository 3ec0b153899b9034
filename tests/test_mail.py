"""Outgoing mail against a real SMTP server: delivery, queueing while it is down, retries, CLI."""

import logging
from datetime import datetime, timedelta, timezone

from core.mail.sender import MAX_ATTEMPTS, flush_outbox, send_mail
from tests.conftest import make_settings
from tests.support.smtp import SmtpServer, free_port, smtp_server  # noqa: F401  (fixture)
from tests.support.cli import run_cpms



def smtp_settings(port: int, host: str = "127.0.0.1"):
    return make_settings(smtp_host=host, smtp_port=port, smtp_from="CPMS <cpms@mail.test>")


async def outbox_row(mail_id: int) -> dict:
    from core.mail.tables import OutboxMail

    return await OutboxMail.select().where(OutboxMail.id == mail_id).first()


async def test_mail_is_delivered_and_marked_sent(clean_db, smtp_server):
    settings = smtp_settings(smtp_server.port)
    invite = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"
    mail_id = await send_mail(
        settings, "doctor@example.org", "Panel on Tuesday", "Dear Dr Müller,\n\nsee you there.\n",
        attachment=("panel.ics", "text/calendar", invite),
    )
    [received] = smtp_server.messages
    assert received["to"] == "doctor@example.org"
    assert received["from"] == "cpms@mail.test"
    assert received["subject"] == "Panel on Tuesday"
    assert "Dear Dr Müller" in received["body"]
    assert received["attachments"] == [("panel.ics", "text/calendar", invite)]
    row = await outbox_row(mail_id)
    assert row["status"] == "sent" and row["attempts"] == 1 and row["last_error"] == ""
    assert row["sent_at"] is not None


async def test_down_server_keeps_mail_queued_until_a_flush_delivers_it(clean_db, caplog):
    port = free_port()  # nothing listens there yet
    settings = smtp_settings(port)
    with caplog.at_level(logging.WARNING, logger="cpms.mail"):
        mail_id = await send_mail(settings, "doctor@example.org", "Reset link", "secret body https://x/reset/abc")
    row = await outbox_row(mail_id)
    assert row["status"] == "pending" and row["attempts"] == 1 and row["sent_at"] is None
    assert row["last_error"]
    assert f"mail {mail_id} not delivered" in caplog.text
    assert "secret body" not in caplog.text and "doctor@example.org" not in caplog.text

    # A fresh mail is left to its first delivery for a while, so a flush never sends it twice.
    assert await flush_outbox(settings) == (0, 0)
    assert (await outbox_row(mail_id))["attempts"] == 1

    server = SmtpServer(port).start()
    try:
        assert await flush_outbox(settings, min_age=timedelta(0)) == (1, 0)
    finally:
        server.stop()
    assert [m["subject"] for m in server.messages] == ["Reset link"]
    row = await outbox_row(mail_id)
    assert row["status"] == "sent" and row["attempts"] == 2 and row["last_error"] == ""
    # Nothing is left to send.
    assert await flush_outbox(settings, min_age=timedelta(0)) == (0, 0)


async def test_flush_gives_up_after_max_attempts(clean_db):
    from core.mail.tables import OutboxMail

    settings = smtp_settings(free_port())
    mail_id = await send_mail(settings, "doctor@example.org", "Hello", "body")
    await OutboxMail.update({OutboxMail.attempts: MAX_ATTEMPTS - 1}).where(OutboxMail.id == mail_id)
    assert await flush_outbox(settings, min_age=timedelta(0)) == (0, 1)
    row = await outbox_row(mail_id)
    assert row["status"] == "failed" and row["attempts"] == MAX_ATTEMPTS
    assert await flush_outbox(settings, min_age=timedelta(0)) == (0, 0)
    assert (await outbox_row(mail_id))["attempts"] == MAX_ATTEMPTS


async def test_without_smtp_host_mail_is_only_stored(clean_db, caplog):
    settings = smtp_settings(25, host="")
    with caplog.at_level(logging.INFO, logger="cpms.mail"):
        mail_id = await send_mail(settings, "doctor@example.org", "Hello", "body")
    row = await outbox_row(mail_id)
    assert row["status"] == "pending" and row["attempts"] == 0 and row["body"] == "body"
    assert "stored, SMTP not configured" in caplog.text
    assert await flush_outbox(settings, min_age=timedelta(0)) == (0, 0)


async def test_line_breaks_cannot_inject_headers(clean_db, smtp_server):
    settings = smtp_settings(smtp_server.port)
    await send_mail(settings, "doctor@example.org", "Hello\r\nBcc: spy@evil.example", "body")
    [received] = smtp_server.messages
    assert received["recipients"] == ["doctor@example.org"]
    assert received["subject"] == "Hello Bcc: spy@evil.example"


def cpms(settings, *args, **extra_env):
    return run_cpms(settings, *args, **extra_env)


async def test_cli_outbox_lists_mails_without_bodies(clean_db, settings):
    stored = smtp_settings(25, host="")
    await send_mail(stored, "first@example.org", "Confirm your address", "open https://cpms.test/account/verify/SECRETTOKEN1")
    await send_mail(stored, "second@example.org", "Reset your password", "open https://cpms.test/account/password/reset/SECRETTOKEN2")
    out = cpms(settings, "mail", "outbox")
    assert out.returncode == 0, out.stderr
    assert "first@example.org / Confirm your address" in out.stdout
    assert "second@example.org / Reset your password" in out.stdout
    assert "pending" in out.stdout
    assert "SECRETTOKEN" not in out.stdout and "https://" not in out.stdout
    only_sent = cpms(settings, "mail", "outbox", "--status", "sent")
    assert only_sent.returncode == 0 and "first@example.org" not in only_sent.stdout


async def test_cli_flush_delivers_queued_mail(clean_db, settings, smtp_server):
    from core.mail.tables import OutboxMail

    mail_id = await send_mail(smtp_settings(25, host=""), "doctor@example.org", "Queued", "body")
    # Old enough that its first delivery attempt would be over.
    await OutboxMail.update({OutboxMail.created_at: datetime.now(timezone.utc) - timedelta(minutes=5)}).where(OutboxMail.id == mail_id)
    out = cpms(settings, "mail", "flush", CPMS_SMTP_HOST="127.0.0.1", CPMS_SMTP_PORT=str(smtp_server.port))
    assert out.returncode == 0, out.stderr
    assert "Delivered 1 mail(s); 0 could not be delivered" in out.stdout
    assert [m["subject"] for m in smtp_server.messages] == ["Queued"]
    assert (await outbox_row(mail_id))["status"] == "sent"
