"""The "naive schema" server of bench/ingest.py: logbeacon's own app over a naive SQLite store.

The server is `logbeacon.server.create_app` unchanged (same parsing, validation, redaction,
enrichment and HTTP stack) with its store swapped for `NaiveStore`, so the benchmark compares
storage designs and nothing else. `NaiveStore` is what one writes first:

- one row per event with the full JSON text, plus the filter columns;
- five secondary indexes (trace_id, request_id, session_id, service, timestamp) and the
  UNIQUE event_id index that duplicate detection needs (logbeacon's store has one too);
- a regular (content-storing) FTS5 table over `message`;
- `executemany` in chunks of at most 1,000 rows and one transaction per request (append
  call), committed by one writer thread;
- WAL with `synchronous=NORMAL`: an acknowledged event survives a process crash, the same
  durability as `logbeacon serve`'s default.

It implements the event half of the `Store` protocol (append, queries, purge, stats; no
retention task) and none of the derived views (runs, error groups, analysis).

    python bench/_naive_server.py --port 8800 --data-dir /tmp/naive
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import orjson

from logbeacon.event import LEVEL_NUMBERS, LEVELS, format_timestamp
from logbeacon.exceptions import StoreUnavailable
from logbeacon.store.base import MAX_LIMIT, AppendResult, Page, Query, StoreStats

if TYPE_CHECKING:
    from logbeacon.store.base import Store

__all__ = ["NaiveStore", "main"]

Event = dict[str, Any]
T = TypeVar("T")

CHUNK_ROWS: Final = 1000
_IN_CHUNK: Final = 500
_COLUMN_FILTERS: Final = ("service", "trace_id", "request_id", "session_id")
_JSON_FILTERS: Final = ("environment", "event", "run_id", "job_id", "correlation_id", "node")
_WORD: Final = re.compile(r"\w+")

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    timestamp TEXT NOT NULL,
    level TEXT NOT NULL,
    service TEXT,
    trace_id TEXT,
    request_id TEXT,
    session_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_trace_id ON events (trace_id);
CREATE INDEX IF NOT EXISTS events_request_id ON events (request_id);
CREATE INDEX IF NOT EXISTS events_session_id ON events (session_id);
CREATE INDEX IF NOT EXISTS events_service ON events (service);
CREATE INDEX IF NOT EXISTS events_timestamp ON events (timestamp);
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5 (message);
"""

