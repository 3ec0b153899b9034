"""schemathesis (every check it has) against the real app on a loopback port, logged in as each role.

The app is served by uvicorn with the demo's data (patients, panels, a slide, DICOM studies, a family
tree, the bundled terminologies), as ``./dev demo`` serves it. For each of the eight roles of the demo,
and once without a session, schemathesis reads ``/api/schema/openapi.json`` and runs its phases
(examples, coverage: boundary and missing values, fuzzing: generated valid and invalid requests,
stateful: chains of calls) against every operation, with ALL its checks: no 5xx, every status code,
content type, header and body as documented, invalid requests refused, valid ones not refused,
authentication enforced, unsupported methods answered 405, a deleted resource gone.

Runs are bounded (``CPMS_SCHEMATHESIS_EXAMPLES`` examples per operation and phase, 12 by default)
and deterministic (``--generation-deterministic`` and a fixed seed), so CI repeats them exactly;
``scripts/schemathesis.sh`` runs many more examples, exploring. What the checks are told beyond their
defaults, and why, is ``tests/schemathesis.toml`` (and docs/security.md).

The demo's ids are not in the document, so most generated ids name nothing (404): the explicit
examples phase is fed the demo patient's pseudonym, panel, slide and DICOM UIDs through the config's
``[parameters]``, so every operation is also exercised on real data.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.identity import DEMO_PASSWORD
from tests.conftest import enrol_totp, totp_code
from tests.support.live_server import live_app

ROOT = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).with_name("schemathesis.toml")
#: The demo's roles (core.orgs.ALL_ROLES), and no session at all.
ROLES = ["admin", "hp", "coordinator", "dispatcher", "researcher", "guest", "assistant", "dpo", "anonymous"]
#: The HP of the enrolling hospital reaches every operation's data: every phase runs as them (coverage:
#: boundary, missing and wrong-typed values of every parameter and field, unsupported methods; fuzzing;
#: stateful chains). As the other roles (whose answers differ by what they may see and do), the
#: fuzzing phase runs, valid and invalid requests alike. scripts/schemathesis.sh runs every phase as everyone.
FULL_ROLES = {"hp"}
EXAMPLES = int(os.environ.get("CPMS_SCHEMATHESIS_EXAMPLES", "6"))
#: Examples per operation as the other roles (CI: a few; the long run: as many as for the HP).
OTHER_EXAMPLES = int(os.environ.get("CPMS_SCHEMATHESIS_OTHER_EXAMPLES", "3"))
ALL_PHASES = os.environ.get("CPMS_SCHEMATHESIS_ALL_PHASES") == "1"
SEED = int(os.environ.get("CPMS_SCHEMATHESIS_SEED", "20261208"))
EXPLORE = os.environ.get("CPMS_SCHEMATHESIS_EXPLORE") == "1"


@pytest.fixture(scope="module")
def api_server(settings, migrated, demo_snapshot):
    """The app under uvicorn with the demo's data, for this module."""
    from core import db
    from tests.support import snapshot

    db.configure(settings, migrated)
    snapshot.restore(demo_snapshot, settings, db.all_tables())
    with live_app(settings) as base:
        # The code search builds its index on its first query (seconds): not a response time to judge.
        # (The researcher logs in with the password alone.)
        with httpx.Client(base_url=base) as client:
            client.get("/login")
            client.post("/login", data={"email": "researcher@demo.cpms.eu", "password": DEMO_PASSWORD.format(role="researcher"), "next": "/",
                                        "_csrf_token": client.cookies["csrftoken"]})
            assert client.get("/api/coding/search", params={"q": "ataxia"}, timeout=120).status_code == 200
        yield base


async def _demo_ids() -> dict[str, str | int]:
    """Ids of the demo's first patient, for the examples phase (the generated ones rarely name anything)."""
    from core.panels.tables import Panel
    from core.patients.tables import Patient
    from plugins.dicom_viewer.tables import Instance, Series, Study
    from plugins.pathology_viewer.tables import Annotation as SlideAnnotation, Slide

    patient = await Patient.select().order_by(Patient.id).first()
    panel = await Panel.select().where(Panel.patient == patient["id"]).order_by(Panel.id).first()
    slide = await Slide.select().where(Slide.patient == patient["id"]).first()
    study = await Study.select().where(Study.patient == patient["id"]).first()
    series = await Series.select().where(Series.study == study["id"]).first()
    instance = await Instance.select().where(Instance.series == series["id"]).order_by(Instance.id).first()
    note = await SlideAnnotation.select().where(SlideAnnotation.slide == slide["id"]).first()
    return {
        "pseudonym": patient["pseudonym"], "panel_id": panel["id"], "slide_id": slide["id"], "series_id": series["id"],
        "instance_id": instance["id"], "study": study["study_uid"], "series": series["series_uid"], "sop": instance["sop_uid"],
        "annotation_id": note["id"] if note else 1,
    }


