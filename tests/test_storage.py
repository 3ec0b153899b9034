"""The storage layer: encrypted, content-addressed files that an interrupted upload never leaves
half-written, with tampering, truncation and key rotation handled on read. Real files in a
temporary folder; no database."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import stat
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.crypto import Keyring
from core.storage import (
    MAGIC,
    Storage,
    StorageCorrupt,
    StorageError,
    StoredFile,
    UploadRejected,
    detect_type,
)
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
PDF = "application/pdf"
PNG = "image/png"
MARKER = b"PATIENT Jane Marker-Doe 1987-03-14"


@pytest.fixture
def settings(tmp_path):
    return make_settings(data_dir=tmp_path)


@pytest.fixture
def store(settings):
    return Storage(settings)


def small_store(settings, keyring: Keyring | None = None) -> Storage:
    """Chunks of 1 KiB, so a few KB make a file of several chunks."""
    return Storage(settings, keyring=keyring, chunk_size=1024)


async def stream(*pieces: bytes):
    for piece in pieces:
        yield piece


def split(data: bytes, size: int = 700) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def files_under(root: Path) -> list[str]:
    """Every file (final or temporary) in the store's folder."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def make_pdf(body_repeats: int = 1) -> bytes:
    body = b"1 0 obj << /Title (" + MARKER + b") >> endobj\n"
    return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + body * body_repeats + b"trailer << /Root 1 0 R >>\n%%EOF\n"


def make_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG written by hand (signature, IHDR, IDAT, IEND with their CRCs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def save(store: Storage, data: bytes, types=(PDF, PNG), max_bytes: int = 10**8) -> StoredFile:
    return await store.save_stream(stream(*split(data)), max_bytes=max_bytes, allowed_types=set(types))


async def read_all(store: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in await store.open_stream(key)])


# --- round trip and encryption -------------------------------------------------------------


@pytest.mark.parametrize("data, content_type", [(make_pdf(), PDF), (make_png(), PNG)], ids=["pdf", "png"])
async def test_round_trip(store, data, content_type):
    stored = await save(store, data)

    assert stored.content_type == content_type
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert len(stored.key) == 70 and stored.key[:2] + stored.key[3:5] == stored.key[6:10]
    assert store.exists(stored.key)
    assert await store.read_bytes(stored.key, max_bytes=len(data)) == data
    assert await read_all(store, stored.key) == data


async def test_folder_and_files_are_private(store, settings):
    stored = await save(store, make_pdf())

    assert store.root == settings.data_dir / "files"
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path(stored.key).stat().st_mode) == 0o600


async def test_ciphertext_on_disk_holds_no_plaintext(store):
    data = make_pdf(body_repeats=50)
    stored = await save(store, data)

    on_disk = store.path(stored.key).read_bytes()
    assert on_disk.startswith(MAGIC)
    assert MARKER not in on_disk and b"%PDF" not in on_disk
    # The name is keyed: a copy of the document does not reveal that it is stored here.
    assert stored.sha256 not in stored.key
    assert hashlib.sha256(data).digest() not in on_disk


async def test_several_chunks_round_trip_whatever_the_piece_sizes(settings):
    store = small_store(settings)
    data = make_pdf(body_repeats=200)  # about 11 KB: eleven 1 KiB chunks
    exact = data[: 1024 * 4]  # a whole number of chunks: the last one is full

    for payload, pieces in [(data, split(data, 1)), (data, [data]), (exact, split(exact, 1024))]:
        stored = await store.save_stream(stream(*pieces), max_bytes=10**6, allowed_types={PDF})
        assert await read_all(store, stored.key) == payload


# --- content types and refusals ------------------------------------------------------------


@pytest.mark.parametrize(
    "head, expected",
    [
        (b"%PDF-1.7\n", PDF),
        (make_png(), PNG),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"II*\x00\x08\x00\x00\x00", "image/tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "image/tiff"),
        (b"II+\x00\x08\x00\x00\x00", "image/tiff"),
        (b"\x00" * 128 + b"DICM\x02\x00", "application/dicom"),
        (b"II*\x00" + b"\x00" * 124 + b"DICM", "application/dicom"),  # DICOM with a TIFF preamble
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"<html><script>", "application/octet-stream"),
        (b" %PDF-1.4", "application/octet-stream"),
    ],
)
def test_type_comes_from_the_first_bytes(head, expected):
    assert detect_type(head) == expected


async def pieces_counted(pieces: list[bytes], seen: list[bytes]):
    for piece in pieces:
        seen.append(piece)
        yield piece


