"""Key rotation: every encrypted value moves to the new key and stays readable through the app
(identity, documents, history, TOTP), duplicate detection survives, an interrupted rotation
resumes, keys are retired only when unused, and keys from the environment are left alone."""

import json
import os
import stat
from unittest import mock

import pytest

from core import crypto
from core.crypto import Keyring
from core.keys import ENCRYPTED_COLUMNS, KeysRefused, add_key, keys_path, reencrypt, retire, rotate, status
from tests.conftest import app_client, csrf_of, login, make_settings, make_user, post_form, text_of
from tests.test_events_and_cli import _cpms
from tests.test_patients import PDF, SECRET_FAMILY, SECRET_NAME, enrol

RENAMED = SECRET_FAMILY + "-Renamed"


@pytest.fixture(autouse=True)
def original_keys(settings):
    """The session's tests share one key file: give it back exactly as it was after each test."""
    path = keys_path(settings)
    crypto.keyring(settings)  # creates the file on a first run
    content = path.read_bytes()
    before = set(path.parent.iterdir())
    yield json.loads(content)
    path.write_bytes(content)
    for leftover in set(path.parent.iterdir()) - before:
        leftover.unlink()
    crypto._cache.clear()


class Interrupted(Exception):
    pass


def _stop_after_first_batch(progress):
    raise Interrupted(progress.label)


async def _record(client):
    """A user with TOTP, one without, three patients, an identity edit (history) and a document."""
    await make_user("hp@example.org")
    await make_user("guest@example.org", roles=[("guest", None)], mfa=False)
    await login(client, "hp@example.org")
    pseudonym = (await enrol(client)).headers["location"].rsplit("/", 1)[1]
    for n in (1, 2):
        r = await enrol(client, given_name=f"Other{n}", family_name=f"Person{n}", local_record_number=f"MRN-{n}", date_of_birth=f"199{n}-01-01")
        assert r.status_code in (302, 303), r.text
    edited = await post_form(client, f"/patients/{pseudonym}/identity", {
        "given_name": SECRET_NAME, "family_name": RENAMED, "date_of_birth": "2011-04-02", "local_record_number": "MRN-99812",
    })
    assert edited.status_code == 303
    files = {"file": ("scan.pdf", PDF, "application/pdf")}
    r = await client.post(
        f"/patients/{pseudonym}/documents", files=files,
        data={"kind": "lab_report", "title": f"Lab report {SECRET_NAME}", "_csrf_token": csrf_of(client)},
    )
    assert r.status_code == 303, r.text
    return pseudonym


async def _key_ids():
    """{column label: [key id of each stored non-empty value]}, read straight from the database."""
    out = {}
    for entry in ENCRYPTED_COLUMNS:
        column = entry.table._meta.get_column_by_name(entry.column)
        rows = await entry.table.select(column).where(column != "")
        out[entry.label] = [Keyring.key_id(r[entry.column]) for r in rows]
    return out


def _counts(key_ids: dict) -> dict:
    return {label: len(kids) for label, kids in key_ids.items()}


async def test_rotation_moves_every_value_to_the_new_key_and_the_app_still_reads_them(client, settings, original_keys):
    from core.app import create_app

    pseudonym = await _record(client)
    old_kid = original_keys["current"]
    before = await status(settings)
    sizes = _counts(await _key_ids())
    assert sizes["identity_user.totp_secret"] == 1  # the user without an authenticator is skipped
    assert sizes["patients_patient.identity"] == 3 and sizes["patients_document.title"] == 1 and sizes["patients_change.old_value"] >= 2
    assert {c.label: c.counts for c in before.columns} == {label: {old_kid: n} for label, n in sizes.items()}

    seen = []
    result = await rotate(settings, batch_size=2, on_batch=seen.append)

    new_kid = result.kid
    assert new_kid != old_kid and result.rewritten == sum(sizes.values()) and result.left_behind == 0
    assert len(seen) >= 3 and seen[0].label == "patients_patient.identity" and seen[0].rewritten == 2
    assert {label: set(kids) for label, kids in (await _key_ids()).items()} == {label: {new_kid} for label in sizes}
    after = await status(settings)
    assert after.current == new_kid and after.key_ids == [*original_keys["keys"], new_kid]
    assert {c.label: c.counts for c in after.columns} == {label: {new_kid: n} for label, n in sizes.items()}
    assert after.uses(old_kid) == 0 and after.not_current == 0

    page = text_of((await client.get(f"/patients/{pseudonym}")).text)
    assert SECRET_NAME in page and RENAMED.upper() in page and f"Lab report {SECRET_NAME}" in page
    assert "PERSON1, Other1" in text_of((await client.get("/patients")).text)
    history = text_of((await client.get(f"/patients/{pseudonym}/history")).text)
    assert SECRET_FAMILY in history and RENAMED in history
    # The file itself stays on the old key, which the ring keeps.
    from core.patients.tables import Document

    doc = await Document.select(Document.id).first()
    download = await client.get(f"/patients/{pseudonym}/documents/{doc['id']}")
    assert download.status_code == 200 and download.content == PDF
    # The TOTP secret was re-encrypted: a fresh login with the authenticator still works.
    async with app_client(create_app(settings)) as fresh:
        r = await login(fresh, "hp@example.org")
        assert r.status_code in (302, 303) and r.headers["location"] == "/"
        assert (await fresh.get("/", follow_redirects=False)).status_code == 200

    again = await reencrypt(settings)
    assert again.rewritten == 0 and again.already_current == sum(sizes.values())


