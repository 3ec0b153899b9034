from piccolo.columns import Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from core.orgs.tables import Ern, Hcp


class User(Table, tablename="identity_user"):
    email = Varchar(length=254, unique=True)
    name = Varchar(length=200)
    password_hash = Text(default="")
    hcp = ForeignKey(Hcp, null=True, default=None, on_delete=OnDelete.restrict)
    is_active = Boolean(default=True)
    email_verified = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())


class RoleAssignment(Table, tablename="identity_role_assignment"):
    """A user holds a role, in an ERN (or platform-wide when ``ern`` is null)."""

    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    role = Varchar(length=30)
    ern = ForeignKey(Ern, null=True, default=None, on_delete=OnDelete.cascade)
    granted_by = Integer(null=True, default=None)
    granted_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(null=True, default=None)


class RolePermission(Table, tablename="identity_role_permission"):
    """The grant table: which permissions a role carries."""

    role = Varchar(length=30, index=True)
    permission = Varchar(length=100)


class SeededPermission(Table, tablename="identity_seeded_permission"):
    """Permissions whose default grants were applied once (so a removed grant stays removed)."""

    permission = Varchar(length=100, unique=True)


class Session(Table, tablename="identity_session"):
    """Server-side session; the cookie holds a random token, the table only its hash."""

    token_hash = Varchar(length=64, unique=True)
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    last_seen_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    address = Varchar(length=64, default="")
    user_agent = Varchar(length=300, default="")
    revoked_at = Timestamptz(null=True, default=None)
