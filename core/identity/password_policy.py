"""What a new password must be: long enough, not common, not guessable, not about its owner.

Follows NIST SP 800-63B: a minimum length and a check against common and guessable
passwords instead of composition rules. Guessability is estimated offline by zxcvbn
(MIT licence), whose frequency lists hold ~30,000 common passwords and words.
"""

from __future__ import annotations

import re

from zxcvbn import zxcvbn

MIN_LENGTH = 12
MAX_LENGTH = 1024
#: zxcvbn's cost grows steeply with length (minutes for 1,000 characters), so it judges only
#: this many leading characters; a password whose first 72 are guessable is refused.
ESTIMATED_LENGTH = 72
#: zxcvbn scores 0-4; 3 means "safely unguessable" against an online attack.
MIN_SCORE = 3
#: Names of the site itself make guessable passwords as much as the user's own do.
SITE_WORDS = ("cpms", "ern", "european reference network")
#: Shorter name parts (initials, "Li", "Dr") would refuse too many good passwords.
MIN_NAME_PART = 3


def check_password(password: str, *, email: str = "", name: str = "") -> list[str]:
    """Problems with ``password`` as sentences to show the user; an empty list means it is fine."""
    if len(password) > MAX_LENGTH:
        return [f"Use at most {MAX_LENGTH} characters."]
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(f"Use at least {MIN_LENGTH} characters (a few unrelated words are easy to remember).")
    problems += _personal(password, email, name)
    guessable = _guessability(password, email, name)
    if guessable:
        problems.append(guessable)
    return problems


def _name_parts(name: str) -> list[str]:
    return [part for part in re.findall(r"\w+", name.casefold()) if len(part) >= MIN_NAME_PART]


def _local_part(email: str) -> str:
    return email.rpartition("@")[0].casefold() if "@" in email else email.casefold()


def _personal(password: str, email: str, name: str) -> list[str]:
    lowered = password.casefold()
    problems = []
    local = _local_part(email)
    if len(local) >= MIN_NAME_PART and local in lowered:
        problems.append("Do not use your e-mail address in your password.")
    if any(part in lowered for part in _name_parts(name)):
        problems.append("Do not use your name in your password.")
    return problems


def _guessability(password: str, email: str, name: str) -> str | None:
    if not password:
        return None
    inputs = [i for i in (email, _local_part(email), name, *_name_parts(name), *SITE_WORDS) if i]
    result = zxcvbn(password[:ESTIMATED_LENGTH], user_inputs=inputs)
    if result["score"] >= MIN_SCORE:
        return None
    warning = result["feedback"].get("warning") or ""
    hint = " ".join(filter(None, [warning, *result["feedback"].get("suggestions", [])[:1]]))
    return f"This password is too easy to guess. {hint}".strip()
