"""Password hashing with argon2id.

``standard`` (the default, and the only profile allowed outside tests) is argon2-cffi's default,
RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes, about 0.1 s per hash here.
``test-fast`` (``CPMS_PASSWORD_HASHING=test-fast``, refused unless ``CPMS_ENV=test``) keeps the
algorithm and the code path but with the smallest cost, so a test suite that creates thousands
of users and logins does not spend its time hashing. Verifying reads the cost from the stored
hash, so either profile checks hashes made by the other.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PROFILES = {
    "standard": dict(),
    "test-fast": dict(time_cost=1, memory_cost=1024, parallelism=1),
}

_state: dict = {}


def configure(settings) -> None:
    """Use the profile named by ``settings.password_hashing`` (checked by ``Settings.check``)."""
    profile = getattr(settings, "password_hashing", "standard")
    if _state.get("profile") != profile:
        hasher = PasswordHasher(**PROFILES[profile])
        # Verifying against this when the account does not exist keeps timing alike for both cases.
        _state.update(profile=profile, hasher=hasher, dummy=hasher.hash("cpms-timing-equaliser"))


def _current() -> tuple[PasswordHasher, str]:
    if "hasher" not in _state:
        configure(None)
    return _state["hasher"], _state["dummy"]


def hash_password(password: str) -> str:
    return _current()[0].hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    hasher, dummy = _current()
    try:
        return hasher.verify(stored_hash or dummy, password) and bool(stored_hash)
    except (VerificationError, InvalidHashError):
        return False
