"""The ingest pipeline and the stored de-identified files: upload → ``files.ingest`` → ``deid`` →
encrypted core store → rows, and back (``dataset``), plus review/masking, deletion, erasure and the
GDPR export.

Ingestion (``ingest_paths``), for one upload:

1. The received files are on disk already (``receive`` streams the multipart body there, never the
   whole upload in memory). ``files.ingest`` walks them one dataset at a time (ZIPs and DICOMDIR media
   included), in a worker thread.
2. Each new instance is de-identified (PS3.15 Annex E, ``deid.deidentify``) with the site's UID key
   and the patient's date offset, both derived from the site keyring (HKDF; see ``site_key``); the
   burned-in gate (``deid.needs_pixel_review``) is decided on the original header. The de-identified
   file is written to the upload's private folder; the original is dropped with the folder.
3. The de-identified files go to the encrypted core store; then every row (studies, series,
   instances, the upload's per-file results, the studies' reports) is written in one database
   transaction. A failure removes the stored files no row uses: nothing half-stored remains.
   The stored per-file results keep positions, outcomes and messages, never a name from the upload
   (file names, archive members, paths: messages refer to files by position and are ``scrub``-bed).
4. The upload's folder (the original, identifying files) is removed synchronously in a ``finally``
   by the caller (``discard``), so a failed or cancelled request leaves nothing; folders left by a
   killed process are swept at the start of every upload once untouched for an hour
   (``sweep_incoming``).

Keys: the UID key and the day offset come from one keyring key, remembered per study in its report
(``kid``, an id, not the key). A patient's later uploads use the key of their first study while the
keyring still holds it, so UIDs and dates stay consistent after ``cpms keys rotate``.

``dataset(instance)`` is async (the file is decrypted from the store) and cached in memory (LRU,
bounded in bytes); ``dataset_sync`` is the same for worker threads. Deleting a study and erasing a
patient drop their instances from every in-memory cache (``forget_instances``).

An instance whose pixels cannot be shown here (``frames.pixel_problem``) cannot be reviewed, so it is
never released to panels (``Unviewable``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from anyio import to_thread
from pydicom import dcmread
from pydicom.dataset import Dataset

from core import workfiles
from plugins.dicom_viewer import access, deid, files, index

HKDF_INFO = b"cpms dicom de-identification v1"
STORE_TYPES = {"application/dicom"}
WRITE_BLOCK = 1024 * 1024
MAX_FIELD = 4096
MAX_PARTS = 20_000
INCOMING = ".dicom-incoming-"
#: A ZIP refused as a whole (unsafe paths, bomb limits): its own per-file result.
REFUSED = "refused"


class IngestError(Exception):
    """The upload as a whole was refused (nothing stored); ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.status = message, status


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    max_upload_bytes: int = 4 * 1024**3
    #: "shift" (Retain Longitudinal Temporal Information with Modified Dates) or "remove".
    dates: str = "shift"
    cache_mb: int = 256


def config(settings) -> Config:
    """``CPMS_DICOM_MAX_UPLOAD_BYTES``, ``CPMS_DICOM_DATES`` (shift|remove), ``CPMS_DICOM_CACHE_MB``."""
    from core.settings import SettingsError

    extra = getattr(settings, "extra", {}) or {}
    values: dict = {}
    raw = extra.get("dicom_max_upload_bytes")
    if raw:
        try:
            values["max_upload_bytes"] = int(raw)
        except ValueError:
            raise SettingsError("CPMS_DICOM_MAX_UPLOAD_BYTES must be a whole number") from None
    raw = extra.get("dicom_dates")
    if raw:
        if raw not in ("shift", "remove"):
            raise SettingsError("CPMS_DICOM_DATES must be 'shift' or 'remove'")
        values["dates"] = raw
    raw = extra.get("dicom_cache_mb")
    if raw:
        try:
            values["cache_mb"] = max(8, int(raw))
        except ValueError:
            raise SettingsError("CPMS_DICOM_CACHE_MB must be a whole number") from None
    return Config(**values)


_known: dict[str, object] = {}


def remember_settings(settings) -> None:
    """Settings of the apps this process serves: ``handle_event`` (erasure) and ``dataset`` receive no
    request, and must find the data folder."""
    _known.setdefault(str(settings.data_dir), settings)


def known_settings() -> list:
    if _known:
        return list(_known.values())
    from core.settings import Settings

    return [Settings.from_env()]


# --- keys -------------------------------------------------------------------------------------


