"""Settings come from ``CPMS_*`` environment variables, with safe defaults.

One frozen object is built once (``Settings.from_env()``) and handed to
``create_app``; nothing else reads the environment, so tests can build their own.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Shipped so that a first run works without configuration; refused in production.
DEFAULT_SECRET_KEY = "cpms-development-secret-key-change-me"


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message says which and why."""


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    #: ``development`` (default) or ``production``.
    env: str = "development"
    #: Signs session cookies and CSRF tokens. Must be set in production.
    secret_key: str = DEFAULT_SECRET_KEY
    #: Folder for the SQLite database, uploads and keys.
    data_dir: Path = PROJECT_ROOT / "var"
    #: ``sqlite:///path`` or ``postgresql://user@host:port/db``; empty: SQLite in data_dir.
    database_url: str = ""
    #: Plugins to enable: ``*`` for every available plugin, or a comma list of names.
    plugins: tuple[str, ...] = ("*",)
    #: Plugins to leave out even when ``plugins`` is ``*``.
    disabled_plugins: tuple[str, ...] = ()
    #: Extra plugin modules to load (``module.path``), e.g. for local plugins.
    plugin_modules: tuple[str, ...] = ()
    #: Public address of the site, used in e-mails and OpenID Connect redirects.
    base_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    #: Redis for sessions and live updates when several app processes run.
    redis_url: str = ""
    #: Print every plugin hook call (for plugin authors).
    trace_hooks: bool = False
    #: Session cookie lifetime rules (seconds).
    session_idle_timeout: int = 30 * 60
    session_absolute_timeout: int = 12 * 60 * 60
    #: Request body limit for ordinary forms and JSON (bytes).
    max_body_size: int = 10 * 1024 * 1024
    #: Outgoing mail.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "cpms@localhost"
    #: OpenID Connect (EU Login): empty issuer disables it.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_label: str = "EU Login"
    #: A login at the provider whose ``acr`` is one of these, or whose ``amr`` holds one of these,
    #: counts as the second factor: CPMS then asks for no TOTP code of its own.
    oidc_trusted_acr: tuple[str, ...] = ()
    oidc_trusted_amr: tuple[str, ...] = ()
    #: Video-conference room for panel meetings; ``{room}`` becomes a random, unguessable name.
    meeting_url_template: str = "https://meet.jit.si/cpms-{room}"

    #: Seconds between sweeps of abandoned working files (and a daily check of the store); 0: only at start-up.
    sweep_interval: int = 600
    #: Password hashing cost: ``standard`` (argon2id, RFC 9106) or ``test-fast`` (tests only).
    password_hashing: str = "standard"

    extra: dict[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def sqlite_path(self) -> Path | None:
        url = self.database_url
        if not url:
            return self.data_dir / "cpms.sqlite3"
        if url.startswith("sqlite:///"):
            return Path(url[len("sqlite:///") :])
        return None

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        environ = dict(os.environ if environ is None else environ)
        values: dict = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = environ.get(f"CPMS_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        values["extra"] = {
            k[len("CPMS_") :].lower(): v
            for k, v in environ.items()
            if k.startswith("CPMS_") and k[len("CPMS_") :].lower() not in {f.name for f in fields(cls)}
        }
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.env not in {"development", "production", "test"}:
            raise SettingsError(f"CPMS_ENV must be development, production or test, not {self.env!r}")
        if self.production and (self.secret_key == DEFAULT_SECRET_KEY or len(self.secret_key) < 32):
            raise SettingsError(
                "CPMS_SECRET_KEY must be set to a random value of at least 32 characters in production "
                f"(for example: {secrets.token_urlsafe(48)})"
            )
        if self.password_hashing not in ("standard", "test-fast"):
            raise SettingsError(f"CPMS_PASSWORD_HASHING must be standard (test-fast in tests), not {self.password_hashing!r}")
        if self.password_hashing != "standard" and self.env != "test":
            raise SettingsError("CPMS_PASSWORD_HASHING=test-fast is for the test suite only (CPMS_ENV=test)")
        if self.database_url and not (self.uses_postgres or self.database_url.startswith("sqlite:///")):
            raise SettingsError("CPMS_DATABASE_URL must start with sqlite:/// or postgresql://")


def _convert(name: str, annotation: str, raw: str):
    if annotation in ("bool",):
        return _bool(raw)
    if annotation in ("int",):
        try:
            return int(raw)
        except ValueError as exc:
            raise SettingsError(f"CPMS_{name.upper()} must be a whole number, not {raw!r}") from exc
    if annotation.startswith("tuple"):
        return _list(raw)
    if annotation == "Path":
        return Path(raw).expanduser().resolve()
    return raw
