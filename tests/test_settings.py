"""Settings from CPMS_* variables, with safe defaults and refusals."""

from pathlib import Path

import pytest

from core.settings import DEFAULT_SECRET_KEY, Settings, SettingsError


def test_defaults_are_safe_and_local():
    s = Settings.from_env({})
    assert s.env == "development" and s.host == "127.0.0.1" and s.port == 8000
    assert s.sqlite_path.name == "cpms.sqlite3" and not s.uses_postgres
    assert s.plugins == ("*",)


def test_environment_values_are_parsed():
    s = Settings.from_env({
        "CPMS_PORT": "9000", "CPMS_PLUGINS": "coding, kpi", "CPMS_TRACE_HOOKS": "yes",
        "CPMS_DATABASE_URL": "postgresql://u@127.0.0.1/db", "CPMS_DATA_DIR": "/tmp/x",
    })
    assert s.port == 9000 and s.plugins == ("coding", "kpi") and s.trace_hooks is True
    assert s.uses_postgres and s.sqlite_path is None and s.data_dir == Path("/tmp/x")


def test_production_refuses_default_or_short_secret():
    with pytest.raises(SettingsError, match="CPMS_SECRET_KEY"):
        Settings.from_env({"CPMS_ENV": "production"})
    with pytest.raises(SettingsError):
        Settings.from_env({"CPMS_ENV": "production", "CPMS_SECRET_KEY": "short"})
    ok = Settings.from_env({"CPMS_ENV": "production", "CPMS_SECRET_KEY": "k" * 40})
    assert ok.production and ok.secret_key != DEFAULT_SECRET_KEY


def test_bad_values_get_clear_errors():
    with pytest.raises(SettingsError, match="CPMS_PORT"):
        Settings.from_env({"CPMS_PORT": "eighty"})
    with pytest.raises(SettingsError, match="CPMS_DATABASE_URL"):
        Settings.from_env({"CPMS_DATABASE_URL": "mysql://x"})
    with pytest.raises(SettingsError, match="CPMS_ENV"):
        Settings.from_env({"CPMS_ENV": "staging"})


def test_production_app_refuses_to_start_with_default_secret():
    from core.app import create_app_from_env
    import os

    old = dict(os.environ)
    os.environ["CPMS_ENV"] = "production"
    os.environ.pop("CPMS_SECRET_KEY", None)
    try:
        with pytest.raises(SettingsError):
            create_app_from_env()
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_access_log_masks_one_time_tokens():
    import logging

    from core.app import MaskSecretPaths

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:1", "GET", "/account/password/reset/SeCrEtToKeN123?x=1", "1.1", 200), None)
    assert MaskSecretPaths().filter(record)
    assert "SeCrEtToKeN123" not in record.getMessage() and "/account/password/reset/…?…" in record.getMessage()
    search = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "%s %s", ("GET", "/patients?q=Zebulon+Smith"), None)
    MaskSecretPaths().filter(search)
    assert "Zebulon" not in search.getMessage() and search.getMessage() == "GET /patients?…"
    plain = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, "%s", ("/patients/P123",), None)
    MaskSecretPaths().filter(plain)
    assert plain.getMessage() == "/patients/P123"


def test_passwords_are_hashed_with_the_production_argon2id_parameters_by_default():
    """The suite hashes with ``test-fast``; what every real deployment uses is checked here."""
    from argon2 import extract_parameters

    from core.identity import passwords

    s = Settings.from_env({})
    assert s.password_hashing == "standard"
    try:
        passwords.configure(s)
        stored = passwords.hash_password("a long enough password 1")
        params = extract_parameters(stored)
        assert stored.startswith("$argon2id$v=19$")
        # RFC 9106's second recommended option (argon2-cffi's default): 64 MiB, 3 passes, 4 lanes.
        assert (params.memory_cost, params.time_cost, params.parallelism) == (65536, 3, 4)
        assert params.hash_len == 32 and params.salt_len == 16
        assert passwords.verify_password(stored, "a long enough password 1")
        assert not passwords.verify_password(stored, "a long enough password 2")
        assert not passwords.verify_password(None, "a long enough password 1")
        # A hash made at the test cost still verifies: the cost is read from the hash.
        fast = passwords.PasswordHasher(**passwords.PROFILES["test-fast"]).hash("x" * 12)
        assert passwords.verify_password(fast, "x" * 12)
    finally:
        passwords.configure(Settings(env="test", password_hashing="test-fast"))


def test_the_fast_password_hashing_is_refused_outside_tests():
    for env in ("development", "production"):
        with pytest.raises(SettingsError, match="CPMS_PASSWORD_HASHING"):
            Settings.from_env({"CPMS_ENV": env, "CPMS_PASSWORD_HASHING": "test-fast",
                               "CPMS_SECRET_KEY": "x" * 40})
    with pytest.raises(SettingsError, match="CPMS_PASSWORD_HASHING"):
        Settings.from_env({"CPMS_ENV": "test", "CPMS_PASSWORD_HASHING": "md5"})
    assert Settings.from_env({"CPMS_ENV": "test", "CPMS_PASSWORD_HASHING": "test-fast"}).password_hashing == "test-fast"