def site_key(settings, kid: str | None = None) -> tuple[str, bytes]:
    """(kid, key) for UID remapping and date shifts, derived (HKDF) from keyring key ``kid`` (the
    current one when None or no longer in the ring)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    from core.crypto import keyring

    ring = keyring(settings)
    if kid is None or kid not in ring.keys:
        kid = ring.current
    return kid, HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(ring.keys[kid])


def day_offset(key: bytes, pseudonym: str) -> int:
    """The patient's secret date shift: between 1 and 3 years back, never 0 (a keyed hash of the
    pseudonym, so every upload of one patient shifts alike)."""
    digest = hmac.new(key, b"dates:" + pseudonym.encode(), hashlib.sha256).digest()
    return -(365 + int.from_bytes(digest[:4], "big") % 731)


async def patient_kid(patient_id: int) -> str | None:
    """The keyring key id the patient's first study was de-identified with (None: no study yet)."""
    from plugins.dicom_viewer.tables import Study

    row = await Study.select(Study.report).where(Study.patient == patient_id).order_by(Study.id).first()
    if row is None:
        return None
    return _json(row["report"], {}).get("kid")


# --- receiving an upload ------------------------------------------------------------------------


@dataclass
class Received:
    folder: Path
    #: (path on disk, the name the browser gave: shown in the per-file results, never stored)
    parts: list[tuple[Path, str]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    size: int = 0


#: An upload folder untouched for this long belongs to no live upload (one in progress writes
#: continually): it was left by a killed process and is swept (see ``sweep_incoming``).
STALE_AFTER = 3600.0


def incoming_root(settings) -> Path:
    return Path(settings.data_dir) / "dicom-incoming"


def new_folder(settings) -> Path:
    """A private (0700) folder for one upload, under the data folder (not the system's /tmp: an upload
    may be GB and holds identifying data until it is de-identified). Folders that a killed process
    left behind (untouched for an hour) are swept first. Runs in a worker thread."""
    root = incoming_root(settings)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    sweep_incoming(settings)
    folder = root / f"{INCOMING}{secrets.token_hex(8)}"
    folder.mkdir(mode=0o700)
    workfiles.hold_folder(folder)  # a killed process's folder is then swept at once (core/workfiles.py)
    (folder / "in").mkdir(mode=0o700)
    (folder / "out").mkdir(mode=0o700)
    return folder


def _newest_mtime(folder: Path) -> float:
    """The latest modification time of the folder and anything in it (a long upload writes deep inside,
    so the folder's own time says little)."""
    newest = folder.stat().st_mtime
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in (*dirnames, *filenames):
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except OSError:
                continue
    return newest


def sweep_incoming(settings, older_than: float = STALE_AFTER) -> int:
    """Remove upload folders (holding original, identifying files) that an interrupted process left in
    ``<data dir>/dicom-incoming/``: those whose owner lock is free (the process died), or, for a folder
    without one, in which nothing changed for ``older_than`` seconds. Returns how many were removed.
    Called at the start of every upload and by the core's sweeper; blocking (call it in a worker thread)."""
    import time

    root = incoming_root(settings)
    if not root.is_dir():
        return 0
    limit = time.time() - older_than
    removed = 0
    for child in root.iterdir():
        try:
            if child.is_symlink() or not child.is_dir():
                if child.lstat().st_mtime < limit:
                    child.unlink()
                    removed += 1
                continue
            if workfiles.abandoned(child, older_than=older_than) if (child / workfiles.OWNER).exists() else (
                child.stat().st_mtime < limit and _newest_mtime(child) < limit
            ):
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        except OSError:
            continue  # finished and removed meanwhile
    return removed


def discard(folder: Path) -> None:
    """Remove an upload's folder. Call it synchronously in a ``finally``: when the request is
    cancelled (the client went away, the server stops) an ``await`` there would be cancelled too and
    leave the original files behind."""
    workfiles.remove_folder(folder)


def _relative(name: str, n: int) -> str:
    """A safe relative path for a received part. Folder uploads send ``dir/sub/file`` names, which a
    DICOMDIR refers to; anything odd becomes ``part-N``."""
    clean = (name or "").replace("\\", "/")
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if (not parts or clean.startswith("/") or any(p == ".." for p in parts) or re.match(r"^[A-Za-z]:", clean)
            or any(len(p) > 120 or not re.fullmatch(r"[\w .()+,;=@~-]+", p) for p in parts)):
        return f"part-{n:05d}"
    return "/".join(parts[-8:])


class _Sink:
    def __init__(self, path: Path, budget: list[int], limit: int) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fh = open(path, "xb")  # noqa: SIM115 - closed by close()
        os.chmod(path, 0o600)
        self.budget, self.limit = budget, limit

    def write(self, data: bytes) -> None:
        self.budget[0] += len(data)
        if self.budget[0] > self.limit:
            raise IngestError(f"The upload is larger than the limit of {self.limit // 1024**2} MB.", 413)
        self.fh.write(data)

    def close(self) -> None:
        self.fh.close()


def _place(got: Received, name: str) -> Path:
    rel = _relative(name, len(got.parts))
    path = got.folder / "in" / rel
    if path.exists():
        path = got.folder / "in" / f"part-{len(got.parts):05d}"
    return path


async def receive(request, settings, folder: Path) -> Received:
    """Every file part of the multipart body (fields ``file`` or ``files``, many allowed: files, a
    folder, a ZIP), streamed to ``folder/in``; small form fields in ``fields``."""
    cfg = config(settings)
    got = Received(folder)
    budget = [0]
    if request.headers.get("x-csrftoken") is None:
        return await _from_parsed_form(request, cfg, got, budget)
    content_type, options = request.content_type
    boundary = options.get("boundary")
    if content_type != "multipart/form-data" or not boundary:
        raise IngestError("Send the images as a multipart form upload (field “files”).", 400)
    from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

    sink: _Sink | None = None
    segment = None
    value = bytearray()
    pending = bytearray()

    async def flush() -> None:
        if pending and sink is not None:
            await to_thread.run_sync(sink.write, bytes(pending))
        pending.clear()

    try:
        with PushMultipartParser(boundary.encode("latin-1"), max_segment_count=MAX_PARTS + 16) as parser:
            stream = request.stream()
            while not parser.closed:
                chunk = await anext(stream, b"")
                for part in parser.parse(chunk):
                    if isinstance(part, MultipartSegment):
                        segment = part
                        value = bytearray()
                        if part.filename is not None:
                            if part.name not in ("file", "files"):
                                raise IngestError("Send the images in the field “files”.", 400)
                            if len(got.parts) >= MAX_PARTS:
                                raise IngestError(f"Upload at most {MAX_PARTS} files at once (or one ZIP).", 413)
                            path = _place(got, part.filename)
                            sink = await to_thread.run_sync(_Sink, path, budget, cfg.max_upload_bytes)
                            got.parts.append((path, (part.filename or "")[-200:]))
                    elif part:
                        if segment is not None and segment.filename is not None:
                            pending.extend(part)
                            if len(pending) >= WRITE_BLOCK:
                                await flush()
                        else:
                            value.extend(part)
                            if len(value) > MAX_FIELD:
                                raise IngestError("A form field is too long.", 400)
                    else:
                        if segment is not None and segment.filename is not None:
                            await flush()
                            await to_thread.run_sync(sink.close)
                            sink = None
                        elif segment is not None:
                            got.fields[segment.name] = value.decode("utf-8", "replace")
                        segment = None
                if not chunk:
                    break
    except (ParserError, ParserLimitReached) as exc:
        raise IngestError("The upload was cut short or is not a valid form upload.", 400) from exc
    finally:
        if sink is not None:
            sink.close()  # synchronous: it must run on cancellation too
    got.size = budget[0]
    _check_nonempty(got)
    return got


async def _from_parsed_form(request, cfg: Config, got: Received, budget: list[int]) -> Received:
    """A plain form post (no JavaScript): Litestar's CSRF check parsed the body into spooled files
    already; they are copied to the folder the same way."""
    from litestar.datastructures import UploadFile

    form = await request.form()
    uploads = []
    for key in ("files", "file"):
        try:
            values = form.getall(key)
        except KeyError:
            values = []
        uploads.extend(v for v in values if isinstance(v, UploadFile))
    for key, value in form.items():
        if isinstance(value, str):
            got.fields[key] = value[:MAX_FIELD]
    if len(uploads) > MAX_PARTS:
        raise IngestError(f"Upload at most {MAX_PARTS} files at once (or one ZIP).", 413)
    for upload in uploads:
        path = _place(got, upload.filename or "")
        sink = await to_thread.run_sync(_Sink, path, budget, cfg.max_upload_bytes)
        try:
            while chunk := await upload.read(WRITE_BLOCK):
                await to_thread.run_sync(sink.write, chunk)
        finally:
            sink.close()  # synchronous: it must run on cancellation too
            await upload.close()
        got.parts.append((path, (upload.filename or "")[-200:]))
    got.size = budget[0]
    _check_nonempty(got)
    return got


def _check_nonempty(got: Received) -> None:
    got.parts = [(p, n) for p, n in got.parts if p.exists() and p.stat().st_size > 0]
    if not got.parts:
        raise IngestError("Choose DICOM files, a folder or a ZIP to upload.", 400)


async def receive_bytes(settings, folder: Path, items: list[tuple[bytes, str]]) -> Received:
    """Instances already in memory (STOW-RS parts, the demo) as if uploaded."""
    got = Received(folder)
    budget = [0]
    limit = config(settings).max_upload_bytes

    def write() -> None:
        for data, name in items:
            path = _place(got, name)
            sink = _Sink(path, budget, limit)
            try:
                sink.write(data)
            finally:
                sink.close()
            got.parts.append((path, name))

    await to_thread.run_sync(write)
    got.size = budget[0]
    return got


# --- ingestion ----------------------------------------------------------------------------------


@dataclass
class Prepared:
    """One de-identified instance, written to the upload folder, waiting for the store and its row."""
    result: files.FileResult
    path: Path
    info: index.InstanceInfo
    report: deid.InstanceReport
    needs_review: bool
    sop_class: str
    transfer_syntax: str
    spacing: tuple[float, float] | None
    study_description: str
    series_description: str


@dataclass
class Outcome:
    upload_id: int
    results: list[dict]
    studies: list[int]
    stored: int

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    from plugins.dicom_viewer import render

    try:
        got = render.pixel_spacing(ds)
    except Exception:  # noqa: BLE001 - a malformed spacing only means no lengths in mm
        return None
    if not got:
        return None
    (row, col), *_ = got
    return float(row), float(col)


def _prepare_all(received: Received, out_dir: Path, *, pseudonym: str, key: bytes, offset: int, dates: str,
                 known: set[str]) -> tuple[list[dict], list[Prepared]]:
    """Classify, de-identify and write every instance of the upload (runs in a worker thread).
    Returns the per-file results (with display names) and the prepared instances."""
    prepared: list[Prepared] = []
    results: list[files.FileResult] = []
    seen: dict[str, files.FileResult] = {}

    def handle(result: files.FileResult, ds: Dataset) -> None:
        new_uid = deid.remap_uid(result.sop_instance_uid, key)
        if new_uid in known:
            result.status, result.message = files.DUPLICATE, "this instance was uploaded before"
            return
        if new_uid in seen:  # in another archive of this upload: which one is said by position below
            result.status, result.message = files.DUPLICATE, "same SOP Instance UID as an earlier file"
            result.extra["same_as"] = seen[new_uid]
            return
        review = deid.needs_pixel_review(ds)  # on the original header: the gate must not depend on de-id
        report = deid.deidentify(ds, pseudonym=pseudonym, site_key=key, day_offset=offset, dates=dates)
        target = out_dir / f"{len(prepared):06d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        info = index.instance_info(ds, str(target))
        prepared.append(Prepared(
            result, target, info, report, review, str(ds.get("SOPClassUID", "")),
            str(ds.file_meta.get("TransferSyntaxUID", "")), _spacing(ds),
            str(ds.get("StudyDescription", "") or "")[:200], str(ds.get("SeriesDescription", "") or "")[:200]))
        seen[new_uid] = result
        result.extra["new_uid"] = new_uid
        result.sop_instance_uid = info.sop_instance_uid
        result.study_instance_uid = info.study_instance_uid
        result.series_instance_uid = info.series_instance_uid

    archives = [(p, n) for p, n in received.parts if _is_zip(p)]
    loose = [(p, n) for p, n in received.parts if not _is_zip(p)]
    # Archives are walked one by one; the loose files together, as one folder (a DICOMDIR among
    # them refers to its neighbours by relative path). So the archives leave that folder first.
    zips = received.folder / "zips"
    zips.mkdir(mode=0o700, exist_ok=True)
    moved = []
    for i, (path, name) in enumerate(archives):
        target = zips / f"{i:05d}.zip"
        os.replace(path, target)
        moved.append((target, name))
    names: set[str] = {n for _, n in received.parts}
    for path, name in moved:
        start = len(prepared)
        try:
            results.extend(files.ingest(path, name=name or path.name, handle=handle))
        except files.UploadRefused as exc:
            # Refused while reading (a member expanding beyond the limits): nothing of it is stored.
            for item in prepared[start:]:
                seen.pop(item.result.extra.get("new_uid", ""), None)
                item.path.unlink(missing_ok=True)
            del prepared[start:]
            results.append(files.FileResult(name or "archive", REFUSED, str(exc)))
    if len(loose) == 1:
        results.extend(files.ingest(loose[0][0], name=loose[0][1] or "file", handle=handle))
    elif loose:
        root = received.folder / "in"
        by_path = {str(p.relative_to(root)): n for p, n in loose}
        for r in files.ingest(root, handle=handle):
            names.add(r.name)
            r.name = by_path.get(r.name) or r.name
            results.append(r)
    # Messages refer to other files by position in this list; and quote no name from the upload
    # (the browser's file names, archive members, paths on disk may name the patient).
    names.update(r.name for r in results)
    position = {id(r): n for n, r in enumerate(results, 1)}
    for r in results:
        r.message = scrub(r.message, names, received.folder)
        first = r.extra.pop("same_as", None)
        if first is not None and id(first) in position:
            r.message = f"same SOP Instance UID as file {position[id(first)]}"
    return [_result_dict(r) for r in results], prepared


def _name_parts(names) -> list[str]:
    """Every name, each of its path components and their stems, longest first (short ones, under 3
    characters, are left: they identify no one and would garble the messages)."""
    parts: set[str] = set()
    for name in names:
        name = str(name or "")
        parts.add(name)
        for piece in re.split(r"[/\\]+", name):
            parts.add(piece)
            parts.add(piece.rsplit(".", 1)[0])
    return sorted((p for p in parts if len(p.strip()) >= 3 and not _GENERATED.fullmatch(p)), key=len, reverse=True)


#: Names CPMS gives (a part without a usable name, STOW-RS parts): they name no one.
_GENERATED = re.compile(r"(file|archive|part|part[- ]\d{1,6}(\.dcm)?)", re.IGNORECASE)


def scrub(message: str, names, folder: Path | None = None) -> str:
    """``message`` without any of ``names`` (file names of the upload, whole or in parts) nor the
    upload folder's path: an exception's text may quote them."""
    message = message or ""
    if folder is not None:
        message = message.replace(str(folder), "")
    for part in _name_parts(names):
        if part in message:
            message = message.replace(part, "[name]")
    return message


def _is_zip(path: Path) -> bool:
    import zipfile

    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] != b"DICM" and zipfile.is_zipfile(path)


