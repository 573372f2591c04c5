"""Read side of the derived tables (`_sqlite_derived` maintains them): runs, error groups and
window analysis, as the Store protocol's methods that `SqliteStore` mixes in.

Every read is an indexed range or key lookup bounded by its `limit`; window analysis reads
the per-minute rollup (counts, timeline), the slim `error_events`/`step_events` rows of the
window (top errors, p50/p95), never the event bodies.
"""

from __future__ import annotations

import math
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson

from logbeacon.event import LEVEL_NUMBERS, LEVELS
from logbeacon.integrations.errors import analyze_error
from logbeacon.store._sqlite_codec import format_micros
from logbeacon.store._sqlite_derived import ERROR_LEVEL, MINUTE, Group, StepRow, chunks, marks
from logbeacon.store.base import (
    MAX_LIMIT,
    AnalysisWindow,
    ErrorGroup,
    ErrorGroupQuery,
    Run,
    RunQuery,
    RunStep,
    RunSummary,
    ServiceCount,
    StepStat,
    StepStats,
    TimeBucket,
    WindowCounts,
)

if TYPE_CHECKING:
    from logbeacon.store._sqlite_read import Reader

__all__ = ["MAX_STEP_SCAN", "DerivedQueries"]

T = TypeVar("T")

MAX_STEP_SCAN: Final = 200_000  # step durations read per window before sampling
_LEVEL_NAMES: Final = {number: name for name, number in LEVEL_NUMBERS.items()}


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _format(micros: int | None) -> str | None:
    return None if micros is None else format_micros(max(0, micros))


_SUMMARY_COLUMNS: Final = (
    "run_id, kind, status, service, name, started_at, ended_at, duration_ms, step_count,"
    " error_count, environment"
)


def _summary(row: Sequence[Any]) -> RunSummary:
    return RunSummary(
        run_id=row[0],
        kind=row[1],
        status=row[2],
        service=row[3],
        name=row[4],
        started_at=format_micros(max(0, row[5])),
        ended_at=_format(row[6]),
        duration_ms=row[7],
        step_count=row[8],
        error_count=row[9],
        environment=row[10],
    )


def list_runs(conn: sqlite3.Connection, query: RunQuery) -> list[RunSummary]:
    where = ["kind IS NOT NULL"]
    params: list[Any] = []
    if query.since is not None:
        where.append("started_at >= ?")
        params.append(_micros(query.since))
    if query.until is not None:
        where.append("started_at < ?")
        params.append(_micros(query.until))
    if query.status is not None:
        where.append("status = ?")
        params.append(query.status)
    if query.service is not None:
        where.append("service = ?")
        params.append(query.service)
    params.append(max(1, min(query.limit, MAX_LIMIT)))
    rows = conn.execute(
        f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE {' AND '.join(where)}"  # noqa: S608
        " ORDER BY started_at DESC, run_id DESC LIMIT ?",
        params,
    ).fetchall()
    return [_summary(row) for row in rows]


