"""Password hashing with argon2id (argon2-cffi's defaults follow RFC 9106's recommendations)."""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

# Verifying against this when the account does not exist keeps timing alike for both cases.
_DUMMY = _hasher.hash("cpms-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY, password) and bool(stored_hash)
    except (VerificationError, InvalidHashError):
        return False