def _result_dict(r: files.FileResult) -> dict:
    return {"name": r.name, "status": r.status, "message": r.message, "sop_instance_uid": r.sop_instance_uid,
            "sop_class_uid": r.sop_class_uid, "size": r.size}


async def ingest(settings, patient: dict, received: Received, uploaded_by: int | None, audit=None) -> Outcome:
    """De-identify and store every instance of a received upload; see the module's docstring.
    IngestError when nothing could be stored for a reason that concerns the whole upload.
    ``audit(outcome)``, if given, is awaited inside the transaction that writes the rows, so the
    rows and their audit entry commit together or not at all."""
    from core.storage import Storage, UploadRejected
    from plugins.dicom_viewer.tables import Instance

    remember_settings(settings)
    cfg = config(settings)
    kid, key = site_key(settings, await patient_kid(patient["id"]))
    offset = day_offset(key, patient["pseudonym"])
    known_rows = await Instance.select(Instance.sop_uid).where(Instance.series.study.patient == patient["id"])
    known = {r["sop_uid"] for r in known_rows}
    out_dir = received.folder / "out"
    results, prepared = await to_thread.run_sync(
        lambda: _prepare_all(received, out_dir, pseudonym=patient["pseudonym"], key=key, offset=offset,
                             dates=cfg.dates, known=known))

    storage = Storage(settings)
    stored_keys: list[str] = []
    committed = False
    try:
        keys: list = []
        for item in prepared:
            try:
                stored = await storage.save_stream(_chunks(item.path), max_bytes=cfg.max_upload_bytes,
                                                   allowed_types=STORE_TYPES)
            except UploadRejected as exc:
                raise IngestError(f"An instance could not be stored: {exc.message}", exc.status) from exc
            stored_keys.append(stored.key)
            keys.append(stored)
        upload_id, study_ids = await _write_rows(patient, prepared, keys, results, uploaded_by, kid, cfg.dates, audit)
        committed = True
    finally:
        if not committed and stored_keys:
            await remove_files([settings], set(stored_keys))
    access.forget()
    return Outcome(upload_id, results, study_ids, len(prepared))


