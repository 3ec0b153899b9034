"""Encryption at rest for identifying and secret fields (AES-256-GCM from ``cryptography``).

Keys live in a key file (``<data dir>/keys/cpms.keys``, created on first use with mode 0600)
or come from ``CPMS_ENCRYPTION_KEYS``. Every ciphertext names the key it was made with, so
keys can be rotated: new writes use the newest key, old values stay readable until re-encrypted.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc1"


class DecryptionError(ValueError):
    """A value could not be decrypted (wrong key, tampered data)."""


class Keyring:
    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError("the current key is not in the keyring")
        self.keys, self.current = keys, current

    @classmethod
    def load(cls, path: Path, env_value: str = "") -> "Keyring":
        raw = env_value or (path.read_text() if path.exists() else "")
        if not raw:
            path.parent.mkdir(parents=True, exist_ok=True)
            kid = secrets.token_hex(4)
            raw = json.dumps({"current": kid, "keys": {kid: base64.b64encode(AESGCM.generate_key(256)).decode()}})
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(raw)
        data = json.loads(raw)
        return cls({k: base64.b64decode(v) for k, v in data["keys"].items()}, data["current"])

    def encrypt(self, plaintext: str, context: str = "") -> str:
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{PREFIX}:{self.current}:{base64.urlsafe_b64encode(nonce + ct).decode()}"

    def decrypt(self, token: str, context: str = "") -> str:
        try:
            prefix, kid, body = token.split(":", 2)
            if prefix != PREFIX or kid not in self.keys:
                raise DecryptionError("unknown key or format")
            blob = base64.urlsafe_b64decode(body)
            return AESGCM(self.keys[kid]).decrypt(blob[:12], blob[12:], context.encode()).decode()
        except (ValueError, InvalidTag) as exc:
            raise DecryptionError("value cannot be decrypted") from exc

    @staticmethod
    def key_id(token: str) -> str | None:
        """The id of the key a value was encrypted with, read from its prefix (nothing decrypted);
        None for anything that is not an ``enc1`` ciphertext."""
        parts = token.split(":", 2)
        return parts[1] if len(parts) == 3 and parts[0] == PREFIX and parts[1] else None

    def reencrypt(self, token: str, context: str = "") -> str:
        """The same plaintext under the current key (DecryptionError if it cannot be read)."""
        return self.encrypt(self.decrypt(token, context), context)

    def with_new_key(self) -> "Keyring":
        """A copy with a fresh 256-bit key appended and made current.

        Appended, never inserted: the first (oldest) key derives the duplicate-detection index
        (core.patients.identity), so the order of the existing keys must not change.
        """
        kid = secrets.token_hex(4)
        while kid in self.keys:
            kid = secrets.token_hex(4)
        return Keyring({**self.keys, kid: AESGCM.generate_key(256)}, kid)

    def without_key(self, kid: str) -> "Keyring":
        """A copy without ``kid`` (which must not be the current key), the others in their order."""
        if kid == self.current:
            raise ValueError("the current key cannot be removed")
        return Keyring({k: v for k, v in self.keys.items() if k != kid}, self.current)

    def to_json(self) -> str:
        """The key file format: ``{"current": kid, "keys": {kid: base64}}``, keys oldest first."""
        keys = {k: base64.b64encode(v).decode() for k, v in self.keys.items()}
        return json.dumps({"current": self.current, "keys": keys})

    def save(self, path: Path) -> None:
        """Write the key file atomically with mode 0600: a temporary file in the same folder,
        flushed to disk, then renamed over ``path``, so a crash leaves the old or the new ring
        and never a half-written one (which would make every value unreadable)."""
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:  # mkstemp creates the file with mode 0600
                fh.write(self.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power cut
        finally:
            os.close(dir_fd)


_cache: dict[str, Keyring] = {}


def keyring(settings) -> Keyring:
    path = settings.data_dir / "keys" / "cpms.keys"
    env_value = settings.extra.get("encryption_keys", "")
    # The file's modification time is part of the cache key: after `cpms keys rotate`, running
    # app processes pick up the new ring on their next request instead of failing to decrypt.
    try:
        stamp = 0 if env_value else path.stat().st_mtime_ns
    except FileNotFoundError:
        stamp = -1
    cache_key = f"{path}|{env_value}|{stamp}"
    if cache_key not in _cache:
        for old in [k for k in _cache if k.startswith(f"{path}|")]:
            del _cache[old]
        _cache[cache_key] = Keyring.load(path, env_value)
    return _cache[cache_key]