async def test_type_not_allowed_is_415_stops_early_and_leaves_nothing(store):
    pieces = [b"<html><body>" + b"x" * 100] + [b"y" * 1000] * 50
    seen: list[bytes] = []

    with pytest.raises(UploadRejected) as refused:
        await store.save_stream(pieces_counted(pieces, seen), max_bytes=10**6, allowed_types={PDF, PNG})

    assert refused.value.status == 415 and refused.value.status_code == 415
    assert "application/pdf" in refused.value.message
    assert len(seen) == 2  # the type was known after 132 bytes
    assert files_under(store.root) == []


async def test_a_pdf_is_refused_where_only_images_are_allowed(store):
    with pytest.raises(UploadRejected) as refused:
        await save(store, make_pdf(), types=(PNG,))
    assert refused.value.status == 415
    assert files_under(store.root) == []


async def test_unrecognised_content_only_where_octet_stream_is_allowed(store):
    data = b"##fileformat=VCFv4.2\n" + b"chr1\t12345\t.\tA\tG\n" * 20

    with pytest.raises(UploadRejected):
        await save(store, data)
    stored = await save(store, data, types=("application/octet-stream",))
    assert stored.content_type == "application/octet-stream"
    assert await store.read_bytes(stored.key, 10_000) == data


@pytest.mark.parametrize("pieces", [[], [b"", b""]], ids=["no pieces", "empty pieces"])
async def test_empty_upload_is_400(store, pieces):
    with pytest.raises(UploadRejected) as refused:
        await store.save_stream(stream(*pieces), max_bytes=100, allowed_types={PDF})
    assert refused.value.status == 400
    assert files_under(store.root) == []


async def test_too_large_is_413_stops_early_and_leaves_nothing(settings):
    store = small_store(settings)
    pieces = [b"%PDF-1.4\n" + b"a" * 991] + [b"b" * 1000] * 99  # 100 KB offered
    seen: list[bytes] = []

    with pytest.raises(UploadRejected) as refused:
        await store.save_stream(pieces_counted(pieces, seen), max_bytes=10_000, allowed_types={PDF})

    assert refused.value.status == 413
    assert len(seen) == 11  # the piece crossing 10,000 bytes, and not one more
    assert files_under(store.root) == []


async def test_an_upload_of_exactly_the_limit_is_accepted(store):
    data = make_pdf()
    stored = await save(store, data, max_bytes=len(data))
    assert stored.size == len(data)


# --- interruptions -------------------------------------------------------------------------


async def test_an_iterator_failing_midway_leaves_nothing(settings):
    store = small_store(settings)
    temp_files_at_failure: list[str] = []

    async def failing():
        yield b"%PDF-1.4\n" + b"a" * 5000
        yield b"b" * 5000
        temp_files_at_failure.extend(files_under(store.root))
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.save_stream(failing(), max_bytes=10**6, allowed_types={PDF})

    # The failure happened with data already written to a temporary file; it is gone.
    assert len(temp_files_at_failure) == 1 and temp_files_at_failure[0].startswith(".upload-")
    assert files_under(store.root) == []


async def test_a_cancelled_upload_leaves_nothing(settings):
    store = small_store(settings)
    waiting = asyncio.Event()

    async def stalled():
        yield b"%PDF-1.4\n" + b"a" * 5000
        waiting.set()
        await asyncio.Event().wait()  # a client that never sends the rest
        yield b"never"

    task = asyncio.create_task(store.save_stream(stalled(), max_bytes=10**6, allowed_types={PDF}))
    await asyncio.wait_for(waiting.wait(), 5)
    assert len(files_under(store.root)) == 1  # the temporary file, with 4 chunks in it
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert files_under(store.root) == []


KILLED_UPLOAD = r"""
import asyncio, sys
from pathlib import Path
from core.settings import Settings
from core.storage import Storage

async def slow():
    yield b"%PDF-1.4\n" + b"a" * 5000
    print("writing", flush=True)
    while True:
        await asyncio.sleep(0.05)
        yield b"b" * 1000

async def main():
    store = Storage(Settings(env="test", data_dir=Path(sys.argv[1])), chunk_size=1024)
    await store.save_stream(slow(), max_bytes=10**9, allowed_types={"application/pdf"})

asyncio.run(main())
"""


