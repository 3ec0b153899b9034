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


_cache: dict[str, Keyring] = {}


def keyring(settings) -> Keyring:
    path = settings.data_dir / "keys" / "cpms.keys"
    env_value = settings.extra.get("encryption_keys", "")
    cache_key = f"{path}|{env_value}"
    if cache_key not in _cache:
        _cache[cache_key] = Keyring.load(path, env_value)
    return _cache[cache_key]
