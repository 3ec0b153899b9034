"""Live updates (core/live.py): publish on a channel, stream it as server-sent events.

Streams are read from a real uvicorn server (httpx's in-process transport waits for the whole
body, which a stream never finishes), or in-process by driving the ASGI app directly. Every
read has a timeout of a few seconds, so a broken stream fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import logging
from html import escape

import httpx
import pytest
from litestar import Request, get
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.params import FromQuery
from litestar.response import ServerSentEvent

from core.app import create_app
from core.live import LiveChannels, channels_plugin, publish, sse_response, subscription
from tests.conftest import TEST_REDIS_URL, app_client, login, make_settings, make_user, post_form
from tests.support.live_server import live_app

TIMEOUT = 5.0
HOSTILE = "<script>alert('x')</script> & hello\nsecond line"
ESCAPED = "<p>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; hello\nsecond line</p>"


class SSE:
    """Reads server-sent events from an httpx streaming response, with timeouts."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def _block(self) -> dict:
        block: dict = {"event": None, "data": [], "comments": []}
        while True:
            line = await anext(self.lines)
            if line == "":
                if block["data"] or block["comments"] or block["event"]:
                    return block
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "":
                block["comments"].append(value)
            elif field == "data":
                block["data"].append(value)
            elif field == "event":
                block["event"] = value

    async def connected(self, timeout: float = TIMEOUT) -> None:
        block = await asyncio.wait_for(self._block(), timeout)
        assert "connected" in block["comments"], block

    async def next_event(self, timeout: float = TIMEOUT) -> tuple[str | None, str]:
        async def read():
            while True:
                block = await self._block()
                if block["data"]:
                    return block["event"], "\n".join(block["data"])

        return await asyncio.wait_for(read(), timeout)


@pytest.fixture(scope="module")
def server(settings, migrated):
    with live_app(settings) as base:
        yield base


async def _logged_in(base: str, email: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=TIMEOUT)
    r = await login(client, email)
    assert r.status_code in (302, 303) and not r.headers["location"].startswith("/login"), r.headers.get("location")
    return client


