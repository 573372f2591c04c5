"""Shipper behaviour under server faults: scripted local HTTP servers on 127.0.0.1 (real
sockets, real HTTP) and a fake transport for the model test (FUZ-11)."""

from __future__ import annotations

import gzip
import json
import logging
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logbeacon.event import encode, new_event_id
from logbeacon.sdk._spool import Spool
from logbeacon.sdk.shipper import (
    DEFAULT_RETRY_AFTER,
    Backoff,
    BatchSender,
    Response,
    Shipper,
    parse_retry_after,
)

Reply = tuple[int, dict[str, str], dict[str, Any] | None]


# --------------------------------------------------------------------------- helpers


@dataclass
class Seen:
    """One request the scripted server received."""

    at: float
    events: list[dict[str, Any]]
    headers: dict[str, str]


@dataclass
class ScriptedServer:
    """An HTTP/1.1 keep-alive server answering POST /v1/logs with `script(index, events)`."""

    script: Callable[[int, list[dict[str, Any]]], Reply]
    requests: list[Seen] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __post_init__(self) -> None:
        self.gate.set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                if self.headers.get("content-encoding") == "gzip":
                    raw = gzip.decompress(raw)
                events = json.loads(raw)["events"]
                index = len(owner.requests)
                owner.requests.append(
                    Seen(time.monotonic(), events, {k.lower(): v for k, v in self.headers.items()})
                )
                owner.gate.wait(30)
                status, headers, body = owner.script(index, events)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def ids(self) -> list[str]:
        return [e["event_id"] for r in self.requests for e in r.events]


def ok(events: list[dict[str, Any]], rejected: list[dict[str, Any]] | None = None) -> Reply:
    rejected = rejected or []
    return 200, {}, {"accepted": len(events) - len(rejected), "duplicates": 0, "rejected": rejected}


@pytest.fixture
def scripted() -> Iterator[
    Callable[[Callable[[int, list[dict[str, Any]]], Reply]], ScriptedServer]
]:
    servers: list[ScriptedServer] = []

    def start(script: Callable[[int, list[dict[str, Any]]], Reply]) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def shippers() -> Iterator[Callable[..., Shipper]]:
    made: list[Shipper] = []

    def make(url: str, **kwargs: Any) -> Shipper:
        kwargs.setdefault("flush_interval", 0.5)
        kwargs.setdefault("backoff_base", 0.05)
        kwargs.setdefault("backoff_cap", 0.2)
        shipper = Shipper(url, **kwargs)
        made.append(shipper)
        return shipper

    yield make
    for shipper in made:
        shipper.close(0.5)


