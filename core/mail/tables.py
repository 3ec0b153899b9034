from piccolo.columns import Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class OutboxMail(Table, tablename="mail_outbox"):
    """Every e-mail is written here first, then delivered; failures stay queued for retry."""

    to_address = Varchar(length=254)
    subject = Varchar(length=300)
    body = Text()
    #: Optional iCalendar or other attachment, as text.
    attachment_name = Varchar(length=100, default="")
    attachment_type = Varchar(length=100, default="")
    attachment = Text(default="")
    status = Varchar(length=10, default="pending", index=True)  # pending, sent, failed
    attempts = Integer(default=0)
    last_error = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)
