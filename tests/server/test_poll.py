"""Live tail across ingest nodes: the store poller (`server/_poll.py`) and the hub's dedupe.

Two real uvicorn servers on 127.0.0.1 share one store object in this process. Two
`logbeacon serve` processes cannot share a chdb directory (one process per directory), and
the SQLite store keeps its commit generation in the writer's memory, so a second writer
process on the same file would break its duplicate accounting and cursors: nodes sharing a
store are modelled the way a ClickHouse deployment shares one, through one store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from logbeacon.event import normalize_event
from logbeacon.exceptions import ConfigError
from logbeacon.server import Settings, create_app
from logbeacon.server._live import EventMatcher, TailHub, TailSettings
from logbeacon.server._poll import AUTO_POLL_SECONDS, poll_interval
from logbeacon.store import open_store
from logbeacon.store.base import Query, Store
from tests.helpers.server import free_port

READ_TOKEN = "read-token-FAKE-0123456789abcdef"
INTERVAL = 0.3


def test_hub_publishes_an_event_id_once_when_deduplicating() -> None:
    """With dedupe on, an event published twice (ingest and poller) is delivered once."""
    hub = TailHub()
    hub.deduplicate(3)
    subscription = hub.subscribe(EventMatcher(Query()))
    events = [normalize_event({"event": f"e{i}"}) for i in range(5)]

    hub.publish(events[:2])
    hub.publish(events[:3])  # 0 and 1 again
    hub.publish(events[:1])  # 0 is among the last three ids remembered

    assert [e["event_id"] for e in events[:3]] == [
        item.event_id for item in subscription._items if not isinstance(item, bytes)
    ]
    hub.publish(events[3:5])  # 0 and 1 are forgotten now: capacity 3
    assert (False, True) == (hub.seen(events[0]["event_id"]), hub.seen(events[4]["event_id"]))


def test_poll_settings_come_from_the_environment_and_default_by_store() -> None:
    """`LOGBEACON_TAIL_POLL` sets the interval (0 = off); unset, only clickhouse:// polls."""
    settings = TailSettings.from_env(
        {"LOGBEACON_TAIL_POLL": "0.5", "LOGBEACON_TAIL_POLL_LOOKBACK": "30"}
    )
    assert (0.5, 30.0) == (settings.poll, settings.poll_lookback)
    with pytest.raises(ConfigError, match="LOGBEACON_TAIL_POLL"):
        TailSettings.from_env({"LOGBEACON_TAIL_POLL": "0.001"})

    class Shared:
        kind = "clickhouse"

    class Local:
        kind = "sqlite"

    shared: Any = Shared()
    local: Any = Local()
    assert (AUTO_POLL_SECONDS, 0.0, 0.0, 2.0) == (
        poll_interval(None, shared),
        poll_interval(None, local),
        poll_interval(0.0, shared),
        poll_interval(2.0, local),
    )


# --------------------------------------------------------------------------- two nodes


@contextlib.asynccontextmanager
async def _node(store: Store, data_dir: Path) -> AsyncIterator[str]:
    settings = Settings(data_dir=data_dir, read_tokens=(READ_TOKEN,), rate=1_000_000, burst=100_000)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, store=store),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class Tail:
    """An SSE subscriber: each `event: log` frame's event with the time it arrived."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.open = asyncio.Event()
        self.arrived = asyncio.Event()

    async def read(self, client: httpx.AsyncClient, url: str) -> None:
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}
        async with client.stream("GET", f"{url}/v1/stream", headers=headers) as response:
            assert 200 == response.status_code
            self.open.set()
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    self.received.append((time.monotonic(), orjson.loads(line[6:])))
                    self.arrived.set()

    def arrivals(self, message: str) -> list[float]:
        return [at for at, event in self.received if event.get("message") == message]


async def _wait_for(tail: Tail, message: str, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while not tail.arrivals(message):
                tail.arrived.clear()
                await tail.arrived.wait()


@pytest.mark.parametrize("kind", ["sqlite", "chdb"])
async def test_a_subscriber_on_one_node_sees_another_nodes_events_once(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event ingested on node B reaches a stream on node A within two poll intervals, and
    every event (B's and A's own) is delivered exactly once."""
    if kind == "chdb":
        pytest.importorskip("chdb")
    monkeypatch.setenv("LOGBEACON_TAIL_POLL", str(INTERVAL))
    url = "sqlite:" if kind == "sqlite" else "chdb://ch"
    store = open_store(url, data_dir=tmp_path, durability="normal", retention_days=None)
    tag = uuid.uuid4().hex[:8]
    async with (
        _node(store, tmp_path / "a") as node_a,
        _node(store, tmp_path / "b") as node_b,
        httpx.AsyncClient(timeout=10) as client,
    ):
        tail = Tail()
        reader = asyncio.create_task(tail.read(client, node_a))
        try:
            await asyncio.wait_for(tail.open.wait(), 5)
            await asyncio.sleep(INTERVAL)  # the poller's window now starts after the stream
            latencies = []
            for i in range(3):
                message = f"from-b-{tag}-{i}"
                response = await client.post(
                    f"{node_b}/v1/logs", json={"event": "x", "message": message}
                )
                acknowledged = time.monotonic()
                assert 200 == response.status_code
                await _wait_for(tail, message, 5 * INTERVAL)
                (arrived,) = tail.arrivals(message)[:1] or [float("inf")]
                latencies.append(arrived - acknowledged)
            local = f"from-a-{tag}"
            response = await client.post(f"{node_a}/v1/logs", json={"event": "x", "message": local})
            assert 200 == response.status_code
            await asyncio.sleep(3 * INTERVAL)  # several polls see every event again
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    messages = [event["message"] for _, event in tail.received]
    expected = [f"from-b-{tag}-{i}" for i in range(3)] + [f"from-a-{tag}"]
    assert expected == messages
    assert all(latency <= 2 * INTERVAL for latency in latencies), latencies