async def _chunks(path: Path):
    fh = await to_thread.run_sync(open, path, "rb")
    try:
        while block := await to_thread.run_sync(fh.read, WRITE_BLOCK):
            yield block
    finally:
        await to_thread.run_sync(fh.close)


async def _write_rows(patient: dict, prepared: list[Prepared], stored: list, results: list[dict],
                      uploaded_by: int | None, kid: str, dates: str, audit=None) -> tuple[int, list[int]]:
    """Every row of one upload, and its audit entry, in one transaction."""
    from plugins.dicom_viewer.tables import Instance, Series, Study, Upload

    touched: list[int] = []
    async with Study._meta.db.transaction():
        studies: dict[str, dict] = {}
        series_ids: dict[tuple[int, str], int] = {}
        by_uid: dict[str, int] = {}
        for item, sf in zip(prepared, stored):
            info = item.info
            study = studies.get(info.study_instance_uid)
            if study is None:
                row = await Study.select().where(
                    (Study.patient == patient["id"]) & (Study.study_uid == info.study_instance_uid)).first()
                if row is None:
                    new = Study(patient=patient["id"], hcp=patient["hcp"], uploaded_by=uploaded_by,
                                study_uid=info.study_instance_uid, description=item.study_description,
                                study_date=info.study_date[:8] if info.study_date.isdecimal() else "",
                                modalities="", report=json.dumps({"kid": kid, "dates": dates, "instances": 0,
                                                                  "rows": []}))
                    await new.save()
                    row = await Study.select().where(Study.id == new.id).first()
                study = studies[info.study_instance_uid] = {"row": row, "report": _json(row["report"], {}),
                                                           "modalities": set(filter(None, row["modalities"].split(",")))}
                touched.append(row["id"])
            study_id = study["row"]["id"]
            if info.modality:
                study["modalities"].add(info.modality[:16])
            _merge_report(study["report"], item.report)
            skey = (study_id, info.series_instance_uid)
            series_id = series_ids.get(skey)
            if series_id is None:
                srow = await Series.select(Series.id).where(
                    (Series.study == study_id) & (Series.series_uid == info.series_instance_uid)).first()
                if srow is None:
                    new_series = Series(study=study_id, series_uid=info.series_instance_uid,
                                        modality=info.modality[:16], description=item.series_description,
                                        number=info.series_number)
                    await new_series.save()
                    series_id = new_series.id
                else:
                    series_id = srow["id"]
                series_ids[skey] = series_id
            inst = Instance(
                series=series_id, sop_uid=info.sop_instance_uid, sop_class=item.sop_class[:64],
                number=info.instance_number, frames=info.frames, rows=info.rows, columns=info.columns,
                spacing_row=item.spacing[0] if item.spacing else None,
                spacing_col=item.spacing[1] if item.spacing else None,
                file_key=sf.key, size=sf.size, transfer_syntax=item.transfer_syntax[:64],
                needs_review=item.needs_review,
            )
            await inst.save()
            by_uid[info.sop_instance_uid] = inst.id
        for study in studies.values():
            await Study.update({
                Study.report: json.dumps(study["report"]),
                Study.modalities: ",".join(sorted(study["modalities"]))[:100],
            }).where(Study.id == study["row"]["id"])
        for r in results:
            r["instance"] = by_uid.get(r["sop_instance_uid"]) if r["status"] == files.OK else None
        # The browser's file names may themselves identify the patient: the stored results keep
        # the position, outcome and message only.
        upload = Upload(patient=patient["id"], uploaded_by=uploaded_by, results=json.dumps([
            {"n": i + 1, "status": r["status"], "message": r["message"][:300], "instance": r.get("instance")}
            for i, r in enumerate(results)]))
        await upload.save()
        if audit is not None:
            await audit(Outcome(upload.id, results, touched, len(prepared)))
    return upload.id, touched


