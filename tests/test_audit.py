"""The patient-data audit trail: an append-only hash chain that shows tampering, never forks
under concurrent appends, and that only a hospital's own DPO browses and exports."""

import asyncio
import csv
import io
import json
import re
import sqlite3
from datetime import date, timedelta

import pytest

from core.app import create_app
from core.audit import chain
from core.audit.chain import GENESIS, record, record_many, verify
from core.audit.tables import AuditEntry
from core.permissions import Actor
from tests.conftest import app_client, login, make_settings, make_user
from tests.support.cli import run_cpms



async def _hcp_id(name: str) -> int:
    from core.orgs.tables import Hcp

    return (await Hcp.select(Hcp.id).where(Hcp.name == name).first())["id"]


def _actor(user_id: int = 7, hcp_id: int | None = 3) -> Actor:
    return Actor(user_id=user_id, email="x@example.org", name="X", hcp_id=hcp_id, roles=())


async def _chain_of(n: int, hcp: int = 1) -> list[int]:
    return [
        await record("patient.view", patient_pseudonym=f"PSEUDO{i:04d}Z", patient_hcp=hcp, actor=_actor(), address="10.0.0.1", detail={"n": i})
        for i in range(1, n + 1)
    ]


async def _seqs() -> list[int]:
    return [r["seq"] for r in await AuditEntry.select(AuditEntry.seq).order_by(AuditEntry.seq)]


# --- the chain ----------------------------------------------------------------------------


async def test_a_chain_of_records_verifies_and_links_each_entry_to_the_previous(clean_db):
    seqs = await _chain_of(5)
    assert seqs == [1, 2, 3, 4, 5]
    rows = await AuditEntry.select().order_by(AuditEntry.seq)
    assert rows[0]["prev_hash"] == GENESIS
    assert all(rows[i]["prev_hash"] == rows[i - 1]["hash"] for i in range(1, 5))
    assert len({r["hash"] for r in rows}) == 5
    assert rows[2]["actor_id"] == 7 and rows[2]["actor_hcp"] == 3 and json.loads(rows[2]["detail"]) == {"n": 3}
    assert await verify() == (True, 5, None)
    # Batch boundaries must not matter: the walk goes on across them.
    assert await verify(batch_size=2) == (True, 5, None)


async def test_an_empty_chain_is_intact(clean_db):
    assert await verify() == (True, 0, None)


@pytest.mark.parametrize("how", ["detail by raw SQL", "action by piccolo update"])
async def test_changing_one_entry_is_detected_at_that_entry(clean_db, how):
    await _chain_of(5)
    if how == "detail by raw SQL":
        await AuditEntry.raw("UPDATE audit_entry SET detail = {} WHERE seq = 3", '{"n":99}')
    else:
        await AuditEntry.update({AuditEntry.action: "patient.nothing"}).where(AuditEntry.seq == 3)
    assert await verify(batch_size=2) == (False, 2, 3)


async def test_recomputing_the_changed_entrys_hash_is_detected_at_the_next_one(clean_db):
    await _chain_of(4)
    row = await AuditEntry.select().where(AuditEntry.seq == 2).first()
    row["detail"] = '{"n":42}'
    await AuditEntry.update({AuditEntry.detail: row["detail"], AuditEntry.hash: chain.entry_hash(row)}).where(AuditEntry.seq == 2)
    assert await verify() == (False, 2, 3)


async def test_deleting_a_middle_entry_is_detected(clean_db):
    await _chain_of(5)
    await AuditEntry.delete().where(AuditEntry.seq == 3)
    assert await verify() == (False, 2, 4)


async def test_deleting_the_first_entry_is_detected(clean_db):
    await _chain_of(3)
    await AuditEntry.delete().where(AuditEntry.seq == 1)
    assert await verify() == (False, 0, 2)


async def test_concurrent_appends_make_one_continuous_chain(clean_db):
    seqs = await asyncio.gather(
        *[record("patient.view", patient_pseudonym=f"PCONC{i:02d}", patient_hcp=1, detail={"i": i}) for i in range(20)]
    )
    assert sorted(seqs) == list(range(1, 21))
    assert await _seqs() == list(range(1, 21))
    assert await verify() == (True, 20, None)


