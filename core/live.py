"""Live updates: a module publishes a small JSON payload on a channel, and every page that
streams that channel (server-sent events, htmx's ``sse`` extension) receives it.

* ``publish(request_or_app, "panel:42", {"message": 7})`` after the write is committed;
  it never raises (a live update that fails must not undo the write).
* ``sse_response(request, "panel:42", render)`` streams the channel to one viewer. For every
  payload ``render(payload)`` decides, for *this* viewer, what to send: ``(event_name, html)``
  or ``None`` to skip. Payloads therefore carry ids, never patient data; the HTML is built
  per viewer after the caller has checked permissions again.

Backends (Litestar channels): in memory within one process by default; Redis pub/sub when
``CPMS_REDIS_URL`` is set, so every app process sees every event. See docs/live-updates.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.response import ServerSentEvent, ServerSentEventMessage

log = logging.getLogger("cpms.live")

#: Seconds between keep-alive comments on an idle stream (proxies drop silent connections);
#: the viewer's session is re-checked at the same pace.
KEEPALIVE_SECONDS = 15.0
#: A stream ends after this long (or the session's idle timeout, if longer); the browser's
#: EventSource reconnects, going through login, CSRF-free GET and the route's guard again.
MAX_LIFETIME_SECONDS = 30 * 60
#: Milliseconds the browser waits before reconnecting (the ``retry:`` field).
RETRY_MS = 3000
#: A publish waits at most this long for the backend (Redis) before giving up.
PUBLISH_TIMEOUT_SECONDS = 2.0
#: Events kept for a slow viewer; older ones are dropped first.
MAX_BACKLOG = 500

Render = Callable[[dict[str, Any]], Awaitable["tuple[str, str] | None"]]


class LiveChannels(ChannelsPlugin):
    """Litestar's ChannelsPlugin, started by the app's start-up hooks rather than a lifespan
    context (so the in-process test client, which runs only the hooks, gets it too), with
    names kept apart per Redis database, and a subscription worker that survives a lost
    backend connection."""

    def __init__(self, backend: ChannelsBackend, *, namespace: str = "cpms:", redis=None) -> None:
        super().__init__(
            backend, arbitrary_channels_allowed=True,
            subscriber_max_backlog=MAX_BACKLOG, subscriber_backlog_strategy="dropleft",
        )
        self.namespace = namespace
        self._redis = redis
        self._started = False
        #: Open streams in this process, per channel (for tests and diagnostics).
        self.streams: Counter[str] = Counter()

    def wire_name(self, channel: str) -> str:
        # Redis pub/sub channels are shared by every database of a server: the prefix keeps
        # two deployments (or a test run and a demo) on one Redis from seeing each other.
        return self.namespace + channel

    def on_app_init(self, app_config):
        app_config = super().on_app_init(app_config)
        app_config.lifespan.remove(self)
        app_config.on_startup.append(self._start)
        app_config.on_shutdown.append(self._stop)
        return app_config

    async def _start(self, app=None) -> None:
        await self._on_startup()
        self._started = True

    async def _stop(self, app=None) -> None:
        if not self._started:
            return
        self._started = False
        try:
            await self._on_shutdown()
        finally:
            if self._redis is not None:
                await self._redis.aclose()

    async def subscribe(self, channels: str | Iterable[str], history: int | None = None):
        # Litestar registers the subscriber locally before asking the backend; if the backend
        # fails (Redis down), undo that, or later viewers would never subscribe the backend.
        names = [channels] if isinstance(channels, str) else list(channels)
        before = {name: set(self._channels.get(name, ())) for name in names}
        try:
            return await super().subscribe(names, history=history)
        except BaseException:
            for name, subscribers in before.items():
                if subscribers:
                    self._channels[name] = subscribers
                else:
                    self._channels.pop(name, None)
            raise

    async def _sub_worker(self) -> None:
        # Litestar's worker ends for good when the backend's stream fails (a Redis restart);
        # start it again, so live updates come back with the connection.
        delay = 0.5
        while True:
            try:
                await super()._sub_worker()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("live updates: channel backend failed; retrying in %.1f s", delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def channels_plugin(settings) -> LiveChannels:
    """The channels plugin for ``settings``: in memory, or Redis pub/sub with ``redis_url``."""
    if settings.redis_url:
        from litestar.channels.backends.redis import RedisChannelsPubSubBackend
        from redis.asyncio import Redis

        # Not decode_responses: the backend decodes channel names itself and payloads are bytes.
        redis = Redis.from_url(settings.redis_url)
        db = redis.connection_pool.connection_kwargs.get("db", 0)
        return LiveChannels(RedisChannelsPubSubBackend(redis=redis), namespace=f"cpms:{db}:", redis=redis)
    return LiveChannels(MemoryChannelsBackend())


def _plugin_of(app_or_request) -> LiveChannels:
    app = getattr(app_or_request, "app", app_or_request)
    plugin = getattr(app.state, "channels", None)
    if plugin is None:
        plugin = app.plugins.get(ChannelsPlugin)
    return plugin


async def publish(app_or_request, channel: str, payload: dict) -> None:
    """Send ``payload`` (JSON-encodable) to everyone streaming ``channel``. Never raises:
    failures are logged (without the payload) and the caller carries on."""
    try:
        plugin = _plugin_of(app_or_request)
        data = json.dumps(payload, separators=(",", ":")).encode()
        await asyncio.wait_for(plugin.wait_published(data, plugin.wire_name(channel)), PUBLISH_TIMEOUT_SECONDS)
    except Exception:
        log.warning("live update on channel %r not published", channel, exc_info=True)


@contextlib.asynccontextmanager
async def subscription(app_or_request, channel: str) -> AsyncIterator[AsyncIterator[dict]]:
    """Receive a channel's payloads server-side (tests, or a module reacting to events)::

        async with subscription(app, "panel:42") as payloads:
            payload = await anext(payloads)
    """
    plugin = _plugin_of(app_or_request)
    async with plugin.start_subscription(plugin.wire_name(channel)) as subscriber:

        async def payloads():
            async for raw in subscriber.iter_events():
                yield json.loads(raw)

        yield payloads()


def sse_response(
    request,
    channel: str,
    render: Render,
    *,
    keepalive: float = KEEPALIVE_SECONDS,
    lifetime: float | None = None,
) -> ServerSentEvent:
    """Stream ``channel`` to this request as server-sent events.

    ``render(payload)`` is awaited for every event and returns ``(event_name, html)`` or
    ``None`` (this viewer must not see it). The stream sends a comment every ``keepalive``
    seconds when idle, ends when the client goes away, when the viewer's session ends
    (checked at the keep-alive pace) or after ``lifetime`` seconds.
    """
    plugin = _plugin_of(request)
    if lifetime is None:
        # Never shorter than the idle timeout: a reconnect counts as activity, so a shorter
        # stream would keep an idle session alive.
        idle = getattr(request.app.state.settings, "session_idle_timeout", 0)
        lifetime = max(MAX_LIFETIME_SECONDS, idle)
    return ServerSentEvent(
        _stream(request, plugin, channel, render, keepalive, lifetime),
        headers={"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"},
    )


async def _next(events):
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


async def _stream(request, plugin: LiveChannels, channel: str, render: Render, keepalive: float, lifetime: float):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime
    next_check = loop.time() + keepalive
    wire = plugin.wire_name(channel)
    try:
        subscriber = await plugin.subscribe(wire)
    except Exception:
        log.warning("live updates: cannot subscribe to channel %r", channel, exc_info=True)
        yield ServerSentEventMessage(data=None, comment="unavailable", retry=RETRY_MS * 10)
        return
    plugin.streams[channel] += 1
    events = subscriber.iter_events()
    pending: asyncio.Task | None = None
    try:
        # The first bytes tell the client it is subscribed: nothing published from now is lost.
        yield ServerSentEventMessage(data=None, comment="connected", retry=RETRY_MS)
        while True:
            now = loop.time()
            if now >= deadline:
                break
            if now >= next_check:
                next_check = now + keepalive
                if not await _session_alive(request):
                    break
            if pending is None:
                # A task rather than wait_for(): a timeout must not cancel (and so close)
                # the subscriber's event generator.
                pending = asyncio.create_task(_next(events), name=f"cpms-live:{channel}")
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, min(next_check, deadline) - loop.time()))
            if not done:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
                continue
            raw, pending = pending.result(), None
            if raw is None:  # unsubscribed: the app is shutting down
                break
            message = await _render(render, raw, channel)
            if message is not None:
                yield message
    finally:
        plugin.streams[channel] -= 1
        if plugin.streams[channel] <= 0:
            del plugin.streams[channel]
        # The client is gone or the stream ended: clean up even inside a cancelled scope.
        with anyio.CancelScope(shield=True):
            if pending is not None:
                pending.cancel()
                await asyncio.wait({pending})
            try:
                await plugin.unsubscribe(subscriber, wire)
                await events.aclose()
            except Exception:
                log.warning("live updates: unsubscribe from %r failed", channel, exc_info=True)


async def _render(render: Render, raw: bytes, channel: str) -> ServerSentEventMessage | None:
    try:
        payload = json.loads(raw)
        result = await render(payload)
    except Exception:
        log.exception("live updates: rendering an event of channel %r failed; skipped", channel)
        return None
    if result is None:
        return None
    event, html = result
    return ServerSentEventMessage(data=html, event=event)


async def _session_alive(request) -> bool:
    """The viewer's session is still live (read only: streaming is not activity)."""
    if request.scope.get("user") is None:
        return True  # a public stream has no session to lose
    from core.identity.session_store import store_for, token_hash
    from core.identity.sessions import token_from_scope

    token = token_from_scope(request.scope)
    if not token:
        return False
    settings = request.app.state.settings
    try:
        record = await store_for(settings).get(token_hash(token))
    except Exception:
        log.warning("live updates: session check failed; stream closed", exc_info=True)
        return False
    if record is None or record.revoked or record.stage != "full":
        return False
    now = datetime.now(timezone.utc)
    return record.expires_at > now and record.last_seen_at + timedelta(seconds=settings.session_idle_timeout) > now
