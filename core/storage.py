"""Files at rest: every upload (patient documents, consent forms, later DICOM and slides).

Files live under ``<data dir>/files``, named by content, and are encrypted with the site
keyring (``core.crypto``) because documents carry identifying data. Uploads are streamed to a
temporary file in the same folder and moved into place atomically only when complete, so a
reader never sees half a file and an interrupted upload leaves nothing behind.

On-disk format (version 1)::

    header  b"CPMSFILE" | version (1 byte) | key id length (1 byte) | key id (UTF-8)
            | plaintext chunk size (4 bytes, big-endian) | base nonce (12 random bytes)
    chunks  AES-256-GCM(ciphertext || 16-byte tag) of each plaintext chunk, in order;
            every chunk but the last holds exactly ``chunk size`` plaintext bytes.

Chunk ``i`` uses nonce ``base nonce XOR i`` and associated data ``header || i (8 bytes) ||
final flag (1 byte)``: a changed header, a changed, dropped, reordered or appended chunk, or
a file cut at a chunk boundary all fail authentication. The name of a file is an HMAC of the
plaintext's SHA-256 (so identical uploads share one file, but the name does not reveal which
document it is); readers recompute it at the end, which also catches a file swapped for another.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import struct
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from anyio import to_thread
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from litestar.exceptions import HTTPException

from core import crypto, workfiles

log = logging.getLogger("cpms.storage")

MAGIC = b"CPMSFILE"
VERSION = 1
CHUNK_SIZE = 1024 * 1024
TAG_SIZE = 16
NONCE_SIZE = 12
# Bounds a (possibly tampered) header may claim, so a bad file cannot make a reader allocate GBs.
MIN_CHUNK_SIZE = 1024
MAX_CHUNK_SIZE = 64 * 1024 * 1024
# Random 96-bit base nonces stay safe far beyond this many chunks per key (4 PiB at 1 MiB).
MAX_CHUNKS = 2**32
# DICOM puts "DICM" after a 128-byte preamble: the type is known once 132 bytes are in.
SNIFF_BYTES = 132
TEMP_PREFIX = ".upload-"
TEMP_SUFFIX = ".part"
OCTET_STREAM = "application/octet-stream"

_KEY_RE = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/(\1\2[0-9a-f]{60})")


@dataclass(frozen=True)
class StoredFile:
    #: Where the file is, relative to the storage root (``ab/cd/<64 hex>``); record this.
    key: str
    #: SHA-256 of the plaintext, hex.
    sha256: str
    #: Plaintext size in bytes.
    size: int
    #: Detected from the content, never from the client.
    content_type: str


class StorageError(Exception):
    """A stored file cannot be served."""


class StorageCorrupt(StorageError):
    """A stored file failed authentication (tampered, truncated, swapped) or its key is gone."""


class UploadRejected(HTTPException):
    """An upload refused for what it is (400 empty, 413 too large, 415 type not allowed).

    An HTTPException, so a route that lets it through answers with its status and message.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(detail=message, status_code=status)
        self.message, self.status = message, status


# --- content types ------------------------------------------------------------------------

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"II+\x00", "image/tiff"),  # BigTIFF, used by whole-slide images
    (b"MM\x00+", "image/tiff"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),  # an empty archive
)


def detect_type(head: bytes) -> str:
    """The content type of a file from its first bytes (at least ``SNIFF_BYTES`` if it has them).

    DICOM is checked first: its 128-byte preamble may itself hold a TIFF header.
    Anything unrecognised is ``application/octet-stream``.
    """
    if head[128:132] == b"DICM":
        return "application/dicom"
    for signature, content_type in _SIGNATURES:
        if head.startswith(signature):
            return content_type
    return OCTET_STREAM


def _check_type(head: bytes, allowed_types: set[str]) -> str:
    content_type = detect_type(head)
    if content_type not in allowed_types:
        accepted = ", ".join(sorted(allowed_types)) or "none"
        raise UploadRejected(f"This kind of file is not accepted here (accepted: {accepted}).", 415)
    return content_type