def emit(shipper: Shipper, count: int, **fields: Any) -> list[str]:
    ids = []
    for i in range(count):
        event = {"event": "test_event", "level": "error", "i": i, **fields}
        event["event_id"] = new_event_id()
        ids.append(event["event_id"])
        shipper.emit(event, encode(event) + b"\n")
    return ids


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def stalled_url() -> Iterator[str]:
    """A port that completes TCP handshakes but never reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def shipper_warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "logbeacon.internal.shipper" and text in r.getMessage()
    )


# --------------------------------------------------------------------------- Retry-After


def test_parse_retry_after_forms() -> None:
    """RL-17: delay-seconds and HTTP-dates parse; garbage, negatives and NaN do not."""
    now = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=30), usegmt=True)
    ts = now.timestamp()
    assert 7.0 == parse_retry_after("7", ts)
    assert 7.0 == parse_retry_after(" 7 ", ts)
    assert 7.0 == parse_retry_after(later, ts)
    assert 0.0 == parse_retry_after(earlier, ts)
    for garbage in (None, "", "soon", "-1", "nan", "inf", "7s", "x" * 100):
        assert parse_retry_after(garbage, ts) is None


def test_429_without_retry_after_waits_the_default() -> None:
    """RL-17: a 429 naming no usable Retry-After waits DEFAULT_RETRY_AFTER (Sentry's 60 s)."""
    for header in ({}, {"Retry-After": "whenever"}):
        sender = BatchSender(lambda body, headers, h=header: Response(429, h, b""))
        result = sender.send([b'{"event":"x","event_id":"a"}'])
        assert DEFAULT_RETRY_AFTER == result.retry_after
        assert 1 == len(result.retry)


def test_retry_after_is_honoured(scripted: Any, shippers: Any) -> None:
    """RL-17: after `429 Retry-After: 1` the next request comes no sooner than 1 s later."""
    statuses: list[int] = []

    def script(i: int, events: list[dict[str, Any]]) -> Reply:
        reply = (429, {"Retry-After": "1"}, {"error": "rate_limited"}) if i == 0 else ok(events)
        statuses.append(reply[0])
        return reply

    server = scripted(script)
    shipper = shippers(server.url)
    ids = emit(shipper, 5)
    assert shipper.flush(10)
    assert [429] == [s for s in statuses if s != 200]
    assert server.requests[1].at - server.requests[0].at >= 0.95
    assert sorted(ids) == sorted(e["event_id"] for r in server.requests[1:] for e in r.events)
    assert 5 == shipper.stats().delivered


def test_flush_does_not_cut_a_server_given_delay(scripted: Any, shippers: Any) -> None:
    """A flush never shortens a Retry-After pause: it times out instead of hammering."""
    server = scripted(lambda i, events: (503, {"Retry-After": "30"}, None))
    shipper = shippers(server.url)
    emit(shipper, 3)
    started = time.monotonic()
    assert not shipper.flush(0.5)
    assert time.monotonic() - started < 2.0
    assert 1 == len(server.requests)


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    """DEL-02: timeouts, 429 and 5xx (except 501) are retried, nothing is counted lost."""
    sender = BatchSender(lambda body, headers: Response(status, {"retry-after": "1"}, b""))
    result = sender.send([b'{"event":"x"}', b'{"event":"y"}'])
    assert [[b'{"event":"x"}', b'{"event":"y"}']] == result.retry
    assert Counter() == result.dropped


@pytest.mark.parametrize("error", [ConnectionRefusedError, TimeoutError, ConnectionResetError])
def test_transport_errors_are_retried(error: type[Exception]) -> None:
    """DEL-02: a transport that raises (refused, timed out, reset) means 'retry later'."""

    def transport(body: bytes, headers: Any) -> Response:
        raise error

    result = BatchSender(transport).send([b'{"event":"x"}'])
    assert 1 == len(result.retry)
    assert error.__name__ == result.error


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "invalid"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "http_404"),
        (409, "http_409"),
        (413, "too_large"),
        (415, "http_415"),
        (422, "http_422"),
        (501, "http_501"),
    ],
)
def test_final_statuses(status: int, reason: str) -> None:
    """DEL-02: 4xx and 501 are never retried; the event is dropped and counted by reason."""
    calls = []

    def transport(body: bytes, headers: Any) -> Response:
        calls.append(body)
        return Response(status, {}, b"")

    result = BatchSender(transport).send([b'{"event":"x"}'])
    assert [] == result.retry
    assert Counter({reason: 1}) == result.dropped
    assert 1 == len(calls)


def test_backoff_grows_to_a_cap_with_jitter() -> None:
    """DEL-03: delays grow exponentially up to the cap and two clients are not in lock-step."""
    import random

    a = Backoff(0.5, 60.0, random.Random(1))
    b = Backoff(0.5, 60.0, random.Random(2))
    delays_a = [a.next_delay() for _ in range(20)]
    delays_b = [b.next_delay() for _ in range(20)]
    assert all(d <= 60.0 for d in delays_a)
    assert max(delays_a[:3]) <= 2.0
    assert sum(delays_a[-5:]) > 5 * 3.0  # at the cap, delays are at least cap/20 each
    assert delays_a != delays_b
    assert 7.0 == a.next_delay(7.0)
    a.reset()
    assert a.next_delay() <= 0.5


def test_retry_budget_bounds_a_batch(scripted: Any, shippers: Any) -> None:
    """DEL-03: without a spool a batch is retried for `retry_budget` seconds, then dropped
    and counted, and the shipper moves on."""
    healthy = threading.Event()
    server = scripted(lambda i, events: ok(events) if healthy.is_set() else (503, {}, None))
    shipper = shippers(server.url, retry_budget=0.3, backoff_base=0.05, backoff_cap=0.1)
    emit(shipper, 4)
    assert shipper.flush(10)
    healthy.set()
    assert {"retry_exhausted": 4} == shipper.stats().dropped
    later = emit(shipper, 2)
    assert shipper.flush(10)
    assert set(later) <= set(server.ids())


# --------------------------------------------------------------------------- 413, rejections


