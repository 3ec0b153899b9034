"""Safe ingestion of an upload: one DICOM file, a ZIP, or media (a folder) with a DICOMDIR.

:func:`ingest` walks the candidate files one at a time, streaming each from disk (a ZIP member is
copied through a spooled temporary file, never the whole archive into memory), classifies it, and
returns one :class:`FileResult` per candidate; a bad file never fails the batch. The whole upload
is refused (:class:`UploadRefused`) only when the archive itself is unsafe: member names that
escape it (``..``, absolute, drive letters), symbolic links, or ZIP-bomb limits (member count,
total uncompressed size, compression ratio) — checked on the central directory before any member
is read, and again on the bytes actually decompressed.

Messages name no file: names may identify the patient, and the messages are kept. Archive members
are referred to by position (``member 3``), a duplicate's original by its position among the
results (``file 2``). (A library's exception text may still quote a name: ``store.scrub`` removes
them before anything is kept.)

When a DICOMDIR is present (in a folder or a ZIP), the files it references are the candidates, in
its order; referenced files that are missing are reported; files it does not reference are ignored.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

OK, NOT_DICOM, CORRUPT, DUPLICATE, MISSING, SKIPPED = "ok", "not-dicom", "corrupt", "duplicate", "missing", "skipped"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_CHUNK = 1 << 20


class UploadRefused(ValueError):
    """The upload as a whole is unsafe or unreadable; the message says why."""


@dataclass(frozen=True)
class Limits:
    max_members: int = 20_000
    max_total_bytes: int = 8 << 30  # uncompressed, whole archive
    max_member_bytes: int = 2 << 30
    max_ratio: float = 200.0  # uncompressed / compressed, per member above ratio_floor_bytes
    ratio_floor_bytes: int = 1 << 20
    spool_bytes: int = 16 << 20  # a member up to this size is buffered in memory, larger ones on disk


@dataclass
class FileResult:
    name: str
    status: str  # ok, not-dicom, corrupt, duplicate, missing, skipped
    message: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    sop_class_uid: str = ""
    size: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class Candidate:
    name: str
    open: Callable[[], IO[bytes]]
    size: int = 0


# --- ZIP safety -------------------------------------------------------------------------------

def _unsafe_name(name: str) -> str | None:
    if "\0" in name:
        return "contains a NUL character"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "is an absolute path"
    if any(part == ".." for part in PurePosixPath(norm).parts):
        return "escapes the archive (..)"
    return None


def member_label(position: int) -> str:
    """How messages refer to an archive member: by its position in the archive's directory (from 1),
    never by its name, which may itself identify the patient (and messages are kept)."""
    return f"member {position}"


def check_zip(zf: zipfile.ZipFile, limits: Limits) -> list[zipfile.ZipInfo]:
    """The archive's file members, or UploadRefused naming (by position) the first unsafe one."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UploadRefused(f"ZIP refused: {len(infos)} members, more than the limit of {limits.max_members}")
    total = 0
    members = []
    for position, info in enumerate(infos, 1):
        member = member_label(position)
        problem = _unsafe_name(info.filename)
        if problem:
            raise UploadRefused(f"ZIP refused: {member} {problem}")
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_ISLNK(mode):
            raise UploadRefused(f"ZIP refused: {member} is a symbolic link")
        if info.is_dir():
            continue
        if info.file_size > limits.max_member_bytes:
            raise UploadRefused(f"ZIP refused: {member} would expand to {info.file_size} bytes, "
                                f"more than the limit of {limits.max_member_bytes}")
        if (info.file_size > limits.ratio_floor_bytes
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            raise UploadRefused(f"ZIP refused: {member} has a compression ratio of "
                                f"{info.file_size / max(info.compress_size, 1):.0f}:1 (limit {limits.max_ratio:.0f}:1)")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise UploadRefused(f"ZIP refused: it would expand to more than {limits.max_total_bytes} bytes")
        members.append(info)
    return members


class _Budget:
    """Counts the bytes really decompressed from an archive against the limits."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.total = 0

    def copy(self, src: IO[bytes], member: str, compressed: int) -> IO[bytes]:
        out = tempfile.SpooledTemporaryFile(max_size=self.limits.spool_bytes)
        n = 0
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            n += len(chunk)
            self.total += len(chunk)
            if n > self.limits.max_member_bytes or self.total > self.limits.max_total_bytes:
                out.close()
                raise UploadRefused(f"ZIP refused: {member} expands beyond the size limits")
            if n > self.limits.ratio_floor_bytes and n > self.limits.max_ratio * max(compressed, 1):
                out.close()
                raise UploadRefused(f"ZIP refused: {member} expands beyond the ratio limit")
            out.write(chunk)
        out.seek(0)
        return out


# --- candidates -------------------------------------------------------------------------------

def _dicomdir_refs(fp: IO[bytes]) -> list[str]:
    """Referenced File IDs of a DICOMDIR, as relative POSIX paths, in directory order."""
    ds = dcmread(fp, force=True)
    refs: list[str] = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        rel = "/".join(str(p).strip() for p in parts)
        if _unsafe_name(rel) is None:
            refs.append(rel)
    return refs


def _match(name: str, index: dict[str, str]) -> str | None:
    key = name.replace("\\", "/").upper()
    return index.get(key) or index.get(key + ";1") or index.get(key.rstrip("."))


def zip_candidates(path: Path, limits: Limits) -> Iterator[Candidate | FileResult]:
    zf = zipfile.ZipFile(path)
    try:
        members = check_zip(zf, limits)
        budget = _Budget(limits)
        positions = {id(info): n for n, info in enumerate(zf.infolist(), 1)}

        def opener(info: zipfile.ZipInfo):
            def _open():
                if info.flag_bits & 0x1:
                    raise PermissionError("encrypted ZIP member")
                with zf.open(info) as src:
                    return budget.copy(src, member_label(positions.get(id(info), 0)), info.compress_size)
            return _open

        dirs = [m for m in members if PurePosixPath(m.filename).name.upper() == "DICOMDIR"]
        if dirs:
            index = {m.filename.upper(): m for m in members}
            for d in dirs:
                base = str(PurePosixPath(d.filename).parent)
                base = "" if base == "." else base + "/"
                with opener(d)() as fp:
                    try:
                        refs = _dicomdir_refs(fp)
                    except Exception as exc:  # noqa: BLE001 - a bad DICOMDIR is reported, not fatal
                        yield FileResult(d.filename, CORRUPT, f"unreadable DICOMDIR: {exc}")
                        continue
                for ref in refs:
                    key = (base + ref).upper()
                    info = index.get(key) or index.get(key + ";1")
                    if info is None:
                        yield FileResult(base + ref, MISSING, "referenced by the DICOMDIR but not in the archive")
                    else:
                        yield Candidate(info.filename, opener(info), info.file_size)
        else:
            for info in members:
                yield Candidate(info.filename, opener(info), info.file_size)
    finally:
        zf.close()


def folder_candidates(root: Path) -> Iterator[Candidate | FileResult]:
    root = Path(root)
    dicomdirs = [p for p in root.rglob("*") if p.name.upper() == "DICOMDIR" and p.is_file() and not p.is_symlink()]
    if dicomdirs:
        for d in dicomdirs:
            with open(d, "rb") as fp:
                try:
                    refs = _dicomdir_refs(fp)
                except Exception as exc:  # noqa: BLE001
                    yield FileResult(str(d.relative_to(root)), CORRUPT, f"unreadable DICOMDIR: {exc}")
                    continue
            existing = {str(p.relative_to(d.parent)).replace(os.sep, "/").upper(): p
                        for p in d.parent.rglob("*") if p.is_file()}
            for ref in refs:
                p = existing.get(ref.upper()) or existing.get(ref.upper() + ";1")
                name = str((d.parent / ref).relative_to(root))
                if p is None:
                    yield FileResult(name, MISSING, "referenced by the DICOMDIR but not on the media")
                elif p.is_symlink():
                    yield FileResult(name, SKIPPED, "symbolic link not followed")
                else:
                    yield Candidate(name, lambda p=p: open(p, "rb"), p.stat().st_size)
        return
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            yield FileResult(str(p.relative_to(root)), SKIPPED, "symbolic link not followed")
        elif p.is_file():
            yield Candidate(str(p.relative_to(root)), lambda p=p: open(p, "rb"), p.stat().st_size)


def candidates(path: Path, limits: Limits = Limits(), name: str | None = None) -> Iterator[Candidate | FileResult]:
    """The files of an upload: a folder, a ZIP, or a single file (``name`` is its display name)."""
    path = Path(path)
    if path.is_dir():
        yield from folder_candidates(path)
        return
    with open(path, "rb") as fp:
        head = fp.read(132)
    if head[128:132] != b"DICM" and zipfile.is_zipfile(path):
        try:
            yield from zip_candidates(path, limits)
        except zipfile.BadZipFile as exc:
            raise UploadRefused(f"ZIP refused: the archive is damaged ({exc})") from exc
        return
    yield Candidate(name or path.name, lambda: open(path, "rb"), path.stat().st_size)


# --- classification ---------------------------------------------------------------------------

def _looks_like_dataset(head: bytes) -> bool:
    """A DICOM stream without the 128-byte preamble: starts with a group 0002 or 0008 element."""
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00")


class _Bounded:
    """A file whose reads never ask for more than what is left in it. A damaged element length
    (0x7fffffff in a 4 KB file) makes pydicom call ``read(2 GB)``, and a real file object allocates
    the whole buffer before reading (found by fuzzing: 740 MB for one small upload)."""

    def __init__(self, fp: IO[bytes]) -> None:
        self._fp = fp
        here = fp.tell()
        self._size = fp.seek(0, 2)
        fp.seek(here)

    def read(self, size: int = -1) -> bytes:
        left = max(self._size - self._fp.tell(), 0)
        return self._fp.read(left if size is None or size < 0 else min(size, left))

    def __getattr__(self, name):
        return getattr(self._fp, name)


def read_dataset(fp: IO[bytes]) -> Dataset:
    """Read and check a DICOM instance; InvalidDicomError if it is not DICOM, other errors if corrupt."""
    fp = _Bounded(fp)
    head = fp.read(132)
    fp.seek(0)
    has_preamble = head[128:132] == b"DICM"
    if not has_preamble and not _looks_like_dataset(head):
        raise InvalidDicomError("not a DICOM file (no DICM marker)")
    ds = dcmread(fp, force=not has_preamble)
    for elem in ds:  # parse every top-level element now: bad lengths and VRs show here
        pass
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        meta = getattr(ds, "file_meta", None)
        if meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
            return ds
        raise InvalidDicomError("not a DICOM instance (no SOP Instance UID)")
    _check_pixels(ds)
    return ds


def _check_pixels(ds: Dataset) -> None:
    if "PixelData" not in ds:
        return
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    value = ds.PixelData
    if value is None:
        raise ValueError("empty Pixel Data")
    from pydicom.uid import UID
    if ts is not None and UID(ts).is_encapsulated:
        if value[:4] != b"\xfe\xff\x00\xe0":
            raise ValueError("encapsulated Pixel Data does not start with an item")
        return
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not (rows and cols and bits):
        raise ValueError("Pixel Data without Rows, Columns or Bits Allocated")
    expected = (rows * cols * samples * bits * frames + 7) // 8
    if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
        expected = expected // 3 * 2
    if len(value) < expected:
        raise ValueError(f"Pixel Data holds {len(value)} bytes, {expected} expected (truncated file?)")


def classify(c: Candidate) -> tuple[FileResult, Dataset | None]:
    """Read one candidate into a FileResult and, when it is a DICOM instance, its dataset."""
    try:
        fp = c.open()
    except Exception as exc:  # noqa: BLE001 - encrypted or unreadable member
        if isinstance(exc, UploadRefused):
            raise
        return FileResult(c.name, CORRUPT, f"cannot read: {exc}", size=c.size), None
    try:
        with fp:
            ds = read_dataset(fp)
    except InvalidDicomError as exc:
        return FileResult(c.name, NOT_DICOM, str(exc), size=c.size), None
    except Exception as exc:  # noqa: BLE001 - anything else while parsing is a corrupt file
        return FileResult(c.name, CORRUPT, f"corrupt DICOM file: {type(exc).__name__}: {exc}", size=c.size), None
    meta = getattr(ds, "file_meta", None)
    if meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
        return FileResult(c.name, SKIPPED, "DICOMDIR (a directory, not an instance)", size=c.size), None
    return FileResult(c.name, OK, "", str(ds.SOPInstanceUID), str(ds.get("StudyInstanceUID", "")),
                      str(ds.get("SeriesInstanceUID", "")), str(ds.SOPClassUID), c.size), ds


def ingest(path: Path, *, limits: Limits = Limits(), name: str | None = None,
           known_uids: set[str] | None = None,
           handle: Callable[[FileResult, Dataset], None] | None = None) -> list[FileResult]:
    """Classify every file of an upload; call ``handle(result, dataset)`` for each new instance.

    A SOP Instance UID seen earlier in the batch or in ``known_uids`` (already stored) makes the
    file a ``duplicate``; one seen earlier in the batch says which by position ("file 3": the third
    result) and holds that result in ``extra["same_as"]``. Messages never quote file or member names.
    An exception raised by ``handle`` marks that file ``corrupt`` with its message. Only
    :class:`UploadRefused` escapes, before any file is handled when the archive's directory is unsafe.
    """
    seen: dict[str, tuple[int, FileResult]] = {}
    known = known_uids or set()
    results: list[FileResult] = []
    for c in candidates(Path(path), limits, name):
        if isinstance(c, FileResult):
            results.append(c)
            continue
        result, ds = classify(c)
        if ds is not None:
            uid = result.sop_instance_uid
            if uid in seen:
                position, first = seen[uid]
                result.status = DUPLICATE
                result.message = f"same SOP Instance UID as file {position}"
                result.extra["same_as"] = first
            elif uid in known:
                result.status, result.message = DUPLICATE, "this instance was uploaded before"
            else:
                seen[uid] = (len(results) + 1, result)
                if handle is not None:
                    try:
                        handle(result, ds)
                    except Exception as exc:  # noqa: BLE001 - one file's failure never fails the batch
                        result.status, result.message = CORRUPT, f"{type(exc).__name__}: {exc}"
        results.append(result)
    return results
