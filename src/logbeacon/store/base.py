"""The Store protocol: what the server needs from wherever events live.

SQLite (`store/sqlite.py`) is the embedded default; ClickHouse implements the same protocol
for deployments that outgrow one machine. The server only ever talks to this protocol, so a
behaviour test written against it runs against every store.

Contract every implementation keeps:

- `append` returns only after the events are durably committed ("accepted means durable");
  when it cannot commit it raises `StoreUnavailable` and stores none of the batch.
- An `event_id` is stored at most once; re-sent events are counted as duplicates.
- Events given to `append` are already normalised (`logbeacon.event.normalize_event`) and
  redacted; stores return them as given (plus nothing else than `received_at` if the server
  set it).
- Query results are newest first by (`timestamp`, `event_id`); `trace` is oldest first.
- Cursors are opaque strings; paging with them never skips or repeats an event that existed
  when the first page was read, even while new events are being appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "MAX_LIMIT",
    "AppendResult",
    "Page",
    "Query",
    "Store",
    "StoreStats",
]

MAX_LIMIT = 1000

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Query:
    """Filters of `GET /v1/logs` (DESIGN.md §4), already parsed and validated.

    `since`/`until` are epoch seconds applied to the event's `timestamp` (inclusive since,
    exclusive until); `level` is a minimum canonical level; the id and name filters are exact
    matches; `q` is full text over event name, message and error type/message.
    """

    since: float | None = None
    until: float | None = None
    level: str | None = None
    service: str | None = None
    environment: str | None = None
    event: str | None = None
    trace_id: str | None = None
    request_id: str | None = None
    session_id: str | None = None
    run_id: str | None = None
    job_id: str | None = None
    correlation_id: str | None = None
    node: str | None = None
    q: str | None = None
    limit: int = 100
    cursor: str | None = None


# Names of Query's exact-match filters; the server and CLI build their parameters from it.
EXACT_FILTERS: tuple[str, ...] = (
    "service",
    "environment",
    "event",
    "trace_id",
    "request_id",
    "session_id",
    "run_id",
    "job_id",
    "correlation_id",
    "node",
)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of results; `next_cursor` is None on the last page."""

    events: list[Event]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What `append` did with a batch, in input order.

    `stored[i]` is True when event i was new and False when its `event_id` was already
    stored (a duplicate: not an error, the earlier copy stands).
    """

    stored: list[bool] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(self.stored)

    @property
    def duplicates(self) -> int:
        return len(self.stored) - self.accepted


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Numbers for `/v1/logs/health`, `/metrics` and benchmarks; reveals no event data."""

    kind: str
    events: int
    bytes_on_disk: int
    oldest: str | None
    newest: str | None
    schema_version: int
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    """Durable event storage; every method is safe to call concurrently from the event loop."""

    async def open(self) -> None:
        """Create or migrate the schema and start background work (writer, retention)."""

    async def close(self) -> None:
        """Flush, stop background work and release files; idempotent."""

    async def append(self, events: Sequence[Event]) -> AppendResult:
        """Store a batch durably and atomically; raise `StoreUnavailable` if it cannot."""

    async def query(self, query: Query) -> Page:
        """Events matching every filter, newest first, at most `query.limit`."""

    async def trace(self, trace_id: str, limit: int = 10_000) -> list[Event]:
        """Every event of one trace, oldest first."""

    async def get(self, event_id: str) -> Event | None:
        """One event by id, or None."""

    async def purge(self, before: float) -> int:
        """Delete events whose timestamp is older than `before` (epoch seconds); return count."""

    async def stats(self) -> StoreStats:
        """Counts and sizes; cheap enough for a health check."""