def test_413_splits_in_halves_and_never_resends_the_whole(scripted: Any, shippers: Any) -> None:
    """RL-16: a 413 splits the batch; each half is sent once, and split again if needed."""
    server = scripted(
        lambda i, events: (413, {}, {"error": "too_many_events"}) if len(events) > 3 else ok(events)
    )
    shipper = shippers(server.url)
    ids = emit(shipper, 10)
    assert shipper.flush(10)
    assert [10, 5, 2, 3, 5, 2, 3] == [len(r.events) for r in server.requests]
    sent_sets = Counter(frozenset(e["event_id"] for e in r.events) for r in server.requests)
    assert 1 == max(sent_sets.values())
    delivered = [e["event_id"] for r in server.requests if len(r.events) <= 3 for e in r.events]
    assert sorted(ids) == sorted(delivered)
    assert 10 == shipper.stats().delivered


def test_single_oversized_event_is_dropped_and_reported(scripted: Any, shippers: Any) -> None:
    """RL-16: an event the server refuses alone is dropped as `too_large` and reported."""
    server = scripted(
        lambda i, events: (413, {}, None) if any(e.get("big") for e in events) else ok(events)
    )
    shipper = shippers(server.url, report_interval=0.05)
    emit(shipper, 3)
    emit(shipper, 1, big=True)
    assert shipper.flush(10)
    stats = shipper.stats()
    assert {"too_large": 1} == stats.dropped
    assert shipper.flush(10)  # the drop is reported with the next flush
    reports = [e for r in server.requests for e in r.events if e["event"] == "events_dropped"]
    assert [("too_large", 1, "warn")] == [(e["reason"], e["count"], e["level"]) for e in reports]


