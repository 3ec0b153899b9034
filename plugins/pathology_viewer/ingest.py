"""Uploading a slide: streamed to disk, unpacked safely, validated by opening it with OpenSlide, then
stored encrypted — or refused with a clear message and nothing left behind.

1. The multipart body is parsed as it arrives (``multipart.PushMultipartParser``) straight into a
   private temporary folder under the working-copy cache (0700): a slide of several GB never sits in
   memory, nor in the system's temporary folder. (A plain form post without the CSRF header was already
   parsed by Litestar's CSRF check into a spooled file; it is copied from there.)
2. A ZIP (MIRAX: the ``.mrxs`` and its folder; a DICOM WSI series; Hamamatsu VMS) is unpacked with
   checks: member count, no absolute or ``..`` paths, no links, no encrypted members, a bound on the
   unpacked size and on each member's compression ratio (zip bombs), sizes counted while writing.
3. OpenSlide must open it and read from every level and the whole lowest level (a file that opens but
   cannot be decoded is refused too); the facts and the whitelisted properties are taken then.
4. The same file for the same patient is refused as a duplicate (409).
5. The original is stored encrypted (``core.storage``), the unpacked folder becomes the working copy
   (no decryption needed for the first view), then the row is written. A failure at any step removes
   what the earlier steps made.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from anyio import to_thread

from core import workfiles
from plugins.pathology_viewer import slides

WRITE_BLOCK = 1024 * 1024
MAX_FIELD = 4096
MAX_MEMBERS = 5000
MAX_RATIO = 200  # uncompressed/compressed for one member; slide data is already compressed
RATIO_FLOOR = 16 * 1024**2  # small members may compress well (XML, INI)
STORE_TYPES = {"image/tiff", "application/zip", "application/dicom", "application/octet-stream"}


class IngestError(Exception):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class Received:
    folder: Path  # the private temporary folder holding everything of this upload
    fields: dict[str, str] = field(default_factory=dict)
    raw: Path | None = None
    size: int = 0
    sha256: str = ""
    extension: str = ""  # of the uploaded file's name (the name itself is never kept)


@dataclass
class Checked:
    container: str
    entry: Path
    facts: dict


def new_folder(settings) -> Path:
    folder = slides.cache_root(settings) / f"{slides.INCOMING_PREFIX}{secrets.token_hex(8)}"
    folder.mkdir(mode=0o700)
    workfiles.hold_folder(folder)  # a killed process's folder is then swept at once (core/workfiles.py)
    return folder


def _extension(filename: str | None) -> str:
    suffix = PurePosixPath((filename or "").replace("\\", "/")).suffix.lower().lstrip(".")
    return suffix if re.fullmatch(r"[a-z0-9]{1,8}", suffix or "") else ""


class _Sink:
    """The file part being written: hashed and counted, refused past the limit."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.fh = open(path, "xb")  # noqa: SIM115 - closed by close()
        os.chmod(path, 0o600)
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise IngestError(f"The file is larger than the limit of {self.limit // 1024**2} MB.", 413)
        self.hash.update(data)
        self.fh.write(data)

    def close(self) -> None:
        self.fh.close()