# --- keys and format ----------------------------------------------------------------------


def _subkey(key: bytes, purpose: bytes) -> bytes:
    # Separate keys for file encryption and file names, and apart from the keyring's field
    # encryption: no nonce or MAC can ever be shared between those uses.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cpms storage v1 " + purpose).derive(key)


def _file_name(key: bytes, digest: bytes) -> str:
    return hmac.new(_subkey(key, b"name"), digest, hashlib.sha256).hexdigest()


def _key_path(name: str) -> str:
    return f"{name[:2]}/{name[2:4]}/{name}"


def _pack_header(kid: str, chunk_size: int, base_nonce: bytes) -> bytes:
    kid_bytes = kid.encode()
    if not 0 < len(kid_bytes) < 256:
        raise ValueError("key ids must be 1 to 255 bytes long")
    return MAGIC + bytes([VERSION, len(kid_bytes)]) + kid_bytes + struct.pack(">I", chunk_size) + base_nonce


def _nonce(base_nonce: bytes, index: int) -> bytes:
    return (int.from_bytes(base_nonce, "big") ^ index).to_bytes(NONCE_SIZE, "big")


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, final)


class _Writer:
    """Seals plaintext chunks into an open temporary file; runs in a worker thread."""

    def __init__(self, fh: BinaryIO, kid: str, key: bytes, chunk_size: int) -> None:
        self.fh, self.key = fh, key
        self.base_nonce = secrets.token_bytes(NONCE_SIZE)
        self.header = _pack_header(kid, chunk_size, self.base_nonce)
        self.aead = AESGCM(_subkey(key, b"encryption"))
        self.hash = hashlib.sha256()
        self.index = 0
        fh.write(self.header)

    def write_chunk(self, plaintext: bytes | bytearray, final: bool) -> None:
        if self.index >= MAX_CHUNKS:
            raise UploadRejected("This file is too large to store.", 413)
        self.hash.update(plaintext)
        nonce = _nonce(self.base_nonce, self.index)
        self.fh.write(self.aead.encrypt(nonce, plaintext, _aad(self.header, self.index, final)))
        self.index += 1


class _Reader:
    """Opens, authenticates and decrypts a stored file chunk by chunk; runs in a worker thread."""

    def __init__(self, path: Path, ring: crypto.Keyring, expected_name: str) -> None:
        self.expected_name = expected_name
        self.fh: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._read_header(ring)
            self.pending = self.fh.read(self.block)
        except BaseException:
            self.fh.close()
            raise
        self.hash = hashlib.sha256()
        self.index = 0
        self.done = False

    def _read_header(self, ring: crypto.Keyring) -> None:
        fixed = self.fh.read(len(MAGIC) + 2)
        if len(fixed) != len(MAGIC) + 2 or not fixed.startswith(MAGIC) or fixed[len(MAGIC)] != VERSION:
            raise StorageCorrupt("not a stored file of a known version")
        rest = self.fh.read(fixed[-1] + 4 + NONCE_SIZE)
        if len(rest) != fixed[-1] + 4 + NONCE_SIZE:
            raise StorageCorrupt("the file header is cut short")
        kid = rest[: fixed[-1]].decode(errors="replace")
        (chunk_size,) = struct.unpack(">I", rest[fixed[-1] : fixed[-1] + 4])
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise StorageCorrupt("the file header names an impossible chunk size")
        if kid not in ring.keys:
            raise StorageCorrupt(f"the file was encrypted with key {kid!r}, which is not in the keyring")
        self.header = fixed + rest
        self.base_nonce = rest[-NONCE_SIZE:]
        self.key = ring.keys[kid]
        self.aead = AESGCM(_subkey(self.key, b"encryption"))
        self.block = chunk_size + TAG_SIZE

    def next_chunk(self) -> bytes | None:
        """The next plaintext chunk, or None after the last one (which was fully verified)."""
        if self.done:
            return None
        if self.index == 0 and not self.pending:
            raise StorageCorrupt("the file holds no data")
        # One block of look-ahead tells whether this chunk is the last; the final flag in the
        # associated data then proves it (a file cut at a chunk boundary fails here).
        following = self.fh.read(self.block)
        final = not following
        try:
            plaintext = self.aead.decrypt(
                _nonce(self.base_nonce, self.index), self.pending, _aad(self.header, self.index, final)
            )
        except (InvalidTag, ValueError) as exc:
            raise StorageCorrupt(f"chunk {self.index} failed authentication") from exc
        self.hash.update(plaintext)
        if final:
            self._check_name()
            self.done = True
        self.pending, self.index = following, self.index + 1
        return plaintext

    def _check_name(self) -> None:
        # Every chunk authenticated, but a whole valid file could have been put under another
        # file's name: the name must match this content.
        if not hmac.compare_digest(_file_name(self.key, self.hash.digest()), self.expected_name):
            raise StorageCorrupt("the file's content does not match its name")

    def close(self) -> None:
        self.fh.close()


