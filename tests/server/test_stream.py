"""Live tail over Server-Sent Events (`GET /v1/stream`) and its core (`server/_live.py`).

In-process tests drive the hub, the store backlog and the ASGI response directly (an
in-process HTTP client cannot stream); end-to-end tests use a real `logbeacon serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import psutil
import pytest
from starlette.types import Message

from logbeacon.event import format_timestamp
from logbeacon.server._live import (
    EventMatcher,
    LiveItem,
    Position,
    Subscription,
    TailHub,
    TailSettings,
    TooManySubscribers,
    decode_position,
    encode_position,
    load_backlog,
    position_of,
    sse_frame,
)
from logbeacon.server.filters import parse_filters
from logbeacon.server.stream import EventStream, _advance
from logbeacon.store.base import Query
from tests.helpers.server import RunningServer, running_server, start_server
from tests.server.conftest import Harness, HarnessFactory

INJECTION = 'a\n\nevent: admin\ndata: {"level":"error"}\nid: 999\nretry: 1'


def _query(**filters: str) -> Query:
    return parse_filters(filters.items(), now=time.time())


def _event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "timestamp": format_timestamp(time.time()),
        "level": "info",
        "service": "api",
        "event": "http_request",
        "event_id": uuid.uuid4().hex,
    }
    base.update(fields)
    return base


async def _ingest(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/logs", json=events)
    assert 200 == response.status_code, response.text
    assert len(events) == response.json()["accepted"]


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("filters", "event", "expected"),
    [
        ({"level": "warn"}, {"level": "error"}, True),
        ({"level": "warn"}, {"level": "info"}, False),
        ({"service": "api"}, {"service": "web"}, False),
        (
            {"trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736"},
            {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
            True,
        ),
        ({"node": "developer"}, {}, False),
        ({"since": "1m"}, {"timestamp": format_timestamp(time.time() - 120)}, False),
        ({"until": "1m"}, {"timestamp": format_timestamp(time.time() - 120)}, True),
        ({"q": "disk full"}, {"message": "Disk is FULL now"}, True),
        ({"q": "disk full"}, {"message": "disk ok"}, False),
        ({"q": "time*"}, {"error": {"type": "TimeoutError", "message": "x"}}, True),
        ({"q": "ecoute"}, {"message": "écoute"}, True),
        ({"q": "* -"}, {"message": "anything"}, False),
        ({"q": "   "}, {"message": "anything"}, True),
    ],
)
def test_matcher_applies_each_filter(
    filters: dict[str, str], event: dict[str, Any], expected: bool
) -> None:
    """Each `GET /v1/logs` filter is applied in-process to live events."""
    assert expected == EventMatcher(_query(**filters))(LiveItem(_event(**event)))


async def test_full_text_matching_agrees_with_the_store(harness: Harness) -> None:
    """For the same `q`, the live matcher selects exactly the events the store query returns."""
    messages = [
        "disk full on /var",
        "Disk usage 91%",
        "connection timeout after 30s",
        "timeouts are retried",
        "écoute le réseau",
        "snake_case_name here",
        "a-b c.d",
        "naïve café",
    ]
    async with harness.client() as client:
        await _ingest(client, [_event(message=m) for m in messages])
    stored = await harness.all_events()
    for q in [
        "disk",
        "DISK full",
        "timeout*",
        "time",
        "ecoute",
        "snake",
        "case",
        "b c",
        "cafe",
        "naive",
        "zzz",
    ]:
        page = await harness.state.store.query(_query(q=q, limit="1000"))
        matcher = EventMatcher(_query(q=q))
        expected = sorted(e["event_id"] for e in page.events)
        actual = sorted(e["event_id"] for e in stored if matcher(LiveItem(e)))
        assert expected == actual, q


# --------------------------------------------------------------------------- positions


def test_position_round_trips_and_foreign_ids_are_refused() -> None:
    """A Last-Event-ID decodes to the position it encodes; anything else is a ValueError."""
    position = ("2026-01-31T12:00:00.123456Z", "0190a7b2-7c3e-7000-8000-000000000001")
    assert position == decode_position(encode_position(position))
    for bad in ["", "999", "not base64!", encode_position(("yesterday", "x")), "A" * 300]:
        with pytest.raises(ValueError):
            decode_position(bad)


def test_position_orders_by_arrival_not_timestamp() -> None:
    """A late event (old timestamp, received later) sits after an earlier-received one."""
    early = _event(
        timestamp="2026-01-31T12:00:05.000000Z", received_at="2026-01-31T12:00:05.000000Z"
    )
    late = _event(
        timestamp="2026-01-31T11:59:00.000000Z", received_at="2026-01-31T12:00:06.000000Z"
    )
    assert position_of(early) < position_of(late)


# --------------------------------------------------------------------------- subscription, hub


def test_subscription_overflows_at_its_event_limit_and_counts_drops() -> None:
    """The outbox never holds more than its limit; the rest is counted, not queued."""
    subscription = Subscription(None, max_items=3, max_bytes=1 << 20)
    for _ in range(5):
        subscription.offer(LiveItem(_event()))
    assert (3, 2, True) == (
        len(subscription),
        subscription.dropped,
        subscription.overflowed.is_set(),
    )


def test_subscription_overflows_at_its_byte_limit() -> None:
    """Large events overflow the outbox by bytes before its event limit."""
    subscription = Subscription(None, max_items=1000, max_bytes=10_000)
    for _ in range(4):
        subscription.offer(LiveItem(_event(message="x" * 4000)))
    assert (2, 2) == (len(subscription), subscription.dropped)
    assert subscription.queued_bytes <= 10_000


async def test_replacing_the_filter_discards_queued_events_but_keeps_replies() -> None:
    """After `set_matcher`, events queued for the old filter are not delivered; replies are."""
    subscription = Subscription(None, max_items=10, max_bytes=1 << 20)
    subscription.offer(LiveItem(_event()))
    subscription.put(b'{"type":"pong"}')
    subscription.set_matcher(EventMatcher(Query()))
    assert [b'{"type":"pong"}'] == await subscription.next_batch(0.1)
    assert [] == await subscription.next_batch(0.05)


def test_hub_delivers_matching_events_and_bounds_subscribers() -> None:
    """Subscribers get what their filter matches; a full hub refuses; a freed slot is reused."""
    hub = TailHub(TailSettings(max_subscribers=2))
    errors = hub.subscribe(EventMatcher(_query(level="error")))
    everything = hub.subscribe(EventMatcher(Query()))
    with pytest.raises(TooManySubscribers):
        hub.subscribe(None)
    hub.publish([_event(level="info"), _event(level="error")])
    assert (1, 2) == (len(errors), len(everything))
    hub.unsubscribe(errors)
    hub.unsubscribe(errors)  # idempotent
    assert 1 == len(hub)
    hub.subscribe(None)
    assert 2 == len(hub)


def test_tail_settings_come_from_the_environment_and_are_validated() -> None:
    """`LOGBEACON_TAIL_*` set the limits; nonsense stops the server at start."""
    from logbeacon.exceptions import ConfigError

    settings = TailSettings.from_env(
        {"LOGBEACON_TAIL_HEARTBEAT": "0.5", "LOGBEACON_TAIL_QUEUE": "7"}
    )
    assert (0.5, 7, 100) == (settings.heartbeat, settings.queue_events, settings.max_subscribers)
    for environ in ({"LOGBEACON_TAIL_QUEUE": "0"}, {"LOGBEACON_TAIL_HEARTBEAT": "soon"}):
        with pytest.raises(ConfigError):
            TailSettings.from_env(environ)


# --------------------------------------------------------------------------- backlog


async def test_backlog_after_a_position_includes_late_arrivals_only(harness: Harness) -> None:
    """A reconnect gets events received after its position, also those with older timestamps."""
    store = harness.state.store
    async with harness.client() as client:
        await _ingest(client, [_event(service="bk", message="before")])
        (before,) = (await store.query(_query(service="bk"))).events
        await asyncio.sleep(0.002)  # a later received_at
        late = _event(service="bk", message="late", timestamp=format_timestamp(time.time() - 120))
        fresh = _event(service="bk", message="fresh")
        await _ingest(client, [late, fresh])
    backlog = await load_backlog(store, _query(service="bk"), after=position_of(before), limit=100)
    assert ["late", "fresh"] == [e["message"] for e in backlog.events]
    assert (0, True) == (backlog.dropped, backlog.complete)


async def test_backlog_keeps_the_newest_and_counts_the_rest(harness: Harness) -> None:
    """Over the limit, the oldest matching events are left out and counted."""
    async with harness.client() as client:
        await _ingest(
            client,
            [
                _event(
                    service="many", message=str(i), timestamp=format_timestamp(time.time() - 10 + i)
                )
                for i in range(7)
            ],
        )
    store = harness.state.store
    backlog = await load_backlog(store, _query(service="many"), after=None, limit=3)
    assert (["4", "5", "6"], 4) == ([e["message"] for e in backlog.events], backlog.dropped)
    size = len(backlog.items[-1].data)
    by_bytes = await load_backlog(
        store, _query(service="many"), after=None, limit=100, max_bytes=2 * size
    )
    assert (["5", "6"], 5) == ([e["message"] for e in by_bytes.events], by_bytes.dropped)


# --------------------------------------------------------------------------- the ASGI response


@dataclass
class FakeTransport:
    """An ASGI server side whose writes can be paused like a full socket buffer."""

    sent: list[Message] = field(default_factory=list)
    writable: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.writable.set()

    async def send(self, message: Message) -> None:
        await self.writable.wait()
        self.sent.append(message)

    async def receive(self) -> Message:
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def _wait_until(predicate: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


@contextlib.asynccontextmanager
async def _running(
    harness: Harness, transport: FakeTransport, query: Query, after: Position | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    response = EventStream(
        hub=harness.app.state.tail_hub,
        store=harness.state.store,
        query=query,
        after=after,
        clock=time.time,
    )
    task = asyncio.ensure_future(response({"type": "http"}, transport.receive, transport.send))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_slow_consumer_gets_a_final_notice_and_its_slot_back(
    make_harness: HarnessFactory,
) -> None:
    """A subscriber whose outbox overflows gets `event: notice` (slow_consumer) and is closed."""
    async with make_harness() as harness:
        harness.app.state.tail_hub.settings = TailSettings(queue_events=3)
        hub = harness.app.state.tail_hub
        transport = FakeTransport()
        async with _running(harness, transport, Query()) as task:
            await _wait_until(lambda: len(hub) == 1 and transport.sent)
            transport.writable.clear()  # the client stops reading
            hub.publish([_event(message=str(i)) for i in range(10)])
            await asyncio.sleep(0.05)
            transport.writable.set()  # the final notice can go out
            await asyncio.wait_for(task, 5)
        final = transport.sent[-1]
        assert (False, 0) == (final.get("more_body", False), len(hub))
        assert final["body"].startswith(b"event: notice\ndata: ")
        notice = orjson.loads(final["body"].split(b"data: ", 1)[1])
        assert "slow_consumer" == notice["reason"]
        assert 10 == notice["dropped"] + transport.body().count(b"event: log")


def _log_frames(body: bytes) -> list[dict[str, Any]]:
    return [
        orjson.loads(frame.split(b"data: ", 1)[1])
        for frame in body.split(b"\n\n")
        if b"event: log\n" in frame
    ]


async def test_events_arriving_during_a_replay_are_caught_up_without_repeats(
    make_harness: HarnessFactory,
) -> None:
    """More live events than the outbox holds while a replay is written: they are re-read
    from the store instead of cutting the client off, each delivered exactly once."""
    async with make_harness() as harness:
        hub: TailHub = harness.app.state.tail_hub
        hub.settings = TailSettings(queue_events=3)
        async with harness.client() as client:
            await _ingest(client, [_event(service="cu", message="seen")])
            (seen,) = (await harness.state.store.query(_query(service="cu"))).events
            await _ingest(client, [_event(service="cu", message=f"missed{i}") for i in range(5)])
            transport = FakeTransport()
            transport.writable.clear()  # the replay write waits …
            async with _running(harness, transport, _query(service="cu"), position_of(seen)):
                await _wait_until(lambda: len(hub) == 1)
                for i in range(10):  # … while more arrive than the outbox holds
                    await _ingest(client, [_event(service="cu", message=f"during{i}")])
                transport.writable.set()
                await _ingest(client, [_event(service="cu", message="live")])
                await _wait_until(lambda: b'"live"' in transport.body())
        messages = [e["message"] for e in _log_frames(transport.body())]
        expected = [f"missed{i}" for i in range(5)] + [f"during{i}" for i in range(10)]
        assert sorted([*expected, "live"]) == sorted(messages)
        assert "live" == messages[-1]
        assert b"event: notice" not in transport.body()


async def test_disconnect_releases_the_subscription(harness: Harness) -> None:
    """A client that goes away leaves no subscriber and no running task behind."""
    hub: TailHub = harness.app.state.tail_hub
    transport = FakeTransport()
    async with _running(harness, transport, Query()) as task:
        await _wait_until(lambda: len(hub) == 1)
        transport.disconnected.set()
        await asyncio.wait_for(task, 5)
    assert (0, True) == (len(hub), task.done())


# --------------------------------------------------------------------------- end to end

TAIL_ENV = {
    "LOGBEACON_TAIL_HEARTBEAT": "0.3",
    "LOGBEACON_TAIL_QUEUE": "20",
    "LOGBEACON_TAIL_MAX_SUBSCRIBERS": "4",
    "LOGBEACON_RATE": "1000000",
    "LOGBEACON_BURST": "100000",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("stream"), env=TAIL_ENV) as running:
        yield running


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.read_headers, timeout=10.0
    ) as client:
        yield client


@dataclass
class Sse:
    event: str
    data: str
    id: str | None


class SseReader:
    """Parses a live response into messages; every read is bounded by a timeout."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []
        self.last_id: str | None = None

    async def next(self, seconds: float = 5.0) -> Sse:
        """The next message with data (id-only messages just move `last_id`)."""
        event, data = "", []
        pending_id: str | None = None
        async with asyncio.timeout(seconds):
            while True:
                line = await anext(self.lines)
                if not line:
                    if pending_id is not None:
                        self.last_id = pending_id
                    if data:
                        return Sse(event or "message", "\n".join(data), self.last_id)
                    event, data, pending_id = "", [], None
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        pending_id = value

    async def events(self, count: int, seconds: float = 10.0) -> list[dict[str, Any]]:
        """The next `count` log events (notices are not expected here)."""
        out = []
        async with asyncio.timeout(seconds):
            while len(out) < count:
                message = await self.next(seconds)
                assert "log" == message.event, message
                out.append(orjson.loads(message.data))
        return out


