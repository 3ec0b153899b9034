"""Outgoing e-mail through an outbox table (delivery by SMTP with aiosmtplib).

Send with ``core.mail.sender.send_mail``; ``cpms mail flush`` retries what could not be
delivered and ``cpms mail outbox`` shows the queue.
"""

from core.hookspecs import hookimpl


@hookimpl
def register_piccolo_apps():
    return ["core.mail.piccolo_app"]


@hookimpl
def register_commands(cli):
    from datetime import timezone

    import click

    def run(work):
        from core.cli import run_with_settings  # imported late: core.cli loads the plugins, this among them

        return run_with_settings(work)

    @cli.group("mail", help="Outgoing e-mail: the outbox and its delivery.")
    def mail():
        pass

    @mail.command("flush", help="Retry delivering the mails still waiting in the outbox.")
    @click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1), help="Most mails to try.")
    def flush(limit):
        from core.mail.sender import flush_outbox

        sent, failed = run(lambda settings: flush_outbox(settings, limit))
        click.echo(f"Delivered {sent} mail(s); {failed} could not be delivered and stay queued or failed.")

    @mail.command("outbox", help="List recent mails (never their bodies: they hold one-time links).")
    @click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
    @click.option("--status", type=click.Choice(["pending", "sent", "failed"]), default=None, help="Only mails in this state.")
    def outbox(limit, status):
        async def recent(settings):
            from core.mail.tables import OutboxMail

            query = OutboxMail.select(
                OutboxMail.id, OutboxMail.created_at, OutboxMail.status, OutboxMail.attempts,
                OutboxMail.to_address, OutboxMail.subject,
            ).order_by(OutboxMail.id, ascending=False).limit(limit)
            if status:
                query = query.where(OutboxMail.status == status)
            return await query

        rows = run(recent)
        if not rows:
            click.echo("The outbox is empty.")
            return
        click.echo(f"{'id':>6}  {'created (UTC)':16}  {'status':7}  {'tries':>5}  to / subject")
        for r in rows:
            created = r["created_at"].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") if r["created_at"] else ""
            click.echo(f"{r['id']:>6}  {created:16}  {r['status']:7}  {r['attempts']:>5}  {r['to_address']} / {r['subject']}")