async def test_a_post_reaches_another_viewer_escaped(clean_db, server):
    await make_user("alice@example.org", name="Alice")
    await make_user("bob@example.org", name="Bob")
    alice = await _logged_in(server, "alice@example.org")
    bob = await _logged_in(server, "bob@example.org")
    try:
        async with bob.stream("GET", "/example/live", headers={"Accept": "text/event-stream"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert "no-cache" in r.headers["cache-control"] and r.headers["x-accel-buffering"] == "no"
            stream = SSE(r)
            await stream.connected()
            posted = await post_form(alice, "/example/live", {"text": HOSTILE})
            assert posted.status_code == 204
            # Multi-line HTML arrives as several data lines, joined back by the client.
            assert await stream.next_event() == ("note", ESCAPED)
            posted = await post_form(alice, "/example/live", {"text": "again"})
            assert await stream.next_event() == ("note", "<p>again</p>")
    finally:
        await alice.aclose()
        await bob.aclose()


@pytest.mark.skipif(
    not TEST_REDIS_URL,
    reason="needs Redis to share events between app processes: set CPMS_TEST_REDIS_URL "
    "(e.g. redis://127.0.0.1:6379/1; CI's PostgreSQL pass sets it)",
)
async def test_two_app_processes_share_events_through_redis(clean_db, server, settings):
    await make_user("alice@example.org", name="Alice")
    await make_user("bob@example.org", name="Bob")
    with live_app(settings) as second:
        alice = await _logged_in(server, "alice@example.org")
        bob = await _logged_in(second, "bob@example.org")
        try:
            async with bob.stream("GET", "/example/live") as r:
                assert r.status_code == 200
                stream = SSE(r)
                await stream.connected()
                assert (await post_form(alice, "/example/live", {"text": HOSTILE})).status_code == 204
                assert await stream.next_event() == ("note", ESCAPED)
        finally:
            await alice.aclose()
            await bob.aclose()


async def test_anonymous_stream_and_post_are_refused(client):
    r = await client.get("/example/live", headers={"Accept": "text/event-stream"}, follow_redirects=False)
    assert r.status_code in (302, 303) and r.headers["location"].startswith("/login")
    r = await client.get("/example/live", headers={"Accept": "application/json"})
    assert r.status_code == 401 and "event-stream" not in r.headers["content-type"]
    r = await post_form(client, "/example/live", {"text": "hi"})
    assert r.status_code in (302, 303, 401)


# --- in-process: sse_response itself ---------------------------------------------------------


class AsgiStream:
    """Drives the ASGI app for one GET, so a test sees chunks as they are sent and decides
    when the client goes away (httpx's ASGI transport would wait for the end of the body)."""

    def __init__(self, app, path: str, cookie: str) -> None:
        self.app, self.path, self.cookie = app, path, cookie
        self.status: int | None = None
        self.text = ""
        self._changed = asyncio.Event()
        self._gone = asyncio.Event()
        self._asked = False
        self.complete = False
        self.task: asyncio.Task | None = None

    async def _receive(self):
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.text += message.get("body", b"").decode()
            if not message.get("more_body", False):
                # The server ended the response: like uvicorn, report the request as over.
                self.complete = True
                self._gone.set()
        self._changed.set()

    def start(self) -> "AsgiStream":
        path, _, query = self.path.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"accept", b"text/event-stream"), (b"cookie", self.cookie.encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }
        self.task = asyncio.create_task(self.app(scope, self._receive, self._send))
        return self

    async def wait_for(self, needle: str, timeout: float = TIMEOUT) -> None:
        async def wait():
            while needle not in self.text:
                self._changed.clear()
                if self.task.done():
                    raise AssertionError(f"stream ended without {needle!r}: {self.text!r}")
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def disconnect(self) -> None:
        self._gone.set()
        await asyncio.wait_for(self.task, TIMEOUT)

    async def ended(self, timeout: float = TIMEOUT) -> None:
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        assert self.complete, "the app stopped without ending the response"


@get("/test/live", opt={"authenticated": True}, include_in_schema=False)
async def _viewer_stream(request: Request, lifetime: FromQuery[float] = 60.0) -> ServerSentEvent:
    """Each payload is addressed to one viewer: the others get nothing (render returns None)."""
    me = request.scope["user"].email

    async def render(payload):
        if payload.get("crash"):
            raise ValueError("a broken renderer skips the event, not the stream")
        return ("msg", f"<p>{escape(payload['text'])}</p>") if payload["to"] == me else None

    return sse_response(request, "viewer-test", render, keepalive=0.2, lifetime=lifetime)


@pytest.fixture
async def app_and_client(clean_db, settings):
    app = create_app(settings)
    app.register(_viewer_stream)
    async with app_client(app) as client:
        yield app, client


def _live_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("cpms-live:")]


async def test_render_returning_none_skips_the_event_for_that_viewer(app_and_client):
    app, client = app_and_client
    await make_user("bob@example.org", name="Bob")
    await login(client, "bob@example.org")
    stream = AsgiStream(app, "/test/live", f"cpms_session={client.cookies['cpms_session']}").start()
    await stream.wait_for(": connected")
    assert stream.status == 200
    await publish(app, "viewer-test", {"to": "alice@example.org", "text": "for alice only"})
    await publish(app, "viewer-test", {"crash": True})
    await publish(app, "viewer-test", {"to": "bob@example.org", "text": "for <bob>"})
    await stream.wait_for("data: <p>for &lt;bob&gt;</p>")
    assert "alice" not in stream.text
    assert "event: msg" in stream.text
    await stream.wait_for(": keep-alive")  # idle stream: comments keep proxies from closing it
    assert app.state.channels.streams["viewer-test"] == 1

    await stream.disconnect()
    # The client went away: unsubscribed, no task left behind.
    assert "viewer-test" not in app.state.channels.streams
    assert _live_tasks() == []
    await publish(app, "viewer-test", {"to": "bob@example.org", "text": "nobody listens"})