def _merge_report(report: dict, inst: deid.InstanceReport) -> None:
    """Add one instance's report to the study's stored one: counts per (attribute, action)."""
    counts = {(r["attribute"], r["action"]): r["instances"] for r in report.get("rows", [])}
    for entry in set(inst.entries):
        counts[entry] = counts.get(entry, 0) + 1
    report["rows"] = [{"attribute": a, "action": act, "instances": n} for (a, act), n in sorted(counts.items())]
    report["instances"] = int(report.get("instances", 0)) + 1


# --- reading stored instances -----------------------------------------------------------------


class _LRU:
    """Decoded datasets by file key (content-addressed, so a masked instance, stored anew, never
    hits a stale entry), bounded by an estimate of their size in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.items: OrderedDict[str, tuple[Dataset, int]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str) -> Dataset | None:
        with self.lock:
            hit = self.items.get(key)
            if hit is None:
                return None
            self.items.move_to_end(key)
            return hit[0]

    def put(self, key: str, ds: Dataset, size: int) -> None:
        with self.lock:
            if key in self.items:
                return
            self.items[key] = (ds, size)
            self.used += size
            while self.used > self.limit and len(self.items) > 1:
                _, (_, n) = self.items.popitem(last=False)
                self.used -= n

    def drop(self, key: str) -> None:
        with self.lock:
            hit = self.items.pop(key, None)
            if hit is not None:
                self.used -= hit[1]

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.used = 0


_datasets = _LRU(256 * 1024**2)


def _settings_for(settings):
    if settings is not None:
        remember_settings(settings)
        return settings
    return known_settings()[0]


async def read_file(instance: dict, settings=None) -> bytes:
    """The decrypted de-identified file (Part 10 bytes) of an instance."""
    from core.storage import Storage

    settings = _settings_for(settings)
    return await Storage(settings).read_bytes(instance["file_key"], max(int(instance.get("size") or 0), 1) + 16)


async def dataset(instance: dict, settings=None) -> Dataset:
    """The de-identified dataset of an instance row (decrypted, parsed, cached). Treat it as
    read-only: it is shared by every request."""
    key = instance["file_key"]
    ds = _datasets.get(key)
    if ds is not None:
        return ds
    data = await read_file(instance, settings)
    ds = await to_thread.run_sync(lambda: dcmread(io.BytesIO(data)))
    _datasets.limit = config(_settings_for(settings)).cache_mb * 1024**2
    _datasets.put(key, ds, len(data))
    return ds


def dataset_sync(instance: dict, settings=None) -> Dataset:
    """``dataset`` for code already in a worker thread."""
    from anyio import from_thread

    return from_thread.run(dataset, instance, settings)


def forget_dataset(file_key: str | None = None) -> None:
    if file_key is None:
        _datasets.clear()
    else:
        _datasets.drop(file_key)


def cached_datasets() -> set[str]:
    """The file keys of the decrypted datasets held in memory."""
    with _datasets.lock:
        return set(_datasets.items)


def forget_instances(rows) -> None:
    """Drop every in-memory trace of these instances (rows with ``id`` and ``file_key``): their
    decrypted datasets, rendered frames and thumbnails, and the remembered access decisions (which
    hold the rows). After a study's deletion and a patient's erasure."""
    from plugins.dicom_viewer import frames

    rows = list(rows)
    keys = {r["file_key"] for r in rows}
    for key in keys:
        forget_dataset(key)
    frames.forget_instances({r["id"] for r in rows}, keys)
    access.forget()


# --- review, masking, deletion, erasure -----------------------------------------------------------


class Unviewable(Exception):
    """The instance's pixels cannot be shown here, so no one could check them: it is not released."""