async def test_record_many_appends_one_entry_per_patient_in_order(clean_db):
    await _chain_of(2)
    seqs = await record_many("patient.search_hit", [("PHITA", 1), ("PHITB", 2), ("PHITC", 1)], actor=_actor(), detail={"query_length": 4})
    assert seqs == [3, 4, 5]
    rows = await AuditEntry.select(AuditEntry.patient_pseudonym, AuditEntry.patient_hcp, AuditEntry.action).where(AuditEntry.seq > 2).order_by(AuditEntry.seq)
    assert [(r["patient_pseudonym"], r["patient_hcp"]) for r in rows] == [("PHITA", 1), ("PHITB", 2), ("PHITC", 1)]
    assert {r["action"] for r in rows} == {"patient.search_hit"}
    assert await record_many("patient.search_hit", []) == []
    assert await verify() == (True, 5, None)


async def test_an_append_inside_a_callers_transaction_rolls_back_with_it(clean_db):
    await _chain_of(1)
    with pytest.raises(RuntimeError):
        async with AuditEntry._meta.db.transaction():
            await record("patient.update", patient_pseudonym="PROLLBACK", patient_hcp=1)
            raise RuntimeError("the change failed")
    assert await _seqs() == [1]
    assert await record("patient.update", patient_pseudonym="PAFTER", patient_hcp=1) == 2


async def test_a_duplicate_seq_is_recognised_on_this_database(clean_db):
    await _chain_of(1)
    row = await AuditEntry.select().first()
    del row["id"]
    with pytest.raises(Exception) as caught:
        await AuditEntry.insert(AuditEntry(**row))
    assert chain._is_duplicate_seq(caught.value)
    assert not chain._is_duplicate_seq(RuntimeError("other"))


async def test_a_lost_race_for_a_seq_is_retried_and_other_errors_are_not(clean_db, monkeypatch):
    real_append = chain._append
    calls = []

    async def racing_append(engine, fields, targets):
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.IntegrityError("UNIQUE constraint failed: audit_entry.seq")
        return await real_append(engine, fields, targets)

    monkeypatch.setattr(chain, "_append", racing_append)
    assert await record("patient.view", patient_pseudonym="PRETRY", patient_hcp=1) == 1
    assert len(calls) == 2

    async def broken_append(engine, fields, targets):
        calls.append(1)
        raise RuntimeError("disk full")

    monkeypatch.setattr(chain, "_append", broken_append)
    calls.clear()
    with pytest.raises(RuntimeError):
        await record("patient.view", patient_pseudonym="PRETRY", patient_hcp=1)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"detail": {"notes": "x" * 2000}}, ValueError),
        ({"detail": ["not", "a", "dict"]}, TypeError),
        ({"patient_pseudonym": ""}, ValueError),
        ({"patient_pseudonym": "P" * 41}, ValueError),
        ({"patient_hcp": "1"}, ValueError),
        ({"action": "a" * 51}, ValueError),
    ],
)
async def test_bad_arguments_are_refused_and_nothing_is_recorded(clean_db, kwargs, error):
    args = {"action": "patient.view", "patient_pseudonym": "PGOOD", "patient_hcp": 1, **kwargs}
    action = args.pop("action")
    with pytest.raises(error):
        await record(action, **args)
    assert await AuditEntry.count() == 0


# --- the pages ----------------------------------------------------------------------------


async def _two_hospitals():
    """DPOs of Test Hospital (A) and Other Hospital (B), and entries about each one's patients."""
    await make_user("dpo-a@example.org", roles=[("dpo", None)])
    await make_user("dpo-b@example.org", roles=[("dpo", None)], hcp="Other Hospital")
    hp = await make_user("hp@example.org")
    a, b = await _hcp_id("Test Hospital"), await _hcp_id("Other Hospital")
    actor = _actor(hp, a)
    await record("patient.view", patient_pseudonym="PAAAA0001", patient_hcp=a, actor=actor, detail={"tab": "clinical"})
    await record("document.download", patient_pseudonym="PBBBB0001", patient_hcp=b, actor=actor)
    await record_many("patient.search_hit", [("PAAAA0002", a), ("PBBBB0002", b)], actor=actor)
    return a, b, hp


def _export_pseudonyms(response, fmt: str) -> set[str]:
    if fmt == "json":
        return {e["patient_pseudonym"] for e in response.json()}
    return {row["patient_pseudonym"] for row in csv.DictReader(io.StringIO(response.text))}