async def receive(request, settings, folder: Path) -> Received:
    """The upload's form fields and its one file (``file``), written into ``folder``."""
    cfg = slides.config(settings)
    got = Received(folder)
    if request.headers.get("x-csrftoken") is None:
        return await _from_parsed_form(request, cfg, got)
    content_type, options = request.content_type
    boundary = options.get("boundary")
    if content_type != "multipart/form-data" or not boundary:
        raise IngestError("Send the slide as a multipart form upload (field “file”).", 400)
    from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

    sink: _Sink | None = None
    value = bytearray()
    segment = None
    pending = bytearray()
    try:
        with PushMultipartParser(boundary.encode("latin-1"), max_segment_count=32) as parser:
            stream = request.stream()
            while not parser.closed:
                chunk = await anext(stream, b"")
                for part in parser.parse(chunk):
                    if isinstance(part, MultipartSegment):
                        segment = part
                        if part.filename is not None:
                            if sink is not None or part.name != "file":
                                raise IngestError("Upload one file at a time, in the field “file”.", 400)
                            got.extension = _extension(part.filename)
                            got.raw = folder / "upload"
                            sink = await to_thread.run_sync(_Sink, got.raw, cfg.max_upload_bytes)
                        value = bytearray()
                    elif part:
                        if segment is not None and segment.filename is not None:
                            pending += part
                            if len(pending) >= WRITE_BLOCK:
                                await to_thread.run_sync(sink.write, bytes(pending))
                                pending.clear()
                        else:
                            value += part
                            if len(value) > MAX_FIELD:
                                raise IngestError("A form field is too long.", 400)
                    else:
                        if segment is not None and segment.filename is None:
                            got.fields[segment.name] = value.decode("utf-8", "replace")
                        segment = None
                if not chunk:
                    break
    except (ParserError, ParserLimitReached) as exc:
        raise IngestError("The upload was cut short or is not a valid form upload.", 400) from exc
    finally:
        if sink is not None:
            try:
                if pending and sink.size <= sink.limit:
                    await to_thread.run_sync(sink.write, bytes(pending))
            finally:
                await to_thread.run_sync(sink.close)
    if sink is None or sink.size == 0:
        raise IngestError("Choose a slide file to upload.", 400)
    got.size, got.sha256 = sink.size, sink.hash.hexdigest()
    return got


async def _from_parsed_form(request, cfg, got: Received) -> Received:
    from litestar.datastructures import UploadFile

    form = await request.form()
    for key in ("title", "_csrf_token"):
        if isinstance(form.get(key), str):
            got.fields[key] = str(form.get(key))[:MAX_FIELD]
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise IngestError("Choose a slide file to upload.", 400)
    got.extension = _extension(upload.filename)
    got.raw = got.folder / "upload"
    sink = await to_thread.run_sync(_Sink, got.raw, cfg.max_upload_bytes)
    try:
        while chunk := await upload.read(WRITE_BLOCK):
            await to_thread.run_sync(sink.write, chunk)
    finally:
        await to_thread.run_sync(sink.close)
        await upload.close()
    if sink.size == 0:
        raise IngestError("Choose a slide file to upload.", 400)
    got.size, got.sha256 = sink.size, sink.hash.hexdigest()
    return got


# --- unpacking --------------------------------------------------------------------------------


def _member_path(name: str) -> PurePosixPath | None:
    """A safe relative path for a ZIP member, None to skip it (folders, macOS resource forks);
    IngestError for anything pointing outside the archive."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise IngestError("The archive holds an absolute path; it was refused.", 422)
    parts = [p for p in clean.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise IngestError("The archive holds a path leading outside it (“..”); it was refused.", 422)
    if not parts or clean.endswith("/"):
        return None
    if parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] in (".DS_Store", "Thumbs.db"):
        return None
    if any(len(p) > 200 or "\x00" in p for p in parts):
        raise IngestError("The archive holds a file name that is too long or malformed.", 422)
    return PurePosixPath(*parts)


# What reading a damaged archive raises: zlib.error for damaged deflate data, OSError for a member
# offset pointing before the file's start (both found by fuzzing), the rest from zipfile itself.
DAMAGED_ZIP = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, ValueError, zlib.error, OSError)


def _member_blocks(zf: zipfile.ZipFile, info: zipfile.ZipInfo):
    """The member's bytes in blocks; IngestError for anything wrong with the archive while reading."""
    try:
        with zf.open(info) as src:
            while block := src.read(WRITE_BLOCK):
                yield block
    except DAMAGED_ZIP as exc:
        raise IngestError("The ZIP archive is damaged or uses an unsupported compression.", 422) from exc


