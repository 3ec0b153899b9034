"""The inbox and each user's choice of channel per kind of notification.

Titles and bodies never carry patient identity: callers write pseudonyms or nicknames only
(see ``core.notify.service.notify``), so these rows need no encryption.
"""

from piccolo.columns import Boolean, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.identity.tables import User


class Notification(Table, tablename="notify_notification"):
    """One message in one user's inbox."""

    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    #: A name registered in ``core.notify.kinds.KINDS`` ("panel.invited", ...).
    kind = Varchar(length=40)
    title = Varchar(length=300)
    #: Where "open" leads: a local path ("/panels/12"), never an absolute URL (open redirect).
    link = Varchar(length=300)
    body = Text(default="")
    urgent = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())
    read_at = Timestamptz(null=True, default=None)


class NotificationPreference(Table, tablename="notify_preference"):
    """A user's channels for one kind; no row means both channels on (the default)."""

    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    kind = Varchar(length=40)
    in_app = Boolean(default=True)
    email = Boolean(default=True)
