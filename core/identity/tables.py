from piccolo.columns import BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
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
    password_changed_at = Timestamptz(null=True, default=None)
    #: TOTP secret, encrypted with the site key (core.crypto); empty when not enrolled.
    totp_secret = Text(default="")
    totp_enabled_at = Timestamptz(null=True, default=None)
    #: Last accepted TOTP time step: a code is never accepted twice.
    totp_last_step = Integer(default=0)
    failed_logins = Integer(default=0)
    locked_until = Timestamptz(null=True, default=None)
    oidc_issuer = Varchar(length=300, default="")
    oidc_subject = Varchar(length=300, default="", index=True)


class RoleAssignment(Table, tablename="identity_role_assignment"):
    """A user holds a role, in an ERN (or platform-wide when ``ern`` is null)."""

    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    role = Varchar(length=30)
    ern = ForeignKey(Ern, null=True, default=None, on_delete=OnDelete.cascade)
    granted_by = Integer(null=True, default=None)
    granted_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(null=True, default=None)


class AssistantFor(Table, tablename="identity_assistant_for"):
    """An assistant acts for a named HP of the same HCP."""

    assistant = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    hp = ForeignKey(User, on_delete=OnDelete.cascade)


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
    #: "full", or "mfa" while the second factor is still to be given.
    stage = Varchar(length=10, default="full")
    #: How the first factor was given: "password" or "oidc".
    method = Varchar(length=10, default="password")


class RecoveryCode(Table, tablename="identity_recovery_code"):
    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    code_hash = Varchar(length=64)
    used_at = Timestamptz(null=True, default=None)


class PasskeyCredential(Table, tablename="identity_passkey"):
    """A WebAuthn credential (passkey or security key) a user registered as a second factor. The
    public key only: the private key never leaves the authenticator."""

    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    #: base64url of the credential id the authenticator chose (unique across all users).
    credential_id = Varchar(length=700, unique=True)
    #: base64url of the COSE public key.
    public_key = Text()
    sign_count = BigInt(default=0)
    name = Varchar(length=60, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    last_used_at = Timestamptz(null=True, default=None)


class OneTimeToken(Table, tablename="identity_token"):
    """Single-use, expiring tokens (e-mail verification, password reset); only the hash is kept."""

    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    purpose = Varchar(length=30)
    token_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)


class AccessRequest(Table, tablename="identity_access_request"):
    """A person asks for roles in an ERN at an HCP; the ERN's coordinators decide."""

    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    ern = ForeignKey(Ern, on_delete=OnDelete.cascade, index=True)
    hcp = ForeignKey(Hcp, null=True, default=None, on_delete=OnDelete.cascade)
    roles = Varchar(length=200)  # comma-separated role names
    justification = Text()
    status = Varchar(length=10, default="pending", index=True)  # pending, approved, rejected
    created_at = Timestamptz(default=TimestamptzNow())
    decided_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    decided_at = Timestamptz(null=True, default=None)
    reason = Text(default="")


class MfaResetRequest(Table, tablename="identity_mfa_reset"):
    """A user who lost their authenticator asks a coordinator of their ERN to reset it."""

    user = ForeignKey(User, on_delete=OnDelete.cascade, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    status = Varchar(length=10, default="pending")  # pending, approved, rejected
    decided_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    decided_at = Timestamptz(null=True, default=None)
    reason = Text(default="")
