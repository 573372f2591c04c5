"""The embedded SQLite event store: logbeacon's default, one file in the data directory.

`SqliteStore` implements `logbeacon.store.base.Store`. Writes go through one writer thread
that group-commits concurrent appends (`_sqlite_writer`); reads run on a small pool of
read-only connections (`_sqlite_read`); rows are compact (`_sqlite_codec`) and the schema is
versioned (`_sqlite_schema`). docs/storage.md explains the layout, pragmas, durability modes,
retention and backups.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from logbeacon.exceptions import ConfigError, StoreError, StoreUnavailable
from logbeacon.store._sqlite_codec import format_micros
from logbeacon.store._sqlite_derived_read import DerivedQueries
from logbeacon.store._sqlite_read import CursorCodec, NameCache, Reader, uses_index
from logbeacon.store._sqlite_schema import configure_connection
from logbeacon.store._sqlite_writer import Writer, WriterConfig
from logbeacon.store._sqlite_writer_process import WriterProcess
from logbeacon.store.base import AppendResult, Page, Query, StoreStats

__all__ = ["SqliteStore"]

Event = dict[str, Any]
T = TypeVar("T")

_SYNCHRONOUS: Final = {"normal": "NORMAL", "full": "FULL"}
_DAY: Final = 86_400.0


class SqliteStore(DerivedQueries):
    """Durable, indexed, searchable event storage in one SQLite file (WAL mode).

    `durability="normal"` (`synchronous=NORMAL`) keeps every acknowledged event across a
    process crash; `"full"` (`synchronous=FULL`) also across power loss, at the cost of one
    fsync per group commit. `commit_hook` is a fault-injection seam called just before each
    COMMIT of appended events; tests make it raise to prove a failed commit acknowledges
    nothing. `max_db_bytes` caps the database size: at the cap appends raise
    `StoreUnavailable` (like a full disk) until retention frees space. `writer_process=True`
    runs the writer in a child process (`_sqlite_writer_process.py`), so a busy event loop and
    the writer do not take turns on one interpreter lock; `logbeacon serve` does that on
    machines with more than one core.

    The table and its time key are written in the committing transaction. The full-text
    index — which every id filter and `q` walk — trails it: the writer indexes what was
    committed in one transaction per `index_delay` seconds (FTS5 costs several times more per
    document in small transactions), and at once when a read needs it, so an acknowledged
    event is still at once visible to every filter and to `q`. After a crash the next start
    indexes whatever the crash left out before it takes appends.
    """

    kind = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        durability: Literal["normal", "full"] = "normal",
        retention_days: float | None = 14,
        commit_hook: Callable[[], None] | None = None,
        busy_timeout: float = 5.0,
        max_db_bytes: int | None = None,
        retention_interval: float = 300.0,
        checkpoint_interval: float = 30.0,
        group_events: int = 5000,
        max_backlog: int = 50_000,
        purge_chunk: int = 2000,
        readers: int = 4,
        compress: bool = True,
        writer_process: bool = False,
        index_delay: float = 0.25,
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ConfigError(f"durability must be 'normal' or 'full', not {durability!r}")
        if retention_days is not None and retention_days <= 0:
            raise ConfigError("retention_days must be a positive number of days (or None)")
        if busy_timeout < 0:
            raise ConfigError("busy_timeout must be a number of seconds >= 0")
        self.path = Path(path)
        self.durability = durability
        self.retention_days = retention_days
        self.retention_interval = retention_interval
        self._config = WriterConfig(
            path=self.path,
            synchronous=_SYNCHRONOUS[durability],
            busy_timeout=busy_timeout,
            commit_hook=commit_hook,
            group_events=group_events,
            max_backlog=max(max_backlog, group_events),
            max_db_bytes=max_db_bytes,
            checkpoint_interval=checkpoint_interval,
            purge_chunk=purge_chunk,
            compress=compress,
            fts_delay=index_delay,
        )
        self._reader_count = max(1, readers)
        # A commit hook is a test seam that cannot cross into another process.
        self._writer_process = writer_process and commit_hook is None
        self._writer: Writer | WriterProcess | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: list[Reader] = []
        self._readers_lock = threading.Lock()
        self._names = NameCache()
        self._cursors: CursorCodec | None = None
        self._retention: asyncio.Task[None] | None = None
        self._closed = False
        self._unindexed = False  # stored since the full-text index was last made complete

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Create or migrate the schema, start the writer, readers and the retention task."""
        if self._writer is not None:
            return
        if self._closed:
            raise StoreError("this SqliteStore was closed; create a new one to reopen the file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = WriterProcess(self._config) if self._writer_process else Writer(self._config)
        try:
            await asyncio.to_thread(writer.start)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the event store at {self.path}: {exc}") from exc
        if isinstance(writer, WriterProcess):
            writer.attach(asyncio.get_running_loop())
        self._writer = writer
        secret = await asyncio.to_thread(self._read_secret)
        self._cursors = CursorCodec(secret)
        self._pool = ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="logbeacon-sqlite-read"
        )
        if self.retention_days is not None:
            self._retention = asyncio.create_task(
                self._retention_loop(), name="logbeacon-sqlite-retention"
            )

    def _read_secret(self) -> bytes:
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            secret: bytes = conn.execute("SELECT secret FROM state").fetchone()[0]
        return secret

    async def close(self) -> None:
        """Drain the writer, index what is pending, checkpoint the WAL, close; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        if self._pool is not None:
            pool = self._pool
            self._pool = None
            await asyncio.to_thread(pool.shutdown, wait=True)
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()
        if self._writer is not None:
            writer = self._writer
            self._writer = None
            if isinstance(writer, WriterProcess):
                await writer.aclose()
            else:
                await asyncio.to_thread(writer.stop)

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ writes

    def _require_writer(self) -> Writer | WriterProcess:
        if self._writer is None:
            raise StoreUnavailable(
                "event store is not open; call open() first (or it was closed)", 1.0
            )
        return self._writer

    async def append(self, events: Sequence[Event]) -> AppendResult:
        """Store a batch atomically; return only after COMMIT ("accepted means durable")."""
        if not events:
            return AppendResult(stored=[])
        writer = self._require_writer()
        # The writer thread encodes the rows too: splitting the work with the event loop
        # thread only made both wait on each other for the GIL.
        future = writer.submit_append(list(events), asyncio.get_running_loop())
        result: AppendResult = await future
        if any(result.stored):
            self._unindexed = True
        return result

    async def _searchable(self) -> None:
        """Read-your-writes for the full-text index, which trails the commits.

        Every filter on an id, and `q`, walks that index; when anything was stored since it
        was last brought up to date, the writer indexes it now (one short transaction) before
        the read. Pages of one query keep the generation the index was complete to, so none
        skips or repeats an event indexed between them.
        """
        if not self._unindexed:
            return
        writer = self._require_writer()
        self._unindexed = False
        try:
            await writer.submit_index(asyncio.get_running_loop())
        except BaseException:
            self._unindexed = True
            raise

    async def purge(self, before: float) -> int:
        """Delete events older than `before` in small transactions between append groups."""
        writer = self._require_writer()
        future = writer.submit_purge(round(before * 1_000_000), asyncio.get_running_loop())
        count: int = await future
        return count

    async def _retention_loop(self) -> None:
        assert self.retention_days is not None
        while True:
            # Locked or closing: the next round tries again.
            with contextlib.suppress(StoreUnavailable):
                await self.purge(time.time() - self.retention_days * _DAY)
            await asyncio.sleep(self.retention_interval)

    async def backup(self, dest: Path | str) -> None:
        """Write a consistent copy of the live database to `dest` (which must not exist).

        Uses `VACUUM INTO`, which reads one snapshot while appends go on; copying the file
        with `cp` while the server runs can produce a corrupt copy (it misses the WAL).
        """
        await self._searchable()  # a copy with a complete index needs no catch-up
        target = Path(dest)

        def run() -> None:
            if target.exists():
                raise StoreError(f"backup target {target} already exists; choose a new name")
            with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
                conn.execute(f"PRAGMA busy_timeout = {int(self._config.busy_timeout * 1000)}")
                conn.execute("VACUUM INTO ?", (str(target),))

        try:
            await asyncio.to_thread(run)
        except sqlite3.Error as exc:
            raise StoreError(f"backup to {target} failed: {exc}") from exc

    # ------------------------------------------------------------------ reads

    def _reader(self) -> Reader:
        reader: Reader | None = getattr(self._local, "reader", None)
        if reader is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            configure_connection(
                conn,
                synchronous=self._config.synchronous,
                busy_timeout_ms=int(self._config.busy_timeout * 1000),
                writer=False,
            )
            assert self._cursors is not None
            reader = Reader(conn, self._names, self._cursors)
            self._local.reader = reader
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    async def _read(self, fn: Callable[[Reader], T]) -> T:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("event store is not open; call open() first", 1.0)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, lambda: fn(self._reader()))
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"event store could not be read ({exc}); retry", 1.0) from exc

    async def query(self, query: Query) -> Page:
        """Events matching every filter, newest first; raises ValueError for a bad cursor."""
        if uses_index(query):
            await self._searchable()
        return await self._read(lambda reader: reader.query(query))

    async def trace(self, trace_id: str, limit: int = 10_000) -> list[Event]:
        """Every event of one trace, oldest first."""
        await self._searchable()
        return await self._read(lambda reader: reader.trace(trace_id, limit))

    async def get(self, event_id: str) -> Event | None:
        """One event by id, or None."""
        return await self._read(lambda reader: reader.get(event_id))

    async def stats(self) -> StoreStats:
        """Counts, sizes and writer counters; O(1) reads, safe for health checks."""
        writer = self._require_writer()
        count, oldest, newest, version = await self._read(lambda reader: reader.summary())
        sizes = {suffix: _file_size(f"{self.path}{suffix}") for suffix in ("", "-wal", "-shm")}
        wal = sizes["-wal"]
        details: dict[str, Any] = dict(writer.counters)
        details.update(
            durability=self.durability,
            synchronous=self._config.synchronous,
            pragmas=dict(writer.pragmas),
            wal_bytes=wal,
            write_backlog=writer.backlog,
            retention_days=self.retention_days,
        )
        return StoreStats(
            kind=self.kind,
            events=count,
            bytes_on_disk=sum(sizes.values()),
            oldest=None if oldest is None else format_micros(oldest),
            newest=None if newest is None else format_micros(newest),
            schema_version=version,
            details=details,
        )


def _file_size(path: str) -> int:
    """Size of a file that may not exist (the WAL and shm come and go with checkpoints)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
