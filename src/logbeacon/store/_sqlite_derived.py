"""Derived tables of the SQLite store: runs and their steps, error groups, and the compact
per-event facts that window analysis reads.

They are maintained *incrementally inside the transaction that stores the events*
(`apply_stored`, called by the writer just before COMMIT), so an acknowledged event's run
state and error group are as durable and as consistent as the event itself, and no request
ever recomputes them from the raw events. Only events that were really stored reach it: a
re-sent event (same `event_id`) was already dropped as a duplicate, so it can never count
twice. Schema version 2 creates the tables and backfills them from the events an older
database already holds (`migrate_v2`), streaming in chunks.

Tables (all WITHOUT ROWID, keyed by what they are looked up by):

- `runs`, `run_steps` — one row per run (`run_id`; a pipeline's is its `job_id`) and one per
  step attempt. Derivation rules are in docs/server.md ("Runs"). Events may arrive out of
  order or never: a step's end may come before its start (it is paired when the start
  arrives), a run may lack its start or end event (it still forms a run).
- `error_groups`, `error_group_services` — occurrences of each `error.fingerprint` in total
  and per (service, environment), with the latest sample and the five most recent trace ids.
- `error_events`, `step_events` — one slim row per error occurrence / per step end with a
  duration, for exact window queries ("top errors in the last hour", p50/p95 per node).
- `event_counts` — events per (minute, service, level), so window counts and the error-rate
  timeline read a few thousand rollup rows instead of scanning millions of events.

Retention (`purge_derived`) drops rows of the same age as the events it purges.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

import orjson

from logbeacon.event import LEVEL_NUMBERS
from logbeacon.integrations.errors import analyze_error
from logbeacon.store._sqlite_codec import ROW_COLUMNS, decode_event
from logbeacon.store._sqlite_schema import KEY_SHIFT

__all__ = [
    "DDL",
    "ERROR_LEVEL",
    "MAX_STEPS_PER_RUN",
    "MINUTE",
    "RUN_EVENTS",
    "Group",
    "StepRow",
    "apply_items",
    "apply_stored",
    "chunks",
    "marks",
    "merge_traces",
    "migrate_v2",
    "purge_derived",
]

log = logging.getLogger("logbeacon.store")

Event = Mapping[str, Any]
# (event, timestamp in µs, level number, event id as stored in `events.eid`)
Item = tuple[Event, int, int, "bytes | str"]
T = TypeVar("T")

MINUTE: Final = 60_000_000  # µs
ERROR_LEVEL: Final = LEVEL_NUMBERS["error"]
MAX_STEPS_PER_RUN: Final = 1000  # a run reusing one run_id forever cannot grow without bound
_MATCH_ATTEMPTS: Final = 32  # attempts of one step identity considered when pairing
_MAX_TRACES: Final = 5
_MAX_STEP_MESSAGE: Final = 1000
_BACKFILL_CHUNK: Final = 2000
_END_STATUSES: Final = ("success", "partial", "error")

_START, _END = 0, 1
# event name -> (step kind, phase, status)
_STEP_EVENTS: Final = {
    "node_start": ("node", _START, "running"),
    "node_complete": ("node", _END, "success"),
    "node_failed": ("node", _END, "error"),
    "layer_start": ("layer", _START, "running"),
    "layer_complete": ("layer", _END, "success"),
    "layer_error": ("layer", _END, "error"),
    "layer_skip": ("layer", _END, "skipped"),
}
_DURATION_EVENTS: Final = frozenset(
    {"node_complete", "node_failed", "layer_complete", "layer_error"}
)
_RUN_STARTS: Final = {"graph_start": "graph", "pipeline_start": "pipeline"}
_RUN_ENDS: Final = {
    "graph_complete": "graph",
    "graph_failed": "graph",
    "pipeline_complete": "pipeline",
}
_COMMAND_EVENTS: Final = frozenset({"command_start", "command_exit"})
RUN_EVENTS: Final = frozenset({*_STEP_EVENTS, *_RUN_STARTS, *_RUN_ENDS, *_COMMAND_EVENTS})
# Events that may name their run only by `job_id` (pipelines, `logbeacon run`).
_JOB_EVENTS: Final = frozenset(
    {name for name, spec in _STEP_EVENTS.items() if spec[0] == "layer"}
    | {"pipeline_start", "pipeline_complete", *_COMMAND_EVENTS}
)

DDL: Final = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT,
    name TEXT,
    service TEXT,
    environment TEXT,
    status TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    duration_ms REAL,
    step_count INTEGER NOT NULL,
    error_count INTEGER NOT NULL,
    start_ts INTEGER,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    terminal TEXT,
    end_ts INTEGER,
    end_duration REAL,
    exit_status TEXT,
    exit_ts INTEGER,
    next_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_service ON runs (service, started_at);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, started_at);
CREATE TABLE IF NOT EXISTS run_steps (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    idx INTEGER,
    status TEXT NOT NULL,
    start_ts INTEGER,
    end_ts INTEGER,
    duration_ms REAL,
    error TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS error_groups (
    fingerprint TEXT PRIMARY KEY,
    type TEXT,
    message TEXT,
    category TEXT,
    suggestions TEXT,
    count INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    sample_id TEXT NOT NULL,
    traces TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS error_groups_last ON error_groups (last_seen);
CREATE TABLE IF NOT EXISTS error_group_services (
    fingerprint TEXT NOT NULL,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    sample_id TEXT NOT NULL,
    traces TEXT NOT NULL,
    PRIMARY KEY (fingerprint, service, environment)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS egs_service ON error_group_services (service, last_seen);
CREATE INDEX IF NOT EXISTS egs_environment ON error_group_services (environment, last_seen);
CREATE TABLE IF NOT EXISTS error_events (
    ts INTEGER NOT NULL,
    eid NOT NULL,
    fingerprint TEXT NOT NULL,
    service TEXT NOT NULL,
    lvl INTEGER NOT NULL,
    PRIMARY KEY (ts, eid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS step_events (
    ts INTEGER NOT NULL,
    eid NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    service TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    failed INTEGER NOT NULL,
    PRIMARY KEY (ts, eid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_counts (
    minute INTEGER NOT NULL,
    service TEXT NOT NULL,
    lvl INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (minute, service, lvl)
) WITHOUT ROWID
"""