async def review(settings, instance: dict, rects: list[tuple[int, int, int, int]], reviewer: int | None) -> dict:
    """Mark an instance reviewed (visible to panels); with rectangles, blank them first (Clean Pixel
    Data) and store the cleaned file in place of the old one. Returns the updated row.
    :class:`Unviewable` (nothing changed) when its pixels cannot be shown: what cannot be seen was not
    reviewed."""
    from core.storage import Storage
    from plugins.dicom_viewer import frames
    from plugins.dicom_viewer.tables import Instance

    problem = await frames.pixel_problem(instance, settings)
    if problem is not None:
        raise Unviewable(problem)
    storage = Storage(settings)
    new_key = None
    updates: dict = {Instance.needs_review: False, Instance.reviewed_by: reviewer,
                     Instance.reviewed_at: _dt.datetime.now(_dt.timezone.utc)}
    if rects:
        ds = await dataset(instance, settings)

        def clean() -> bytes:
            copy = dcmread(io.BytesIO(_to_bytes(ds)))  # never change the shared cached dataset
            deid.mask_regions(copy, rects)
            return _to_bytes(copy)

        data = await to_thread.run_sync(clean)

        async def one():
            yield data

        stored = await storage.save_stream(one(), max_bytes=len(data) + 1, allowed_types=STORE_TYPES)
        new_key = stored.key
        before = _json(instance.get("masked"), [])
        updates.update({Instance.file_key: stored.key, Instance.size: stored.size,
                        Instance.transfer_syntax: "1.2.840.10008.1.2.1",
                        Instance.masked: json.dumps(before + [list(r) for r in rects])})
    try:
        await Instance.update(updates).where(Instance.id == instance["id"])
    except BaseException:
        if new_key is not None:
            await remove_files([settings], {new_key})
        raise
    if new_key is not None and new_key != instance["file_key"]:
        await remove_files([settings], {instance["file_key"]})
    access.forget()
    frames.forget(instance["id"])
    return await Instance.select().where(Instance.id == instance["id"]).first()


