"""Domain events reach the activity log and plugins; the ``cpms`` command works end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.events import Event
from tests.conftest import login, make_user
from tests.support.cli import run_cpms

ROOT = Path(__file__).resolve().parents[1]


async def test_event_is_recorded_then_handled_by_plugins(client):
    from core.activity.tables import Activity
    from tests.example_plugin.tables import ExampleNote

    uid = await make_user("hp@example.org")
    await login(client, "hp@example.org")
    r = await client.get("/example/hello")
    assert r.status_code == 200
    rows = await Activity.select().where(Activity.action == "example.greeted")
    assert len(rows) == 1 and rows[0]["actor_id"] == uid
    notes = [n["text"] for n in await ExampleNote.select()]
    assert notes == [f"greeted by user {uid}"]
    login_rows = await Activity.select().where(Activity.action == "user.logged_in")
    assert len(login_rows) == 1 and login_rows[0]["address"]


async def test_undeclared_event_is_refused(clean_db):
    with pytest.raises(ValueError, match="undeclared"):
        await clean_db.events.emit(Event("nobody.declared.this"))


async def test_failing_subscriber_does_not_lose_the_event(clean_db):
    from core.activity.tables import Activity

    seen = []

    def broken(event):
        raise RuntimeError("boom")

    unsubscribe = clean_db.events.subscribe(broken)
    unsubscribe2 = clean_db.events.subscribe(seen.append)
    try:
        await clean_db.events.emit(Event("user.created", 1, "user", "1"))
    finally:
        unsubscribe()
        unsubscribe2()
    assert [e.name for e in seen] == ["user.created"]
    assert await Activity.count().where(Activity.action == "user.created") == 1


def _cpms(settings, *args, input=None):
    return run_cpms(settings, *args, input=input)


async def test_cli_plugins_lists_plugins_routes_permissions(settings):
    out = _cpms(settings, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert {"orgs", "identity", "activity", "pages", "example_plugin"} <= set(plugins)
    assert "GET /example/hello" in plugins["example_plugin"]["routes"]
    assert plugins["example_plugin"]["permissions"] == ["example.hello"]
    assert "register_routes" in plugins["example_plugin"]["hooks"]
    text = _cpms(settings, "plugins")
    assert "permission: orgs.view" in text.stdout


async def test_cli_plugin_command_is_registered(settings):
    out = _cpms(settings, "example-hello")
    assert out.returncode == 0 and "hello from the example plugin" in out.stdout


async def test_cli_demo_loads_realistic_data(clean_db, settings):
    from core.identity.tables import RoleAssignment, User
    from core.orgs.tables import Ern, Hcp
    from tests.example_plugin.tables import ExampleNote

    out = _cpms(settings, "demo")
    assert out.returncode == 0, out.stderr
    assert "24 ERNs" in out.stdout and "hp@demo.cpms.eu / demo-hp-2026" in out.stdout
    assert await Ern.count() == 24
    countries = {h["country"] for h in await Hcp.select(Hcp.country)}
    assert len(countries) >= 8
    roles = {r["role"] for r in await RoleAssignment.select(RoleAssignment.role)}
    assert roles == {"admin", "hp", "coordinator", "dispatcher", "researcher", "guest", "assistant", "dpo"}
    assert await User.count() == 9  # one per role, and the panels' demo expert at another hospital
    assert await ExampleNote.count() == 1  # plugins add their own demo data
    from core.patients.tables import Consent, Patient

    from plugins.research.demo import DEMO_PATIENTS

    # The core's three demo patients, and the research plugin's invented cohort.
    assert await Patient.count() == 3 + DEMO_PATIENTS and await Consent.count().where(Consent.kind == "care") == 3 + DEMO_PATIENTS
    from core.panels.tables import Panel

    assert {p["status"] for p in await Panel.select(Panel.status)} == {"open", "submitted", "closed"}


async def test_cli_demo_refused_in_production(settings):
    env_settings = settings
    out = subprocess.run(
        [sys.executable, "-m", "core.cli", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CPMS_ENV": "production", "CPMS_DATA_DIR": str(env_settings.data_dir)},
    )
    assert out.returncode == 2
    assert "CPMS_SECRET_KEY" in out.stderr


async def test_cli_createuser_and_login(client, settings):
    out = _cpms(settings, "createuser", "--email", "New@Example.org", "--name", "New Person", "--role", "hp:ERN RND", "--password", "a long enough password 1")
    assert out.returncode == 0, out.stderr
    r = await login(client, "new@example.org", "a long enough password 1")
    assert r.status_code == 302
    bad = _cpms(settings, "createuser", "--email", "x@example.org", "--name", "X", "--role", "hp:ERN NOPE", "--password", "pw")
    assert bad.returncode != 0 and "unknown ERN" in bad.stderr
    from core.identity.tables import User

    assert await User.count().where(User.email == "x@example.org") == 0