@contextlib.asynccontextmanager
async def sse(
    http: httpx.AsyncClient, params: dict[str, str], last_event_id: str | None = None
) -> AsyncIterator[SseReader]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with http.stream("GET", "/v1/stream", params=params, headers=headers) as response:
        assert 200 == response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseReader(response)


async def _post(http: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await http.post("/v1/logs", json=events)
    assert 200 == response.status_code, response.text


def _tag() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


@pytest.mark.e2e
async def test_live_events_arrive_with_filters_applied(http: httpx.AsyncClient) -> None:
    """Only events matching every filter are streamed, in the order they were stored."""
    service = _tag()
    async with sse(http, {"service": service, "level": "warn"}) as stream:
        await _post(
            http,
            [
                {"service": service, "event": "a", "level": "info"},
                {"service": service, "event": "b", "level": "error"},
                {"service": "other", "event": "c", "level": "error"},
                {"service": service, "event": "d", "level": "warn"},
            ],
        )
        events = await stream.events(2)
    assert [("b", "error"), ("d", "warn")] == [(e["event"], e["level"]) for e in events]


@pytest.mark.e2e
async def test_sse_framing_cannot_be_injected(http: httpx.AsyncClient) -> None:
    """A message with blank lines and SSE fields arrives as one normal `log` event (INJ-08)."""
    service = _tag()
    async with sse(http, {"service": service}) as stream:
        await _post(http, [{"service": service, "event": "x", "message": INJECTION}])
        await _post(http, [{"service": service, "event": "after"}])
        first = await stream.next()
        second = await stream.next()
    assert ("log", INJECTION) == (first.event, orjson.loads(first.data)["message"])
    assert ("log", "after") == (second.event, orjson.loads(second.data)["event"])
    assert first.id != "999"


@pytest.mark.e2e
async def test_heartbeats_keep_an_idle_stream_alive(http: httpx.AsyncClient) -> None:
    """An idle stream carries `: ping` comments at the configured interval."""
    async with sse(http, {"service": _tag()}) as stream:
        with pytest.raises(TimeoutError):
            await stream.next(1.0)
    assert 2 <= stream.comments.count(": ping")


@pytest.mark.e2e
async def test_reconnect_with_last_event_id_has_no_gap_and_no_repeat(
    http: httpx.AsyncClient,
) -> None:
    """Events stored while disconnected, and while the replay runs, arrive exactly once."""
    service = _tag()

    def batch(label: str, count: int) -> list[dict[str, Any]]:
        return [{"service": service, "event": label, "message": str(i)} for i in range(count)]

    async with sse(http, {"service": service}) as stream:
        await _post(http, batch("seen", 3))
        seen = await stream.events(3)
        resume_from = stream.last_id
    assert resume_from is not None
    missed: list[dict[str, Any]] = []
    for _ in range(4):
        chunk = batch("missed", 500)
        missed += chunk
        await _post(http, chunk)
    # Late arrival: stored while disconnected, with a timestamp older than what was seen.
    late = {**batch("late", 1)[0], "timestamp": format_timestamp(time.time() - 60)}
    await _post(http, [late])

    async with sse(http, {"service": service}, last_event_id=resume_from) as stream:
        during = batch("during", 50)

        async def ingest_during_replay() -> None:
            for i in range(0, 50, 5):
                await _post(http, during[i : i + 5])

        writer = asyncio.create_task(ingest_during_replay())
        received = await stream.events(len(missed) + 1 + len(during), seconds=30)
        await writer
        await _post(http, batch("end", 1))
        (end,) = await stream.events(1)

    labels = [(e["event"], e["message"]) for e in received]
    ids = [e["event_id"] for e in received]
    assert len(ids) == len(set(ids))  # no repeat
    assert not {e["event_id"] for e in seen} & set(ids)
    expected = {(e["event"], e["message"]) for e in [*missed, late, *during]}
    assert expected == set(labels)  # no gap
    assert "end" == end["event"]


class NumberedWriter(threading.Thread):
    """Posts batches of sequence-numbered events to `url` until stopped, keeping the numbers of
    the acknowledged ones (a failed or refused post is not acknowledged, even if stored)."""

    def __init__(self, service: str, url: str, batch: int = 5) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.url = url
        self.batch = batch
        self.acked: list[int] = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.next_seq = 0

    def acked_set(self) -> set[int]:
        with self.lock:
            return set(self.acked)

    def run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self.halt.is_set():
                seqs = range(self.next_seq, self.next_seq + self.batch)
                self.next_seq += self.batch
                events = [{"service": self.service, "event": "numbered", "seq": n} for n in seqs]
                with contextlib.suppress(httpx.HTTPError):
                    response = client.post(f"{self.url}/v1/logs", json=events)
                    if 200 == response.status_code and len(events) == response.json()["accepted"]:
                        with self.lock:
                            self.acked.extend(seqs)
                self.halt.wait(0.01)

    def wait_acked(self, count: int, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while len(self.acked_set()) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked_set())} events acknowledged"
            time.sleep(0.02)


