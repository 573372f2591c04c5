"""The ClickHouse event store: the same `Store` protocol as SQLite, for more than one machine.

`ClickHouseStore` talks to ClickHouse through an `Executor` (`_clickhouse_exec`): a server
or cluster via clickhouse-connect (`clickhouse://user:pass@host:8123/db`, `clickhouses://`
for TLS), or the engine in-process via chdb (`chdb:///path`), which is how the tests run
real ClickHouse. Every call is blocking and runs in a worker thread (chdb: one dedicated
thread, its connection is not thread-safe), so the server's event loop never waits on it.

Writes are *group-committed*: concurrent `append` calls are merged into one commit group,
which is checked for duplicates and inserted as one block per table (ClickHouse wants few
large inserts, not many small ones). Duplicates: an `event_id` is looked up (bloom-filter
index) before it is inserted, under this node's commit order, so re-sent events are
reported exactly like SQLite reports them; `ReplacingMergeTree` on the unique sort key
collapses the one case the check cannot see — two ingest nodes storing the same event at the
same moment. Reads never need `FINAL`. docs/scale-out.md explains the schema, topology and
the differences from SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import orjson

from logbeacon.event import LEVEL_NUMBERS, LEVELS
from logbeacon.exceptions import ConfigError, StoreError, StoreUnavailable
from logbeacon.store import _clickhouse_derived as derived
from logbeacon.store._clickhouse_exec import (
    ChdbExecutor,
    ClickHouseTarget,
    Executor,
    HttpExecutor,
)
from logbeacon.store._clickhouse_rows import (
    MAX_MICROS,
    CursorCodec,
    Encoded,
    GroupRows,
    Position,
    block,
    clamp_micros,
    encode_event,
    search_terms,
)
from logbeacon.store._clickhouse_schema import SCHEMA_VERSION, TABLES, statements
from logbeacon.store._sqlite_codec import format_micros
from logbeacon.store.base import (
    MAX_LIMIT,
    AnalysisWindow,
    AppendResult,
    ErrorGroup,
    ErrorGroupQuery,
    Page,
    Query,
    Run,
    RunQuery,
    RunSummary,
    StepStats,
    StoreStats,
    WindowCounts,
)

__all__ = ["ClickHouseStore"]

log = logging.getLogger("logbeacon.store")

Event = dict[str, Any]
T = TypeVar("T")

_DAY: Final = 86_400.0
_ID_FILTERS: Final = ("trace_id", "request_id", "session_id", "run_id", "job_id", "correlation_id")
_NAME_FILTERS: Final = ("service", "environment", "event", "node")
_DEDUP_CHUNK: Final = 5000


@dataclass(slots=True)
class _Call:
    events: list[Event]
    future: asyncio.Future[AppendResult]
    encoded: list[Encoded] = field(default_factory=list)


class ClickHouseStore:
    """Durable, indexed, searchable event storage in ClickHouse (server or chdb).

    `executor_factory` builds the engine connection (tests pass a fake clickhouse-connect
    client through it). `durability="full"` adds `fsync_after_insert` to the tables.
    `retention_days` becomes the tables' `TTL` and a background purge of derived runs.
    """

    def __init__(
        self,
        target: ClickHouseTarget,
        *,
        durability: Literal["normal", "full"] = "normal",
        retention_days: float | None = 14,
        retention_interval: float = 300.0,
        executor_factory: Callable[[], Executor] | None = None,
        max_group_events: int = 50_000,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ConfigError(f"durability must be 'normal' or 'full', not {durability!r}")
        if retention_days is not None and retention_days <= 0:
            raise ConfigError("retention_days must be a positive number of days (or None)")
        self.target = target
        self.kind = "chdb" if target.scheme == "chdb" else "clickhouse"
        self.db = target.database
        self.durability = durability
        self.retention_days = retention_days
        self.retention_interval = retention_interval
        self._factory = executor_factory or self._default_executor
        self._max_group = max_group_events
        self._ex: Executor | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._cursors: CursorCodec | None = None
        self._pending: list[_Call] = []
        self._committer: asyncio.Task[None] | None = None
        self._inflight: int | None = None  # stamp of the group being committed
        self._last_stamp = 0
        self._retention: asyncio.Task[None] | None = None
        self._closed = False
        self.counters = {"groups": 0, "events_stored": 0, "duplicates": 0, "purged": 0}

    def _default_executor(self) -> Executor:
        if self.target.scheme == "chdb":
            assert self.target.path is not None
            os.makedirs(self.target.path, exist_ok=True)
            return ChdbExecutor(self.target.path)
        return HttpExecutor(self.target)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect, create the database and tables if missing, load the cursor secret."""
        if self._ex is not None:
            return
        if self._closed:
            raise StoreError("this ClickHouseStore was closed; create a new one to reopen it")
        # chdb's connection must stay on one thread; a server client takes a few in parallel.
        workers = 1 if self.target.scheme == "chdb" else 4
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="logbeacon-clickhouse")
        loop = asyncio.get_running_loop()
        try:
            ex = await loop.run_in_executor(pool, self._factory)
            secret = await loop.run_in_executor(pool, self._create, ex)
        except ConfigError:
            pool.shutdown(wait=False)
            raise
        except Exception as exc:
            pool.shutdown(wait=False)
            raise StoreError(
                f"cannot open the ClickHouse store {self.target.describe()}: {exc}"
            ) from exc
        self._ex, self._pool = ex, pool
        self._cursors = CursorCodec(secret)
        if self.retention_days is not None:
            self._retention = asyncio.create_task(
                self._retention_loop(), name="logbeacon-clickhouse-retention"
            )

    def _create(self, ex: Executor) -> bytes:
        for statement in statements(
            self.db, retention_days=self.retention_days, durability=self.durability
        ):
            ex.command(statement)
        rows = ex.query(f"SELECT min(value) FROM {self.db}.meta WHERE key = 'secret'")  # noqa: S608
        if not rows or not rows[0][0]:
            ex.insert(
                f"{self.db}.meta",
                orjson.dumps({"key": "secret", "value": os.urandom(16).hex()}) + b"\n",
            )
            rows = ex.query(f"SELECT min(value) FROM {self.db}.meta WHERE key = 'secret'")  # noqa: S608
        return bytes.fromhex(str(rows[0][0]))

    async def close(self) -> None:
        """Finish pending appends, stop background work, release the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await self._committer
        ex, pool = self._ex, self._pool
        self._ex = self._pool = None
        if pool is not None:
            if ex is not None:
                await asyncio.get_running_loop().run_in_executor(pool, ex.close)
            await asyncio.to_thread(pool.shutdown, wait=True)

    async def __aenter__(self) -> ClickHouseStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, fn: Callable[[Executor], T]) -> T:
        ex, pool = self._ex, self._pool
        if ex is None or pool is None:
            raise StoreUnavailable("event store is not open; call open() first (or it was closed)")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, lambda: fn(ex))
        except (ValueError, StoreError):
            raise
        except Exception as exc:
            raise StoreUnavailable(
                f"ClickHouse did not answer ({type(exc).__name__}: {exc})"
            ) from exc

    # ------------------------------------------------------------------ writes

    async def append(self, events: Sequence[Event]) -> AppendResult:
        """Store a batch; return after ClickHouse acknowledged the insert of its group."""
        if not events:
            return AppendResult(stored=[])
        if self._ex is None:
            raise StoreUnavailable("event store is not open; call open() first (or it was closed)")
        call = _Call(list(events), asyncio.get_running_loop().create_future())
        call.encoded = [encode_event(event) for event in call.events]  # EventError: whole call
        self._pending.append(call)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop())
        return await call.future

    async def _commit_loop(self) -> None:
        while self._pending:
            calls: list[_Call] = []
            size = 0
            while self._pending and (
                not calls or size + len(self._pending[0].events) <= self._max_group
            ):
                call = self._pending.pop(0)
                calls.append(call)
                size += len(call.events)
            stamp = max(time.time_ns() // 1000, self._last_stamp + 1)
            self._last_stamp = stamp
            self._inflight = stamp
            try:
                results = await self._run(functools.partial(self._commit, calls=calls, stamp=stamp))
            except BaseException as exc:
                for call in calls:
                    if not call.future.done():
                        call.future.set_exception(
                            exc if isinstance(exc, StoreError) else StoreUnavailable(str(exc))
                        )
                if not isinstance(exc, Exception):
                    raise
            else:
                for call, result in zip(calls, results, strict=True):
                    if not call.future.done():
                        call.future.set_result(result)
            finally:
                self._inflight = None

    def _commit(self, ex: Executor, calls: list[_Call], stamp: int) -> list[AppendResult]:
        """One commit group: duplicate check, one insert per table, then run derivation.

        `run_events` go in before `events`: if a later step fails the client retries, its
        events are then duplicates, and the run derivation below (which also covers
        duplicates) heals the run from whatever is stored.
        """
        db = self.db
        ids = list({item.event_id for call in calls for item in call.encoded})
        existing: set[str] = set()
        for start in range(0, len(ids), _DEDUP_CHUNK):
            chunk = ids[start : start + _DEDUP_CHUNK]
            existing.update(
                str(row[0])
                for row in ex.query(
                    f"SELECT DISTINCT event_id FROM {db}.events"  # noqa: S608 - checked identifier
                    " WHERE event_id IN {ids:Array(String)}",
                    {"ids": chunk},
                )
            )
        rows = GroupRows()
        touched: set[str] = set()
        results: list[AppendResult] = []
        pos = 0
        for call in calls:
            stored: list[bool] = []
            for item in call.encoded:
                new = item.event_id not in existing
                stored.append(new)
                if item.run_key is not None:
                    touched.add(item.run_key)
                if new:
                    existing.add(item.event_id)
                    rows.add(item, batch=stamp, pos=pos)
                pos += 1
            results.append(AppendResult(stored=stored))
        for table, lines in (
            ("run_events", rows.run_events),
            ("events", rows.events),
            ("errors", rows.errors),
            ("steps", rows.steps),
        ):
            if lines:
                ex.insert(f"{db}.{table}", block(lines))
        if touched:
            derived.derive_runs(ex, db, sorted(touched))
        accepted = sum(result.accepted for result in results)
        self.counters["groups"] += 1
        self.counters["events_stored"] += accepted
        self.counters["duplicates"] += pos - accepted
        return results

    async def purge(self, before: float) -> int:
        """Delete events older than `before` with their error/step rows and expired runs."""
        micros = clamp_micros(round(before * 1_000_000))
        count = await self._run(lambda ex: self._purge(ex, micros))
        self.counters["purged"] += count
        return count

    def _purge(self, ex: Executor, micros: int) -> int:
        db = self.db
        params = {"before": micros}
        older = "ts < fromUnixTimestamp64Micro({before:Int64})"
        rows = ex.query(f"SELECT count() FROM {db}.events WHERE {older}", params)  # noqa: S608
        count = int(rows[0][0]) if rows else 0
        for table in ("events", "errors", "steps"):
            ex.command(f"DELETE FROM {db}.{table} WHERE {older}", params)  # noqa: S608
        expired = derived.expired_runs(ex, db, micros)
        for start in range(0, len(expired), 1000):
            chunk = {"ids": expired[start : start + 1000]}
            ex.command(f"DELETE FROM {db}.run_events WHERE run_key IN {{ids:Array(String)}}", chunk)  # noqa: S608
            ex.command(f"DELETE FROM {db}.runs WHERE run_id IN {{ids:Array(String)}}", chunk)  # noqa: S608
        return count

    async def _retention_loop(self) -> None:
        assert self.retention_days is not None
        while True:
            try:
                await self.purge(time.time() - self.retention_days * _DAY)
            except StoreUnavailable as exc:
                log.warning("retention purge failed, next round retries: %s", exc)
            await asyncio.sleep(self.retention_interval)

    # ------------------------------------------------------------------ reads

    def _snapshot(self) -> int:
        """Stamp of the newest commit group a first page may see (later ones are hidden)."""
        if self._inflight is not None:
            return self._inflight - 1
        now = max(time.time_ns() // 1000, self._last_stamp)
        self._last_stamp = now
        return now

    async def query(self, query: Query) -> Page:
        """Events matching every filter, newest first; raises ValueError for a bad cursor."""
        if query.limit < 1:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        limit = min(query.limit, MAX_LIMIT)
        if query.level is not None and query.level not in LEVEL_NUMBERS:
            raise ValueError(f"unknown level {query.level!r}; use one of {list(LEVEL_NUMBERS)}")
        assert self._cursors is not None or self._ex is None
        position = None
        if query.cursor:
            if self._cursors is None:
                raise StoreUnavailable("event store is not open; call open() first")
            position = self._cursors.decode(query.cursor)
        snapshot = position.snapshot if position is not None else self._snapshot()
        plan = self._plan(query, position, snapshot, limit + 1)
        if plan is None:
            return Page(events=[])
        sql, params = plan
        rows = await self._run(lambda ex: ex.query(sql, params))
        events = [orjson.loads(row[3]) for row in rows[:limit]]
        if len(rows) <= limit:
            return Page(events=events)
        last = rows[limit - 1]
        assert self._cursors is not None
        cursor = self._cursors.encode(Position(int(last[0]), int(last[1]), str(last[2]), snapshot))
        return Page(events=events, next_cursor=cursor)

    def _plan(
        self, query: Query, position: Position | None, snapshot: int, fetch: int
    ) -> tuple[str, dict[str, Any]] | None:
        where = ["ingest <= {snapshot:UInt64}"]
        params: dict[str, Any] = {"snapshot": snapshot, "fetch": fetch}
        if position is not None:
            where.append("ts <= fromUnixTimestamp64Micro({p_ts:Int64})")
            where.append("(ts, tie, event_id) < (fromUnixTimestamp64Micro({p_ts:Int64}),"
                         " {p_tie:UInt16}, {p_id:String})")  # fmt: skip
            params.update(p_ts=position.micros, p_tie=position.tie, p_id=position.event_id)
        if query.since is not None:
            since = round(query.since * 1_000_000)
            if since > MAX_MICROS:
                return None
            where.append("ts >= fromUnixTimestamp64Micro({since:Int64})")
            params["since"] = max(0, since)
        if query.until is not None:
            until = round(query.until * 1_000_000)
            if until <= 0:
                return None
            where.append("ts < fromUnixTimestamp64Micro({until:Int64})")
            params["until"] = clamp_micros(until)
        if query.level is not None:
            where.append("level IN {levels:Array(String)}")
            params["levels"] = [n for n in LEVELS if LEVEL_NUMBERS[n] >= LEVEL_NUMBERS[query.level]]
        for name in _NAME_FILTERS:
            value = getattr(query, name)
            if value is None:
                continue
            if value == "":
                return None  # a stored name is never empty (as in SQLite)
            where.append(f"{name} = {{{name}:String}}")
            params[name] = value
        for name in _ID_FILTERS:
            value = getattr(query, name)
            if value:
                where.append(f"{name} = {{{name}:String}}")
                params[name] = value
        if query.q is not None and query.q.strip():
            terms = search_terms(query.q)
            if terms is None:
                return None
            for index, (token, prefix) in enumerate(terms):
                key = f"w{index}"
                if prefix:
                    where.append(f"position(words, {{{key}:String}}) > 0")
                    params[key] = " " + token
                else:
                    where.append(f"hasToken(words, {{{key}:String}})")
                    params[key] = token
        sql = (
            f"SELECT toUnixTimestamp64Micro(ts), tie, event_id, body FROM {self.db}.events"  # noqa: S608 - fixed fragments, values bound
            f" WHERE {' AND '.join(where)} ORDER BY ts DESC, tie DESC, event_id DESC"
            " LIMIT {fetch:UInt32}"
        )
        return sql, params

    async def trace(self, trace_id: str, limit: int = 10_000) -> list[Event]:
        """Every event of one trace, oldest first."""
        db = self.db
        rows = await self._run(
            lambda ex: ex.query(
                f"SELECT body FROM {db}.events WHERE trace_id = {{t:String}}"  # noqa: S608
                " ORDER BY ts, tie, event_id LIMIT {n:UInt32}",
                {"t": trace_id, "n": max(0, limit)},
            )
        )
        return [orjson.loads(row[0]) for row in rows]

    async def get(self, event_id: str) -> Event | None:
        """One event by id, or None."""
        db = self.db
        rows = await self._run(
            lambda ex: ex.query(
                f"SELECT body FROM {db}.events WHERE event_id = {{id:String}}"  # noqa: S608
                " ORDER BY ts, tie LIMIT 1",
                {"id": event_id},
            )
        )
        return orjson.loads(rows[0][0]) if rows else None

    async def stats(self) -> StoreStats:
        """Counts, time span and size on disk (table metadata: cheap)."""
        db = self.db

        def read(ex: Executor) -> tuple[list[Any], int]:
            summary = ex.query(
                "SELECT count(), min(toUnixTimestamp64Micro(ts)), max(toUnixTimestamp64Micro(ts))"  # noqa: S608
                f" FROM {db}.events"
            )[0]
            size = ex.query(
                "SELECT sum(bytes_on_disk) FROM system.parts"
                " WHERE active AND database = {db:String}",
                {"db": db},
            )
            return list(summary), int(size[0][0] or 0) if size else 0

        (count, oldest, newest), size = await self._run(read)
        count = int(count)
        return StoreStats(
            kind=self.kind,
            events=count,
            bytes_on_disk=size,
            oldest=format_micros(int(oldest)) if count else None,
            newest=format_micros(int(newest)) if count else None,
            schema_version=SCHEMA_VERSION,
            details={
                **self.counters,
                "target": self.target.describe(),
                "tables": list(TABLES),
                "durability": self.durability,
                "retention_days": self.retention_days,
                "write_backlog": sum(len(call.events) for call in self._pending),
            },
        )

    # ------------------------------------------------------------------ derived reads

    async def runs(self, query: RunQuery) -> list[RunSummary]:
        """Runs matching the filters, newest start first."""
        return await self._run(lambda ex: derived.list_runs(ex, self.db, query))

    async def run(self, run_id: str) -> Run | None:
        """One run with its steps in start order, or None."""
        return await self._run(lambda ex: derived.read_run(ex, self.db, run_id))

    async def error_groups(self, query: ErrorGroupQuery) -> list[ErrorGroup]:
        """Error groups, most recently seen first."""
        return await self._run(lambda ex: derived.list_error_groups(ex, self.db, query))

    async def window_counts(self, window: AnalysisWindow) -> WindowCounts:
        """Events by level, service and minute bucket (the window widened to whole minutes)."""
        return await self._run(lambda ex: derived.window_counts(ex, self.db, window))

    async def window_errors(self, window: AnalysisWindow, limit: int = 10) -> list[ErrorGroup]:
        """The most frequent error groups of the window."""
        return await self._run(lambda ex: derived.window_errors(ex, self.db, window, limit))

    async def window_steps(self, window: AnalysisWindow, limit: int = 10) -> StepStats:
        """The slowest node/layer names of the window by p95."""
        return await self._run(lambda ex: derived.window_steps(ex, self.db, window, limit))
