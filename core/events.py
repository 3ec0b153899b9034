"""Domain events: something happened, who did it, to what.

Every event is first recorded in the activity log (``core.activity``), then handed to
each plugin's ``handle_event`` hook and to in-process subscribers (live pages). Event
data must never hold identifying patient data: refer to a patient by pseudonym only.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

log = logging.getLogger("cpms.events")


@dataclass(frozen=True)
class EventType:
    name: str
    description: str


@dataclass(frozen=True)
class Event:
    name: str
    actor_id: int | None = None
    subject_type: str = ""
    subject_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    address: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


Subscriber = Callable[[Event], Awaitable[None] | None]


async def await_me_maybe(value):
    if inspect.isawaitable(value):
        return await value
    return value


class EventBus:
    def __init__(self, host) -> None:
        self.host = host
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)

    async def emit(self, event: Event) -> None:
        if event.name not in self.host.event_types:
            raise ValueError(f"undeclared event type {event.name!r}: declare it in register_event_types")
        from core.activity.tables import Activity

        await Activity.record(event)
        for impl in self.host.pm.hook.handle_event.get_hookimpls():
            try:
                given = {"event": event, "host": self.host}
                await await_me_maybe(impl.function(**{k: given[k] for k in impl.argnames}))
            except Exception:  # one plugin's failure must not undo what was committed
                log.exception("plugin %s failed handling %s", impl.plugin_name, event.name)
        for fn in list(self._subscribers):
            try:
                await await_me_maybe(fn(event))
            except Exception:
                log.exception("subscriber failed handling %s", event.name)