async def _read_until_broken(reader: SseReader, received: list[int], seconds: float) -> list[str]:
    """Collect `seq`s from the stream until the server goes away (EOF or a broken connection);
    returns the reasons of the notices it sent."""
    notices: list[str] = []
    with contextlib.suppress(StopAsyncIteration, httpx.TransportError):
        async with asyncio.timeout(seconds):
            while True:
                message = await reader.next(seconds)
                if "notice" == message.event:
                    notices.append(orjson.loads(message.data)["reason"])
                    continue
                assert "log" == message.event, message
                received.append(orjson.loads(message.data)["seq"])
    return notices


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
async def test_reconnect_after_a_server_restart_gets_every_acknowledged_event_once(
    tmp_path: Any, stop_signal: signal.Signals
) -> None:
    """A client resuming with Last-Event-ID from a restarted server on the same data dir gets
    every acknowledged event it had not seen, exactly once, while ingestion never paused."""
    env = {k: v for k, v in TAIL_ENV.items() if k != "LOGBEACON_TAIL_QUEUE"}
    service = _tag()
    started = time.monotonic()
    first = start_server(tmp_path, env=env, name="first")
    servers = [first]
    writer = NumberedWriter(service, first.url)
    before: list[int] = []
    after: list[int] = []
    try:
        async with httpx.AsyncClient(headers=first.read_headers, timeout=10.0) as http:
            http.base_url = httpx.URL(first.url)
            async with sse(http, {"service": service}) as stream:
                writer.start()
                while len(before) < 100:  # live events, read as they come
                    (event,) = await stream.events(1)
                    before.append(event["seq"])
                os.kill(first.proc.pid, stop_signal)  # while the writer keeps posting
                stopped_at = time.monotonic()
                notices = await _read_until_broken(stream, before, seconds=15.0)
                stream_ended_in = time.monotonic() - stopped_at
                resume_from = stream.last_id
            # SIGTERM ends open streams at once with a notice, not after the shutdown timeout.
            graceful = stop_signal == signal.SIGTERM
            assert (["server_shutdown"] if graceful else [], True) == (notices, stream_ended_in < 5)
            await asyncio.to_thread(first.proc.wait, 15)
            acked_before_restart = len(writer.acked_set())

            second = start_server(tmp_path, env=env, data_dir=first.data_dir, name="second")
            servers.append(second)
            writer.url = second.url
            await asyncio.to_thread(writer.wait_acked, acked_before_restart + 100)
            assert resume_from is not None
            http.base_url = httpx.URL(second.url)
            async with sse(http, {"service": service}, last_event_id=resume_from) as stream:
                await asyncio.to_thread(writer.wait_acked, acked_before_restart + 200)
                writer.halt.set()
                await asyncio.to_thread(writer.join, 10)
                acked = writer.acked_set()
                await _post(http, [{"service": service, "event": "numbered", "seq": -1}])
                async with asyncio.timeout(15):
                    while -1 not in after:
                        (event,) = await stream.events(1, seconds=15)
                        after.append(event["seq"])
    except BaseException as exc:
        for server in servers:
            exc.add_note(f"{server.log_path.name}:\n{server.output()}")
        raise
    finally:
        writer.halt.set()
        for server in servers:
            server.stop()
    received = [*before, *after[:-1]]
    assert (set(), []) == (
        acked - set(received),  # nothing acknowledged is missing …
        sorted(n for n in set(received) if received.count(n) > 1),  # … nothing came twice
    )
    assert set() != acked - set(before)  # the resumed stream had something to deliver
    assert time.monotonic() - started < 30
    assert 0 < acked_before_restart < len(acked)