async def _session(base: str, role: str, user_id: int | None) -> dict[str, str]:
    """The cookies of a logged-in session (password, then the authenticator's code when asked)."""
    async with httpx.AsyncClient(base_url=base) as client:
        await client.get("/login")
        if role == "anonymous":
            return dict(client.cookies)
        csrf = client.cookies["csrftoken"]
        r = await client.post("/login", data={"email": f"{role}@demo.cpms.eu", "password": DEMO_PASSWORD.format(role=role),
                                              "next": "/", "_csrf_token": csrf}, follow_redirects=False)
        if r.headers.get("location", "").startswith("/login/2fa"):
            r = await client.post("/login/2fa", data={"code": await totp_code(user_id), "next": "/", "_csrf_token": csrf},
                                  follow_redirects=False)
        assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), (role, r.status_code, r.headers)
        assert (await client.get("/api/erns")).status_code in (200, 403)  # the session works
        return dict(client.cookies)


def run_schemathesis(base: str, cookies: dict[str, str], ids: dict, report: Path, *, examples: int,
                     phases: str = "examples,coverage,fuzzing,stateful", explore: bool = False) -> subprocess.CompletedProcess:
    """``st run`` with every check, as the session's user (its cookie, and the CSRF cookie and header,
    given to schemathesis as the document's security schemes, so it knows them and tries without)."""
    auth = {"session": cookies.get("cpms_session"), "csrf": cookies.get("csrftoken"), "csrfCookie": cookies.get("csrftoken")}
    config = report.with_suffix(".toml")
    config.write_text(
        CONFIG.read_text()
        + "".join(f"\n[auth.openapi.{name}]\napi_key = {json.dumps(value)}\n" for name, value in auth.items() if value)
        # The demo's ids, for half of the path parameters of those names (the other half are generated).
        + "".join(f"\n[dictionaries.{name}]\nvalues = [{json.dumps(value)}]\n" for name, value in ids.items())
        + "\n[parameters]\n" + "".join(f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}\n' for name in ids)
    )
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{base}/api/schema/openapi.json",
        "--checks", "all", "--max-examples", str(examples), "--phases", phases, "--workers", "1", "--no-color", "--warnings", "off",
        "--report", "ndjson", "--report-ndjson-path", str(report), "--request-timeout", "30",
        *([] if explore else ["--generation-deterministic", "--seed", str(SEED)]),
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)


def cases_run(report: Path) -> int:
    """Test cases schemathesis sent (from its ndjson events), for the security figures."""
    count = 0
    for line in report.read_text().splitlines():
        if '"ScenarioFinished"' in line:
            count += len(json.loads(line)["ScenarioFinished"]["recorder"].get("cases") or {})
    return count


@pytest.mark.parametrize("role", ROLES)
async def test_the_api_keeps_its_schema_for_every_role(api_server, demo_snapshot, settings, role, tmp_path):
    from core.identity.tables import User

    user_id = None
    if role != "anonymous":
        user = await User.select(User.id).where(User.email == f"{role}@demo.cpms.eu").first()
        user_id = user["id"]
        await enrol_totp(user_id)
    cookies = await _session(api_server, role, user_id)
    ids = await _demo_ids()
    report = tmp_path / f"schemathesis-{role}.ndjson"
    started = time.monotonic()
    full = role in FULL_ROLES or ALL_PHASES
    phases = "examples,coverage,fuzzing,stateful" if full else "fuzzing"
    done = run_schemathesis(api_server, cookies, ids, report, examples=EXAMPLES if full else OTHER_EXAMPLES, phases=phases,
                            explore=EXPLORE)
    (tmp_path.parent / f"schemathesis-{role}.out").write_text(done.stdout + done.stderr)
    summary = done.stdout[-6000:]
    print(f"{role} ({phases}): {cases_run(report)} cases in {time.monotonic() - started:.1f} s\n{summary}")
    assert done.returncode == 0, summary + done.stderr[-2000:]
    assert re.search(r"\d+ passed", summary), summary
