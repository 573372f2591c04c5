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
    "RUN_KINDS",
    "RUN_STATUSES",
    "STEP_STATUSES",
    "AnalysisWindow",
    "AppendResult",
    "ErrorGroup",
    "ErrorGroupQuery",
    "Page",
    "Query",
    "Run",
    "RunQuery",
    "RunStep",
    "RunSummary",
    "ServiceCount",
    "StepStat",
    "StepStats",
    "Store",
    "StoreStats",
    "TimeBucket",
    "WindowCounts",
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


# --------------------------------------------------------------------------- derived views
#
# Runs, error groups and window analysis are *derived* from events. A store keeps them
# consistent with the events it acknowledged (SQLite maintains them in the same transaction);
# `docs/server.md` ("Runs, error groups and analysis") states the derivation rules.

RUN_KINDS: tuple[str, ...] = ("graph", "pipeline")
RUN_STATUSES: tuple[str, ...] = ("running", "success", "partial", "error")
STEP_STATUSES: tuple[str, ...] = ("running", "success", "error", "skipped")


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters of `GET /v1/runs`; `since`/`until` (epoch seconds) apply to the run's start."""

    since: float | None = None
    until: float | None = None
    status: str | None = None
    service: str | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One LangGraph invocation or pipeline job; times are RFC 3339 text like events'."""

    run_id: str
    kind: str
    status: str
    service: str | None
    name: str | None
    started_at: str
    ended_at: str | None
    duration_ms: float | None
    step_count: int
    error_count: int
    environment: str | None = None


@dataclass(frozen=True, slots=True)
class RunStep:
    """One node execution or pipeline layer; `error` is `{type, message, category,
    fingerprint}` of a failed step. A step whose start event never arrived has its start
    estimated from its end and duration."""

    name: str
    kind: str
    index: int | None
    status: str
    started_at: str
    duration_ms: float | None
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Run(RunSummary):
    """A run with its steps in start order."""

    steps: list[RunStep] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ErrorGroupQuery:
    """Filters of `GET /v1/errors`: `since` keeps groups last seen at or after it; `service`
    and `environment` restrict counts, times, samples and services to those occurrences."""

    since: float | None = None
    service: str | None = None
    environment: str | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Occurrences of one bug (one `error.fingerprint`), the fields of `GET /v1/errors`."""

    fingerprint: str
    type: str | None
    message: str | None
    category: str | None
    suggestions: list[str]
    count: int
    first_seen: str
    last_seen: str
    services: list[str]
    sample_event: dict[str, Any] | None
    sample_trace_ids: list[str]


@dataclass(frozen=True, slots=True)
class AnalysisWindow:
    """A time window (epoch seconds, `until` exclusive) with optional service/level filters;
    `level` is a minimum canonical level, `buckets` the wanted number of timeline buckets."""

    since: float
    until: float
    service: str | None = None
    level: str | None = None
    buckets: int = 30


@dataclass(frozen=True, slots=True)
class TimeBucket:
    """Events and errors (level error or critical) starting at `start` (RFC 3339)."""

    start: str
    events: int
    errors: int


@dataclass(frozen=True, slots=True)
class ServiceCount:
    service: str
    events: int
    errors: int


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Counts of a window. A store may widen the window to its resolution (SQLite: whole
    minutes); `since`/`until` say which window was counted, and the timeline sums to the
    totals exactly."""

    since: str
    until: str
    since_epoch: float
    until_epoch: float
    bucket_seconds: float
    by_level: dict[str, int]
    by_service: list[ServiceCount]
    timeline: list[TimeBucket]


@dataclass(frozen=True, slots=True)
class StepStat:
    """Durations of one node or layer name in a window (nearest-rank percentiles)."""

    kind: str
    name: str
    count: int
    errors: int
    p50_ms: float
    p95_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class StepStats:
    """The slowest steps; `sample_rate` < 1 when only that fraction of the window's step
    durations was read (a window with more of them than a store reads per request)."""

    steps: list[StepStat]
    scanned: int
    sample_rate: float = 1.0


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

    async def runs(self, query: RunQuery) -> list[RunSummary]:
        """Runs matching the filters, newest start first, at most `query.limit`."""

    async def run(self, run_id: str) -> Run | None:
        """One run with its steps, or None."""

    async def error_groups(self, query: ErrorGroupQuery) -> list[ErrorGroup]:
        """Error groups, most recently seen first, at most `query.limit`."""

    async def window_counts(self, window: AnalysisWindow) -> WindowCounts:
        """Events by level, by service and over time in a window (possibly widened)."""

    async def window_errors(self, window: AnalysisWindow, limit: int = 10) -> list[ErrorGroup]:
        """The most frequent error groups of a window; counts, times and services are the
        window's, `sample_event` is None."""

    async def window_steps(self, window: AnalysisWindow, limit: int = 10) -> StepStats:
        """The slowest node and layer names of a window by p95 of their durations."""