def safe_extract(archive: Path, dest: Path, limit: int | None = None) -> int:
    """Unpack ``archive`` into ``dest`` (created, 0700); returns the bytes written."""
    limit = limit or 64 * 1024**3
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise IngestError("The ZIP archive is damaged or incomplete.", 422) from exc
    with zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise IngestError(f"The archive holds more than {MAX_MEMBERS} files.", 422)
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
        seen: set[str] = set()
        declared = 0
        for info in members:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise IngestError("The archive holds a symbolic link; it was refused.", 422)
            rel = _member_path(info.filename)
            if rel is None or info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise IngestError("The archive is encrypted; upload it without a password.", 422)
            key = str(rel).lower()
            if key in seen:
                raise IngestError("The archive holds the same file twice.", 422)
            seen.add(key)
            declared += info.file_size
            if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise IngestError("The archive expands far beyond its size (a “zip bomb”); it was refused.", 422)
            plan.append((info, rel))
        if declared > limit:
            raise IngestError(f"The archive unpacks to more than {limit // 1024**2} MB.", 413)
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        root = dest.resolve()
        written = 0
        for info, rel in plan:
            target = (dest / rel).resolve()
            if root not in target.parents:
                raise IngestError("The archive holds a path leading outside it; it was refused.", 422)
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            remaining = info.file_size
            with open(target, "xb") as out:
                for block in _member_blocks(zf, info):
                    remaining -= len(block)
                    written += len(block)
                    # The header's size is a claim: what is written is counted.
                    if remaining < 0 or written > limit:
                        raise IngestError("The archive expands beyond what it declares; it was refused.", 422)
                    out.write(block)  # our own disk's errors are ours: not reported as a damaged archive
        return written


# --- validation ---------------------------------------------------------------------------------


def unpack(got: Received, settings) -> Path:
    """Lay the upload out as ``folder/slide/…`` (what becomes the working copy); returns its entry file."""
    cfg = slides.config(settings)
    tree = got.folder / "slide"
    if zipfile.is_zipfile(got.raw):
        safe_extract(got.raw, tree, cfg.max_upload_bytes * 4)
        entry = slides.find_entry(tree)
        if entry is None:
            raise IngestError("The archive holds no slide to open: put in it one .mrxs file with its folder, "
                              "or the .dcm files of one DICOM series.", 422)
        return entry
    with open(got.raw, "rb") as fh:
        head = fh.read(132)
    ext = got.extension
    if head[128:132] == b"DICM":
        ext = "dcm"
    elif ext not in slides.SINGLE_EXTENSIONS:
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            ext = "tiff"
        else:
            raise IngestError("This is not a whole-slide image format CPMS accepts (SVS, NDPI, SCN, BIF, TIFF, "
                              "DICOM; MIRAX or VMS as a ZIP).", 415)
    tree.mkdir(mode=0o700)
    entry = tree / f"slide.{ext}"
    # A hard link, so the original stays in place for the encrypted store and costs no copy.
    os.link(got.raw, entry)
    return entry


