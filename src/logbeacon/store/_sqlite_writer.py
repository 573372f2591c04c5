"""The single writer thread: group commit, trailing full-text index, chunked purges,
periodic checkpoints.

SQLite allows one writer at a time, so every write goes through this one thread and its one
connection. Concurrent `append` calls queue up; the thread takes everything queued (up to a
bound) and commits it in one transaction, then answers each caller. A caller hears back only
after COMMIT returned — "accepted means durable". Purges run in small transactions between
append groups, so they never hold appends back for long.

The same thread also turns events into rows. Encoding on the callers' thread, or on a
separate encoder thread, was measured slower: SQLite releases the GIL while it works, and a
thread that wants it back waits up to a whole switch interval (5 ms) whenever another thread
is busy in Python — once per statement. Multi-row INSERTs keep those hand-overs few.

The full-text index is written after the commit, not in it: documents wait in memory and go
in one transaction per `fts_delay` (FTS5 costs several times more per document in small
transactions), or at once for a reader (`index_job`). `state.fts_gen` says how far the index
is complete; after a crash `_catch_up_index` indexes the rest before appends are taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from logbeacon.exceptions import StoreError, StoreUnavailable
from logbeacon.store._sqlite_codec import (
    INSERT_COLUMNS,
    ROW_COLUMNS,
    EncodedEvent,
    decode_event,
    index_document,
)
from logbeacon.store._sqlite_derived import apply_stored, purge_derived
from logbeacon.store._sqlite_schema import KEY_SHIFT, configure_connection, key_micros, migrate
from logbeacon.store.base import AppendResult

__all__ = ["Writer", "WriterConfig", "check_admission"]

log = logging.getLogger("logbeacon.store")

_SLOT_MASK: Final = (1 << KEY_SHIFT) - 1
_IN_CHUNK: Final = 900  # bound parameters per IN (...) lookup
_ROWS_PER_STATEMENT: Final = 500
_NAME_CACHE_MAX: Final = 65_536
_CHECKPOINT_BUSY_MS: Final = 250
_WAL_CHECKPOINT_BYTES: Final = 64 * 1024 * 1024
_WAL_CHECK_SECONDS: Final = 0.25
_INSERT_EVENTS: Final = f"INSERT OR IGNORE INTO events ({INSERT_COLUMNS}) VALUES "  # noqa: S608
_INSERT_FTS: Final = "INSERT INTO fts (rowid, text) VALUES "
# Documents held back beyond this while indexing keeps failing are dropped; the next indexing
# reads every row committed after `fts_gen` back from the table instead.
_FTS_PENDING_MAX: Final = 200_000  # documents, about 50 MB
# After a failed index flush, wait this long before the next (doubling up to the max), so a
# failing disk costs a warning every few seconds, not a hot loop.
_FTS_RETRY_FIRST: Final = 0.5
_FTS_RETRY_MAX: Final = 30.0

Event = dict[str, Any]

# `sqlite3` binds int, float, str and bytearray directly, but sends every other parameter —
# None included — through its adapter lookup, which misses twice and builds and drops an
# AttributeError on the way: 400 ns per NULL against 55 for an int, with about four NULLs in
# an event's row. An adapter registered for None turns that into one dict hit and one C call
# (150 ns). It returns None, which binds as NULL exactly as before; the registry is
# process-wide, and this entry changes no result for anyone else who binds None.
sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))  # a C call


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """Everything the writer thread needs to know; built by `SqliteStore`."""

    path: Path
    synchronous: str
    busy_timeout: float
    commit_hook: Callable[[], None] | None
    group_events: int
    max_backlog: int
    max_db_bytes: int | None
    checkpoint_interval: float
    purge_chunk: int
    compress: bool
    # The full-text index trails the commits: documents of committed events are indexed in
    # one transaction per `fts_delay` seconds (or `fts_batch` documents), and at once when a
    # reader asks (`index_job`).
    fts_delay: float = 0.25
    fts_batch: int = 20_000


@dataclass(slots=True)
class _Call:
    """One caller waiting for the writer: an append batch or a job."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    events: Sequence[Event] = ()
    encoded: Sequence[EncodedEvent] | None = None
    job: Callable[[], tuple[bool, Any]] | None = None