@pytest.mark.e2e
async def test_since_gives_a_backlog_before_live_events(http: httpx.AsyncClient) -> None:
    """A fresh stream with `since` first sends the stored matches, oldest first."""
    service = _tag()
    start = time.time() - 10
    await _post(
        http,
        [
            {"service": service, "event": f"old{i}", "timestamp": format_timestamp(start + i)}
            for i in (2, 0, 1)
        ],
    )
    async with sse(http, {"service": service, "since": "5m"}) as stream:
        backlog = await stream.events(3)
        await _post(http, [{"service": service, "event": "new"}])
        (live,) = await stream.events(1)
    assert ["old0", "old1", "old2", "new"] == [e["event"] for e in [*backlog, live]]


@pytest.mark.e2e
async def test_stream_needs_a_read_token(server: RunningServer) -> None:
    """Without a token the stream is 401 with `WWW-Authenticate`; nothing is streamed."""
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as anonymous:
        response = await anonymous.get("/v1/stream")
    assert (401, "missing_token") == (response.status_code, response.json()["error"])
    assert "Bearer" in response.headers["www-authenticate"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("params", "headers", "status", "error"),
    [
        ({"levle": "warn"}, {}, 400, "unknown_parameter"),
        ({"limit": "10"}, {}, 400, "unknown_parameter"),
        ({"cursor": "abc"}, {}, 400, "unknown_parameter"),
        ({"level": "loud"}, {}, 422, "invalid_parameter"),
        ({}, {"Last-Event-ID": "999"}, 422, "invalid_last_event_id"),
    ],
)
async def test_bad_stream_requests_are_refused(
    http: httpx.AsyncClient,
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    """Filters are validated like `GET /v1/logs`; paging parameters and foreign ids are refused."""
    response = await http.get("/v1/stream", params=params, headers=headers)
    assert (status, error) == (response.status_code, response.json()["error"])


async def _open_all(http: httpx.AsyncClient, count: int, stack: contextlib.AsyncExitStack) -> None:
    for _ in range(count):
        await stack.enter_async_context(sse(http, {"service": _tag()}))


@pytest.mark.e2e
async def test_subscriber_limit_and_slots_freed_on_disconnect(http: httpx.AsyncClient) -> None:
    """Past the limit a stream is 503 with Retry-After; closed streams give their slots back."""
    async with contextlib.AsyncExitStack() as stack:
        await _open_all(http, 4, stack)
        refused = await http.get("/v1/stream")
    assert (503, "too_many_subscribers") == (refused.status_code, refused.json()["error"])
    assert 1 <= int(refused.headers["retry-after"])
    for _ in range(100):  # the server notices the disconnects asynchronously
        async with contextlib.AsyncExitStack() as stack:
            try:
                await _open_all(http, 4, stack)
            except AssertionError:
                await asyncio.sleep(0.05)
                continue
            break
    else:
        pytest.fail("slots were not freed after the clients disconnected")


@pytest.mark.e2e
@pytest.mark.slow
async def test_a_client_that_stops_reading_is_cut_off_while_others_stream(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    """A non-reading client is disconnected (bounded memory); a reading one gets everything."""
    service = _tag()
    blob = {f"field{i}": "x" * 8000 for i in range(7)}  # ~56 KB per event
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
    stalled.settimeout(10)
    try:
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(
            f"GET /v1/stream?service={service} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {server.read_token}\r\n\r\n".encode()
        )
        total = 0
        async with sse(http, {"service": service}) as stream:
            for _ in range(30):
                await _post(http, [{"service": service, "event": "big", **blob} for _ in range(10)])
                total += 10
                assert 10 == len(await stream.events(10))  # this reader keeps up
        received = b""
        while chunk := stalled.recv(1 << 20):  # EOF: the server closed it (timeout otherwise)
            received += chunk
    finally:
        stalled.close()
    assert 0 < received.count(b"event: log") < total


MIB = 1024 * 1024


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_reader_that_never_reads_keeps_server_memory_bounded(tmp_path: Any) -> None:
    """Pushing 60 MB of events at a stream whose client never reads grows the server's RSS by
    less than 50 MiB (default outbox limits: about 26 MiB measured), and it is cut off."""
    env = {"LOGBEACON_RATE": "1000000", "LOGBEACON_BURST": "100000"}
    service = _tag()
    blob = {f"field{i}": "x" * 7000 for i in range(8)}  # ~56 KB per event
    batch = [{"service": service, "event": "big", **blob} for _ in range(10)]
    with running_server(tmp_path, env=env) as server, httpx.Client(timeout=30) as http:
        process = psutil.Process(server.proc.pid)

        def push(count: int) -> int:
            for _ in range(count):
                response = http.post(f"{server.url}/v1/logs", json=batch)
                assert 200 == response.status_code, response.text
            return len(orjson.dumps(batch)) * count

        push(20)  # warm up: caches, first allocations, the store's pages
        baseline = process.memory_info().rss
        stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
        stalled.settimeout(10)
        try:
            stalled.connect(("127.0.0.1", server.port))
            stalled.sendall(
                f"GET /v1/stream?service={service} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {server.read_token}\r\n\r\n".encode()
            )
            stalled.recv(1)  # the stream started: the subscription exists
            pushed, peak = 0, baseline
            while pushed < 60 * MIB:
                pushed += push(5)
                peak = max(peak, process.memory_info().rss)
            received, cut_off = b"", False
            with contextlib.suppress(TimeoutError):
                while chunk := stalled.recv(1 << 20):
                    received += chunk
                cut_off = True  # EOF: the server closed the stream (a timeout otherwise)
        finally:
            stalled.close()
    growth_mib = round((peak - baseline) / MIB, 1)
    assert (True, True) == (growth_mib < 50, cut_off), growth_mib
    assert received.count(b"event: log") < 200  # most of the 1,000+ events were never queued


def test_a_frame_is_built_once_for_every_subscriber() -> None:
    """The SSE frame of an event is encoded once and shared; an event older than what a
    stream already sent goes out at the stream's watermark, so a resume never goes back."""
    newer = LiveItem({"event": "b", "event_id": "e2", "received_at": "2026-01-01T00:00:02.000000Z"})
    older = LiveItem({"event": "a", "event_id": "e1", "received_at": "2026-01-01T00:00:01.000000Z"})
    assert newer.frame is newer.frame
    assert sse_frame(newer.position, newer.data) == newer.frame
    start = ("2026-01-01T00:00:00.000000Z", "")
    watermark, frame = _advance(start, newer)
    assert (newer.position, newer.frame) == (watermark, frame)
    after_older, older_frame = _advance(watermark, older)
    assert newer.position == after_older
    assert sse_frame(newer.position, older.data) == older_frame
    assert b"id: " + encode_position(newer.position).encode() in older_frame
