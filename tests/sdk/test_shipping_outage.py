"""An application logging through the SDK while its server is down (RELIABILITY.md DEL-01):
every event stored once and in order when the queue holds the outage, and, when it cannot,
a loss equal to the `events_dropped` count the SDK reports."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logbeacon
from logbeacon.sdk.shipper import Shipper
from logbeacon.sdk.sinks import attach
from tests.helpers.server import RunningServer, running_server, start_server
from tests.sdk.test_shipper import Relay, fetch

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAST = ["--rate", "1000000", "--burst", "1000"]
# DEL-01 asks for a 20 s outage; the PR suite uses 8 s so the test stays near 30 s on the
# shared 2-core runner. What is being proven does not depend on the length: the queue (sized
# in events, not seconds) holds every event logged while the server is away, and the same
# 20,000 events are logged during the outage either way, only faster. Run the full length with
# LOGBEACON_TEST_OUTAGE_S=20 (read at import: the SDK fixtures clear LOGBEACON_* variables).
OUTAGE_S = float(os.environ.get("LOGBEACON_TEST_OUTAGE_S", "8"))
PRODUCERS = 2
PER_PRODUCER = 10_000


@pytest.fixture
def relay() -> Iterator[Relay]:
    made = Relay()
    yield made
    made.close()


@contextlib.contextmanager
def shipping_app(url: str, service: str, **shipper_args: Any) -> Iterator[Shipper]:
    """The SDK configured as an app would be, with a shipper to `url` attached.

    The shipper is attached rather than made by `configure(ship_to=...)` only to lower its
    backoff cap from 60 s to 1 s, so recovery is noticed within a second of the server's
    return instead of up to a minute later.
    """
    logbeacon.configure(service=service, format="json", stream=io.StringIO(), level="info")
    shipper = Shipper(
        url,
        flush_interval=0.1,
        backoff_base=0.1,
        backoff_cap=1.0,
        base_fields={"service": service},
        **shipper_args,
    )
    detach = attach(shipper)
    try:
        yield shipper
    finally:
        detach()
        shipper.close(1.0)


def produce(producer: int, count: int, seconds: float) -> None:
    """Log `count` events spread evenly over `seconds`, each carrying its sequence number."""
    log = logbeacon.get_logger(f"producer{producer}")
    started = time.monotonic()
    for seq in range(count):
        log.info("outage_event", producer=producer, seq=seq)
        if seq % 100 == 99:
            ahead = started + seconds * (seq + 1) / count - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def test_outage_with_a_queue_sized_for_it_stores_every_event_once_in_order(
    tmp_path: Path, relay: Relay
) -> None:
    """20,000 events logged by two threads while the server is SIGKILLed, down for the outage
    and restarted on its data dir are all stored exactly once, each producer's in order."""
    service = f"outage-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    with contextlib.ExitStack() as cleanup:
        first = start_server(tmp_path, args=FAST, data_dir=data)
        cleanup.callback(first.stop)
        relay.listen(first.port)
        shipper = cleanup.enter_context(
            shipping_app(relay.url, service, queue_size=PRODUCERS * PER_PRODUCER)
        )
        # 1 s up, the outage, 1 s up again: most events are logged while the server is down.
        threads = [
            threading.Thread(target=produce, args=(p, PER_PRODUCER, OUTAGE_S + 2))
            for p in range(PRODUCERS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        first.kill()
        down_at = time.monotonic()
        queued_at_kill = shipper.stats().queued
        time.sleep(max(OUTAGE_S - (time.monotonic() - down_at), 0))
        queued_before_restart = shipper.stats().queued
        second = start_server(tmp_path, args=FAST, data_dir=data, name="restarted")
        cleanup.callback(second.stop)
        relay.retarget(second.port)
        for thread in threads:
            thread.join(60)
        assert shipper.flush(60)
        stats = shipper.stats()
        stored = fetch(second, service)
    assert queued_before_restart > queued_at_kill + 10_000  # the queue really held the outage
    assert ({}, {}, PRODUCERS * PER_PRODUCER) == (stats.dropped, stats.rejected, stats.emitted)
    ids = [e["event_id"] for e in stored]
    assert (PRODUCERS * PER_PRODUCER, len(ids)) == (len(ids), len(set(ids)))
    by_producer: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in stored:
        by_producer[event["producer"]].append(event)
    for producer in range(PRODUCERS):
        events = sorted(by_producer[producer], key=lambda e: e["seq"])
        assert list(range(PER_PRODUCER)) == [e["seq"] for e in events]
        arrival = [e["received_at"] for e in events]
        assert sorted(arrival) == arrival  # shipped in the order they were logged


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("outage-small"), args=FAST) as running:
        yield running


def test_outage_with_a_small_queue_loses_exactly_the_reported_count(
    server: RunningServer, relay: Relay
) -> None:
    """With a 1,000-event queue and 6,000 events logged while the server is unreachable, the
    events stored plus the `events_dropped` counts stored with them make exactly 6,000."""
    service = f"overflow-{uuid.uuid4().hex[:8]}"
    emitted = 6_000
    with shipping_app(relay.url, service, queue_size=1_000) as shipper:
        produce(0, emitted, 1.0)
        assert not shipper.flush(0.2)  # nothing listens behind the relay yet
        relay.listen(server.port)
        assert shipper.flush(30)
        stats = shipper.stats()
    stored = fetch(server, service)
    kept = [e for e in stored if e["event"] == "outage_event"]
    reports = [e for e in stored if e["event"] == "events_dropped"]
    reported = sum(e["count"] for e in reports)
    assert {"queue_overflow"} == {e["reason"] for e in reports}
    assert (stats.dropped["queue_overflow"], emitted) == (reported, len(kept) + reported)
    assert len(kept) == len({e["event_id"] for e in kept})
    # The oldest were dropped: what is kept is the newest run, after the batch in flight.
    seqs = sorted(e["seq"] for e in kept)
    assert list(range(emitted - 1_000, emitted)) == seqs[-1_000:]