class _Plaintext:
    """Async iterator over a stored file's plaintext; closes the file when done, failed or closed."""

    def __init__(self, reader: _Reader, first: bytes) -> None:
        self._reader, self._first = reader, first

    def __aiter__(self) -> "_Plaintext":
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            chunk, self._first = self._first, None
            return chunk
        try:
            chunk = await to_thread.run_sync(self._reader.next_chunk)
        except BaseException:
            self._reader.close()
            raise
        if chunk is None:
            self._reader.close()
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        self._reader.close()


# --- the store ----------------------------------------------------------------------------


class Storage:
    """The local-folder store rooted at ``<data dir>/files`` (mode 0700)."""

    def __init__(self, settings, *, keyring: crypto.Keyring | None = None, chunk_size: int = CHUNK_SIZE) -> None:
        if not max(MIN_CHUNK_SIZE, SNIFF_BYTES) <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes")
        self.settings, self.chunk_size = settings, chunk_size
        self._ring = keyring
        self.root = Path(settings.data_dir) / "files"
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Also when the folder already existed: documents are for this process only.
        os.chmod(self.root, 0o700)

    def keyring(self) -> crypto.Keyring:
        # Resolved per operation rather than kept, so a keyring given to the store wins and
        # otherwise the site keyring is the one core.crypto currently holds.
        return self._ring or crypto.keyring(self.settings)

    def path(self, key: str) -> Path:
        """The file for ``key``; refuses anything but a key this store made (no path tricks)."""
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError("not a storage key")
        return self.root / key

    # --- writing ---

    async def save_stream(
        self, chunks: AsyncIterable[bytes], *, max_bytes: int, allowed_types: set[str]
    ) -> StoredFile:
        """Store an upload, streamed; raises UploadRejected (400, 413, 415) and leaves nothing then,
        nor when ``chunks`` raises or the task is cancelled."""
        ring = self.keyring()
        key = ring.keys[ring.current]
        fh, temp = await to_thread.run_sync(self._create_temp)
        committed = False
        try:
            writer = _Writer(fh, ring.current, key, self.chunk_size)
            size, content_type = await self._pump(chunks, writer, max_bytes, allowed_types)
            name = _file_name(key, writer.hash.digest())
            await to_thread.run_sync(self._commit, fh, temp, self.root / _key_path(name))
            committed = True
            return StoredFile(_key_path(name), writer.hash.hexdigest(), size, content_type)
        finally:
            if not committed:
                # Synchronous on purpose: under cancellation an await here would be cancelled
                # too, and closing and unlinking one file does not wait on data.
                fh.close()
                temp.unlink(missing_ok=True)

    async def _pump(
        self, chunks: AsyncIterable[bytes], writer: _Writer, max_bytes: int, allowed_types: set[str]
    ) -> tuple[int, str]:
        """Feed the upload to the writer one full chunk at a time; returns (size, content type)."""
        buffer = bytearray()
        size, content_type = 0, None
        async for piece in chunks:
            size += len(piece)
            # Checked per piece, before anything more is read: a huge upload stops here.
            if size > max_bytes:
                raise UploadRejected(f"This file is larger than the limit of {max_bytes} bytes.", 413)
            buffer += piece
            if content_type is None and len(buffer) >= SNIFF_BYTES:
                content_type = _check_type(bytes(buffer[:SNIFF_BYTES]), allowed_types)
            # Only a chunk followed by more data is known not to be the last one.
            while len(buffer) > self.chunk_size:
                chunk = buffer[: self.chunk_size]
                del buffer[: self.chunk_size]
                await to_thread.run_sync(writer.write_chunk, chunk, False)
        if size == 0:
            raise UploadRejected("The file is empty.", 400)
        if content_type is None:
            content_type = _check_type(bytes(buffer), allowed_types)
        await to_thread.run_sync(writer.write_chunk, buffer, True)
        return size, content_type

    def _create_temp(self) -> tuple[BinaryIO, Path]:
        # Same folder as the final files, so the final move is an atomic rename; mode 0600.
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=self.root)
        workfiles.lock_fd(fd)  # held until closed: a sweeper sees a live upload (core/workfiles.py)
        return os.fdopen(fd, "wb"), Path(name)

    def _commit(self, fh: BinaryIO, temp: Path, final: Path) -> None:
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        self._make_dirs(final.parent)
        if final.exists():
            # Same content under the same key already stored: keep that copy (its name proves
            # the same plaintext), so backups do not see it change.
            temp.unlink()
            return
        os.replace(temp, final)
        _fsync_dir(final.parent)

    def _make_dirs(self, folder: Path) -> None:
        for level in (folder.parent, folder):
            if not level.is_dir():
                level.mkdir(mode=0o700, exist_ok=True)
                _fsync_dir(level.parent)

    # --- reading ---

    async def open_stream(self, key: str) -> AsyncIterator[bytes]:
        """The plaintext of a stored file, chunk by chunk.

        The file is opened and its first chunk verified before this returns, so a missing
        (FileNotFoundError) or damaged (StorageCorrupt) file is known before a response starts;
        later damage raises StorageCorrupt from the iterator, before the bad chunk is yielded.
        """
        path = self.path(key)
        reader = await to_thread.run_sync(_Reader, path, self.keyring(), path.name)
        try:
            first = await to_thread.run_sync(reader.next_chunk)
        except BaseException:
            reader.close()
            raise
        return _Plaintext(reader, first)

    async def read_bytes(self, key: str, max_bytes: int) -> bytes:
        """The whole plaintext, for small files; StorageError when larger than ``max_bytes``."""
        stream = await self.open_stream(key)
        data = bytearray()
        try:
            async for chunk in stream:
                data += chunk
                if len(data) > max_bytes:
                    raise StorageError(f"the stored file is larger than {max_bytes} bytes")
        finally:
            await stream.aclose()
        return bytes(data)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    # --- removing ---

    async def delete(self, key: str) -> bool:
        """Remove a stored file (erasure); True if there was one. Callers make sure no other
        record references it: identical uploads share one file."""
        path = self.path(key)

        def unlink() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            _fsync_dir(path.parent)
            return True

        return await to_thread.run_sync(unlink)

    async def cleanup_temp(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Remove temporary files of uploads that a killed process left; returns how many.

        Called at start-up and periodically (``core.sweeper``). The writing process holds a lock on
        its temporary file, so one whose lock can be taken belongs to no live upload and goes at
        once; ``older_than`` is the fallback where locks are not available.
        """

        def sweep() -> int:
            removed = 0
            for temp in self.root.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
                try:
                    if workfiles.abandoned(temp, older_than=older_than.total_seconds()):
                        temp.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue  # finished or removed meanwhile
            return removed

        removed = await to_thread.run_sync(sweep)
        if removed:
            log.info("removed %d temporary upload file(s) left by an interrupted process", removed)
        return removed


def _fsync_dir(folder: Path) -> None:
    """Make a rename or new entry in ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