def _to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


async def remove_files(settings_list, file_keys: set[str]) -> None:
    """Stored files of ``file_keys`` no instance row uses any more."""
    from core.storage import Storage
    from plugins.dicom_viewer.tables import Instance

    for key in file_keys:
        if await Instance.exists().where(Instance.file_key == key):
            continue
        forget_dataset(key)
        for settings in settings_list:
            try:
                await Storage(settings).delete(key)
            except (ValueError, OSError):
                pass


async def delete_study(settings, study: dict) -> None:
    """A study with its series, instances and annotations (cascade), then its files."""
    from plugins.dicom_viewer.tables import Instance, Study

    rows = await Instance.select(Instance.id, Instance.file_key).where(Instance.series.study == study["id"])
    await Study.delete().where(Study.id == study["id"])
    forget_instances(rows)
    await remove_files([settings, *[s for s in known_settings() if s is not settings]], {r["file_key"] for r in rows})
    forget_instances(rows)  # again: a request that read a file meanwhile may have cached it


async def erase(pseudonym: str) -> int:
    """Everything of an erased patient: rows (uploads, studies and what hangs on them) and files."""
    from core.patients.tables import Patient
    from plugins.dicom_viewer.tables import Instance, Study, Upload

    patient = await Patient.select(Patient.id).where(Patient.pseudonym == pseudonym).first()
    if patient is None:
        return 0
    rows = await Instance.select(Instance.id, Instance.file_key).where(Instance.series.study.patient == patient["id"])
    await Study.delete().where(Study.patient == patient["id"])
    await Upload.delete().where(Upload.patient == patient["id"])
    forget_instances(rows)
    await remove_files(known_settings(), {r["file_key"] for r in rows})
    forget_instances(rows)  # again: a request that read a file meanwhile may have cached it
    return len(rows)


