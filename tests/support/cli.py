"""Running the real ``cpms`` command from tests, on the test run's database, files and settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli_env(settings, **extra: str) -> dict[str, str]:
    """The environment for a ``cpms`` process (CLI or server) that works on the same database,
    data folder (keys), Redis, plugins and password-hashing cost as the test process."""
    return {
        **os.environ, "PYTHONPATH": str(ROOT), "CPMS_ENV": "test", "CPMS_DATA_DIR": str(settings.data_dir),
        "CPMS_DATABASE_URL": settings.database_url, "CPMS_REDIS_URL": settings.redis_url,
        "CPMS_PLUGIN_MODULES": ",".join(settings.plugin_modules), "CPMS_SECRET_KEY": settings.secret_key,
        "CPMS_PASSWORD_HASHING": settings.password_hashing, "CPMS_SWEEP_INTERVAL": str(settings.sweep_interval),
        **extra,
    }


def run_cpms(settings, *args: str, input: str | None = None, timeout: float = 120, **extra_env: str):
    """``cpms ARGS`` in a subprocess; returns the CompletedProcess (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args], cwd=ROOT, env=cli_env(settings, **extra_env),
        capture_output=True, text=True, timeout=timeout, input=input,
    )