async def test_key_file_is_replaced_atomically_with_a_backup(settings, original_keys):
    path = keys_path(settings)
    original = path.read_text()
    ring, backup = add_key(settings)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert backup.parent == path.parent and backup.name.startswith("cpms.keys.") and backup.read_text() == original
    stored = json.loads(path.read_text())
    # Appended: the oldest key (duplicate detection) stays first, the others keep their order.
    assert list(stored["keys"]) == [*original_keys["keys"], ring.current] and stored["current"] == ring.current
    assert {k: stored["keys"][k] for k in original_keys["keys"]} == original_keys["keys"]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    # The process cache was dropped: new writes use the new key.
    assert crypto.keyring(settings).current == ring.current


async def test_duplicate_detection_still_works_after_a_rotation(client, settings):
    from core.patients.tables import Patient

    await make_user("hp@example.org")
    await login(client, "hp@example.org")
    await enrol(client)
    result = await rotate(settings)
    same_record = await enrol(client, given_name="Other", family_name="Person", date_of_birth="1990-01-01")
    assert same_record.status_code == 409 and "same local record number" in same_record.text
    same_person = await enrol(client, local_record_number="", given_name="zébulon", family_name=SECRET_FAMILY.lower())
    assert same_person.status_code == 409 and "same name and date of birth" in same_person.text
    # A patient enrolled after the rotation is written with the new key.
    created = await enrol(client, given_name="New", family_name="Comer", local_record_number="MRN-NEW", date_of_birth="2001-02-03")
    assert created.status_code in (302, 303)
    pseudonym = created.headers["location"].rsplit("/", 1)[1]
    row = await Patient.select(Patient.identity).where(Patient.pseudonym == pseudonym).first()
    assert Keyring.key_id(row["identity"]) == result.kid


async def test_an_interrupted_rotation_resumes_where_it_stopped(client, settings, original_keys):
    pseudonym = await _record(client)
    old_kid = original_keys["current"]
    total = sum(_counts(await _key_ids()).values())

    with pytest.raises(Interrupted):
        await rotate(settings, batch_size=2, on_batch=_stop_after_first_batch)

    midway = await status(settings)
    new_kid = midway.current
    assert new_kid != old_kid
    identity = next(c for c in midway.columns if c.label == "patients_patient.identity")
    assert identity.counts == {new_kid: 2, old_kid: 1}  # the first batch was committed
    assert midway.uses(old_kid) == total - 2 and midway.not_current == total - 2
    # Both keys are in the ring, so the app reads the half-rotated record.
    assert SECRET_NAME in (await client.get(f"/patients/{pseudonym}")).text

    result = await rotate(settings, batch_size=2, resume=True)

    assert result.kid == new_kid and list(crypto.keyring(settings).keys) == [*original_keys["keys"], new_kid]
    assert result.already_current == 2 and result.rewritten == total - 2
    assert {kid for kids in (await _key_ids()).values() for kid in kids} == {new_kid}
    assert SECRET_NAME in (await client.get(f"/patients/{pseudonym}")).text