def _settle(call: _Call, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a caller's future from the writer thread (it may have given up waiting)."""

    def apply() -> None:
        if call.future.done():
            return
        if error is not None:
            call.future.set_exception(error)
        else:
            call.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the caller's loop is already closed
        call.loop.call_soon_threadsafe(apply)


def _settle_all(outcomes: list[tuple[_Call, Any]]) -> None:
    """Resolve a whole group's futures with one wake-up per event loop, not one per call:
    every wake-up is a syscall and a GIL hand-over to the loop thread."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Call, Any]]] = {}
    for call, result in outcomes:
        by_loop.setdefault(call.loop, []).append((call, result))

    def apply(items: list[tuple[_Call, Any]]) -> None:
        for call, result in items:
            if not call.future.done():
                call.future.set_result(result)

    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the callers' loop is already closed
            loop.call_soon_threadsafe(apply, items)


def check_admission(stopping: bool, backlog: int, size: int, limit: int) -> None:
    """Refuse a batch when the writer is closing or its backlog would pass `limit` (a lone
    batch larger than the limit is still taken: it could never pass otherwise)."""
    if stopping:
        raise StoreUnavailable("event store is closed; retry once it is open", 1.0)
    if backlog and backlog + size > limit:
        raise StoreUnavailable(
            f"event store write backlog is full ({backlog} events queued); retry shortly", 1.0
        )


def _unavailable(exc: BaseException) -> StoreUnavailable:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        advice, retry = "another connection holds the database lock", 2.0
    elif "full" in lowered:
        advice, retry = "the disk or the configured size limit is full; free space", 30.0
    else:
        advice, retry = "the database could not commit", 5.0
    error = StoreUnavailable(f"event store unavailable ({text}): {advice}, then retry", retry)
    error.__cause__ = exc
    return error


class Writer:
    """Owns the write connection and the thread that uses it."""

    def __init__(self, config: WriterConfig) -> None:
        self.config = config
        self._cond = threading.Condition()
        self._appends: deque[_Call] = deque()
        self._jobs: deque[_Call] = deque()
        self._backlog = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        # Committed state, touched only by the writer thread.
        self._gen = 0
        self._max_bump = 0
        self._codes: dict[str, int] = {}
        self._values: dict[int, str] = {}
        # (service, environment, event, node, logger, release) -> their codes
        self._combos: dict[tuple[str | None, ...], tuple[int | None, ...]] = {}
        self._last_checkpoint = time.monotonic()
        self._last_wal_check = 0.0
        # Committed, not yet in the full-text index: flat (key, document, key, …), in commit
        # order, and the time the oldest was committed. Everything up to `_fts_gen` is indexed.
        self._fts_pending: list[Any] = []
        self._fts_since = 0.0
        self._fts_gen = 0
        # Pending documents were dropped: the next indexing rebuilds them from the table.
        self._fts_rebuild = False
        # Backoff after a failed flush: no retry before `_fts_retry_at` (monotonic).
        self._fts_retry_at = 0.0
        self._fts_retry_wait = 0.0
        self.pragmas: dict[str, Any] = {}  # as read back from the connection after opening
        # Counters for stats(); plain ints written by one thread, read by others.
        self.counters: dict[str, int] = {
            "append_calls": 0,
            "transactions": 0,
            "events_stored": 0,
            "duplicates": 0,
            "failed_calls": 0,
            "rejected_calls": 0,
            "purged": 0,
            "checkpoints": 0,
            "index_flushes": 0,
            "index_pending": 0,
            "index_caught_up": 0,
            "index_failures": 0,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open the database in the writer thread; raise what opening raised."""
        self._thread = threading.Thread(target=self._run, name="logbeacon-sqlite-writer")
        self._thread.daemon = True
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error

    def stop(self) -> None:
        """Commit what is queued, checkpoint and close; idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    @property
    def backlog(self) -> int:
        """Events queued and not yet committed."""
        return self._backlog

    # ------------------------------------------------------------------ submission

    def submit_append(self, events: Sequence[Event], loop: asyncio.AbstractEventLoop) -> Any:
        """Queue one caller's batch; return the future that COMMIT resolves."""
        future: asyncio.Future[AppendResult] = loop.create_future()
        call = _Call(loop=loop, future=future, events=events)
        with self._cond:
            check_admission(self._stopping, self._backlog, len(events), self.config.max_backlog)
            self._backlog += len(events)
            self._appends.append(call)
            self._cond.notify_all()
        return future

    def submit_job(
        self, job: Callable[[], tuple[bool, Any]], loop: asyncio.AbstractEventLoop
    ) -> Any:
        """Queue a job; it is called repeatedly between append groups until it says done."""
        future: asyncio.Future[Any] = loop.create_future()
        with self._cond:
            if self._stopping:
                raise StoreUnavailable("event store is closed; retry once it is open", 1.0)
            self._jobs.append(_Call(loop=loop, future=future, job=job))
            self._cond.notify_all()
        return future

    # ------------------------------------------------------------------ thread body

    def _run(self) -> None:
        try:
            self._open()
        except BaseException as exc:
            self._start_error = exc
            if self._conn is not None:
                self._conn.close()
            self._started.set()
            return
        self._started.set()
        try:
            self._loop()
        finally:
            self._shutdown()

    def _open(self) -> None:
        cfg = self.config
        conn = sqlite3.connect(cfg.path, isolation_level=None, check_same_thread=False)
        self._conn = conn
        configure_connection(
            conn,
            synchronous=cfg.synchronous,
            busy_timeout_ms=int(cfg.busy_timeout * 1000),
            writer=True,
            max_db_bytes=cfg.max_db_bytes,
        )
        migrate(conn)
        self._gen, self._max_bump, self._fts_gen = conn.execute(
            "SELECT gen, max_bump, fts_gen FROM state"
        ).fetchone()
        if self._fts_gen != self._gen:
            self._catch_up_index()
        self.pragmas = {
            name: conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    def _loop(self) -> None:
        while True:
            group: list[_Call] = []
            job: _Call | None = None
            with self._cond:
                while not self._appends and not self._jobs and not self._stopping:
                    deadline = self._last_checkpoint + self.config.checkpoint_interval
                    if self._fts_pending or self._fts_rebuild:
                        due = max(self._fts_since + self.config.fts_delay, self._fts_retry_at)
                        deadline = min(deadline, due)
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        break
                    self._cond.wait(timeout)
                size = 0
                while self._appends and (
                    not group or size + len(self._appends[0].events) <= self.config.group_events
                ):
                    call = self._appends.popleft()
                    size += len(call.events)
                    group.append(call)
                if not group and self._jobs and not self._stopping:
                    job = self._jobs.popleft()
                stopping = self._stopping and not self._appends
            try:
                if group:
                    self._commit_group(group)
                elif job is not None:
                    self._step_job(job)
                self._maybe_index()
                self._maybe_checkpoint()
            except Exception as exc:  # a bug must not leave callers waiting forever
                for call in group:
                    _settle(call, error=StoreError(f"event store writer failed: {exc!r}"))
            finally:
                if group:
                    with self._cond:
                        self._backlog -= size
            if stopping and not group:
                return

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        since = now - self._last_checkpoint
        if since >= self.config.checkpoint_interval:
            self._checkpoint()
        elif since >= 1.0 and now - self._last_wal_check >= _WAL_CHECK_SECONDS:
            # A stat per group was a tenth of the writer's time under single-event load.
            self._last_wal_check = now
            if self.wal_bytes() > _WAL_CHECKPOINT_BYTES:
                self._checkpoint()

    def _shutdown(self) -> None:
        with self._cond:
            jobs = list(self._jobs)
            self._jobs.clear()
        for call in jobs:
            _settle(call, error=StoreUnavailable("event store closed before the job ran", 1.0))
        try:
            with contextlib.suppress(sqlite3.Error):  # the next start catches up instead
                self._index_pending()
            self._checkpoint()
        finally:
            self._db.close()

    # ------------------------------------------------------------------ appends

    def _commit_group(self, group: list[_Call]) -> None:
        self.counters["append_calls"] += len(group)
        ready: list[_Call] = []
        compress = self.config.compress
        for call in group:
            try:
                call.encoded = [EncodedEvent(event, compress=compress) for event in call.events]
            except Exception as exc:  # the caller's own malformed event fails its own call
                self.counters["rejected_calls"] += 1
                _settle(call, error=exc)
                continue
            ready.append(call)
        if not ready:
            return
        try:
            results = self._transaction(ready)
        except sqlite3.OperationalError as exc:
            # Locked, disk full, I/O error: every batch in the group is equally affected.
            self.counters["failed_calls"] += len(ready)
            for call in ready:
                _settle(call, error=_unavailable(exc))
            return
        except Exception as exc:
            if len(ready) == 1:
                self.counters["failed_calls"] += 1
                _settle(ready[0], error=self._as_store_error(exc))
                return
            # Something in one batch broke the shared transaction: give each its own, so
            # innocent batches still commit.
            for call in ready:
                self._commit_single(call)
            return
        _settle_all(
            [
                (call, AppendResult(stored=stored))
                for call, stored in zip(ready, results, strict=True)
            ]
        )

    def _commit_single(self, call: _Call) -> None:
        try:
            (stored,) = self._transaction([call])
        except Exception as exc:
            self.counters["failed_calls"] += 1
            _settle(call, error=self._as_store_error(exc))
        else:
            _settle(call, AppendResult(stored=stored))

    @staticmethod
    def _as_store_error(exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.OperationalError):
            return _unavailable(exc)
        if isinstance(exc, sqlite3.Error):
            error = StoreError(f"event store rejected the batch: {exc}")
            error.__cause__ = exc
            return error
        return exc

    def _transaction(self, calls: list[_Call]) -> list[list[bool]]:
        conn = self._db
        staged_codes: dict[str, int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            gen = self._gen + 1
            # Within the group the first copy of an event_id wins; copies already in the
            # database are found by INSERT OR IGNORE below.
            results: list[list[bool]] = []
            fresh: list[EncodedEvent] = []
            places: list[tuple[int, int]] = []
            seen: set[bytes | str] = set()
            for index, call in enumerate(calls):
                assert call.encoded is not None
                flags = [False] * len(call.encoded)
                for position, ee in enumerate(call.encoded):
                    if ee.eid not in seen:
                        seen.add(ee.eid)
                        flags[position] = True
                        fresh.append(ee)
                        places.append((index, position))
                results.append(flags)
            keys = self._group_keys(fresh)
            width = len(INSERT_COLUMNS.split(","))
            flat = self._event_params(conn, fresh, keys, gen, staged_codes)
            before = conn.total_changes
            _insert_flat(conn, _INSERT_EVENTS, width, flat)
            if conn.total_changes - before != len(fresh):
                stored = self._settle_conflicts(conn, fresh, keys, gen, staged_codes)
                for keep, (index, position) in zip(stored, places, strict=True):
                    results[index][position] = keep
                keys = [key for key, keep in zip(keys, stored, strict=True) if keep]
                fresh = [ee for ee, keep in zip(fresh, stored, strict=True) if keep]
            max_bump = max(
                [self._max_bump]
                + [
                    (k >> KEY_SHIFT) - key_micros(ee.micros)
                    for ee, k in zip(fresh, keys, strict=True)
                ]
            )
            # Runs, error groups and rollups commit with the events they derive from.
            apply_stored(
                conn,
                [
                    (call.events, call.encoded, flags)
                    for call, flags in zip(calls, results, strict=True)
                ],
            )
            conn.execute(
                "UPDATE state SET gen = ?, events = events + ?, max_bump = ?",
                (gen, len(fresh), max_bump),
            )
            if self.config.commit_hook is not None:
                self.config.commit_hook()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        # Committed: only now does in-memory state follow.
        self._gen = gen
        self._max_bump = max_bump
        if fresh:
            pending = self._fts_pending
            if not pending:
                self._fts_since = time.monotonic()
            for ee, key in zip(fresh, keys, strict=True):
                pending.append(key)
                pending.append(ee.document)
            self.counters["index_pending"] = len(pending) // 2
        self._learn_codes(staged_codes)
        self.counters["transactions"] += 1
        self.counters["events_stored"] += len(fresh)
        self.counters["duplicates"] += sum(len(call.events) for call in calls) - len(fresh)
        return results

    @staticmethod
    def _group_keys(fresh: list[EncodedEvent]) -> list[int]:
        """Time key per event: its microsecond, slot from a hash of its event id.

        Slots collide only when events share a microsecond; then the next free slot is
        taken (after 1024 it spills into the next microsecond, recorded as `max_bump` so time
        filters widen their key range to still find the event).
        """
        keys = [key_micros(ee.micros) << KEY_SHIFT | (_slot(ee.eid) & _SLOT_MASK) for ee in fresh]
        if len(set(keys)) != len(keys):
            used: set[int] = set()
            for index, wanted in enumerate(keys):
                key = wanted
                while key in used:
                    key += 1
                used.add(key)
                keys[index] = key
        return keys

    def _event_params(
        self,
        conn: sqlite3.Connection,
        fresh: Sequence[EncodedEvent],
        keys: Sequence[int],
        gen: int,
        staged: dict[str, int],
    ) -> list[Any]:
        """The flat parameter list of a multi-row INSERT INTO events."""
        combos = self._combos
        flat: list[Any] = []
        add = flat.extend
        for ee, key in zip(fresh, keys, strict=True):
            codes = combos.get(ee.names)
            if codes is None:
                codes = tuple(
                    None if name is None else self._code(conn, name, staged) for name in ee.names
                )
                if not staged:  # only remember combinations of committed codes
                    if len(combos) >= _NAME_CACHE_MAX:
                        combos.clear()
                    combos[ee.names] = codes
            add((key, ee.micros, gen, ee.level))
            add(codes)
            add(ee.columns)
        return flat

    def _settle_conflicts(
        self,
        conn: sqlite3.Connection,
        fresh: list[EncodedEvent],
        keys: list[int],
        gen: int,
        staged: dict[str, int],
    ) -> list[bool]:
        """After INSERT OR IGNORE skipped rows: tell duplicates from time-key collisions.

        A skipped row whose event_id exists from an earlier transaction is a duplicate. One
        whose event_id is absent lost its key to another event and is inserted again on the
        next free key. Rows from this transaction carry this `gen`.
        """
        found: dict[bytes | str, int] = {}
        eids = [ee.eid for ee in fresh]
        for start in range(0, len(eids), _IN_CHUNK):
            chunk = eids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                conn.execute(f"SELECT eid, gen FROM events WHERE eid IN ({marks})", chunk)  # noqa: S608
            )
        stored: list[bool] = []
        retry: list[int] = []
        for index, ee in enumerate(fresh):
            owner = found.get(ee.eid)
            stored.append(owner is None or owner == gen)
            if owner is None:
                retry.append(index)
        used = set(keys)
        for index in retry:
            key = keys[index] + 1
            while (
                key in used or conn.execute("SELECT 1 FROM events WHERE id = ?", (key,)).fetchone()
            ):
                key += 1
            used.add(key)
            keys[index] = key
        if retry:
            again = [fresh[index] for index in retry]
            params = self._event_params(conn, again, [keys[i] for i in retry], gen, staged)
            _insert_flat(
                conn, _INSERT_EVENTS.replace(" OR IGNORE", ""), len(params) // len(again), params
            )
        return stored

    def _code(self, conn: sqlite3.Connection, value: str, staged: dict[str, int]) -> int:
        """The dictionary code of a name, adding it (in the open transaction) if new."""
        code = self._codes.get(value)
        if code is None:
            code = staged.get(value)
        if code is None:
            row = conn.execute("SELECT code FROM names WHERE value = ?", (value,)).fetchone()
            if row is None:
                cursor = conn.execute("INSERT INTO names (value) VALUES (?)", (value,))
                assert cursor.lastrowid is not None
                code = cursor.lastrowid
            else:
                code = row[0]
            staged[value] = code
        return code

    def _learn_codes(self, staged: dict[str, int]) -> None:
        if len(self._codes) + len(staged) > _NAME_CACHE_MAX:
            self._codes.clear()
            self._values.clear()
            self._combos.clear()
        for value, code in staged.items():
            self._codes[value] = code
            self._values[code] = value

    def _name(self, code: int | None) -> str | None:
        if code is None:
            return None
        value = self._values.get(code)
        if value is None:
            row = self._db.execute("SELECT value FROM names WHERE code = ?", (code,)).fetchone()
            value = str(row[0])
            self._values[code] = value
        return value

    # ------------------------------------------------------------------ jobs

    def _step_job(self, call: _Call) -> None:
        assert call.job is not None
        try:
            done, value = call.job()
        except Exception as exc:
            _settle(call, error=self._as_store_error(exc))
            return
        if done:
            _settle(call, value)
        else:
            with self._cond:
                self._jobs.append(call)

    def submit_purge(self, before_micros: int, loop: asyncio.AbstractEventLoop) -> Any:
        """Delete events older than `before_micros`; the future resolves to the count."""
        return self.submit_job(self.purge_job(before_micros), loop)

    def purge_job(self, before_micros: int) -> Callable[[], tuple[bool, Any]]:
        """A job deleting events older than `before_micros`, one small transaction per step."""
        total = 0

        def step() -> tuple[bool, Any]:
            nonlocal total
            deleted = self._purge_chunk(before_micros)
            total += deleted
            return deleted < self.config.purge_chunk, total

        return step

    def _purge_chunk(self, before_micros: int) -> int:
        """Delete the oldest chunk of expired events and their index entries.

        The full-text index is contentless, so removing a row means handing FTS5 the very
        document it indexed; it is recomputed from the stored event. A row committed after
        `fts_gen` was never indexed: it leaves the pending documents instead. (Indexing them
        first would need room the database may not have: purging is how a full one recovers.)
        """
        conn = self._db
        upper = (key_micros(before_micros) + self._max_bump + 1) << KEY_SHIFT
        indexed_gen = self._fts_gen
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                f"SELECT gen, {ROW_COLUMNS} FROM events"  # noqa: S608 - constant column list
                " WHERE id < ? AND ts < ? ORDER BY id LIMIT ?",
                (upper, before_micros, self.config.purge_chunk),
            ).fetchall()
            documents = [
                ("delete", row[1], index_document(decode_event(row[1:], self._name)))
                for row in rows
                if row[0] <= indexed_gen
            ]
            unindexed = {row[1] for row in rows if row[0] > indexed_gen}
            _delete(conn, "DELETE FROM events WHERE id IN ", [row[1] for row in rows])
            _insert(conn, "INSERT INTO fts (fts, rowid, text) VALUES ", documents)
            conn.execute("UPDATE state SET events = events - ?", (len(rows),))
            purge_derived(conn, before_micros, self.config.purge_chunk)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if unindexed:
            pending = self._fts_pending
            kept: list[Any] = []
            for index in range(0, len(pending), 2):
                if pending[index] not in unindexed:
                    kept.append(pending[index])
                    kept.append(pending[index + 1])
            self._fts_pending = kept
            self.counters["index_pending"] = len(kept) // 2
        self.counters["purged"] += len(rows)
        return len(rows)

    # ------------------------------------------------------------------ full-text index

    def submit_index(self, loop: asyncio.AbstractEventLoop) -> Any:
        """Index every committed event now; the future resolves once they are searchable."""
        return self.submit_job(self.index_job(), loop)

    def index_job(self) -> Callable[[], tuple[bool, Any]]:
        """A job that brings the full-text index up to the last commit (for readers)."""

        def step() -> tuple[bool, Any]:
            self._index_pending()
            return True, None

        return step

    def _maybe_index(self) -> None:
        """Index what is pending once it is `fts_delay` old or `fts_batch` documents long.

        Indexing in the commit itself cost a fifth of the ingest rate: FTS5 writes a segment
        per transaction, and small segments cost more per document to write and to merge.
        """
        pending = self._fts_pending
        if len(pending) > 2 * _FTS_PENDING_MAX:
            # Only a failing index gets here (a healthy one flushes at `fts_batch`): bound
            # the memory, and let the next flush read the documents back from the table.
            log.error(
                "dropping %d unindexed documents from memory; indexing will read them back",
                len(pending) // 2,
            )
            self._fts_pending = pending = []
            self._fts_rebuild = True
            self.counters["index_pending"] = 0
        if not pending and not self._fts_rebuild:
            return
        now = time.monotonic()
        if now < self._fts_retry_at:
            return
        if (
            len(pending) < 2 * self.config.fts_batch
            and now - self._fts_since < self.config.fts_delay
        ):
            return
        try:
            self._index_pending()
        except sqlite3.Error as exc:  # the commits stand; try again after a pause
            self._fts_retry_wait = min(
                _FTS_RETRY_MAX, max(_FTS_RETRY_FIRST, 2 * self._fts_retry_wait)
            )
            self._fts_retry_at = time.monotonic() + self._fts_retry_wait
            self.counters["index_failures"] += 1
            log.warning(
                "full-text indexing failed, will retry in %.1f s: %s", self._fts_retry_wait, exc
            )

    def _index_pending(self) -> None:
        """Index every committed, unindexed document in one transaction, with `fts_gen`."""
        if self._fts_rebuild:
            # Everything after `fts_gen` is unindexed, pending or dropped alike: take it
            # from the table once (what a start after a crash does), never twice.
            self._catch_up_index()
            self._fts_pending = []
            self._fts_rebuild = False
            self.counters["index_pending"] = 0
            self._fts_retry_wait = self._fts_retry_at = 0.0
            return
        pending = self._fts_pending
        if not pending:
            return
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            _insert_flat(conn, _INSERT_FTS, 2, pending)
            conn.execute("UPDATE state SET fts_gen = ?", (self._gen,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._fts_pending = []
        self._fts_gen = self._gen
        self.counters["index_flushes"] += 1
        self.counters["index_pending"] = 0
        self._fts_retry_wait = self._fts_retry_at = 0.0

    def _catch_up_index(self) -> None:
        """Index the rows a crash (or dropped pending documents) left unindexed: every one
        committed after `fts_gen`.

        The documents are rebuilt from the stored events, as a purge rebuilds them. Finding
        the rows scans the table once (there is no index on `gen`); it runs only after a
        crash, where it commits before the first append is taken.
        """
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                f"SELECT {ROW_COLUMNS} FROM events WHERE gen > ?",  # noqa: S608 - constant
                (self._fts_gen,),
            )
            count = 0
            while chunk := rows.fetchmany(2000):
                flat: list[Any] = []
                for row in chunk:
                    flat.append(row[0])
                    flat.append(index_document(decode_event(row, self._name)))
                _insert_flat(conn, _INSERT_FTS, 2, flat)
                count += len(chunk)
            conn.execute("UPDATE state SET fts_gen = gen")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._fts_gen = self._gen
        self.counters["index_caught_up"] += count
        if count:
            log.warning("indexed %d events missing from the full-text index", count)

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database and truncate it, so it cannot grow unbounded.

        A short busy timeout keeps a reader holding an old snapshot from stalling appends;
        the next round tries again.
        """
        conn = self._db
        self._last_checkpoint = time.monotonic()
        conn.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_BUSY_MS}")
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            self.counters["checkpoints"] += 1
        except sqlite3.OperationalError:
            pass
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout * 1000)}")

    def wal_bytes(self) -> int:
        try:
            return os.path.getsize(f"{self.config.path}-wal")
        except OSError:
            return 0


def _chunk_rows(conn: sqlite3.Connection, width: int) -> int:
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(_ROWS_PER_STATEMENT, limit // width))


def _insert_flat(conn: sqlite3.Connection, head: str, width: int, flat: list[Any]) -> None:
    """Multi-row INSERT of `width`-column rows given as one flat parameter list."""
    if not flat:
        return
    group = "(" + ",".join("?" * width) + ")"
    per = _chunk_rows(conn, width)
    step = per * width
    for start in range(0, len(flat), step):
        part = flat[start : start + step]
        conn.execute(head + ",".join([group] * (len(part) // width)), part)


def _insert(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]]) -> None:
    """Multi-row INSERT: one statement step per few hundred rows instead of one per row.

    Every step releases and re-takes the GIL; with the event loop busy on another thread,
    each re-take can wait a whole switch interval, so fewer steps keep the writer fast.
    """
    if not rows:
        return
    width = len(rows[0])
    group = "(" + ",".join("?" * width) + ")"
    step = _chunk_rows(conn, width)
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        conn.execute(head + ",".join([group] * len(part)), [v for row in part for v in row])


def _delete(conn: sqlite3.Connection, head: str, values: Sequence[Any]) -> None:
    """`DELETE ... WHERE x IN (...)` in few statements."""
    step = _chunk_rows(conn, 1)
    for start in range(0, len(values), step):
        part = values[start : start + step]
        conn.execute(head + "(" + ",".join("?" * len(part)) + ")", list(part))


def _slot(eid: bytes | str) -> int:
    return zlib.crc32(eid if isinstance(eid, bytes) else eid.encode(errors="surrogatepass"))