def validate(entry: Path) -> dict:
    """Open with OpenSlide and read from every level; the slide's facts, or IngestError."""
    import openslide

    from plugins.pathology_viewer.tiles import pyramid_thumbnail

    try:
        osr = openslide.OpenSlide(str(entry))
    except openslide.OpenSlideUnsupportedFormatError as exc:
        raise IngestError("OpenSlide does not recognise this file as a whole-slide image (is it a slide, and "
                          "complete? MIRAX and DICOM series go in a ZIP).", 422) from exc
    except Exception as exc:
        raise IngestError(f"OpenSlide cannot open this slide: {_reason(exc)}.", 422) from exc
    try:
        w, h = osr.dimensions
        if w <= 0 or h <= 0:
            raise IngestError("The slide has no pixels.", 422)
        for level in range(osr.level_count):
            lw, lh = osr.level_dimensions[level]
            down = osr.level_downsamples[level]
            for x, y in ((0, 0), (lw // 2, lh // 2), (max(0, lw - 64), max(0, lh - 64))):
                osr.read_region((int(x * down), int(y * down)), level, (min(64, lw), min(64, lh)))
        pyramid_thumbnail(osr, 256)
        return slides.facts(osr)
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(f"OpenSlide opened this slide but cannot read its pixels: {_reason(exc)}. The file may be "
                          "damaged or cut short.", 422) from exc
    finally:
        osr.close()


def _reason(exc: Exception) -> str:
    # OpenSlide's messages name file paths (our temporary ones): keep the words, not the paths.
    text = re.sub(r"(/[^\s:]+)+", "…", str(exc)).strip().rstrip(".")
    return text[:200] or type(exc).__name__


def container_of(entry: Path) -> str:
    """What the slide is stored as, for the facts (a ZIP's slide is named by its index file)."""
    ext = entry.suffix.lower().lstrip(".")
    if ext in slides.SINGLE_EXTENSIONS | {"mrxs", "vms"}:
        return ext
    return "dcm" if slides._is_dicom(entry) else "tiff"


def check(got: Received, settings) -> Checked:
    entry = unpack(got, settings)
    facts = validate(entry)
    return Checked(container_of(entry), entry, facts)


def discard(folder: Path) -> None:
    workfiles.remove_folder(folder)


# --- storing ------------------------------------------------------------------------------------


async def commit(settings, patient: dict, got: Received, title: str, uploaded_by: int | None, audit=None) -> dict:
    """Check a received upload and store it: the encrypted original, the working copy, the row.
    Returns the row; IngestError (and nothing stored) when refused. ``audit(row)``, if given, is
    awaited in the transaction that saves the row: both commit, or neither."""
    from core.storage import Storage, UploadRejected
    from plugins.pathology_viewer import store
    from plugins.pathology_viewer.tables import Slide

    title = " ".join((title or "").split())
    if len(title) > 200:
        raise IngestError("The title is longer than 200 characters.", 422)
    if await Slide.exists().where((Slide.patient == patient["id"]) & (Slide.sha256 == got.sha256)):
        raise IngestError("This slide is already in the patient's record (the same file was uploaded before).", 409)
    checked = await to_thread.run_sync(check, got, settings)

    async def chunks():
        fh = await to_thread.run_sync(open, got.raw, "rb")
        try:
            while block := await to_thread.run_sync(fh.read, WRITE_BLOCK):
                yield block
        finally:
            await to_thread.run_sync(fh.close)

    stored_key = None
    try:
        try:
            stored = await Storage(settings).save_stream(chunks(), max_bytes=slides.config(settings).max_upload_bytes,
                                                         allowed_types=STORE_TYPES)
        except UploadRejected as exc:
            raise IngestError(exc.message, exc.status) from exc
        stored_key = stored.key
        await to_thread.run_sync(slides.files_for(settings).adopt, got.folder, slides.copy_name(stored.key))
        facts = checked.facts
        row = Slide(
            patient=patient["id"], hcp=patient["hcp"], uploaded_by=uploaded_by, title=title,
            file_key=stored.key, sha256=stored.sha256, size=stored.size, container=checked.container,
            vendor=facts["vendor"], width=facts["width"], height=facts["height"], level_count=facts["level_count"],
            mpp_x=facts["mpp_x"], mpp_y=facts["mpp_y"], objective_power=facts["objective_power"],
            properties=facts["properties"], associated=facts["associated"],
        )
        result = {"id": None, "size": stored.size, "vendor": facts["vendor"], "file_key": stored.key}
        async with Slide._meta.db.transaction():
            await row.save()
            result["id"] = row.id
            if audit is not None:
                await audit(result)
        stored_key = None  # the row owns it now
    finally:
        # Nothing half-stored: the stored file and working copy go unless another row uses the same file.
        if stored_key is not None:
            await store.remove_files([settings], {stored_key})
    return result


async def receive_file(settings, path: Path, folder: Path) -> Received:
    """A file on this machine as if uploaded (the demo, the command line): copied into ``folder``."""
    got = Received(folder, extension=_extension(path.name))
    got.raw = folder / "upload"

    def copy() -> None:
        sink = _Sink(got.raw, slides.config(settings).max_upload_bytes)
        try:
            with open(path, "rb") as fh:
                while block := fh.read(WRITE_BLOCK):
                    sink.write(block)
        finally:
            sink.close()
        got.size, got.sha256 = sink.size, sink.hash.hexdigest()

    await to_thread.run_sync(copy)
    return got
