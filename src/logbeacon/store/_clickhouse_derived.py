"""Runs, error groups and window analysis of the ClickHouse store (blocking; worker threads).

- Runs are derived by *replaying* a run's stored events, commit group by commit group, through
  the SQLite store's own fold (`_sqlite_derived._RunFold`) into an in-memory SQLite database:
  one derivation, so both stores give the same run for the same events. After each commit
  the touched runs are replayed from `run_events` and their summaries written to `runs`
  (the listing reads those); `run(id)` replays on read, so it is always exact.
- Error groups and window analysis are aggregations over the slim `errors` and `steps` rows
  (ClickHouse scans millions of them in milliseconds), with the SQLite store's tie-breaks:
  a group's description and sample are its latest occurrence's (ties: later commit, later
  position), sample traces the five newest distinct ones.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from logbeacon.event import LEVEL_NUMBERS, LEVELS
from logbeacon.store._clickhouse_exec import Executor, Row
from logbeacon.store._sqlite_codec import format_micros
from logbeacon.store._sqlite_derived import DDL, ERROR_LEVEL, MINUTE, _RunFold
from logbeacon.store._sqlite_derived_read import (
    _SUMMARY_COLUMNS,
    MinuteGrid,
    _suggestions,
    fold_window_counts,
    get_run,
)
from logbeacon.store.base import (
    MAX_LIMIT,
    AnalysisWindow,
    ErrorGroup,
    ErrorGroupQuery,
    Run,
    RunQuery,
    RunSummary,
    StepStat,
    StepStats,
    WindowCounts,
)

__all__ = [
    "derive_runs",
    "list_error_groups",
    "list_runs",
    "read_run",
    "window_counts",
    "window_errors",
    "window_steps",
]

log = logging.getLogger("logbeacon.store")

Event = dict[str, Any]
_LEVEL_NAMES: Final = {number: name for name, number in LEVEL_NUMBERS.items()}
_TRACES: Final = 5


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _time(micros: int) -> str:
    return format_micros(max(0, int(micros)))


def _levels_from(level: str) -> list[str]:
    return [name for name in LEVELS if LEVEL_NUMBERS[name] >= LEVEL_NUMBERS[level]]


# --------------------------------------------------------------------------- runs


def _replay(rows: Iterable[Row]) -> tuple[sqlite3.Connection, dict[str, int]]:
    """Fold run events (run_key, event_id, batch, pos, ts, body) into an in-memory SQLite
    database with the SQLite store's derivation, one commit group at a time, in commit
    order; within a group by time, then position (what `apply_items` does). Returns the
    database and the number of distinct events each run folded (its version)."""
    seen: dict[str, tuple[int, int, int, str, str]] = {}
    for run_key, event_id, batch, pos, ts, body in rows:
        item = (int(batch), int(pos), int(ts), str(run_key), str(body))
        old = seen.get(event_id)
        if old is None or item[:2] < old[:2]:
            seen[event_id] = item
    groups: dict[int, list[tuple[int, int, str, str]]] = {}
    counts: dict[str, int] = {}
    for batch, pos, ts, run_key, body in seen.values():
        groups.setdefault(batch, []).append((ts, pos, run_key, body))
        counts[run_key] = counts.get(run_key, 0) + 1
    conn = sqlite3.connect(":memory:")
    for statement in DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    for batch in sorted(groups):
        items = sorted(groups[batch])
        fold = _RunFold(conn)
        fold.load(item[2] for item in items)
        for micros, _, run_key, body in items:
            try:
                event: Event = orjson.loads(body)
                fold.fold(run_key, str(event.get("event")), event, micros)
            except Exception as exc:  # one odd event never breaks a run (as in SQLite)
                log.warning("run derivation skipped an event: %s", type(exc).__name__)
        fold.write()
    return conn, counts


def _run_event_rows(ex: Executor, db: str, keys: Sequence[str]) -> list[Row]:
    return ex.query(
        f"SELECT run_key, event_id, batch, pos, ts, body FROM {db}.run_events"  # noqa: S608 - db is a checked identifier
        " WHERE run_key IN {keys:Array(String)}",
        {"keys": list(keys)},
    )


def read_run(ex: Executor, db: str, run_id: str) -> Run | None:
    """One run with its steps, replayed from its stored events (always current)."""
    rows = _run_event_rows(ex, db, [run_id])
    if not rows:
        return None
    conn, _ = _replay(rows)
    try:
        return get_run(conn, run_id)
    finally:
        conn.close()


def derive_runs(ex: Executor, db: str, keys: Sequence[str], chunk: int = 200) -> None:
    """Replay the given runs from their stored events and write their summaries."""
    ordered = sorted(set(keys))
    for start in range(0, len(ordered), chunk):
        part = ordered[start : start + chunk]
        conn, counts = _replay(_run_event_rows(ex, db, part))
        try:
            rows = conn.execute(
                f"SELECT {_SUMMARY_COLUMNS}, last_ts FROM runs"  # noqa: S608 - constant columns
            ).fetchall()
        finally:
            conn.close()
        block = b"".join(
            orjson.dumps(
                {
                    "run_id": row[0],
                    "version": counts.get(row[0], 0),
                    "visible": 0 if row[1] is None else 1,
                    "kind": row[1],
                    "status": row[2],
                    "service": row[3],
                    "name": row[4],
                    "started_at": row[5],
                    "ended_at": row[6],
                    "duration_ms": row[7],
                    "step_count": row[8],
                    "error_count": row[9],
                    "environment": row[10],
                    "last_ts": row[11],
                }
            )
            + b"\n"
            for row in rows
        )
        if block:
            ex.insert(f"{db}.runs", block)


_LATEST_RUNS: Final = (
    "SELECT run_id, tupleElement(r, 1) AS visible, tupleElement(r, 2) AS kind,"
    " tupleElement(r, 3) AS status, tupleElement(r, 4) AS service, tupleElement(r, 5) AS name,"
    " tupleElement(r, 6) AS started_at, tupleElement(r, 7) AS ended_at,"
    " tupleElement(r, 8) AS duration_ms, tupleElement(r, 9) AS step_count,"
    " tupleElement(r, 10) AS error_count, tupleElement(r, 11) AS environment,"
    " tupleElement(r, 12) AS last_ts FROM (SELECT run_id, argMax((visible, kind, status,"
    " service, name, started_at, ended_at, duration_ms, step_count, error_count, environment,"
    " last_ts), version) AS r FROM {db}.runs GROUP BY run_id)"
)


def latest_runs_sql(db: str) -> str:
    """The newest version of every run (FINAL-free: argMax over the version)."""
    return _LATEST_RUNS.replace("{db}", db)


def list_runs(ex: Executor, db: str, query: RunQuery) -> list[RunSummary]:
    where = ["visible = 1"]
    params: dict[str, Any] = {"limit": max(1, min(query.limit, MAX_LIMIT))}
    if query.since is not None:
        where.append("started_at >= {since:Int64}")
        params["since"] = _micros(query.since)
    if query.until is not None:
        where.append("started_at < {until:Int64}")
        params["until"] = _micros(query.until)
    if query.status is not None:
        where.append("status = {status:String}")
        params["status"] = query.status
    if query.service is not None:
        where.append("service = {service:String}")
        params["service"] = query.service
    rows = ex.query(
        "SELECT run_id, kind, status, service, name, started_at, ended_at, duration_ms,"  # noqa: S608 - fixed fragments, values bound
        f" step_count, error_count, environment FROM ({latest_runs_sql(db)})"
        f" WHERE {' AND '.join(where)} ORDER BY started_at DESC, run_id DESC"
        " LIMIT {limit:UInt32}",
        params,
    )
    return [
        RunSummary(
            run_id=row[0],
            kind=row[1],
            status=row[2],
            service=row[3],
            name=row[4],
            started_at=_time(row[5]),
            ended_at=None if row[6] is None else _time(row[6]),
            duration_ms=None if row[7] is None else float(row[7]),
            step_count=int(row[8]),
            error_count=int(row[9]),
            environment=row[10],
        )
        for row in rows
    ]


def expired_runs(ex: Executor, db: str, before: int) -> list[str]:
    """Runs whose start and last event are older than `before` (the SQLite purge rule)."""
    rows = ex.query(
        f"SELECT run_id FROM ({latest_runs_sql(db)})"  # noqa: S608 - db is a checked identifier
        " WHERE started_at < {before:Int64} AND last_ts < {before:Int64}",
        {"before": before},
    )
    return [str(row[0]) for row in rows]


# --------------------------------------------------------------------------- error groups

_KEY: Final = "(ts, batch, pos)"


def _describe(ex: Executor, db: str, fingerprints: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """type, message, category, suggestions of each group's latest occurrence, and its five
    newest distinct traces (over every occurrence)."""
    if not fingerprints:
        return {}
    params = {"fps": list(fingerprints)}
    facts = {
        row[0]: tuple(row[1:])
        for row in ex.query(
            "SELECT fingerprint, tupleElement(f, 1), tupleElement(f, 2), tupleElement(f, 3),"  # noqa: S608 - db is a checked identifier
            f" tupleElement(f, 4) FROM (SELECT fingerprint, argMax((type, message, category,"
            f" suggestions), {_KEY}) AS f FROM {db}.errors"
            " WHERE fingerprint IN {fps:Array(String)} GROUP BY fingerprint)",
            params,
        )
    }
    traces = _traces(ex, db, "fingerprint IN {fps:Array(String)}", params)
    return {fp: (*facts.get(fp, (None, None, None, None)), traces.get(fp, [])) for fp in facts}


def _traces(
    ex: Executor, db: str, condition: str, params: Mapping[str, Any]
) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for fingerprint, trace, _ in ex.query(
        f"SELECT fingerprint, trace_id, max(ts) AS m FROM {db}.errors"  # noqa: S608 - fixed fragments, values bound
        f" WHERE {condition} AND trace_id != ''"
        f" GROUP BY fingerprint, trace_id ORDER BY fingerprint, m DESC, trace_id LIMIT {_TRACES}"
        " BY fingerprint",
        params,
    ):
        out.setdefault(fingerprint, []).append(trace)
    return out


def _by_count(counts: Mapping[str, int]) -> list[str]:
    return [name for name, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def _events_by_id(ex: Executor, db: str, ids: Sequence[str]) -> dict[str, Event]:
    if not ids:
        return {}
    rows = ex.query(
        f"SELECT event_id, body FROM {db}.events"  # noqa: S608 - db is a checked identifier
        " WHERE event_id IN {ids:Array(String)} ORDER BY ts, tie, event_id",
        {"ids": list(ids)},
    )
    found: dict[str, Event] = {}
    for event_id, body in rows:
        found.setdefault(event_id, orjson.loads(body))
    return found


def list_error_groups(ex: Executor, db: str, query: ErrorGroupQuery) -> list[ErrorGroup]:
    where = ["1"]
    params: dict[str, Any] = {"limit": max(1, min(query.limit, MAX_LIMIT))}
    for column, value in (("service", query.service), ("environment", query.environment)):
        if value is not None:
            where.append(f"{column} = {{{column}:String}}")
            params[column] = value
    having = ""
    if query.since is not None:
        having = " HAVING last >= {since:Int64}"
        params["since"] = _micros(query.since)
    condition = " AND ".join(where)
    rows = ex.query(
        "SELECT fingerprint, count() AS n, min(toUnixTimestamp64Micro(ts)),"  # noqa: S608 - fixed fragments, values bound
        f" max(toUnixTimestamp64Micro(ts)) AS last, argMax(event_id, {_KEY})"
        f" FROM {db}.errors WHERE {condition} GROUP BY fingerprint{having}"
        " ORDER BY last DESC, fingerprint LIMIT {limit:UInt32}",
        params,
    )
    fingerprints = [str(row[0]) for row in rows]
    if not fingerprints:
        return []
    scoped = {**params, "fps": fingerprints}
    in_groups = f"{condition} AND fingerprint IN {{fps:Array(String)}}"
    services: dict[str, dict[str, int]] = {}
    for fingerprint, service, count in ex.query(
        f"SELECT fingerprint, service, count() FROM {db}.errors WHERE {in_groups}"  # noqa: S608 - fixed fragments, values bound
        " GROUP BY fingerprint, service",
        scoped,
    ):
        services.setdefault(fingerprint, {})[service] = int(count)
    traces = _traces(ex, db, in_groups, scoped)
    described = _describe(ex, db, fingerprints)
    samples = _events_by_id(ex, db, [str(row[4]) for row in rows])
    groups = []
    for fingerprint, count, first, last, sample in rows:
        info = described.get(fingerprint, (None, None, None, None, []))
        groups.append(
            ErrorGroup(
                fingerprint=fingerprint,
                type=info[0],
                message=info[1],
                category=info[2],
                suggestions=_suggestions(info[3], info[0], info[1]),
                count=int(count),
                first_seen=_time(first),
                last_seen=_time(last),
                services=_by_count(services.get(fingerprint, {})),
                sample_event=samples.get(sample),
                sample_trace_ids=traces.get(fingerprint, []),
            )
        )
    return groups


# --------------------------------------------------------------------------- window analysis


def window_counts(ex: Executor, db: str, window: AnalysisWindow) -> WindowCounts:
    """Counts by minute, service and level straight from `events` (whole minutes, like the
    SQLite store's rollup, so both answer the same window)."""
    grid = MinuteGrid.of(window)
    where = [
        "ts >= fromUnixTimestamp64Micro({lo:Int64})",
        "ts < fromUnixTimestamp64Micro({hi:Int64})",
    ]
    params: dict[str, Any] = {"lo": grid.first * MINUTE, "hi": grid.end * MINUTE}
    if window.service is not None:
        where.append("service = {service:String}")
        params["service"] = window.service
    if window.level is not None:
        where.append("level IN {levels:Array(String)}")
        params["levels"] = _levels_from(window.level)
    rows = ex.query(
        "SELECT intDiv(toUnixTimestamp64Micro(ts), 60000000) AS minute, service, level,"  # noqa: S608 - fixed fragments, values bound
        f" count() FROM {db}.events WHERE {' AND '.join(where)} GROUP BY minute, service, level",
        params,
    )
    return fold_window_counts(
        grid,
        window,
        (
            ((int(minute) - grid.first) // grid.width, service, LEVEL_NUMBERS.get(level, 0), int(n))
            for minute, service, level, n in rows
        ),
    )


def _window(window: AnalysisWindow) -> tuple[list[str], dict[str, Any]]:
    where = [
        "ts >= fromUnixTimestamp64Micro({lo:Int64})",
        "ts < fromUnixTimestamp64Micro({hi:Int64})",
    ]
    params: dict[str, Any] = {
        "lo": max(0, _micros(window.since)),
        "hi": max(0, _micros(window.until)),
    }
    if window.service is not None:
        where.append("service = {service:String}")
        params["service"] = window.service
    return where, params


def window_errors(ex: Executor, db: str, window: AnalysisWindow, limit: int) -> list[ErrorGroup]:
    where, params = _window(window)
    if window.level is not None and LEVEL_NUMBERS[window.level] > ERROR_LEVEL:
        where.append("level IN {levels:Array(String)}")
        params["levels"] = _levels_from(window.level)
    params["limit"] = max(1, min(limit, MAX_LIMIT))
    rows = ex.query(
        "SELECT fingerprint, count() AS n, min(toUnixTimestamp64Micro(ts)),"  # noqa: S608 - fixed fragments, values bound
        " max(toUnixTimestamp64Micro(ts)) AS last, arraySort(groupUniqArray(service))"
        f" FROM {db}.errors WHERE {' AND '.join(where)} GROUP BY fingerprint"
        " ORDER BY n DESC, last DESC, fingerprint LIMIT {limit:UInt32}",
        params,
    )
    described = _describe(ex, db, [str(row[0]) for row in rows])
    groups = []
    for fingerprint, count, first, last, services in rows:
        info = described.get(fingerprint, (None, None, None, None, []))
        groups.append(
            ErrorGroup(
                fingerprint=fingerprint,
                type=info[0],
                message=info[1],
                category=info[2],
                suggestions=_suggestions(info[3], info[0], info[1]),
                count=int(count),
                first_seen=_time(first),
                last_seen=_time(last),
                services=sorted(services),
                sample_event=None,
                sample_trace_ids=list(info[4]),
            )
        )
    return groups


def window_steps(ex: Executor, db: str, window: AnalysisWindow, limit: int) -> StepStats:
    """Exact nearest-rank p50/p95 per node/layer name over every duration of the window
    (ClickHouse sorts them in place; no sampling is needed)."""
    where, params = _window(window)
    rows = ex.query(
        "SELECT kind, name, count(), sum(failed), max(duration_ms),"  # noqa: S608 - fixed fragments, values bound
        " arraySort(groupArray(duration_ms)) AS d FROM"
        f" {db}.steps WHERE {' AND '.join(where)} GROUP BY kind, name",
        params,
    )
    stats = []
    scanned = 0
    for kind, name, count, failed, longest, durations in rows:
        scanned += int(count)
        ordered = [float(value) for value in durations]
        stats.append(
            StepStat(
                kind=kind,
                name=name,
                count=int(count),
                errors=int(failed),
                p50_ms=_nearest_rank(ordered, 50),
                p95_ms=_nearest_rank(ordered, 95),
                max_ms=float(longest),
            )
        )
    if not stats:
        return StepStats(steps=[], scanned=0)
    stats.sort(key=lambda s: (-s.p95_ms, -s.p50_ms, s.kind, s.name))
    return StepStats(steps=stats[: max(1, limit)], scanned=scanned)


def _nearest_rank(ordered: Sequence[float], percent: float) -> float:
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]