def test_per_event_rejection_is_final_and_logged_once(
    scripted: Any, shippers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """DEL-04: events rejected inside a 200 are counted, logged once per reason, not resent."""
    caplog.set_level(logging.WARNING, logger="logbeacon.internal.shipper")
    server = scripted(lambda i, events: ok(events, [{"index": 0, "reason": "level_not_allowed"}]))
    shipper = shippers(server.url)
    for _ in range(3):
        emit(shipper, 2)
        assert shipper.flush(10)
    stats = shipper.stats()
    assert 3 == len(server.requests)
    assert {"level_not_allowed": 3} == stats.rejected
    assert 3 == stats.delivered
    assert 1 == shipper_warnings(caplog, "level_not_allowed")


def test_unauthorized_drops_the_batch_logs_once(
    scripted: Any, shippers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 drops that batch (counted `unauthorized`), says so once, and keeps going."""
    caplog.set_level(logging.WARNING, logger="logbeacon.internal.shipper")
    server = scripted(lambda i, events: (401, {}, {"error": "missing_credentials"}))
    shipper = shippers(server.url, ingest_key="wrong-key")
    for _ in range(2):
        emit(shipper, 4)
        assert shipper.flush(10)
    assert {"unauthorized": 8} == shipper.stats().dropped
    assert 2 == len(server.requests)
    assert "Bearer wrong-key" == server.requests[0].headers["authorization"]
    assert 1 == shipper_warnings(caplog, "401")


# --------------------------------------------------------------------------- never block


def test_queue_overflow_drops_oldest_and_reports(scripted: Any, shippers: Any) -> None:
    """DEL-01/DEL-08: a full queue drops its oldest events, counts them and ships the count."""
    server = scripted(lambda i, events: ok(events))
    server.gate.clear()  # the server holds the first request: the shipper has one in flight
    shipper = shippers(server.url, queue_size=100)
    first = emit(shipper, 1)
    deadline = time.monotonic() + 10
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    later = emit(shipper, 150)
    assert {"queue_overflow": 50} == shipper.stats().dropped
    server.gate.set()
    assert shipper.flush(10)
    reports = [e for r in server.requests for e in r.events if e["event"] == "events_dropped"]
    assert first + later[50:] == [i for i in server.ids() if i in set(first) | set(later)]
    assert [(50, "queue_overflow")] == [(e["count"], e["reason"]) for e in reports]


def test_emit_never_blocks_on_a_stalled_or_dead_server(stalled_url: str, shippers: Any) -> None:
    """DEL-08: with the server stalled or refusing, 1 000 emits take < 50 ms in total."""
    refused = f"http://127.0.0.1:{unused_port()}"
    for url in (stalled_url, refused):
        shipper = shippers(url, queue_size=500, timeout=5.0)
        emit(shipper, 10)
        time.sleep(0.2)  # the worker is now inside a request or a backoff
        event = {"event": "hot_path", "level": "error", "event_id": new_event_id()}
        line = encode(event)
        best = float("inf")
        for _ in range(3):  # best of three: a scheduler hiccup is not the shipper blocking
            started = time.perf_counter()
            for _ in range(1000):
                shipper.emit(event, line)
            best = min(best, time.perf_counter() - started)
        assert best < 0.05, f"{url}: 1000 emits took {best * 1000:.1f} ms"
        assert shipper.stats().dropped["queue_overflow"] > 0


def test_flush_and_close_return_within_their_timeout(stalled_url: str, shippers: Any) -> None:
    """DEL-06: with the server stalled mid-request or down, flush/close keep their timeout."""
    refused = f"http://127.0.0.1:{unused_port()}"
    for url in (stalled_url, refused):
        shipper = shippers(url, timeout=5.0)
        emit(shipper, 20)
        started = time.monotonic()
        assert not shipper.flush(0.3)
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        shipper.close(0.3)
        assert time.monotonic() - started < 1.0
        stats = shipper.stats()
        assert 20 == stats.dropped.get("shutdown", 0) + stats.delivered


def test_own_logging_is_not_captured_back(shippers: Any) -> None:
    """DEL-16: records logged while shipping (its own warnings) never re-enter the shipper."""
    shipper = shippers(f"http://127.0.0.1:{unused_port()}")

    class Bridge(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            event = {"event": "log", "message": record.getMessage(), "event_id": new_event_id()}
            shipper.emit(event, encode(event))

    root = logging.getLogger()
    bridge = Bridge(level=logging.DEBUG)
    old_level = root.level
    root.addHandler(bridge)
    root.setLevel(logging.DEBUG)
    try:
        emit(shipper, 5)
        assert not shipper.flush(0.5)  # server down: the worker fails and warns
    finally:
        root.removeHandler(bridge)
        root.setLevel(old_level)
    assert 5 == shipper.stats().emitted


# --------------------------------------------------------------------------- spool


def test_spool_survives_a_restart(scripted: Any, shippers: Any, tmp_path: Path) -> None:
    """Events undeliverable before close are spooled and sent once by the next shipper."""
    spool_dir = tmp_path / "spool"
    down = shippers(f"http://127.0.0.1:{unused_port()}", spool_dir=spool_dir)
    ids = emit(down, 30)
    assert down.flush(5)  # written to the spool counts as safe
    down.close(1.0)
    assert 30 == down.stats().spooled
    assert list(spool_dir.glob("*.seg"))
    server = scripted(lambda i, events: ok(events))
    shippers(server.url, spool_dir=spool_dir)
    deadline = time.monotonic() + 10
    while len(server.ids()) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    while list(spool_dir.glob("*.seg")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(ids) == sorted(server.ids())
    assert [] == list(spool_dir.glob("*.seg"))


def test_spool_detects_torn_and_corrupt_segments(tmp_path: Path) -> None:
    """DEL-11: a torn tail, a flipped bit and a zeroed header are skipped and counted."""
    spool = Spool(tmp_path)
    for n in range(4):
        assert (True, 0) == spool.write([f'{{"n":{n},"i":{i}}}'.encode() for i in range(5)])
    paths = sorted(tmp_path.glob("*.seg"))
    paths[0].write_bytes(paths[0].read_bytes()[:-7])  # torn tail
    data = bytearray(paths[1].read_bytes())
    data[-3] ^= 0x01  # one flipped bit in the payload
    paths[1].write_bytes(bytes(data))
    paths[2].write_bytes(b"\x00" * len(paths[2].read_bytes()))  # zeroed header
    segment, lines, corrupt = spool.claim_oldest()
    assert segment is not None
    assert [f'{{"n":3,"i":{i}}}'.encode() for i in range(5)] == lines
    assert 11 == corrupt  # 5 + 5 counted from intact headers, 1 for the unreadable one
    spool.release(segment, delete=True)
    assert (None, [], 0) == spool.claim_oldest()


def test_spool_is_bounded_and_disables_itself_on_errors(tmp_path: Path) -> None:
    """DEL-12: past max_bytes the oldest segments go (counted); a write error turns it off."""
    spool = Spool(tmp_path / "s", max_bytes=1000)
    lines = [b'{"event":"%s"}' % secrets.token_hex(100).encode() for _ in range(3)]
    evicted = [spool.write(lines)[1] for _ in range(6)]
    assert [0, 0] == evicted[:2]
    assert sum(evicted) > 0
    assert all(n % 3 == 0 for n in evicted)  # whole segments go, never part of one
    assert sum(len(p.read_bytes()) for p in (tmp_path / "s").glob("*.seg")) <= 1000
    assert 3 * 6 - sum(evicted) == spool.pending_events()
    for path in (tmp_path / "s").iterdir():
        path.unlink()
    (tmp_path / "s").rmdir()
    (tmp_path / "s").write_text("not a directory")
    assert (False, 0) == spool.write(lines)
    assert not spool.enabled
    assert spool.error is not None


def test_a_claimed_segment_is_not_sent_twice(tmp_path: Path) -> None:
    """Two spools on one directory (two processes) never claim the same segment."""
    first, second = Spool(tmp_path), Spool(tmp_path)
    first.write([b'{"a":1}'])
    claimed, _, _ = first.claim_oldest()
    assert claimed is not None
    assert (None, [], 0) == second.claim_oldest()
    first.release(claimed, delete=False)
    again, _, _ = second.claim_oldest()
    assert again is not None
    second.release(again, delete=True)


# --------------------------------------------------------------------------- FUZ-11 model


class FakeServer:
    """A transport that behaves like the real server (dedup by id) under scripted faults."""

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.stored: set[str] = set()
        self.acked: list[str] = []
        self.committed_unacked: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, body: bytes, headers: Any) -> Response:
        events = json.loads(gzip.decompress(body))["events"]
        ids = [e["event_id"] for e in events]
        with self.lock:
            outcome = self.outcomes.pop(0) if self.outcomes else "ok"
            if outcome == "429":
                return Response(429, {"retry-after": "0"}, b"")
            if outcome == "503":
                return Response(503, {}, b"")
            if outcome == "413":
                return Response(413, {}, b"")
            if outcome == "timeout":
                raise TimeoutError("no answer")
            new = [i for i in ids if i not in self.stored]
            self.stored.update(ids)
            if outcome == "timeout_after_commit":
                self.committed_unacked.update(ids)
                raise TimeoutError("committed, answer lost")
            rejected = []
            if outcome == "reject_first":
                rejected = [{"index": 0, "reason": "invalid_level"}]
                self.stored.discard(ids[0])
                new = [i for i in new if i != ids[0]]
            acked = [i for n, i in enumerate(ids) if not (rejected and n == 0)]
            self.acked.extend(acked)
            duplicates = len(acked) - len([i for i in new if i in acked])
            body_out = {
                "accepted": len(acked) - duplicates,
                "duplicates": duplicates,
                "rejected": rejected,
            }
            return Response(200, {}, json.dumps(body_out).encode())


@settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    outcomes=st.lists(
        st.sampled_from(
            ["ok", "429", "503", "413", "timeout", "timeout_after_commit", "reject_first"]
        ),
        max_size=25,
    ),
    count=st.integers(min_value=1, max_value=60),
    batch_size=st.integers(min_value=1, max_value=16),
)
def test_transport_model(outcomes: list[str], count: int, batch_size: int) -> None:
    """FUZ-11: under any fault sequence, every event is delivered, rejected or dropped-and-
    counted exactly once, and the server holds one copy of each acknowledged event."""
    fake = FakeServer(list(outcomes))
    shipper = Shipper(
        "http://model.invalid",
        transport=fake,
        batch_size=batch_size,
        flush_interval=0.01,
        backoff_base=0.001,
        backoff_cap=0.004,
        report_interval=0.01,
    )
    try:
        emitted = emit(shipper, count)
        assert shipper.flush(20)
        assert shipper.flush(20)  # and the drop reports queued by it
    finally:
        shipper.close(2.0)
    stats = shipper.stats()
    accounted = stats.delivered + sum(stats.rejected.values()) + sum(stats.dropped.values())
    assert stats.emitted + stats.reports == accounted
    assert count == stats.emitted
    assert len(fake.acked) == len(set(fake.acked)) == stats.delivered
    assert set(fake.acked) <= fake.stored
    assert fake.stored - set(fake.acked) <= fake.committed_unacked
    assert set(emitted) - set(fake.acked) <= set(emitted) - fake.stored | fake.committed_unacked