async def test_a_dpo_sees_only_their_own_hospitals_entries(client):
    await _two_hospitals()
    await login(client, "dpo-a@example.org")
    r = await client.get("/audit")
    assert r.status_code == 200
    assert "PAAAA0001" in r.text and "PAAAA0002" in r.text and "document.download" not in r.text
    assert "PBBBB" not in r.text
    # Naming another hospital's patient shows nothing of them either.
    r = await client.get("/audit", params={"pseudonym": "PBBBB0001"})
    rows = r.text.split("<tbody>")[1].split("</tbody>")[0]
    assert r.status_code == 200 and "PBBBB" not in rows and "No entries match" in rows
    async with app_client(create_app(make_settings())) as other:
        await login(other, "dpo-b@example.org")
        r = await other.get("/audit")
        assert "PBBBB0001" in r.text and "PBBBB0002" in r.text and "PAAAA" not in r.text


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_exports_hold_only_the_dpos_hospital_and_are_downloads(client, fmt):
    from core.activity.tables import Activity

    a, _, hp = await _two_hospitals()
    dpo = await login(client, "dpo-a@example.org")
    assert dpo.status_code in (302, 303)
    r = await client.get("/audit/export", params={"format": fmt})
    assert r.status_code == 200
    assert r.headers["content-disposition"].startswith("attachment;") and f".{fmt}" in r.headers["content-disposition"]
    assert _export_pseudonyms(r, fmt) == {"PAAAA0001", "PAAAA0002"}
    assert "PBBBB" not in r.text
    if fmt == "json":
        first = r.json()[0]
        assert first["seq"] == 1 and first["detail"] == {"tab": "clinical"} and first["actor_id"] == hp and first["patient_hcp"] == a
    else:
        assert r.text.splitlines()[0].split(",")[:3] == ["seq", "at", "actor_id"]
    filtered = await client.get("/audit/export", params={"format": fmt, "action": "patient.search_hit"})
    assert _export_pseudonyms(filtered, fmt) == {"PAAAA0002"}
    # Reading the audit goes to the activity log, not into the patient-data chain.
    events = await Activity.select().where(Activity.action == "audit.exported").order_by(Activity.id).output(load_json=True)
    assert len(events) == 2 and events[1]["data"]["action"] == "patient.search_hit" and events[0]["data"]["format"] == fmt
    assert await AuditEntry.count() == 4


async def test_csv_cells_cannot_become_spreadsheet_formulas(client):
    await make_user("dpo-a@example.org", roles=[("dpo", None)])
    a = await _hcp_id("Test Hospital")
    await record("patient.view", patient_pseudonym="PFORMULA", patient_hcp=a, address="=HYPERLINK(\"http://evil\")")
    await login(client, "dpo-a@example.org")
    rows = list(csv.DictReader(io.StringIO((await client.get("/audit/export", params={"format": "csv"})).text)))
    assert rows[0]["address"] == "'=HYPERLINK(\"http://evil\")"
    assert (await client.get("/audit/export", params={"format": "json"})).json()[0]["address"].startswith("=HYPERLINK")


async def test_a_dpo_without_a_hospital_sees_nothing(client):
    await _two_hospitals()
    await make_user("dpo-none@example.org", roles=[("dpo", None)], hcp=None)
    await login(client, "dpo-none@example.org")
    r = await client.get("/audit")
    assert r.status_code == 200 and "not attached to a hospital" in r.text
    assert "PAAAA" not in r.text and "PBBBB" not in r.text
    export = await client.get("/audit/export", params={"format": "json"})
    assert export.status_code == 200 and export.json() == []


@pytest.mark.parametrize("roles, hcp", [((("hp", "ERN RND"),), "Test Hospital"), ((("admin", None),), None)])
async def test_other_roles_may_not_see_the_audit(client, roles, hcp):
    await _two_hospitals()
    await make_user("someone@example.org", roles=roles, hcp=hcp)
    await login(client, "someone@example.org")
    for url in ("/audit", "/audit/export?format=csv", "/audit/export?format=json"):
        r = await client.get(url)
        assert r.status_code == 403, url
        assert "PAAAA" not in r.text


@pytest.mark.parametrize(
    "params",
    [
        {"pseudonym": "x' OR 1=1 --"},
        {"action": "DROP TABLE audit_entry"},
        {"actor": "-1"},
        {"actor": "abc"},
        {"actor": "99999999999"},
        {"from": "2026-13-01"},
        {"to": "yesterday"},
        {"from": "2026-05-02", "to": "2026-05-01"},
        {"before": "0"},
        {"before": "5", "after": "2"},
    ],
)
async def test_bad_filter_values_get_422_and_show_no_entry(client, params):
    await _two_hospitals()
    await login(client, "dpo-a@example.org")
    r = await client.get("/audit", params=params)
    assert r.status_code == 422
    assert "Nothing is shown until the filters are corrected" in r.text
    assert "PAAAA" not in r.text
    if "before" not in params:
        export = await client.get("/audit/export", params={"format": "csv", **params})
        assert export.status_code == 422 and "PAAAA" not in export.text
        assert "content-disposition" not in export.headers