# --------------------------------------------------------------------------- small helpers


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _duration(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _rows(
    conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]], tail: str = ""
) -> None:
    """Multi-row INSERT in statements of a few hundred rows (fewer steps, fewer GIL hops);
    `tail` is an upsert clause."""
    if not rows:
        return
    width = len(rows[0])
    group = "(" + ",".join("?" * width) + ")"
    per = max(1, min(500, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        conn.execute(head + ",".join([group] * len(part)) + tail, [v for row in part for v in row])


def chunks(values: Sequence[T], size: int = 500) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def marks(count: int) -> str:
    return ",".join("?" * count)


# --------------------------------------------------------------------------- error facts


class _ErrorFacts:
    """What one error occurrence contributes to its group; missing analysis is computed
    here (browser events and foreign shippers never ran the SDK's enricher)."""

    __slots__ = ("category", "fingerprint", "message", "suggestions", "type")

    def __init__(self, event: Event) -> None:
        error = event.get("error")
        name = _text(event.get("event")) or "log"
        suggestions: object = None
        if error.__class__ is dict:
            self.type = _text(error.get("type"))
            self.message = _text(error.get("message")) or _text(event.get("message"))
            fingerprint = _text(error.get("fingerprint"))
            category = _text(error.get("category"))
            suggestions = error.get("suggestions")
            basis: Mapping[str, Any] = error
        else:
            # An error-level event without an error object: grouped by event name and
            # normalised message, so "payment_failed" events form one group.
            self.type = None
            self.message = _text(event.get("message")) or name
            fingerprint = category = None
            basis = {"type": name, "message": _text(event.get("message")) or ""}
        # None when the event brought none: readers derive them from type and message (all
        # the analysis looks at for suggestions), which keeps regexes off the ingest path.
        self.suggestions: list[str] | None = None
        if isinstance(suggestions, list) and all(isinstance(s, str) for s in suggestions):
            self.suggestions = list(suggestions)
        if fingerprint is None or category is None:
            analysis = analyze_error(basis)
            fingerprint = fingerprint or analysis.fingerprint
            category = category or analysis.category
            if self.suggestions is None:
                self.suggestions = list(analysis.suggestions)
        self.fingerprint: str = fingerprint
        self.category: str = category


def _step_error(event: Event) -> str | None:
    """JSON of a failed step's error summary: type, message, category, fingerprint."""
    error = event.get("error")
    if error.__class__ is not dict and _text(event.get("message")) is None:
        return None
    facts = _ErrorFacts(event)
    message = facts.message
    if message is not None and len(message) > _MAX_STEP_MESSAGE:
        message = message[:_MAX_STEP_MESSAGE] + "…"
    summary = {
        "type": facts.type,
        "message": message,
        "category": facts.category,
        "fingerprint": facts.fingerprint,
    }
    return orjson.dumps(summary).decode()


# --------------------------------------------------------------------------- runs


class _RunRow:
    """One `runs` row while a batch is folded into it."""

    __slots__ = (
        "end_duration",
        "end_ts",
        "environment",
        "error_count",
        "exit_status",
        "exit_ts",
        "first_ts",
        "kind",
        "last_ts",
        "loaded",
        "name",
        "next_seq",
        "run_id",
        "service",
        "start_ts",
        "step_count",
        "terminal",
    )

    COLUMNS: Final = (
        "run_id, kind, name, service, environment, step_count, error_count, start_ts, "
        "first_ts, last_ts, terminal, end_ts, end_duration, exit_status, exit_ts, next_seq"
    )

    def __init__(self, row: Sequence[Any], *, stored: bool = True) -> None:
        (
            self.run_id,
            self.kind,
            self.name,
            self.service,
            self.environment,
            self.step_count,
            self.error_count,
            self.start_ts,
            self.first_ts,
            self.last_ts,
            self.terminal,
            self.end_ts,
            self.end_duration,
            self.exit_status,
            self.exit_ts,
            self.next_seq,
        ) = row
        # The indexed columns as stored: unchanged, a cheap UPDATE leaves the indexes alone.
        self.loaded = self.indexed() if stored else None

    @classmethod
    def new(cls, run_id: str, micros: int) -> _RunRow:
        return cls((run_id, None, None, None, None, 0, 0, None, micros, micros, None, None, None,
                    None, None, 0), stored=False)  # fmt: skip

    def indexed(self) -> tuple[Any, ...]:
        return (self.service, self.status(), self.started())

    def started(self) -> int:
        return int(self.start_ts if self.start_ts is not None else self.first_ts)

    def status(self) -> str:
        terminal = self.terminal or self.exit_status
        if terminal is None:
            return "running"
        if terminal == "success" and self.error_count:
            return "partial"  # a step failed but the run went on to complete
        return str(terminal)

    def row(self) -> tuple[Any, ...]:
        started = self.started()
        ended = self.end_ts if self.end_ts is not None else self.exit_ts
        duration: float | None = None
        if self.end_ts is not None and self.end_duration is not None:
            duration = self.end_duration
        elif ended is not None:
            duration = max(0, ended - started) / 1000
        return (
            self.run_id, self.kind, self.name, self.service, self.environment, self.status(),
            started, ended, duration, self.step_count, self.error_count, self.start_ts,
            self.first_ts, self.last_ts, self.terminal, self.end_ts, self.end_duration,
            self.exit_status, self.exit_ts, self.next_seq,
        )  # fmt: skip

    def update(self) -> tuple[Any, ...]:
        """Parameters of `_RUN_UPDATE`: every column but the indexed ones, then the key."""
        row = self.row()
        return (*row[1:3], row[4], *row[7:], row[0])


_RUN_INSERT: Final = (
    "INSERT OR REPLACE INTO runs (run_id, kind, name, service, environment, status, "
    "started_at, ended_at, duration_ms, step_count, error_count, start_ts, first_ts, last_ts, "
    "terminal, end_ts, end_duration, exit_status, exit_ts, next_seq) VALUES "
)
_RUN_UPDATE: Final = (
    "UPDATE runs SET kind = ?, name = ?, environment = ?, ended_at = ?, duration_ms = ?,"
    " step_count = ?, error_count = ?, start_ts = ?, first_ts = ?, last_ts = ?, terminal = ?,"
    " end_ts = ?, end_duration = ?, exit_status = ?, exit_ts = ?, next_seq = ? WHERE run_id = ?"
)
_STEP_UPDATE: Final = (
    "UPDATE run_steps SET status = ?, start_ts = ?, end_ts = ?, duration_ms = ?, error = ?"
    " WHERE run_id = ? AND seq = ?"
)


class StepRow:
    """One `run_steps` row (one attempt of a node or layer)."""

    __slots__ = (
        "duration_ms",
        "end_ts",
        "error",
        "idx",
        "kind",
        "name",
        "run_id",
        "scope",
        "seq",
        "start_ts",
        "status",
        "stored",
    )

    COLUMNS: Final = (
        "run_id, seq, kind, scope, name, idx, status, start_ts, end_ts, duration_ms, error"
    )

    def __init__(self, row: Sequence[Any], *, stored: bool = True) -> None:
        self.stored = stored
        (
            self.run_id,
            self.seq,
            self.kind,
            self.scope,
            self.name,
            self.idx,
            self.status,
            self.start_ts,
            self.end_ts,
            self.duration_ms,
            self.error,
        ) = row

    def row(self) -> tuple[Any, ...]:
        return (
            self.run_id, self.seq, self.kind, self.scope, self.name, self.idx, self.status,
            self.start_ts, self.end_ts, self.duration_ms, self.error,
        )  # fmt: skip


def _run_id(event: Event, name: str) -> str | None:
    run_id = _text(event.get("run_id"))
    if run_id is None and name in _JOB_EVENTS:
        run_id = _text(event.get("job_id"))
    return run_id


class _RunFold:
    """Folds the run events of one batch into `runs`/`run_steps`, loading only the rows the
    batch touches and writing back only what changed."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.runs: dict[str, _RunRow] = {}
        self.dirty_runs: set[str] = set()
        # (run_id, kind, name) -> attempts, newest last
        self.steps: dict[tuple[str, str, str], list[StepRow]] = {}
        self.dirty_steps: dict[tuple[str, int], StepRow] = {}

    def load(self, run_ids: Iterable[str]) -> None:
        """The batch's runs and their steps, a few statements for the whole batch.

        Steps are read by primary-key prefix (run_id); `MAX_STEPS_PER_RUN` bounds a run, so no
        secondary index on `run_steps` is needed, and each new step costs one b-tree insert.
        """
        wanted = sorted(set(run_ids) - self.runs.keys())
        with_steps: list[str] = []
        for chunk in chunks(wanted):
            sql = f"SELECT {_RunRow.COLUMNS} FROM runs WHERE run_id IN ({marks(len(chunk))})"  # noqa: S608
            for row in self.conn.execute(sql, chunk):
                run = self.runs[row[0]] = _RunRow(row)
                if run.step_count:
                    with_steps.append(run.run_id)
        for chunk in chunks(with_steps):
            sql = (
                f"SELECT {StepRow.COLUMNS} FROM run_steps"  # noqa: S608 - constant columns
                f" WHERE run_id IN ({marks(len(chunk))}) ORDER BY run_id, seq"
            )
            for row in self.conn.execute(sql, chunk):
                step = StepRow(row)
                attempts = self.steps.setdefault((step.run_id, step.kind, step.name), [])
                attempts.append(step)
                if len(attempts) > _MATCH_ATTEMPTS:
                    del attempts[0]

    def attempts(self, run_id: str, kind: str, name: str) -> list[StepRow]:
        """Attempts of one step identity, oldest first (every run was `load`ed first)."""
        return self.steps.setdefault((run_id, kind, name), [])

    def fold(self, run_id: str, name: str, event: Event, micros: int) -> None:
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = _RunRow.new(run_id, micros)
        self.dirty_runs.add(run_id)
        run.first_ts = min(run.first_ts, micros)
        run.last_ts = max(run.last_ts, micros)
        if run.service is None:
            run.service = _text(event.get("service"))
            run.environment = _text(event.get("environment"))
        if name in _RUN_STARTS:
            self._claim(run, _RUN_STARTS[name])
            if run.start_ts is None or micros <= run.start_ts:
                run.start_ts = micros
                run.service = _text(event.get("service")) or run.service
                run.environment = _text(event.get("environment")) or run.environment
            label = _text(event.get("graph" if name == "graph_start" else "pipeline"))
            run.name = label or run.name
        elif name in _RUN_ENDS:
            self._claim(run, _RUN_ENDS[name])
            if run.end_ts is None or micros >= run.end_ts:
                run.terminal = _end_status(name, event)
                run.end_ts = micros
                run.end_duration = _duration(event.get("duration_ms"))
            if run.name is None:
                run.name = _text(event.get("graph" if name != "pipeline_complete" else "pipeline"))
        elif name in _STEP_EVENTS:
            self._step(run, name, event, micros)
        elif name == "command_exit":
            code = _int(event.get("exit_code"))
            if run.exit_ts is None or micros >= run.exit_ts:
                run.exit_status = "success" if code == 0 else "error"
                run.exit_ts = micros

    @staticmethod
    def _claim(run: _RunRow, kind: str) -> None:
        # Pipeline evidence wins: a @log_node function inside a pipeline logs node events
        # under the pipeline's run_id.
        if run.kind is None or kind == "pipeline":
            run.kind = kind

    def _step(self, run: _RunRow, name: str, event: Event, micros: int) -> None:
        kind, phase, status = _STEP_EVENTS[name]
        if kind == "node":
            self._claim(run, "graph")
            step_name = _text(event.get("node"))
            index = _int(event.get("step"))
            scope = _text(event.get("parent_node")) or ""
            if run.name is None and not scope:
                run.name = _text(event.get("graph"))
            if name == "node_complete" and event.get("status") == "skipped":
                status = "skipped"  # paused by interrupt(): not a failure
        else:
            self._claim(run, "pipeline")
            index = _int(event.get("layer"))
            step_name = _text(event.get("layer_name")) or (
                f"layer {index}" if index is not None else None
            )
            scope = ""
            if run.name is None:
                run.name = _text(event.get("pipeline"))
        if step_name is None:
            return
        attempts = [
            a
            for a in self.attempts(run.run_id, kind, step_name)
            if a.scope == scope and a.idx == index
        ]
        if phase == _START:
            # A start pairs with an attempt whose end arrived first (and is not earlier).
            waiting = [a for a in attempts if a.start_ts is None and a.end_ts >= micros]
            if waiting:
                step = min(waiting, key=lambda a: int(a.end_ts))
                step.start_ts = micros
                self._touch(step)
                return
            self._new_step(
                run,
                kind=kind,
                scope=scope,
                name=step_name,
                index=index,
                status=status,
                start=micros,
                end=None,
            )
            return
        duration = _duration(event.get("duration_ms"))
        error = _step_error(event) if status == "error" else None
        # An end pairs with the latest open attempt that started no later than it.
        open_ = [
            a
            for a in attempts
            if a.end_ts is None and a.start_ts is not None and a.start_ts <= micros
        ]
        if open_:
            step = max(open_, key=lambda a: (int(a.start_ts), int(a.seq)))
            if step.status == "error":
                run.error_count -= 1
            step.end_ts = micros
            step.status = status
            step.duration_ms = duration
            step.error = error
            if status == "error":
                run.error_count += 1
            self._touch(step)
            return
        created = self._new_step(
            run,
            kind=kind,
            scope=scope,
            name=step_name,
            index=index,
            status=status,
            start=None,
            end=micros,
        )
        if created is not None:
            created.duration_ms = duration
            created.error = error
            if duration is not None:
                run.first_ts = min(run.first_ts, micros - round(duration * 1000))

    def _new_step(
        self,
        run: _RunRow,
        *,
        kind: str,
        scope: str,
        name: str,
        index: int | None,
        status: str,
        start: int | None,
        end: int | None,
    ) -> StepRow | None:
        if run.step_count >= MAX_STEPS_PER_RUN:
            return None
        step = StepRow((run.run_id, run.next_seq, kind, scope, name, index, status, start, end,
                        None, None), stored=False)  # fmt: skip
        run.next_seq += 1
        run.step_count += 1
        if status == "error":
            run.error_count += 1
        attempts = self.attempts(run.run_id, kind, name)
        attempts.append(step)
        if len(attempts) > _MATCH_ATTEMPTS:
            del attempts[0]
        self._touch(step)
        return step

    def _touch(self, step: StepRow) -> None:
        self.dirty_steps[(step.run_id, step.seq)] = step

    def write(self) -> None:
        replaced: list[tuple[Any, ...]] = []
        updated: list[tuple[Any, ...]] = []
        for run_id in sorted(self.dirty_runs):
            run = self.runs[run_id]
            if run.loaded is not None and run.loaded == run.indexed():
                updated.append(run.update())
            else:
                replaced.append(run.row())
        _rows(self.conn, _RUN_INSERT, replaced)
        self.conn.executemany(_RUN_UPDATE, updated)
        steps = [step for _, step in sorted(self.dirty_steps.items())]
        _rows(
            self.conn,
            f"INSERT INTO run_steps ({StepRow.COLUMNS}) VALUES ",  # noqa: S608
            [step.row() for step in steps if not step.stored],
        )
        self.conn.executemany(
            _STEP_UPDATE,
            [
                (s.status, s.start_ts, s.end_ts, s.duration_ms, s.error, s.run_id, s.seq)
                for s in steps
                if s.stored
            ],
        )


def _end_status(name: str, event: Event) -> str:
    if name == "graph_complete":
        return "success"
    if name == "graph_failed":
        return "error"
    status = event.get("status")
    if status in _END_STATUSES:
        return str(status)
    level = event.get("level")
    return (
        "error" if level in ("error", "critical") else "partial" if level == "warn" else "success"
    )


# --------------------------------------------------------------------------- error groups


class Group:
    """Occurrences of one fingerprint (optionally of one service and environment)."""

    __slots__ = ("count", "facts", "first", "last", "sample", "traces")

    def __init__(self, count: int, first: int, last: int, sample: str, traces: list[list[Any]]):
        self.count = count
        self.first = first
        self.last = last
        self.sample = sample
        self.traces = traces  # [[micros, trace_id], ...] newest first, distinct ids
        self.facts: _ErrorFacts | None = None

    def add(self, micros: int, event_id: str, trace: str | None, facts: _ErrorFacts) -> None:
        self.count += 1
        self.first = min(self.first, micros)
        if micros >= self.last:
            self.last = micros
            self.sample = event_id
            self.facts = facts
        if trace is not None:
            self.traces = merge_traces(self.traces, [[micros, trace]])

    def merge_into(self, old: Group) -> Group:
        """This batch's occurrences on top of the stored group."""
        merged = Group(
            old.count + self.count,
            min(old.first, self.first),
            max(old.last, self.last),
            self.sample if self.last >= old.last else old.sample,
            merge_traces(old.traces, self.traces),
        )
        merged.facts = self.facts if self.last >= old.last else None
        return merged


def merge_traces(a: list[list[Any]], b: list[list[Any]]) -> list[list[Any]]:
    newest: dict[str, int] = {}
    for micros, trace in (*a, *b):
        if micros > newest.get(trace, -(1 << 62)):
            newest[trace] = micros
    ordered = sorted(newest.items(), key=lambda item: (-item[1], item[0]))
    return [[micros, trace] for trace, micros in ordered[:_MAX_TRACES]]


def _fold_errors(
    conn: sqlite3.Connection, items: list[tuple[Event, int, int, bytes | str]]
) -> None:
    totals: dict[str, Group] = {}
    per_service: dict[tuple[str, str, str], Group] = {}
    facts_of: dict[str, _ErrorFacts] = {}
    occurrences: list[tuple[int, bytes | str, str, str, int]] = []
    for event, micros, level, eid in items:
        try:
            facts = _ErrorFacts(event)
            event_id = str(event["event_id"])
        except Exception as exc:  # one odd event must never fail the batch it came with
            log.warning("error-group derivation skipped an event: %s", type(exc).__name__)
            continue
        service = _text(event.get("service")) or ""
        environment = _text(event.get("environment")) or ""
        trace = _text(event.get("trace_id"))
        fingerprint = facts.fingerprint
        facts_of.setdefault(fingerprint, facts)
        total = totals.get(fingerprint)
        if total is None:
            total = totals[fingerprint] = Group(0, micros, micros, event_id, [])
        total.add(micros, event_id, trace, facts)
        key = (fingerprint, service, environment)
        part = per_service.get(key)
        if part is None:
            part = per_service[key] = Group(0, micros, micros, event_id, [])
        part.add(micros, event_id, trace, facts)
        occurrences.append((micros, eid, fingerprint, service, level))

    fingerprints = sorted(totals)
    stored: dict[str, tuple[Group, tuple[Any, ...]]] = {}
    stored_services: dict[tuple[str, str, str], Group] = {}
    for chunk in chunks(fingerprints):
        holes = marks(len(chunk))
        for row in conn.execute(
            "SELECT fingerprint, count, first_seen, last_seen, sample_id, traces, type, message,"  # noqa: S608 - fixed fragments, values bound
            f" category, suggestions FROM error_groups WHERE fingerprint IN ({holes})",
            chunk,
        ):
            stored[row[0]] = (Group(row[1], row[2], row[3], row[4], orjson.loads(row[5])), row[6:])
        for row in conn.execute(
            "SELECT fingerprint, service, environment, count, first_seen, last_seen, sample_id,"  # noqa: S608 - fixed fragments, values bound
            f" traces FROM error_group_services WHERE fingerprint IN ({holes})",
            chunk,
        ):
            stored_services[(row[0], row[1], row[2])] = Group(
                row[3], row[4], row[5], row[6], orjson.loads(row[7])
            )

    group_rows = []
    for fingerprint in fingerprints:
        batch = totals[fingerprint]
        previous = stored.get(fingerprint)
        merged = batch if previous is None else batch.merge_into(previous[0])
        latest = merged.facts
        if latest is None and previous is not None:
            described: tuple[Any, ...] = previous[1]
        else:
            # A new group always has facts: its batch saw its latest occurrence.
            facts = latest or facts_of[fingerprint]
            described = (
                facts.type,
                facts.message,
                facts.category,
                None if facts.suggestions is None else orjson.dumps(facts.suggestions).decode(),
            )
        group_rows.append(
            (fingerprint, *described, merged.count, merged.first, merged.last, merged.sample,
             orjson.dumps(merged.traces).decode())
        )  # fmt: skip
    service_rows = []
    for key in sorted(per_service):
        batch = per_service[key]
        old = stored_services.get(key)
        merged = batch if old is None else batch.merge_into(old)
        service_rows.append(
            (*key, merged.count, merged.first, merged.last, merged.sample,
             orjson.dumps(merged.traces).decode())
        )  # fmt: skip
    # Upserts: an UPDATE rewrites only the indexes of the columns it sets.
    _rows(
        conn,
        "INSERT INTO error_groups (fingerprint, type, message, category, suggestions,"
        " count, first_seen, last_seen, sample_id, traces) VALUES ",
        group_rows,
        " ON CONFLICT (fingerprint) DO UPDATE SET type = excluded.type, message = excluded.message,"
        " category = excluded.category, suggestions = excluded.suggestions,"
        " count = excluded.count, first_seen = excluded.first_seen,"
        " last_seen = excluded.last_seen, sample_id = excluded.sample_id,"
        " traces = excluded.traces",
    )
    _rows(
        conn,
        "INSERT INTO error_group_services (fingerprint, service, environment, count,"
        " first_seen, last_seen, sample_id, traces) VALUES ",
        service_rows,
        " ON CONFLICT (fingerprint, service, environment) DO UPDATE SET count = excluded.count,"
        " first_seen = excluded.first_seen, last_seen = excluded.last_seen,"
        " sample_id = excluded.sample_id, traces = excluded.traces",
    )
    _rows(
        conn,
        "INSERT OR IGNORE INTO error_events (ts, eid, fingerprint, service, lvl) VALUES ",
        occurrences,
    )


# --------------------------------------------------------------------------- the write hook


def apply_stored(
    conn: sqlite3.Connection,
    batches: Iterable[tuple[Sequence[Event], Sequence[Any] | None, Sequence[bool]]],
) -> None:
    """Fold the events one group commit stored into the derived tables (same transaction).

    `batches` are (events, their `EncodedEvent`s, stored flags) per append call; only
    events flagged as stored count, so duplicates never reach the derived tables.
    """
    items: list[Item] = []
    for events, encoded, flags in batches:
        assert encoded is not None
        for event, ee, stored in zip(events, encoded, flags, strict=True):
            if stored:
                items.append((event, ee.micros, ee.level, ee.eid))
    apply_items(conn, items)


def apply_items(
    conn: sqlite3.Connection, items: Sequence[Item], *, count_events: bool = True
) -> None:
    """The derivation proper, shared by appends and the backfill (which computes the
    per-minute rollup in SQL over every event instead: `count_events=False`)."""
    if not items:
        return
    counts: dict[tuple[int, str, int], int] = {}
    run_items: list[tuple[int, int, str, str, Event]] = []
    error_items: list[tuple[Event, int, int, bytes | str]] = []
    step_rows: list[tuple[Any, ...]] = []
    for order, (event, micros, level, eid) in enumerate(items):
        service = event.get("service")
        if service.__class__ is not str:
            service = ""
        key = (micros // MINUTE, service, level)
        counts[key] = counts.get(key, 0) + 1
        if level >= ERROR_LEVEL:
            error_items.append((event, micros, level, eid))
        name = event.get("event")
        if name not in RUN_EVENTS:
            continue
        if name in _DURATION_EVENTS:
            row = _step_event(event, name, micros, eid, service)
            if row is not None:
                step_rows.append(row)
        run_id = _run_id(event, name)
        if run_id is not None:
            run_items.append((micros, order, run_id, name, event))

    if count_events:
        _upsert_counts(conn, counts)
    _rows(
        conn,
        "INSERT OR IGNORE INTO step_events (ts, eid, kind, name, service, duration_ms, failed)"
        " VALUES ",
        step_rows,
    )
    if run_items:
        run_items.sort(key=lambda item: (item[0], item[1]))  # time order, stable
        fold = _RunFold(conn)
        fold.load(item[2] for item in run_items)
        for micros, _, run_id, name, event in run_items:
            try:
                fold.fold(run_id, name, event, micros)
            except Exception as exc:  # one odd event must never fail the batch it came with
                log.warning("run derivation skipped an event: %s", type(exc).__name__)
        fold.write()
    if error_items:
        _fold_errors(conn, error_items)


def _upsert_counts(conn: sqlite3.Connection, counts: Mapping[tuple[int, str, int], int]) -> None:
    rows = [(*key, n) for key, n in counts.items()]
    per = 200
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        conn.execute(
            "INSERT INTO event_counts (minute, service, lvl, n) VALUES "  # noqa: S608
            + ",".join(["(?,?,?,?)"] * len(part))
            + " ON CONFLICT (minute, service, lvl) DO UPDATE SET n = n + excluded.n",
            [v for row in part for v in row],
        )


def _step_event(
    event: Event, name: str, micros: int, eid: bytes | str, service: str
) -> tuple[Any, ...] | None:
    duration = _duration(event.get("duration_ms"))
    if duration is None:
        return None
    if name.startswith("node_"):
        kind, step_name = "node", _text(event.get("node"))
    else:
        layer = _int(event.get("layer"))
        kind = "layer"
        step_name = _text(event.get("layer_name")) or (
            f"layer {layer}" if layer is not None else None
        )
    if step_name is None:
        return None
    failed = 1 if name in ("node_failed", "layer_error") else 0
    return (micros, eid, kind, step_name, service, duration, failed)


# --------------------------------------------------------------------------- retention


def purge_derived(conn: sqlite3.Connection, before_micros: int, limit: int) -> int:
    """Drop derived rows as old as the events retention purges, at most `limit` per table.

    Runs go when their last event is older than the cutoff, error groups when their last
    occurrence is; group counts are cumulative until then (docs/server.md says so).
    """
    deleted = 0
    for table in ("error_events", "step_events"):
        deleted += conn.execute(
            f"DELETE FROM {table} WHERE (ts, eid) IN"  # noqa: S608 - constant table names
            f" (SELECT ts, eid FROM {table} WHERE ts < ? ORDER BY ts LIMIT ?)",
            (before_micros, limit),
        ).rowcount
    deleted += conn.execute(
        "DELETE FROM event_counts WHERE (minute, service, lvl) IN"
        " (SELECT minute, service, lvl FROM event_counts WHERE minute < ? ORDER BY minute LIMIT ?)",
        (before_micros // MINUTE, limit),
    ).rowcount
    run_ids = [
        row[0]
        for row in conn.execute(
            # started_at <= last_ts, so the start index bounds the scan.
            "SELECT run_id FROM runs WHERE started_at < ? AND last_ts < ? LIMIT ?",
            (before_micros, before_micros, limit),
        )
    ]
    fingerprints = [
        row[0]
        for row in conn.execute(
            "SELECT fingerprint FROM error_groups WHERE last_seen < ? ORDER BY last_seen LIMIT ?",
            (before_micros, limit),
        )
    ]
    for table, column, values in (
        ("run_steps", "run_id", run_ids),
        ("runs", "run_id", run_ids),
        ("error_group_services", "fingerprint", fingerprints),
        ("error_groups", "fingerprint", fingerprints),
    ):
        for chunk in chunks(values):
            deleted += conn.execute(
                f"DELETE FROM {table} WHERE {column} IN ({marks(len(chunk))})",  # noqa: S608
                chunk,
            ).rowcount
    return deleted


# --------------------------------------------------------------------------- schema v2

_DAY_KEYS: Final = 86_400_000_000 << KEY_SHIFT
# Floor division like Python's `//` (SQLite's `/` truncates toward zero).
_MINUTE_SQL: Final = (
    "CASE WHEN e.ts >= 0 THEN e.ts / 60000000 ELSE -((-e.ts - 1) / 60000000) - 1 END"
)


def migrate_v2(conn: sqlite3.Connection, *, chunk: int = _BACKFILL_CHUNK) -> None:
    """Create the derived tables and backfill them from the stored events.

    Runs inside the migration's transaction. Memory stays bounded: the rollup is computed
    one day of events at a time in SQL, and only run and error events (a small part of a
    store) are decoded, `chunk` at a time, in time order.
    """
    for statement in DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    low, high = conn.execute("SELECT min(id), max(id) FROM events").fetchone()
    if low is None:
        return
    start = low
    while start <= high:
        conn.execute(
            f"INSERT INTO event_counts (minute, service, lvl, n) SELECT {_MINUTE_SQL},"  # noqa: S608
            " coalesce(n.value, ''), e.lvl, count(*) FROM events AS e"
            " LEFT JOIN names AS n ON n.code = e.svc WHERE e.id >= ? AND e.id < ?"
            " GROUP BY 1, 2, 3 ON CONFLICT (minute, service, lvl) DO UPDATE SET n = n + excluded.n",
            (start, start + _DAY_KEYS),
        )
        start += _DAY_KEYS

    names: dict[int, str] = {}

    def name_of(code: int | None) -> str | None:
        if code is None:
            return None
        value = names.get(code)
        if value is None:
            value = names[code] = conn.execute(
                "SELECT value FROM names WHERE code = ?", (code,)
            ).fetchone()[0]
        return value

    wanted = sorted(RUN_EVENTS)
    codes = [
        row[0]
        for row in conn.execute(
            f"SELECT code FROM names WHERE value IN ({marks(len(wanted))})",  # noqa: S608
            wanted,
        )
    ]
    event_test = f" OR evt IN ({marks(len(codes))})" if codes else ""
    sql = (
        f"SELECT {ROW_COLUMNS} FROM events WHERE id > ? AND (lvl >= ?{event_test})"  # noqa: S608
        " ORDER BY id LIMIT ?"
    )
    last = low - 1
    while True:
        rows = conn.execute(sql, (last, ERROR_LEVEL, *codes, chunk)).fetchall()
        if not rows:
            return
        apply_items(
            conn,
            [(decode_event(row, name_of), row[1], row[2], row[9]) for row in rows],
            count_events=False,
        )
        last = rows[-1][0]