async def test_a_killed_process_leaves_only_a_temp_file_that_cleanup_removes(settings, store):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_UPLOAD, str(settings.data_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        await asyncio.sleep(0.3)  # a few more pieces arrive
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    left = files_under(store.root)
    assert len(left) == 1 and left[0].startswith(".upload-") and left[0].endswith(".part")
    # Its writer held a lock on it, which died with the process: removed at once, however fresh
    # (a live writer's file is kept: tests/test_sweeper.py).
    assert await store.cleanup_temp() == 1
    assert files_under(store.root) == []


# --- damage on disk ------------------------------------------------------------------------


async def stored_in_chunks(settings) -> tuple[Storage, StoredFile, Path, bytes]:
    store = small_store(settings)
    data = make_pdf(body_repeats=60)  # about 3.4 KB: four chunks, the last one short
    stored = await save(store, data)
    return store, stored, store.path(stored.key), data


def header_size(path: Path) -> int:
    raw = path.read_bytes()
    return len(MAGIC) + 2 + raw[len(MAGIC) + 1] + 4 + 12


@pytest.mark.parametrize("where", ["version", "key id", "chunk size", "nonce", "first chunk", "middle", "last tag"])
async def test_one_changed_byte_is_detected(settings, where):
    store, stored, path, data = await stored_in_chunks(settings)
    raw = bytearray(path.read_bytes())
    head = header_size(path)
    offset = {
        "version": len(MAGIC),
        "key id": len(MAGIC) + 2,
        "chunk size": head - 12 - 1,
        "nonce": head - 1,
        "first chunk": head + 10,
        "middle": head + 1040 + 500,
        "last tag": len(raw) - 1,
    }[where]
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))

    with pytest.raises(StorageCorrupt):
        await store.read_bytes(stored.key, max_bytes=10**6)


async def test_damage_in_a_later_chunk_stops_the_stream_before_the_bad_chunk(settings):
    store, stored, path, data = await stored_in_chunks(settings)
    raw = bytearray(path.read_bytes())
    raw[header_size(path) + 2 * 1040 + 7] ^= 0x80  # inside the third chunk
    path.write_bytes(bytes(raw))

    received = []
    with pytest.raises(StorageCorrupt):
        async for chunk in await store.open_stream(stored.key):
            received.append(chunk)
    assert b"".join(received) == data[:2048]


@pytest.mark.parametrize(
    "cut, error",
    [
        ("one byte", "chunk 3 failed"),
        ("mid last chunk", "chunk 3 failed"),
        # Cut exactly at a chunk boundary: the new last chunk was not sealed as the last one.
        ("whole last chunk", "chunk 2 failed"),
        ("all but first chunk", "chunk 0 failed"),
        ("header only", "holds no data"),
        ("half header", "cut short"),
        ("empty", "not a stored file"),
    ],
)
async def test_truncation_is_detected(settings, cut, error):
    store, stored, path, data = await stored_in_chunks(settings)
    raw = path.read_bytes()
    head = header_size(path)
    keep = {
        "one byte": len(raw) - 1,
        "mid last chunk": head + 3 * 1040 + 20,
        "whole last chunk": head + 3 * 1040,
        "all but first chunk": head + 1040,
        "header only": head,
        "half header": head // 2,
        "empty": 0,
    }[cut]
    assert keep < len(raw)
    path.write_bytes(raw[:keep])

    with pytest.raises(StorageCorrupt, match=error):
        await store.read_bytes(stored.key, max_bytes=10**6)


@pytest.mark.parametrize("change", ["swap chunks", "repeat a chunk", "append a chunk", "append garbage"])
async def test_reordered_or_extra_chunks_are_detected(settings, change):
    store, stored, path, data = await stored_in_chunks(settings)
    raw = path.read_bytes()
    head = header_size(path)
    header, chunks = raw[:head], [raw[i : i + 1040] for i in range(head, len(raw), 1040)]
    assert len(chunks) == 4
    body = {
        "swap chunks": [chunks[1], chunks[0], chunks[2], chunks[3]],
        "repeat a chunk": [chunks[0], chunks[0], chunks[1], chunks[2], chunks[3]],
        "append a chunk": chunks + [chunks[1]],
        "append garbage": chunks + [b"\x00" * 40],
    }[change]
    path.write_bytes(header + b"".join(body))

    with pytest.raises(StorageCorrupt):
        await store.read_bytes(stored.key, max_bytes=10**6)


async def test_a_stored_file_put_under_another_name_is_detected(store):
    first = await save(store, make_pdf())
    second = await save(store, make_png())
    store.path(second.key).write_bytes(store.path(first.key).read_bytes())

    with pytest.raises(StorageCorrupt, match="does not match its name"):
        await store.read_bytes(second.key, max_bytes=10**6)