_INSERT: Final = (
    "INSERT INTO events (id, event_id, timestamp, level, service, trace_id, request_id,"
    " session_id, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_FTS: Final = "INSERT INTO events_fts (rowid, message) VALUES (?, ?)"


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


class NaiveStore:
    """The first SQLite store one writes; see the module docstring for its design."""

    kind = "sqlite-naive"

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._next_id = 1
        self._count = 0

    async def open(self) -> None:
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="naive-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="naive-read")
        await self._on(self._writer, self._open_writer)
        self._read_conn = _connect(self.path, self._synchronous)

    def _open_writer(self) -> None:
        conn = _connect(self.path, self._synchronous)
        conn.executescript(SCHEMA)
        last, count = conn.execute("SELECT coalesce(max(id), 0), count(*) FROM events").fetchone()
        self._next_id = last + 1
        self._count = count
        self._write_conn = conn

    async def close(self) -> None:
        for pool in (self._writer, self._reader):
            if pool is not None:
                await asyncio.to_thread(pool.shutdown, wait=True)
        self._writer = self._reader = None
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None
        if self._write_conn is not None:
            self._write_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._write_conn.close()
            self._write_conn = None

    async def _on(self, pool: ThreadPoolExecutor | None, fn: Callable[[], T]) -> T:
        if pool is None:
            raise StoreUnavailable("naive store is not open", 1.0)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"naive store: {exc}", 1.0) from exc

    # ------------------------------------------------------------------ writes

    async def append(self, events: Sequence[Event]) -> AppendResult:
        """One transaction per call; `executemany` in chunks of at most 1,000 rows."""
        if not events:
            return AppendResult(stored=[])
        return await self._on(self._writer, lambda: self._write(events))

    def _write(self, events: Sequence[Event]) -> AppendResult:
        conn = self._write_conn
        assert conn is not None
        ids = [event["event_id"] for event in events]
        conn.execute("BEGIN IMMEDIATE")
        try:
            existing = self._existing(conn, ids)
            stored: list[bool] = []
            rows: list[tuple[Any, ...]] = []
            texts: list[tuple[int, str]] = []
            next_id = self._next_id
            for event, event_id in zip(events, ids, strict=True):
                if event_id in existing:
                    stored.append(False)
                    continue
                existing.add(event_id)
                stored.append(True)
                rows.append(
                    (
                        next_id,
                        event_id,
                        event["timestamp"],
                        event["level"],
                        event.get("service"),
                        event.get("trace_id"),
                        event.get("request_id"),
                        event.get("session_id"),
                        orjson.dumps(event).decode(),
                    )
                )
                message = event.get("message")
                if message:
                    texts.append((next_id, message))
                next_id += 1
            for start in range(0, len(rows), CHUNK_ROWS):
                conn.executemany(_INSERT, rows[start : start + CHUNK_ROWS])
            for start in range(0, len(texts), CHUNK_ROWS):
                conn.executemany(_INSERT_FTS, texts[start : start + CHUNK_ROWS])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._next_id = next_id
        self._count += len(rows)
        return AppendResult(stored=stored)

    @staticmethod
    def _existing(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT event_id FROM events WHERE event_id IN ({marks})"
            found.update(row[0] for row in conn.execute(sql, chunk))
        return found

    async def purge(self, before: float) -> int:
        cutoff = format_timestamp(before)

        def run() -> int:
            conn = self._write_conn
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "DELETE FROM events_fts WHERE rowid IN"
                    " (SELECT id FROM events WHERE timestamp < ?)",
                    (cutoff,),
                )
                deleted = conn.execute("DELETE FROM events WHERE timestamp < ?", (cutoff,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._count -= deleted.rowcount
            return deleted.rowcount

        return await self._on(self._writer, run)

    # ------------------------------------------------------------------ reads

    async def query(self, query: Query) -> Page:
        return await self._on(self._reader, lambda: self._query(query))

    def _query(self, query: Query) -> Page:
        if not 1 <= query.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        where: list[str] = []
        params: list[Any] = []
        if query.cursor is not None:
            stamp, row_id = _decode_cursor(query.cursor)
            where.append("(timestamp, id) < (?, ?)")
            params += [stamp, row_id]
        if query.since is not None:
            where.append("timestamp >= ?")
            params.append(format_timestamp(query.since))
        if query.until is not None:
            where.append("timestamp < ?")
            params.append(format_timestamp(query.until))
        if query.level is not None:
            floor = LEVEL_NUMBERS[query.level]
            levels = [name for name in LEVELS if LEVEL_NUMBERS[name] >= floor]
            where.append(f"level IN ({','.join('?' * len(levels))})")
            params += levels
        for name in _COLUMN_FILTERS:
            if (value := getattr(query, name)) is not None:
                where.append(f"{name} = ?")
                params.append(value)
        for name in _JSON_FILTERS:
            if (value := getattr(query, name)) is not None:
                where.append(f"json_extract(data, '$.{name}') = ?")
                params.append(value)
        if query.q is not None:
            words = _WORD.findall(query.q)
            if not words:
                return Page(events=[])
            where.append("id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)")
            params.append(" ".join('"' + word + '"' for word in words))
        sql = "SELECT id, timestamp, data FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY timestamp DESC, id DESC LIMIT ?"
        params.append(query.limit + 1)
        assert self._read_conn is not None
        rows = self._read_conn.execute(sql, params).fetchall()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        events = [orjson.loads(row[2]) for row in rows]
        cursor = _encode_cursor(rows[-1][1], rows[-1][0]) if more else None
        return Page(events=events, next_cursor=cursor)

    async def trace(self, trace_id: str, limit: int = 10_000) -> list[Event]:
        def run() -> list[Event]:
            assert self._read_conn is not None
            rows = self._read_conn.execute(
                "SELECT data FROM events WHERE trace_id = ? ORDER BY timestamp, id LIMIT ?",
                (trace_id, limit),
            )
            return [orjson.loads(row[0]) for row in rows]

        return await self._on(self._reader, run)

    async def get(self, event_id: str) -> Event | None:
        def run() -> Event | None:
            assert self._read_conn is not None
            row = self._read_conn.execute(
                "SELECT data FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
            return None if row is None else orjson.loads(row[0])

        return await self._on(self._reader, run)

    async def stats(self) -> StoreStats:
        def run() -> tuple[str | None, str | None]:
            assert self._read_conn is not None
            row = self._read_conn.execute(
                "SELECT min(timestamp), max(timestamp) FROM events"
            ).fetchone()
            return row[0], row[1]

        oldest, newest = await self._on(self._reader, run)
        size = sum(_size(f"{self.path}{suffix}") for suffix in ("", "-wal", "-shm"))
        return StoreStats(
            kind=self.kind,
            events=self._count,
            bytes_on_disk=size,
            oldest=oldest,
            newest=newest,
            schema_version=1,
        )


def _encode_cursor(stamp: str, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{stamp}|{row_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        stamp, _, row_id = base64.urlsafe_b64decode(cursor).decode().partition("|")
        return stamp, int(row_id)
    except ValueError:
        raise ValueError("invalid cursor; repeat the query without one") from None


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def main() -> None:
    """Run logbeacon's app over `NaiveStore` under uvicorn, like `logbeacon serve` runs."""
    parser = argparse.ArgumentParser(description="logbeacon's app over a naive SQLite schema")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=1e9)
    parser.add_argument("--burst", type=int, default=1_000_000_000)
    args = parser.parse_args()

    import uvicorn

    from logbeacon.server import Settings, create_app

    settings = Settings(
        host="127.0.0.1",
        port=args.port,
        data_dir=args.data_dir,
        rate=args.rate,
        burst=args.burst,
    )
    # NaiveStore implements the event half of the Store protocol (append, query, trace, get,
    # purge, stats) and not the derived views (runs, error groups, analysis), which this
    # benchmark never requests: it compares how events are stored.
    store = cast("Store", NaiveStore(args.data_dir / "naive.db"))
    app = create_app(settings, store=store)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