def get_run(conn: sqlite3.Connection, run_id: str) -> Run | None:
    row = conn.execute(
        f"SELECT {_SUMMARY_COLUMNS} FROM runs WHERE run_id = ? AND kind IS NOT NULL",  # noqa: S608
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    steps = [
        StepRow(step)
        for step in conn.execute(
            f"SELECT {StepRow.COLUMNS} FROM run_steps WHERE run_id = ?",  # noqa: S608
            (run_id,),
        )
    ]
    placed = sorted(
        ((_step_start(step), step) for step in steps),
        key=lambda item: (item[0], (0, item[1].idx) if item[1].idx is not None else (1, 0),
                          item[1].seq),
    )  # fmt: skip
    summary = _summary(row)
    return Run(
        **{name: getattr(summary, name) for name in RunSummary.__dataclass_fields__},
        steps=[_run_step(step, start) for start, step in placed],
    )


def _step_start(step: StepRow) -> int:
    """When a step started; estimated from its end and duration when the start is missing."""
    if step.start_ts is not None:
        return int(step.start_ts)
    end = int(step.end_ts)
    if step.duration_ms is not None:
        return end - round(float(step.duration_ms) * 1000)
    return end


def _run_step(step: StepRow, start: int) -> RunStep:
    duration = step.duration_ms
    if duration is None and step.start_ts is not None and step.end_ts is not None:
        duration = max(0, step.end_ts - step.start_ts) / 1000
    return RunStep(
        name=step.name,
        kind=step.kind,
        index=step.idx,
        status=step.status,
        started_at=format_micros(max(0, start)),
        duration_ms=duration,
        error=None if step.error is None else orjson.loads(step.error),
    )


def _descriptions(
    conn: sqlite3.Connection, fingerprints: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """type, message, category, suggestions, traces of each group."""
    found: dict[str, tuple[Any, ...]] = {}
    for chunk in chunks(fingerprints):
        for row in conn.execute(
            "SELECT fingerprint, type, message, category, suggestions, traces FROM error_groups"  # noqa: S608 - fixed fragments, values bound
            f" WHERE fingerprint IN ({marks(len(chunk))})",
            chunk,
        ):
            found[row[0]] = row[1:]
    return found


def _suggestions(raw: str | None, type_name: str | None, message: str | None) -> list[str]:
    """Stored suggestions, or the analysis' for the group's type and message when the events
    carried none (e.g. a shipper that set only category and fingerprint)."""
    if raw is not None:
        loaded: list[str] = orjson.loads(raw)
        return loaded
    error = {"type": type_name or "", "message": message or ""}
    return list(analyze_error(error).suggestions)


def _traces(raw: str | list[list[Any]]) -> list[str]:
    pairs = orjson.loads(raw) if isinstance(raw, str) else raw
    return [str(trace) for _, trace in pairs]


def list_error_groups(reader: Reader, query: ErrorGroupQuery) -> list[ErrorGroup]:
    conn = reader.conn
    limit = max(1, min(query.limit, MAX_LIMIT))
    since = None if query.since is None else _micros(query.since)
    if query.service is None and query.environment is None:
        return _all_groups(reader, since, limit)
    where: list[str] = []
    pinned: list[str] = []
    params: list[Any] = []
    for column, value in (("service", query.service), ("environment", query.environment)):
        if value is not None:
            where.append(f"{column} = ?")
            # `+column` keeps the planner on the primary key for `fingerprint IN (...)`: the
            # service/environment index would visit every row of that service (360 ms vs
            # 0.5 ms on a million events).
            pinned.append(f"+{column} = ?")
            params.append(value)
    condition = " AND ".join(where)
    chosen: list[str] = []
    seen: set[str] = set()
    walk = conn.execute(
        f"SELECT fingerprint, last_seen FROM error_group_services WHERE {condition}"  # noqa: S608
        " ORDER BY last_seen DESC",
        params,
    )
    for fingerprint, last_seen in walk:
        if since is not None and last_seen < since:
            break
        if fingerprint not in seen:
            seen.add(fingerprint)
            chosen.append(fingerprint)
            if len(chosen) == limit:
                break
    walk.close()
    merged: dict[str, Group] = {}
    service_counts: dict[str, dict[str, int]] = {}
    for chunk in chunks(chosen):
        for row in conn.execute(
            "SELECT fingerprint, service, count, first_seen, last_seen, sample_id, traces FROM"  # noqa: S608 - fixed fragments, values bound
            f" error_group_services WHERE fingerprint IN ({marks(len(chunk))})"
            f" AND {' AND '.join(pinned)}",
            [*chunk, *params],
        ):
            part = Group(row[2], row[3], row[4], row[5], orjson.loads(row[6]))
            old = merged.get(row[0])
            merged[row[0]] = part if old is None else part.merge_into(old)
            counts = service_counts.setdefault(row[0], {})
            counts[row[1]] = counts.get(row[1], 0) + row[2]
    described = _descriptions(conn, chosen)
    groups = []
    for fingerprint in chosen:
        group = merged[fingerprint]
        info = described.get(fingerprint, (None, None, None, "[]", "[]"))
        groups.append(
            ErrorGroup(
                fingerprint=fingerprint,
                type=info[0],
                message=info[1],
                category=info[2],
                suggestions=_suggestions(info[3], info[0], info[1]),
                count=group.count,
                first_seen=format_micros(max(0, group.first)),
                last_seen=format_micros(max(0, group.last)),
                services=_by_count(service_counts[fingerprint]),
                sample_event=reader.get(group.sample),
                sample_trace_ids=_traces(group.traces),
            )
        )
    return groups


def _by_count(counts: Mapping[str, int]) -> list[str]:
    return [name for name, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def _all_groups(reader: Reader, since: int | None, limit: int) -> list[ErrorGroup]:
    conn = reader.conn
    where = "" if since is None else " WHERE last_seen >= ?"
    params: list[Any] = [] if since is None else [since]
    rows = conn.execute(
        "SELECT fingerprint, type, message, category, suggestions, count, first_seen, last_seen,"  # noqa: S608 - fixed fragments, values bound
        f" sample_id, traces FROM error_groups{where}"
        " ORDER BY last_seen DESC, fingerprint LIMIT ?",
        [*params, limit],
    ).fetchall()
    services: dict[str, dict[str, int]] = {}
    fingerprints = [row[0] for row in rows]
    for chunk in chunks(fingerprints):
        for fingerprint, service, count in conn.execute(
            "SELECT fingerprint, service, count FROM error_group_services"  # noqa: S608 - fixed fragments, values bound
            f" WHERE fingerprint IN ({marks(len(chunk))})",
            chunk,
        ):
            counts = services.setdefault(fingerprint, {})
            counts[service] = counts.get(service, 0) + count
    return [
        ErrorGroup(
            fingerprint=row[0],
            type=row[1],
            message=row[2],
            category=row[3],
            suggestions=_suggestions(row[4], row[1], row[2]),
            count=row[5],
            first_seen=format_micros(max(0, row[6])),
            last_seen=format_micros(max(0, row[7])),
            services=_by_count(services.get(row[0], {})),
            sample_event=reader.get(row[8]),
            sample_trace_ids=_traces(row[9]),
        )
        for row in rows
    ]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class MinuteGrid:
    """An analysis window widened to whole minutes and cut into equal buckets of minutes.

    Both stores count on this grid, so they answer the same window with the same buckets.
    """

    first: int  # first minute (epoch minutes)
    end: int  # minute after the last
    width: int  # minutes per bucket
    buckets: int

    @classmethod
    def of(cls, window: AnalysisWindow) -> MinuteGrid:
        since = max(0, _micros(window.since))
        until = max(since, _micros(window.until))
        first = since // MINUTE
        end = max(first + 1, _ceil_div(until, MINUTE))
        span = end - first
        width = _ceil_div(span, max(1, window.buckets))
        return cls(first, end, width, _ceil_div(span, width))


def fold_window_counts(
    grid: MinuteGrid, window: AnalysisWindow, rows: Iterable[tuple[int, str, int, int]]
) -> WindowCounts:
    """`WindowCounts` from `(bucket, service, level number, count)` rows on `grid`."""
    timeline = [[0, 0] for _ in range(grid.buckets)]
    by_level = dict.fromkeys(LEVELS if window.level is None else _levels_from(window.level), 0)
    by_service: dict[str, list[int]] = {}
    for bucket, service, level, count in rows:
        errors = count if level >= ERROR_LEVEL else 0
        timeline[bucket][0] += count
        timeline[bucket][1] += errors
        name = _LEVEL_NAMES.get(level)
        if name is not None:
            by_level[name] = by_level.get(name, 0) + count
        tally = by_service.setdefault(service, [0, 0])
        tally[0] += count
        tally[1] += errors
    first, end, step = grid.first, grid.end, grid.width * MINUTE
    return WindowCounts(
        since=format_micros(first * MINUTE),
        until=format_micros(end * MINUTE),
        since_epoch=first * 60.0,
        until_epoch=end * 60.0,
        bucket_seconds=grid.width * 60.0,
        by_level=by_level,
        by_service=[
            ServiceCount(service, events, errors)
            for service, (events, errors) in sorted(
                by_service.items(), key=lambda item: (-item[1][0], item[0])
            )
        ],
        timeline=[
            TimeBucket(format_micros(first * MINUTE + i * step), events, errors)
            for i, (events, errors) in enumerate(timeline)
        ],
    )


def window_counts(conn: sqlite3.Connection, window: AnalysisWindow) -> WindowCounts:
    """Counts from the per-minute rollup; the window is widened to whole minutes."""
    grid = MinuteGrid.of(window)
    where = ["minute >= ?", "minute < ?"]
    params: list[Any] = [grid.first, grid.width, grid.first, grid.end]
    if window.service is not None:
        where.append("service = ?")
        params.append(window.service)
    if window.level is not None:
        where.append("lvl >= ?")
        params.append(LEVEL_NUMBERS[window.level])
    rows = conn.execute(
        "SELECT (minute - ?) / ?, service, lvl, sum(n) FROM event_counts"  # noqa: S608
        f" WHERE {' AND '.join(where)} GROUP BY 1, 2, 3",
        params,
    ).fetchall()
    return fold_window_counts(grid, window, rows)


def _levels_from(level: str) -> list[str]:
    return [name for name in LEVELS if LEVEL_NUMBERS[name] >= LEVEL_NUMBERS[level]]


def window_errors(conn: sqlite3.Connection, window: AnalysisWindow, limit: int) -> list[ErrorGroup]:
    where = ["ts >= ?", "ts < ?"]
    params: list[Any] = [_micros(window.since), _micros(window.until)]
    if window.service is not None:
        where.append("service = ?")
        params.append(window.service)
    if window.level is not None and LEVEL_NUMBERS[window.level] > ERROR_LEVEL:
        where.append("lvl >= ?")
        params.append(LEVEL_NUMBERS[window.level])
    rows = conn.execute(
        "SELECT fingerprint, count(*), min(ts), max(ts), json_group_array(DISTINCT service)"  # noqa: S608 - fixed fragments, values bound
        f" FROM error_events WHERE {' AND '.join(where)} GROUP BY fingerprint"
        " ORDER BY count(*) DESC, max(ts) DESC, fingerprint LIMIT ?",
        [*params, max(1, min(limit, MAX_LIMIT))],
    ).fetchall()
    described = _descriptions(conn, [row[0] for row in rows])
    groups = []
    for fingerprint, count, first, last, services in rows:
        info = described.get(fingerprint, (None, None, None, "[]", "[]"))
        groups.append(
            ErrorGroup(
                fingerprint=fingerprint,
                type=info[0],
                message=info[1],
                category=info[2],
                suggestions=_suggestions(info[3], info[0], info[1]),
                count=count,
                first_seen=format_micros(max(0, first)),
                last_seen=format_micros(max(0, last)),
                services=sorted(orjson.loads(services)),
                sample_event=None,
                sample_trace_ids=_traces(info[4]),
            )
        )
    return groups


def _nearest_rank(ordered: Sequence[float], percent: float) -> float:
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def window_steps(conn: sqlite3.Connection, window: AnalysisWindow, limit: int) -> StepStats:
    """p50/p95 per node/layer name; exact up to `MAX_STEP_SCAN` durations in the window,
    beyond that percentiles come from an even sample (counts, errors and max stay exact)."""
    where = ["ts >= ?", "ts < ?"]
    params: list[Any] = [_micros(window.since), _micros(window.until)]
    if window.service is not None:
        where.append("service = ?")
        params.append(window.service)
    condition = " AND ".join(where)
    exact = conn.execute(
        "SELECT kind, name, count(*), sum(failed), max(duration_ms) FROM step_events"  # noqa: S608
        f" WHERE {condition} GROUP BY kind, name",
        params,
    ).fetchall()
    total = sum(row[2] for row in exact)
    if total == 0:
        return StepStats(steps=[], scanned=0)
    every = _ceil_div(total, MAX_STEP_SCAN)
    if every == 1:
        rows = conn.execute(
            f"SELECT kind, name, duration_ms FROM step_events WHERE {condition}",  # noqa: S608
            params,
        )
    else:
        rows = conn.execute(
            "SELECT kind, name, duration_ms FROM (SELECT kind, name, duration_ms,"  # noqa: S608
            f" row_number() OVER (ORDER BY ts, eid) AS n FROM step_events WHERE {condition})"
            " WHERE n % ? = 0",
            [*params, every],
        )
    durations: dict[tuple[str, str], list[float]] = {}
    scanned = 0
    for kind, name, duration in rows:
        durations.setdefault((kind, name), []).append(duration)
        scanned += 1
    stats = []
    for kind, name, count, failed, longest in exact:
        sample = sorted(durations.get((kind, name), ()))
        if not sample:  # sampled away: its longest run still speaks for it
            sample = [longest]
        stats.append(
            StepStat(
                kind=kind,
                name=name,
                count=count,
                errors=failed,
                p50_ms=_nearest_rank(sample, 50),
                p95_ms=_nearest_rank(sample, 95),
                max_ms=longest,
            )
        )
    stats.sort(key=lambda s: (-s.p95_ms, -s.p50_ms, s.kind, s.name))
    return StepStats(
        steps=stats[: max(1, limit)], scanned=scanned, sample_rate=1.0 if every == 1 else 1 / every
    )


# --------------------------------------------------------------------------- the mixin


def _snapshot(reader: Reader, read: Callable[[], T]) -> T:
    """Run several statements against one snapshot (a run and its steps agree)."""
    conn = reader.conn
    conn.execute("BEGIN")
    try:
        return read()
    finally:
        conn.execute("COMMIT")


class DerivedQueries(ABC):
    """The Store protocol's derived reads, mixed into `SqliteStore` (which provides `_read`:
    run a function on a read-only connection of its pool)."""

    @abstractmethod
    async def _read(self, fn: Callable[[Reader], T]) -> T:
        """Run `fn` on a read-only connection of the store's pool."""

    async def runs(self, query: RunQuery) -> list[RunSummary]:
        """Runs matching the filters, newest start first."""
        return await self._read(lambda reader: list_runs(reader.conn, query))

    async def run(self, run_id: str) -> Run | None:
        """One run with its steps in start order, or None."""
        return await self._read(
            lambda reader: _snapshot(reader, lambda: get_run(reader.conn, run_id))
        )

    async def error_groups(self, query: ErrorGroupQuery) -> list[ErrorGroup]:
        """Error groups, most recently seen first."""
        return await self._read(
            lambda reader: _snapshot(reader, lambda: list_error_groups(reader, query))
        )

    async def window_counts(self, window: AnalysisWindow) -> WindowCounts:
        """Events by level, service and minute bucket (the window widened to whole minutes)."""
        return await self._read(lambda reader: window_counts(reader.conn, window))

    async def window_errors(self, window: AnalysisWindow, limit: int = 10) -> list[ErrorGroup]:
        """The most frequent error groups of the window."""
        return await self._read(
            lambda reader: _snapshot(reader, lambda: window_errors(reader.conn, window, limit))
        )

    async def window_steps(self, window: AnalysisWindow, limit: int = 10) -> StepStats:
        """The slowest node/layer names of the window by p95."""
        return await self._read(
            lambda reader: _snapshot(reader, lambda: window_steps(reader.conn, window, limit))
        )
