"""Nothing left behind after a crash (core/workfiles.py, core/sweeper.py).

Processes are killed with SIGKILL (no clean-up code runs) while they hold working files: the core
store's temporary upload file, a DICOM upload folder and a slide upload folder, each with original
files in clear. While the owner lives the sweepers keep its files; once it is dead they go at once,
at the next start-up. Servers are killed mid-upload and restarted. The storage check finds orphaned
files (removed after the grace period) and rows whose file is missing.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import csrf_of, login, make_user
from tests.panels_support import hcp_of, make_patient
from tests.support.cli import ROOT, cli_env, run_cpms

HOLDER = textwrap.dedent('''
    import sys
    sys.path.insert(0, {root!r})
    from core.storage import Storage
    from core.settings import Settings
    from plugins.dicom_viewer import store
    from plugins.pathology_viewer import ingest
    settings = Settings.from_env()
    fh, temp = Storage(settings)._create_temp()
    fh.write(b"half an upload")
    fh.flush()
    dicom = store.new_folder(settings)
    (dicom / "in" / "original.dcm").write_bytes(b"DICM Doe^John")
    slide = ingest.new_folder(settings)
    (slide / "Doe_John.svs").write_bytes(b"II*\\x00 Doe John")
    print(temp, dicom, slide, flush=True)
    import time
    time.sleep(120)
''')


def _working_paths(settings) -> list[Path]:
    data = Path(settings.data_dir)
    found = list((data / "files").glob(".upload-*.part"))
    found += [p for p in (data / "dicom-incoming").glob(".dicom-incoming-*")] if (data / "dicom-incoming").is_dir() else []
    found += [p for p in (data / "pathology-cache").glob(".incoming-*")] if (data / "pathology-cache").is_dir() else []
    return found


async def test_working_files_stay_while_their_process_lives_and_go_at_once_when_it_is_killed(clean_db, settings):
    from core.sweeper import sweep_working

    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT))], stdout=subprocess.PIPE,
                            env=cli_env(settings), cwd=ROOT)
    try:
        line = proc.stdout.readline().decode().split()
        assert len(line) == 3, line
        temp, dicom, slide = map(Path, line)
        assert temp.exists() and (dicom / "in" / "original.dcm").exists() and (slide / "Doe_John.svs").exists()
        # fresh files of a live process: kept, whatever their age
        assert await sweep_working(clean_db, settings) == 0
        assert temp.exists() and dicom.exists() and slide.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    # a second ago they were written; their owner is gone: removed now, not in an hour
    assert await sweep_working(clean_db, settings) == 3
    assert not temp.exists() and not dicom.exists() and not slide.exists()
    assert not _working_paths(settings)


async def test_our_own_working_files_are_never_swept(clean_db, settings):
    from core.sweeper import sweep_working
    from core.storage import Storage
    from plugins.dicom_viewer import store

    fh, temp = Storage(settings)._create_temp()
    folder = store.new_folder(settings)
    try:
        assert await sweep_working(clean_db, settings) == 0
        assert temp.exists() and folder.exists()
    finally:
        fh.close()
        temp.unlink()
        store.discard(folder)
    assert not folder.exists()


async def test_storage_check_reports_and_repairs_orphans_and_reports_missing_files(clean_db, settings):
    from core.storage import Storage
    from core.sweeper import check_storage
    from core.patients.tables import Document

    hp = await make_user("home@example.org", hcp="Home Hospital")
    patient = await make_patient(await hcp_of(hp))
    storage = Storage(settings)

    async def chunks(data: bytes):
        yield data

    kept = await storage.save_stream(chunks(b"%PDF-1.4 kept " + time.time_ns().to_bytes(8, "big")), max_bytes=10**6, allowed_types={"application/pdf"})
    await Document.insert(Document(patient=patient["id"], kind="lab_report", title="t", filename="f.pdf", content_type="application/pdf",
                                   size=kept.size, sha256=kept.sha256, storage_key=kept.key, uploaded_by=hp))
    orphan = await storage.save_stream(chunks(b"%PDF-1.4 orphan " + time.time_ns().to_bytes(8, "big")), max_bytes=10**6, allowed_types={"application/pdf"})
    lost = "ab/cd/" + "abcd" + "0" * 60
    await Document.insert(Document(patient=patient["id"], kind="lab_report", title="t2", filename="g.pdf", content_type="application/pdf",
                                   size=1, sha256="0" * 64, storage_key=lost, uploaded_by=hp))
    report = await check_storage(clean_db, settings)
    assert orphan.key in report.orphans and kept.key not in report.orphans
    assert report.missing["patients"] == [lost] and not report.clean
    # young orphans are kept even with repair; past the grace period they go
    report = await check_storage(clean_db, settings, repair=True)
    assert orphan.key not in report.removed and storage.exists(orphan.key)
    report = await check_storage(clean_db, settings, repair=True, grace=timedelta(0))
    assert orphan.key in report.removed and not storage.exists(orphan.key) and storage.exists(kept.key)
    # the command line: exit 1 while a file is missing, and says so
    done = run_cpms(settings, "storage", "check")
    assert done.returncode == 1 and "referred to by patients are missing" in done.stdout, done.stdout + done.stderr
    await Document.delete().where(Document.storage_key == lost)
    done = run_cpms(settings, "storage", "check")
    assert done.returncode == 0 and "no orphaned and no missing files" in done.stdout, done.stdout + done.stderr


async def _stalled_upload(base: str, email: str, url: str, field: str, filename: str, payload: bytes, extra: dict, ready) -> None:
    """Log in, then post a multipart body of which only the first half ever arrives."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        r = await login(c, email)
        assert r.status_code in (302, 303), r.text[:200]
        boundary = "cpmsboundary7d1"
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in extra.items()
        ).encode() + (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()

        async def body():
            yield head + payload[: len(payload) // 2]
            ready.set()
            await asyncio.sleep(60)  # the rest never comes: the server is killed meanwhile
            yield payload[len(payload) // 2:] + f"\r\n--{boundary}--\r\n".encode()

        try:
            await c.post(url, content=body(), headers={
                "content-type": f"multipart/form-data; boundary={boundary}", "x-csrftoken": csrf_of(c),
            })
        except httpx.HTTPError:
            pass  # the server died


def _big_dicom_zip() -> bytes:
    from plugins.dicom_viewer.tests.support import ct_zip

    return ct_zip(40, 256)


def _any_slide() -> Path:
    from plugins.pathology_viewer.tests.support import svs

    return svs()


KINDS = {
    # kind: (url template, file field, file name, payload maker, other fields, where the crash leaves files)
    "dicom": ("/dicom/patients/{p}/uploads", "files", "study.zip", _big_dicom_zip, {}, "dicom-incoming"),
    "slide": ("/pathology/patients/{p}/slides", "file", "Doe_John.svs", lambda: _any_slide().read_bytes(), {"title": "H&E"}, "pathology-cache"),
    "document": ("/patients/{p}/documents", "file", "Doe_John.pdf", lambda: b"%PDF-1.4\n" + b"0" * 3_000_000, {"kind": "lab_report", "title": "x"}, None),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_server_killed_during_an_upload_leaves_nothing_once_restarted(clean_db, settings, kind):
    from core.sweeper import check_storage
    from tests.support.live_server import live_app, live_app_process

    url, field, filename, make, extra, evidence = KINDS[kind]
    hp = await make_user("home@example.org", hcp="Home Hospital")
    patient = await make_patient(await hcp_of(hp))
    payload = make()
    before = await _rows()
    stored_before = set((await check_storage(clean_db, settings)).orphans)  # other tests' files (rows emptied)
    with live_app_process(settings) as (base, proc):
        ready = asyncio.Event()
        task = asyncio.create_task(_stalled_upload(base, "home@example.org", url.format(p=patient["pseudonym"]), field,
                                                   filename, payload, extra, ready))
        await asyncio.wait_for(ready.wait(), 30)
        deadline = time.monotonic() + 15
        while evidence and time.monotonic() < deadline and not _working_paths(settings):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        left = _working_paths(settings)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):
            pass
    if evidence:
        assert any(evidence in str(p) for p in left), left  # the crash did leave the upload's files
    with live_app(settings):
        pass  # a restart: its start-up sweep runs before it serves
    assert not _working_paths(settings)
    report = await check_storage(clean_db, settings)
    assert not any(report.missing.values()) and set(report.orphans) <= stored_before, report.lines()
    assert await _rows() == before  # no row was committed for the interrupted upload


async def _rows() -> dict:
    from core.patients.tables import Document
    from plugins.dicom_viewer.tables import Instance
    from plugins.pathology_viewer.tables import Slide

    return {"documents": await Document.count(), "instances": await Instance.count(), "slides": await Slide.count()}


async def test_a_running_app_sweeps_again_every_interval(clean_db, settings):
    """Files abandoned while the app runs go at the next periodic sweep (CPMS_SWEEP_INTERVAL)."""
    from core.app import create_app
    from tests.conftest import app_client, make_settings

    every_second = make_settings(sweep_interval=1)
    async with app_client(create_app(every_second)):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT))], stdout=subprocess.PIPE,
                                env=cli_env(every_second), cwd=ROOT)
        try:
            temp, dicom, slide = map(Path, proc.stdout.readline().decode().split())
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert temp.exists() and dicom.exists() and slide.exists()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (temp.exists() or dicom.exists() or slide.exists()):
            await asyncio.sleep(0.2)
        assert not temp.exists() and not dicom.exists() and not slide.exists()
