"""Identifying data: encrypted at rest, bound to its patient, searchable only by keyed hashes.

The identity of a patient is one AES-GCM ciphertext whose associated data is the patient's
pseudonym, so a ciphertext copied onto another patient's row does not decrypt. Duplicate
detection uses HMACs of normalised values (per hospital), which reveal nothing without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import unicodedata
from datetime import date

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.crypto import keyring

FIELDS = ("given_name", "family_name", "date_of_birth", "local_record_number", "national_id", "email", "phone", "address")
LABELS = {
    "given_name": "Given name", "family_name": "Family name", "date_of_birth": "Date of birth",
    "local_record_number": "Local record number", "national_id": "National identifier",
    "email": "E-mail", "phone": "Phone", "address": "Postal address",
}
_PSEUDONYM_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no I, O, 0, 1: read aloud safely


def new_pseudonym() -> str:
    return "P" + "".join(secrets.choice(_PSEUDONYM_ALPHABET) for _ in range(11))


def _context(pseudonym: str) -> str:
    return f"patient:{pseudonym}"


def encrypt_identity(settings, pseudonym: str, values: dict) -> str:
    clean = {k: str(values.get(k, "") or "") for k in FIELDS}
    return keyring(settings).encrypt(json.dumps(clean, sort_keys=True), _context(pseudonym))


def decrypt_identity(settings, pseudonym: str, token: str) -> dict:
    if not token:
        return {k: "" for k in FIELDS}
    return json.loads(keyring(settings).decrypt(token, _context(pseudonym)))


def display_name(identity: dict) -> str:
    return f"{identity.get('family_name', '').upper()}, {identity.get('given_name', '')}".strip(", ")


def normalise(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value or "")
    return "".join(c for c in decomposed.casefold() if c.isalnum())


def _index_key(settings) -> bytes:
    ring = keyring(settings)
    # The oldest key stays in the keyring across rotations, so the hashes stay comparable.
    oldest = ring.keys[next(iter(ring.keys))]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"cpms duplicate index").derive(oldest)


def blind_index(settings, hcp_id: int, *parts: str) -> str:
    normalised = [normalise(p) for p in parts]
    if not all(normalised):
        return ""
    message = f"{hcp_id}|" + "|".join(normalised)
    return hmac.new(_index_key(settings), message.encode(), hashlib.sha256).hexdigest()


def duplicate_keys(settings, hcp_id: int, values: dict) -> tuple[str, str]:
    return (
        blind_index(settings, hcp_id, "record", values.get("local_record_number", "")),
        blind_index(settings, hcp_id, values.get("family_name", ""), values.get("given_name", ""), values.get("date_of_birth", "")),
    )


def parse_date(value: str) -> date | None:
    try:
        parsed = date.fromisoformat((value or "").strip())
    except ValueError:
        return None
    return parsed
