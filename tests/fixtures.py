"""Test set-up: a real database (SQLite file, or PostgreSQL when CPMS_TEST_DATABASE_URL is set),
migrated once per run and emptied before each test; the real app served in-process."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tempfile
from pathlib import Path

import pytest
import httpx

from core import db
from core.plugins import PluginHost
from core.settings import Settings

#: Under pytest-xdist every worker process ("gw0", "gw1", ...) gets its own database, Redis
#: database and data folder, so tests running side by side never share state.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_WORKER_NO = int(WORKER[2:]) if WORKER.startswith("gw") else 0
BASE_DB_URL = os.environ.get("CPMS_TEST_DATABASE_URL", "")
TEST_DB_URL = f"{BASE_DB_URL}_{WORKER}" if BASE_DB_URL and WORKER else BASE_DB_URL


def _worker_redis_url(url: str) -> str:
    if not url or not WORKER:
        return url
    base, _, number = url.rstrip("/").rpartition("/")
    if not number.isdigit():
        base, number = url.rstrip("/"), "0"
    db_no = int(number) + _WORKER_NO
    if db_no > 15:
        raise RuntimeError(f"Redis has 16 databases; worker {WORKER} would need number {db_no}: use fewer workers")
    return f"{base}/{db_no}"


# With a Redis URL, sessions live in Redis for the whole run (as with several app processes).
TEST_REDIS_URL = _worker_redis_url(os.environ.get("CPMS_TEST_REDIS_URL", ""))
_DATA_DIR_ENV = os.environ.get("CPMS_TEST_DATA_DIR")
DATA_DIR = Path(f"{_DATA_DIR_ENV}-{WORKER}" if _DATA_DIR_ENV and WORKER else _DATA_DIR_ENV or tempfile.mkdtemp(prefix="cpms-test-"))
EXAMPLE = "tests.example_plugin"
SHARED = Path(__file__).resolve().parents[2] / "shared"


def make_settings(**overrides) -> Settings:
    values = dict(
        env="test", data_dir=DATA_DIR, database_url=TEST_DB_URL, redis_url=TEST_REDIS_URL, plugin_modules=(EXAMPLE,),
        secret_key="test-secret-key-with-enough-length-0123456789",
        # argon2id at its smallest cost; tests/test_settings.py checks the production parameters.
        password_hashing="test-fast",
        # The periodic sweep runs in tests that ask for it (tests/test_sweeper.py); the start-up one always.
        sweep_interval=0,
    )
    values.update(overrides)
    return Settings(**values)


async def _reset_schema(settings: Settings) -> None:
    """Start every run from an empty database, so migrations are exercised from scratch."""
    if settings.uses_postgres:
        import asyncpg

        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        finally:
            await conn.close()
    else:
        path = settings.sqlite_path
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    from core.identity import passwords

    settings = make_settings()
    passwords.configure(settings)
    return settings


@pytest.fixture(scope="session")
async def migrated(settings):
    from core.cli import migrate_all

    if settings.uses_postgres and settings.database_url != BASE_DB_URL:
        from tests.support.snapshot import ensure_postgres_database

        await ensure_postgres_database(settings.database_url, BASE_DB_URL)
    await _reset_schema(settings)
    host = PluginHost(settings)
    db.configure(settings, host)
    await migrate_all(host)
    return host


async def empty_database(settings, host) -> None:
    """Every row and session gone, reference data (ERNs, default grants) back, as after ``cpms migrate``."""
    from core.identity import sync_role_permissions
    from core.identity.session_store import store_for
    from core.orgs.seed import seed_erns

    db.configure(settings, host)
    await db.delete_all_rows()
    await store_for(settings).clear()
    await seed_erns()
    await sync_role_permissions(host)


@pytest.fixture
async def clean_db(migrated, settings):
    """An empty database with reference data (ERNs, default grants), as after ``cpms migrate``."""
    await empty_database(settings, migrated)
    return migrated


_APPS: dict[int, object] = {}


def session_app(settings):
    """The app for the session's ``settings``, built once: building one registers some 230
    routes (about 0.3 s). Each test still runs its start-up and shutdown hooks."""
    from core import db
    from core.app import create_app

    app = _APPS.get(id(settings))
    if app is None:
        app = _APPS[id(settings)] = create_app(settings)
    db.configure(settings, app.state.host)
    return app


@pytest.fixture
async def client(clean_db, settings):
    async with app_client(session_app(settings)) as c:
        yield c


@dataclasses.dataclass
class DemoData:
    """What ``cpms demo`` made, as tests refer to it: user ids by demo role, patients' pseudonyms
    in the order they were enrolled."""

    users: dict[str, int]
    patients: list[str]


@pytest.fixture(scope="session")
def demo_snapshot(settings, migrated):
    from core import db
    from tests.support import snapshot

    return snapshot.build(settings, db.all_tables())


@pytest.fixture
async def demo(clean_db, demo_snapshot, settings) -> DemoData:
    """The test database holding exactly the demo (``cpms demo`` run once per test process)."""
    from core import db
    from core.identity.tables import User
    from core.patients.tables import Patient
    from tests.support import snapshot

    db.configure(settings, clean_db)
    snapshot.restore(demo_snapshot, settings, db.all_tables())
    users = {
        u["email"].split("@")[0]: u["id"]
        for u in await User.select(User.id, User.email).where(User.email.like("%@demo.cpms.eu"))
    }
    patients = [p["pseudonym"] for p in await Patient.select(Patient.pseudonym).order_by(Patient.id)]
    return DemoData(users=users, patients=patients)


# --- helpers -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def app_client(app):
    """An HTTP client for ``app`` with its lifespan run in the test's own event loop.

    (Litestar's AsyncTestClient runs the lifespan in another thread's loop, which would put
    the PostgreSQL pool in a different loop from the queries the tests make.)
    """
    # The start-up and shutdown hooks are called directly: app.lifespan() uses an anyio task
    # group, which pytest-asyncio may finalise from another task.
    for hook in app.on_startup:
        await hook(app)
    try:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            yield c
    finally:
        for hook in app.on_shutdown:
            await hook(app)

PASSWORD = "correct horse battery staple 42"


TOTP_SECRETS: dict[int, str] = {}


async def make_user(
    email: str, roles=(("hp", "ERN RND"),), hcp: str | None = "Test Hospital", name: str = "Test User", mfa: bool = True
) -> int:
    """Create a user; roles are (role, ERN acronym or None) pairs. With ``mfa`` the user has an
    authenticator enrolled (secret in ``TOTP_SECRETS``), as every user with patient roles must."""
    from core.identity import create_user
    from core.orgs.tables import Ern, Hcp, HcpErn

    erns = {e["acronym"]: e["id"] for e in await Ern.select(Ern.id, Ern.acronym)}
    hcp_id = None
    if hcp:
        existing = await Hcp.select(Hcp.id).where(Hcp.name == hcp).first()
        if existing:
            hcp_id = existing["id"]
        else:
            row = Hcp(name=hcp, city="Testville", country="BE")
            await row.save()
            hcp_id = row.id
            await HcpErn.insert(*[HcpErn(hcp=hcp_id, ern=erns[a]) for a in ("ERN RND", "ERKNet", "MetabERN")])
    user_id = await create_user(email, name, PASSWORD, hcp_id, [(r, erns[e] if e else None) for r, e in roles])
    if mfa:
        await enrol_totp(user_id)
    return user_id


async def enrol_totp(user_id: int) -> str:
    import pyotp

    from core.crypto import keyring
    from core.identity.mfa import SECRET_CONTEXT
    from core.identity.sessions import now
    from core.identity.tables import User

    secret = pyotp.random_base32()
    await User.update(
        {User.totp_secret: keyring(make_settings()).encrypt(secret, SECRET_CONTEXT), User.totp_enabled_at: now()}
    ).where(User.id == user_id)
    TOTP_SECRETS[user_id] = secret
    return secret


async def totp_code(user_id: int) -> str:
    """A valid code for the user's authenticator. The product refuses a code twice; tests that
    log the same user in several times within 30 s forget the last used step first."""
    import pyotp

    from core.identity.tables import User

    await User.update({User.totp_last_step: 0}).where(User.id == user_id)
    return pyotp.TOTP(TOTP_SECRETS[user_id]).now()


def csrf_of(client) -> str:
    return client.cookies.get("csrftoken", "")


async def login(client, email: str, password: str = PASSWORD, second_factor: bool = True):
    """Log in with the password and, when asked and known, the authenticator code."""
    from core.identity.tables import User

    await client.get("/login")
    r = await client.post(
        "/login", data={"email": email, "password": password, "next": "/", "_csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    if second_factor and r.status_code in (302, 303) and r.headers["location"].startswith("/login/2fa"):
        user = await User.select(User.id).where(User.email == email.lower()).first()
        if user and user["id"] in TOTP_SECRETS:
            r = await client.post(
                "/login/2fa", data={"code": await totp_code(user["id"]), "next": "/", "_csrf_token": csrf_of(client)},
                follow_redirects=False,
            )
    return r


async def post_form(client, url: str, data: dict | None = None, **kw):
    payload = dict(data or {})
    payload["_csrf_token"] = csrf_of(client)
    kw.setdefault("follow_redirects", False)
    return await client.post(url, data=payload, **kw)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