async def test_stream_ends_when_the_session_ends_or_its_lifetime_is_over(app_and_client, settings):
    from core.identity.sessions import revoke_user_sessions

    app, client = app_and_client
    bob = await make_user("bob@example.org", name="Bob")
    await login(client, "bob@example.org")
    cookie = f"cpms_session={client.cookies['cpms_session']}"

    stream = AsgiStream(app, "/test/live?lifetime=0.5", cookie).start()
    await stream.wait_for(": connected")
    await stream.ended()  # no disconnect needed: the browser reconnects through the guard

    stream = AsgiStream(app, "/test/live", cookie).start()
    await stream.wait_for(": connected")
    await revoke_user_sessions(settings, bob)  # e.g. logged out elsewhere, or revoked
    await stream.ended()
    assert "viewer-test" not in app.state.channels.streams and _live_tasks() == []
    # The reconnect is refused.
    assert (await client.get("/test/live", headers={"Accept": "application/json"})).status_code == 401


async def test_a_post_publishes_on_the_channel_in_process(app_and_client):
    """How a module's in-process test checks what it published (no stream needed)."""
    app, client = app_and_client
    await make_user("alice@example.org", name="Alice")
    await login(client, "alice@example.org")
    async with subscription(app, "example") as payloads:
        assert (await post_form(client, "/example/live", {"text": "hello"})).status_code == 204
        assert await asyncio.wait_for(anext(payloads), TIMEOUT) == {"text": "hello"}
    assert "example" not in app.state.channels.streams


# --- publish never raises, the backend recovers ---------------------------------------------


class _Captured(logging.Handler):
    """Records of one logger (caplog's root handler is replaced when an app configures logging)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> "_Captured":
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)

    @property
    def text(self) -> str:
        return "\n".join(self.messages)


async def test_publish_failure_is_logged_not_raised():
    from tests.support.smtp import free_port

    app = create_app(make_settings(redis_url=""))  # never started: the memory backend has no queue
    with _Captured("cpms.live") as log:
        assert await publish(app, "example", {"text": "lost"}) is None
    assert "not published" in log.text

    # Redis unreachable: logged, not raised, and quickly.
    plugin = channels_plugin(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    await plugin._start()
    try:
        with _Captured("cpms.live") as log:
            await asyncio.wait_for(publish(_AppLike(plugin), "example", {"text": "lost"}), TIMEOUT)
        assert "not published" in log.text
    finally:
        await plugin._stop()

    plugin = LiveChannels(MemoryChannelsBackend())
    await plugin._start()
    try:
        with _Captured("cpms.live") as log:
            await publish(_AppLike(plugin), "example", {"not json": object()})
        assert "not published" in log.text
    finally:
        await plugin._stop()


class _AppLike:
    def __init__(self, plugin) -> None:
        self.state = type("State", (), {"channels": plugin})()


class _FlakyBackend(MemoryChannelsBackend):
    """Loses its event stream once, and refuses the first subscription (as Redis restarting)."""

    def __init__(self) -> None:
        super().__init__()
        self.stream_failures = 1
        self.subscribe_failures = 1

    async def subscribe(self, channels):
        if self.subscribe_failures:
            self.subscribe_failures -= 1
            raise ConnectionError("backend unavailable")
        await super().subscribe(channels)

    async def stream_events(self):
        if self.stream_failures:
            self.stream_failures -= 1
            raise ConnectionError("backend lost")
        async for item in super().stream_events():
            yield item


async def test_channels_recover_from_a_failing_backend():
    plugin = LiveChannels(_FlakyBackend())
    with _Captured("cpms.live") as log:
        await plugin._start()
        try:
            with pytest.raises(ConnectionError):
                await plugin.subscribe("c")
            # The failed subscription left nothing behind: the next one asks the backend again.
            subscriber = await plugin.subscribe("c")
            await plugin.wait_published(b'{"n": 1}', "c")
            events = subscriber.iter_events()
            # Delivered once the worker has started again after losing the backend's stream.
            assert await asyncio.wait_for(anext(events), TIMEOUT) == b'{"n": 1}'
            await plugin.unsubscribe(subscriber, "c")
        finally:
            await plugin._stop()
    assert "channel backend failed" in log.text


def test_backend_follows_the_settings():
    memory = channels_plugin(make_settings(redis_url=""))
    assert isinstance(memory._backend, MemoryChannelsBackend)
    redis = channels_plugin(make_settings(redis_url="redis://127.0.0.1:6379/3"))
    assert type(redis._backend).__name__ == "RedisChannelsPubSubBackend"
    assert redis.wire_name("panel:1") == "cpms:3:panel:1"  # pub/sub ignores databases: keep them apart