async def test_an_unknown_export_format_gets_422(client):
    await _two_hospitals()
    await login(client, "dpo-a@example.org")
    r = await client.get("/audit/export", params={"format": "xml"})
    assert r.status_code == 422 and "Format: csv or json" in r.text and "PAAAA" not in r.text


async def test_filters_narrow_the_list(client):
    a, _, hp = await _two_hospitals()
    other_actor = await make_user("hp2@example.org")
    await record("patient.update", patient_pseudonym="PAAAA0003", patient_hcp=a, actor=_actor(other_actor, a))
    await login(client, "dpo-a@example.org")

    async def shown(**params):
        text = (await client.get("/audit", params=params)).text
        return {p for p in ("PAAAA0001", "PAAAA0002", "PAAAA0003") if f">{p}<" in text}

    assert await shown() == {"PAAAA0001", "PAAAA0002", "PAAAA0003"}
    assert await shown(pseudonym="PAAAA0002") == {"PAAAA0002"}
    assert await shown(action="patient.update") == {"PAAAA0003"}
    assert await shown(actor=str(hp)) == {"PAAAA0001", "PAAAA0002"}
    today = date.today()
    assert await shown(**{"from": today.isoformat(), "to": today.isoformat()}) == {"PAAAA0001", "PAAAA0002", "PAAAA0003"}
    assert await shown(**{"from": (today + timedelta(days=2)).isoformat()}) == set()
    assert await shown(to=(today - timedelta(days=2)).isoformat()) == set()


async def test_pages_go_by_seq_newest_first_and_htmx_gets_the_fragment(client):
    await make_user("dpo-a@example.org", roles=[("dpo", None)])
    a = await _hcp_id("Test Hospital")
    await record_many("patient.view", [(f"PPAGE{i:04d}Z", a) for i in range(1, 121)])
    await login(client, "dpo-a@example.org")

    def seqs_in(text: str) -> list[int]:
        return [int(s) for s in re.findall(r"PPAGE(\d{4})Z<", text)]

    first = await client.get("/audit")
    assert seqs_in(first.text) == list(range(120, 70, -1))
    assert "/audit?before=71" in first.text and "after=" not in first.text
    second = await client.get("/audit", params={"before": "71"}, headers={"HX-Request": "true"})
    assert second.status_code == 200 and "<html" not in second.text
    assert seqs_in(second.text) == list(range(70, 20, -1))
    assert "/audit?after=70" in second.text and "/audit?before=21" in second.text
    third = await client.get("/audit", params={"before": "21"})
    assert seqs_in(third.text) == list(range(20, 0, -1)) and "before=" not in third.text.split("</table>")[1]
    back = await client.get("/audit", params={"after": "70"})
    assert seqs_in(back.text) == list(range(120, 70, -1))
    # Filters travel with the page links.
    narrowed = await client.get("/audit", params={"action": "patient.view", "before": "71"})
    assert "action=patient.view&amp;before=21" in narrowed.text


async def test_the_audit_menu_link_is_shown_to_a_dpo_only(client):
    await make_user("dpo-a@example.org", roles=[("dpo", None)])
    await make_user("hp@example.org")
    await login(client, "dpo-a@example.org")
    assert 'href="/audit"' in (await client.get("/")).text
    async with app_client(create_app(make_settings())) as other:
        await login(other, "hp@example.org")
        assert 'href="/audit"' not in (await other.get("/")).text


# --- the command --------------------------------------------------------------------------


def _cpms(settings, *args):
    return run_cpms(settings, *args)


async def test_cli_verify_exits_0_on_an_intact_chain_and_1_after_tampering(clean_db, settings):
    await _chain_of(3)
    head = await chain.head()
    out = _cpms(settings, "audit", "verify")
    assert out.returncode == 0, out.stderr
    assert "Audit chain intact: 3 entries" in out.stdout and head[1] in out.stdout
    await AuditEntry.update({AuditEntry.patient_pseudonym: "PSOMEONEELSE"}).where(AuditEntry.seq == 2)
    out = _cpms(settings, "audit", "verify")
    assert out.returncode == 1
    assert "Audit chain broken at entry 2" in out.stdout