async def export_for_gdpr(patient_id: int) -> dict:
    """What the plugin holds about a patient: studies, series, instances (facts, not pixels), reports,
    uploads' outcomes and annotations."""
    from plugins.dicom_viewer.tables import Annotation, Instance, Series, Study, Upload

    out = []
    for st in await Study.select().where(Study.patient == patient_id).order_by(Study.id):
        report = _json(st["report"], {})
        report.pop("kid", None)
        series_out = []
        for se in await Series.select().where(Series.study == st["id"]).order_by(Series.id):
            insts = []
            for i in await Instance.select().where(Instance.series == se["id"]).order_by(Instance.id):
                notes = await Annotation.select(
                    Annotation.id, Annotation.frame, Annotation.author, Annotation.kind, Annotation.geometry,
                    Annotation.text, Annotation.measurement, Annotation.created_at,
                ).where(Annotation.instance == i["id"]).order_by(Annotation.id)
                insts.append({
                    "id": i["id"], "sop_instance_uid": i["sop_uid"], "sop_class": i["sop_class"],
                    "number": i["number"], "frames": i["frames"], "rows": i["rows"], "columns": i["columns"],
                    "size": i["size"], "needs_review": i["needs_review"], "masked": _json(i["masked"], []),
                    "reviewed_by": i["reviewed_by"], "reviewed_at": _iso(i["reviewed_at"]),
                    "annotations": [{**a, "geometry": _json(a["geometry"], {}), "measurement": _json(a["measurement"], {}),
                                     "created_at": _iso(a["created_at"])} for a in notes],
                })
            series_out.append({"id": se["id"], "series_instance_uid": se["series_uid"], "modality": se["modality"],
                               "description": se["description"], "number": se["number"], "instances": insts})
        out.append({"id": st["id"], "study_instance_uid": st["study_uid"], "description": st["description"],
                    "study_date_shifted": st["study_date"], "modalities": st["modalities"],
                    "uploaded_by": st["uploaded_by"], "created_at": _iso(st["created_at"]),
                    "deidentification_report": report, "series": series_out})
    uploads = await Upload.select().where(Upload.patient == patient_id).order_by(Upload.id)
    return {"studies": out, "uploads": [{"id": u["id"], "uploaded_by": u["uploaded_by"], "created_at": _iso(u["created_at"]),
                                         "results": _json(u["results"], [])} for u in uploads]}


def _json(value, default):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return default
    return value if value is not None else default


def _iso(value):
    return value.isoformat() if hasattr(value, "isoformat") else value
