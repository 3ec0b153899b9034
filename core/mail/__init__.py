"""Outgoing e-mail through an outbox table (delivery by SMTP with aiosmtplib)."""

from core.hookspecs import hookimpl


@hookimpl
def register_piccolo_apps():
    return ["core.mail.piccolo_app"]
