"""Login throttling: a per-address limit in memory, and an account lockout in the database.

The address limit slows down spraying one password over many accounts; the lockout stops
guessing one account's password. Both answer with the same 429 page.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from datetime import timedelta

ADDRESS_LIMIT = 20  # failures per address ...
ADDRESS_WINDOW = 600.0  # ... in this many seconds
ACCOUNT_LIMIT = 5  # consecutive failures lock the account ...
ACCOUNT_LOCK = timedelta(minutes=15)  # ... for this long


class AddressThrottle:
    def __init__(self) -> None:
        self._failures: dict[str, deque] = defaultdict(deque)

    def _trim(self, address: str) -> deque:
        q = self._failures[address]
        cutoff = time.monotonic() - ADDRESS_WINDOW
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def blocked(self, address: str) -> bool:
        return len(self._trim(address)) >= ADDRESS_LIMIT

    def failed(self, address: str) -> None:
        self._trim(address).append(time.monotonic())

    def reset(self) -> None:
        self._failures.clear()


addresses = AddressThrottle()


async def account_locked(user: dict) -> bool:
    from core.identity.sessions import now

    return bool(user.get("locked_until") and user["locked_until"] > now())


async def record_failure(user_id: int) -> None:
    from core.identity.sessions import now
    from core.identity.tables import User

    row = await User.select(User.failed_logins).where(User.id == user_id).first()
    failures = (row["failed_logins"] if row else 0) + 1
    values = {User.failed_logins: failures}
    if failures >= ACCOUNT_LIMIT:
        values = {User.failed_logins: 0, User.locked_until: now() + ACCOUNT_LOCK}
    await User.update(values).where(User.id == user_id)


async def record_success(user_id: int) -> None:
    from core.identity.tables import User

    await User.update({User.failed_logins: 0, User.locked_until: None}).where(User.id == user_id)
