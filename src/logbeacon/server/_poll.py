"""Live tail across ingest nodes: read what *other* nodes committed from the shared store.

A node's `TailHub` sees the events this process committed. When several `logbeacon serve`
nodes share one store (ClickHouse behind a load balancer), a subscriber on node A would not
see live what node B ingested. `StorePoller` closes that gap: every `interval` seconds it
reads the store's newest events (the Store protocol's `query`, paged by cursor) whose
timestamp is at most `lookback` seconds older than the previous read, and publishes into the
hub those the hub has not published yet; the hub remembers recent event ids (bounded), so
an event is published once whether ingest or the poller gets to it first.

Trade-offs (docs/server.md, "Several ingest nodes"):

- Another node's event reaches subscribers up to one `interval` (plus the query's time)
  after it was committed; this node's own events are still delivered at once.
- Selection is by event `timestamp`, the only ordering the Store protocol offers across
  stores. An event stored with a timestamp more than `lookback` seconds in the past (a
  replayed spool, a very late batch) is not seen live on the other nodes; reconnects
  (`Last-Event-ID` replays look back 10 minutes) and queries still return it.
- Cost: one query (a page of up to 1,000 events per round, more when more arrived) per node
  per interval, whether anyone is subscribed or not, so the set of remembered ids stays
  complete; each round reads every event of its window, so the read volume is about
  (interval + lookback) / interval times the ingest rate.
- Positions (`Last-Event-ID`) are `(received_at, event_id)` with each node's clock; a client
  that disconnects within one interval of another node's commit can miss that event on
  reconnect if the nodes' clocks disagree or it had not been polled yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Final

from logbeacon.server._live import TailHub, position_of
from logbeacon.store.base import MAX_LIMIT, Query, Store

__all__ = ["AUTO_POLL_SECONDS", "SEEN_CAPACITY", "StorePoller", "poll_interval"]

log = logging.getLogger("logbeacon.server")

AUTO_POLL_SECONDS: Final = 1.0  # the interval for a shared (clickhouse://) store by default
SEEN_CAPACITY: Final = 200_000  # event ids the hub remembers (~25 MB at most)
SCAN_LIMIT: Final = 50_000  # most events one round reads; more means the window is too busy

Event = dict[str, Any]


def poll_interval(setting: float | None, store: Store) -> float:
    """The poll interval in seconds (0: off): the setting, or automatic for the store."""
    if setting is not None:
        return setting
    # A ClickHouse server is what several nodes share; chdb and SQLite are one process's.
    return AUTO_POLL_SECONDS if getattr(store, "kind", None) == "clickhouse" else 0.0


class StorePoller:
    """Publishes into `hub` the events other nodes stored (see the module docstring)."""

    def __init__(
        self,
        hub: TailHub,
        store_of: Callable[[], Store],
        *,
        interval: float,
        lookback: float,
        clock: Callable[[], float],
    ) -> None:
        self.hub = hub
        self.store_of = store_of  # the app may replace its store when restarted
        self.interval = interval
        self.lookback = lookback
        self.clock = clock
        self.rounds = 0
        self.published = 0
        self.failures = 0
        self.truncated = 0  # rounds that hit SCAN_LIMIT
        self._last_start: float | None = None
        hub.deduplicate(SEEN_CAPACITY)

    async def poll(self, *, publish: bool = True) -> int:
        """One round: read the window, publish what the hub has not seen; return that count.

        `publish=False` only remembers the ids (the first round at start: what is already
        stored is history, not live).
        """
        started = self.clock()
        previous = started if self._last_start is None else min(self._last_start, started)
        query = Query(since=previous - self.lookback, limit=MAX_LIMIT)
        store = self.store_of()
        seen = self.hub.seen
        fresh: list[Event] = []
        examined = 0
        while True:
            page = await store.query(query)
            examined += len(page.events)
            fresh.extend(e for e in page.events if not seen(str(e.get("event_id", ""))))
            if page.next_cursor is None:
                break
            if examined >= SCAN_LIMIT:
                self.truncated += 1
                break
            query = replace(query, cursor=page.next_cursor)
        self._last_start = started
        self.rounds += 1
        fresh.sort(key=position_of)  # arrival order, as the hub would have published them
        if not publish:
            self.hub.remember(fresh)
            return 0
        self.hub.publish(fresh)
        self.published += len(fresh)
        return len(fresh)

    async def run(self) -> None:
        """Poll every `interval` until cancelled; a failed round is logged and retried."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be briefly unavailable; try again
                self.failures += 1
                log.warning("live-tail store poll failed: %s", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Remember what is stored already, then poll in the background while open."""
        try:
            await self.poll(publish=False)
        except Exception as exc:
            self.failures += 1
            log.warning("live-tail store poll failed: %s", type(exc).__name__)
        task = asyncio.create_task(self.run(), name="logbeacon-tail-poll")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