async def test_retire_only_a_key_that_nothing_uses(client, settings, original_keys):
    pseudonym = await _record(client)
    oldest = original_keys["current"]
    middle = (await rotate(settings)).kid
    with pytest.raises(Interrupted):
        await rotate(settings, batch_size=2, on_batch=_stop_after_first_batch)
    newest = crypto.keyring(settings).current

    with pytest.raises(KeysRefused, match="still use key"):
        await retire(settings, middle, files_reencrypted=True)
    with pytest.raises(KeysRefused, match="current key"):
        await retire(settings, newest, files_reencrypted=True)
    with pytest.raises(KeysRefused, match="oldest key"):
        await retire(settings, oldest, files_reencrypted=True)
    with pytest.raises(KeysRefused, match="no key"):
        await retire(settings, "nosuchkey", files_reencrypted=True)
    await rotate(settings, resume=True)
    with pytest.raises(KeysRefused, match="i-have-re-encrypted-files"):
        await retire(settings, middle)
    assert list(crypto.keyring(settings).keys) == [oldest, middle, newest]

    backup = await retire(settings, middle, files_reencrypted=True)

    assert list(json.loads(keys_path(settings).read_text())["keys"]) == [oldest, newest]
    assert middle in json.loads(backup.read_text())["keys"]
    assert list(crypto.keyring(settings).keys) == [oldest, newest]
    assert SECRET_NAME in (await client.get(f"/patients/{pseudonym}")).text


async def test_keys_from_the_environment_are_not_rotated_here(clean_db, settings, original_keys):
    path = keys_path(settings)
    content = path.read_text()
    from_env = make_settings(extra={"encryption_keys": content})
    with pytest.raises(KeysRefused, match="CPMS_ENCRYPTION_KEYS"):
        await rotate(from_env)
    with pytest.raises(KeysRefused, match="CPMS_ENCRYPTION_KEYS"):
        await retire(from_env, original_keys["current"], files_reencrypted=True)
    assert path.read_text() == content and [p.name for p in path.parent.glob("*.bak")] == []
    # Once the operator has changed the keys there, --resume re-encrypts with them.
    assert (await rotate(from_env, resume=True)).kid == original_keys["current"]
    assert (await status(from_env)).source == "CPMS_ENCRYPTION_KEYS"


async def test_cli_status_rotate_and_retire(client, settings, original_keys):
    await _record(client)
    old_kid = original_keys["current"]

    shown = _cpms(settings, "keys", "status")
    assert shown.returncode == 0, shown.stderr
    assert f"Current key: {old_kid}" in shown.stdout and f"patients_patient.identity: {old_kid}=3" in shown.stdout
    assert "identity_user.totp_secret: " + f"{old_kid}=1" in shown.stdout

    rotated = _cpms(settings, "keys", "rotate", "--batch-size", "2")
    assert rotated.returncode == 0, rotated.stderr
    new_kid = json.loads(keys_path(settings).read_text())["current"]
    assert f"New key {new_kid} is current" in rotated.stdout and "patients_patient.identity: 2/3 checked" in rotated.stdout
    assert "Files in storage were not re-encrypted" in rotated.stdout
    crypto._cache.clear()  # another process changed the key file
    assert {kid for kids in (await _key_ids()).values() for kid in kids} == {new_kid}

    shown = _cpms(settings, "keys", "status")
    assert f"patients_patient.identity: {new_kid}=3" in shown.stdout and "Every stored value uses the current key" in shown.stdout
    for output in (shown.stdout, rotated.stdout):
        assert SECRET_NAME not in output and SECRET_FAMILY not in output and "enc1:" not in output

    oldest = _cpms(settings, "keys", "retire", old_kid, "--i-have-re-encrypted-files")
    assert oldest.returncode == 2 and "oldest key" in oldest.stderr

    env = {"CPMS_ENCRYPTION_KEYS": keys_path(settings).read_text()}
    refused = _cpms_env(settings, env, "keys", "rotate")
    assert refused.returncode == 2 and "CPMS_ENCRYPTION_KEYS" in refused.stderr


def _cpms_env(settings, extra_env, *args):
    with mock.patch.dict(os.environ, extra_env):
        return _cpms(settings, *args)


async def test_a_running_process_picks_up_a_rotated_ring(clean_db, settings):
    """No restart needed: the keyring is reloaded when the keys file changes on disk
    (here written the way another process, `cpms keys rotate`, writes it)."""
    from core import crypto

    before = crypto.keyring(settings)
    rotated = before.with_new_key()
    rotated.save(settings.data_dir / "keys" / "cpms.keys")  # the cache is not touched
    after = crypto.keyring(settings)
    assert after.current == rotated.current != before.current and before.current in after.keys
    assert after.decrypt(rotated.encrypt("value", "ctx"), "ctx") == "value"