async def test_a_missing_file_is_known_before_streaming(store):
    stored = await save(store, make_pdf())
    store.path(stored.key).unlink()

    with pytest.raises(FileNotFoundError):
        await store.open_stream(stored.key)


# --- dedup, deletion, keys -----------------------------------------------------------------


async def test_identical_content_is_stored_once(store):
    data = make_pdf()
    first = await save(store, data)
    before = store.path(first.key).stat()
    second = await store.save_stream(stream(data), max_bytes=10**6, allowed_types={PDF})  # other piece sizes

    assert second == first
    assert files_under(store.root) == [first.key]
    after = store.path(first.key).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # the first copy is kept
    assert (await save(store, make_pdf(body_repeats=2))).key != first.key


async def test_delete_removes_the_file(store):
    stored = await save(store, make_pdf())

    assert await store.delete(stored.key) is True
    assert not store.exists(stored.key)
    assert files_under(store.root) == []
    assert await store.delete(stored.key) is False
    with pytest.raises(FileNotFoundError):
        await store.read_bytes(stored.key, 10**6)


@pytest.mark.parametrize(
    "key",
    ["../keys/cpms.keys", "ab/cd/../../../keys/cpms.keys", "/etc/passwd", "ab/cd/ef" + "0" * 62, "AB/CD/ABCD" + "0" * 60, ""],
)
async def test_keys_that_the_store_did_not_make_are_refused(store, key):
    with pytest.raises(ValueError):
        store.exists(key)
    with pytest.raises(ValueError):
        await store.open_stream(key)
    with pytest.raises(ValueError):
        await store.delete(key)


async def test_read_bytes_refuses_a_file_larger_than_asked(settings):
    store = small_store(settings)
    stored = await save(store, make_pdf(body_repeats=60))

    with pytest.raises(StorageError, match="larger than 1500"):
        await store.read_bytes(stored.key, max_bytes=1500)


async def test_files_written_before_a_key_rotation_stay_readable(settings):
    old_key, new_key = AESGCM.generate_key(256), AESGCM.generate_key(256)
    before = small_store(settings, Keyring({"k2025": old_key}, "k2025"))
    old_data = make_pdf(body_repeats=30)
    old = await save(before, old_data)

    rotated = small_store(settings, Keyring({"k2025": old_key, "k2026": new_key}, "k2026"))
    assert await rotated.read_bytes(old.key, 10**6) == old_data
    new = await save(rotated, make_png())
    assert b"k2026" in rotated.path(new.key).read_bytes()[:20]
    assert b"k2025" in rotated.path(old.key).read_bytes()[:20]
    # Names are keyed by the current key: the same content after a rotation is a new file.
    again = await save(rotated, old_data)
    assert again.key != old.key and again.sha256 == old.sha256
    assert await rotated.read_bytes(again.key, 10**6) == old_data

    retired = small_store(settings, Keyring({"k2026": new_key}, "k2026"))
    assert await retired.read_bytes(new.key, 10**6) == make_png()
    with pytest.raises(StorageCorrupt, match="k2025"):
        await retired.open_stream(old.key)


async def test_the_site_keyring_is_used_by_default(store, settings):
    stored = await save(store, make_pdf())
    assert (settings.data_dir / "keys" / "cpms.keys").exists()

    other_site = small_store(settings, Keyring({"other": AESGCM.generate_key(256)}, "other"))
    with pytest.raises(StorageCorrupt):
        await other_site.read_bytes(stored.key, 10**6)


# --- large files ---------------------------------------------------------------------------


async def test_a_50_mb_upload_streams_with_low_memory(store):
    total, piece_size = 50 * 1024 * 1024, 64 * 1024
    sent = hashlib.sha256()

    async def pieces():
        for i in range(total // piece_size):
            piece = (b"%PDF-1.7\n" + bytes(piece_size - 9)) if i == 0 else i.to_bytes(4, "big") * (piece_size // 4)
            sent.update(piece)
            yield piece

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        stored = await store.save_stream(pieces(), max_bytes=total, allowed_types={PDF})
        _, write_peak = tracemalloc.get_traced_memory()

        tracemalloc.reset_peak()
        received, size = hashlib.sha256(), 0
        async for chunk in await store.open_stream(stored.key):
            received.update(chunk)
            size += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.size == size == total
    assert stored.sha256 == sent.hexdigest() == received.hexdigest()
    assert store.path(stored.key).stat().st_size > total  # all of it went to disk
    print(f"tracemalloc peaks: write {write_peak} bytes, read {read_peak} bytes")
    assert write_peak < 20 * 1024 * 1024, write_peak
    assert read_peak < 20 * 1024 * 1024, read_peak
