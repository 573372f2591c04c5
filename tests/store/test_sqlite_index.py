"""The full-text index trails the commits, and nobody can tell: reads index first, a crash
is caught up at the next start, purges and pages stay exact."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logbeacon.event import format_timestamp
from logbeacon.store import _sqlite_writer
from logbeacon.store._sqlite_read import uses_index
from logbeacon.store._sqlite_writer import Writer
from logbeacon.store.base import Query
from logbeacon.store.sqlite import SqliteStore
from tests.store.conftest import BASE_TIME

Event = dict[str, Any]
NEVER = 3600.0  # an index delay no test waits out: only reads and shutdown index


def generations(path: Path) -> tuple[int, int]:
    """(last commit, last indexed commit) as the file says."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        gen, indexed = conn.execute("SELECT gen, fts_gen FROM state").fetchone()
    return int(gen), int(indexed)


def search(path: Path, word: str) -> int:
    """Rows the full-text index itself finds for `word` (no read-your-writes help)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        row = conn.execute("SELECT count(*) FROM fts WHERE fts MATCH ?", (word,)).fetchone()
    return int(row[0])


async def wait_for(check: Callable[[], bool]) -> None:
    """Poll `check` until it holds; fail after ten seconds."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met within ten seconds")


async def test_acknowledged_events_are_found_at_once_though_the_index_trails(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """With indexing held back, an id filter, `q` and a trace still find what was just
    acknowledged: the read has the writer index first."""
    path = tmp_path / "events.db"
    async with SqliteStore(path, retention_days=None, index_delay=NEVER) as store:
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        events = [
            make_event(message=f"walrus {i}", session_id="S-1", trace_id=trace) for i in range(30)
        ]
        await store.append(events[:10])
        await store.append(events[10:])
        gen, indexed = generations(path)
        assert indexed < gen  # the commits did not index
        assert 0 == search(path, "walrus")

        assert 30 == len((await store.query(Query(q="walrus", limit=100))).events)
        assert (gen, gen) == generations(path)
        await store.append([make_event(message="walrus late", session_id="S-1")])
        assert 31 == len((await store.query(Query(session_id="S-1", limit=100))).events)
        await store.append([make_event(message="walrus trace", trace_id=trace)])
        assert 31 == len(await store.trace(trace))
        stats = await store.stats()
        assert 0 == stats.details["index_pending"]
        assert stats.details["index_flushes"] >= 3


async def test_a_quiet_writer_indexes_within_the_delay(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """Nobody reads: the writer indexes on its own once the documents are `index_delay` old."""
    path = tmp_path / "events.db"
    async with SqliteStore(path, retention_days=None, index_delay=0.2) as store:
        await store.append([make_event(message="narwhal") for _ in range(5)])
        await wait_for(lambda: search(path, "narwhal") == 5)
        gen, indexed = generations(path)
        assert gen == indexed


async def test_close_indexes_what_is_pending(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    path = tmp_path / "events.db"
    async with SqliteStore(path, retention_days=None, index_delay=NEVER) as store:
        await store.append([make_event(message="orca") for _ in range(7)])
    assert 7 == search(path, "orca")
    gen, indexed = generations(path)
    assert gen == indexed


# Appends 500 events in batches of 100, says "acked" and waits to be killed; with the index
# held back, none of them is in the full-text index when the kill comes.
CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from logbeacon.event import normalize_event
    from logbeacon.store.sqlite import SqliteStore

    async def main() -> None:
        store = SqliteStore(sys.argv[1], retention_days=None, index_delay=3600)
        await store.open()
        for b in range(5):
            batch = [
                normalize_event({"event": "tick", "message": f"kraken {b * 100 + i}",
                                 "session_id": f"S-{(b * 100 + i) % 3}"})
                for i in range(100)
            ]
            await store.append(batch)
        print("acked", flush=True)
        time.sleep(60)

    asyncio.run(main())
    """
)


def test_a_crash_before_indexing_is_caught_up_at_the_next_start(tmp_path: Path) -> None:
    """SIGKILL with acknowledged, unindexed events: the next start rebuilds their documents
    from the table and indexes them before it takes appends."""
    path = tmp_path / "events.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert "acked\n" == child.stdout.readline(), child.stderr.read() if child.stderr else ""
        gen, indexed = generations(path)
        assert indexed < gen
        assert 0 == search(path, "kraken")
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert 0 == search(path, "kraken")  # nothing indexed on the way out

    async def reopen() -> None:
        async with SqliteStore(path, retention_days=None) as reopened:
            assert 500 == (await reopened.stats()).details["index_caught_up"]
            assert 500 == search(path, "kraken")
            found = await reopened.query(Query(session_id="S-1", limit=500))
            assert 167 == len(found.events)
            assert all(e["session_id"] == "S-1" for e in found.events)

    asyncio.run(reopen())
    gen, indexed = generations(path)
    assert gen == indexed


async def test_purging_unindexed_events_keeps_the_index_exact(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """A purge hands FTS5 deletions only for rows it indexed; rows still waiting leave the
    queue instead. What survives is found, what was purged is not, and FTS5 agrees."""
    path = tmp_path / "events.db"
    async with SqliteStore(path, retention_days=None, index_delay=NEVER) as store:
        indexed_old = [make_event(message="beluga indexed") for _ in range(20)]
        await store.append(indexed_old)
        await store.query(Query(q="beluga", limit=1))  # indexes them
        pending_old = [make_event(message="beluga pending") for _ in range(20)]
        await store.append(pending_old)
        fresh = make_event(message="beluga fresh", timestamp=format_timestamp(BASE_TIME + 3600))
        await store.append([fresh])
        assert 40 == await store.purge(before=BASE_TIME + 1800)
        assert 1 == (await store.stats()).details["index_pending"]  # `fresh`
        found = await store.query(Query(q="beluga", limit=100))
        assert [fresh["event_id"]] == [e["event_id"] for e in found.events]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO fts (fts) VALUES ('integrity-check')")
    assert 1 == search(path, "beluga")


async def test_paging_an_index_filter_while_appending_neither_skips_nor_repeats(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """Pages of an id filter keep the generation the index was complete to, while the
    writer keeps indexing newer and late events of the same session between them."""
    path = tmp_path / "events.db"
    async with SqliteStore(path, retention_days=None, index_delay=0.0) as store:
        initial = [make_event(session_id="S-page") for _ in range(3000)]
        for start in range(0, 3000, 500):
            await store.append(initial[start : start + 500])
        stop = asyncio.Event()

        async def keep_appending() -> int:
            n = 0
            while not stop.is_set():
                late = make_event(session_id="S-page", timestamp=format_timestamp(BASE_TIME + 1.5))
                newer = make_event(
                    session_id="S-page", timestamp=format_timestamp(BASE_TIME + 10_000 + n)
                )
                await store.append([late, newer])
                n += 1
                await asyncio.sleep(0)
            return n

        first = await store.query(Query(session_id="S-page", limit=100))
        appender = asyncio.create_task(keep_appending())
        seen = list(first.events)
        cursor = first.next_cursor
        while cursor is not None:
            await asyncio.sleep(0.005)  # let appends commit and be indexed between pages
            page = await store.query(Query(session_id="S-page", limit=100, cursor=cursor))
            seen.extend(page.events)
            cursor = page.next_cursor
        stop.set()
        assert await appender > 0
        ids = [e["event_id"] for e in seen]
        assert len(ids) == len(set(ids))
        assert {e["event_id"] for e in initial} == set(ids)


async def test_an_older_database_counts_as_fully_indexed(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """Version 2 indexed in the commit: migrating marks everything indexed, no catch-up."""
    path = tmp_path / "events.db"
    async with SqliteStore(path, retention_days=None) as store:
        await store.append([make_event(message="dugong") for _ in range(3)])
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("ALTER TABLE state DROP COLUMN fts_gen")
        conn.execute("PRAGMA user_version = 2")
        conn.commit()
    async with SqliteStore(path, retention_days=None) as store:
        assert 0 == (await store.stats()).details["index_caught_up"]
        assert 3 == len((await store.query(Query(q="dugong", limit=10))).events)
    gen, indexed = generations(path)
    assert gen == indexed


async def test_failed_indexing_never_fails_an_append_and_is_retried(
    tmp_path: Path, make_event: Callable[..., Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Indexing runs after the commit: when it fails the appends still succeed, the
    documents wait, retries back off instead of spinning, and a later round indexes them
    without any read asking for it."""
    path = tmp_path / "events.db"
    monkeypatch.setattr(_sqlite_writer, "_FTS_RETRY_FIRST", 0.2)
    async with SqliteStore(path, retention_days=None, index_delay=0.0) as store:
        writer = store._writer
        assert isinstance(writer, Writer)
        real = writer._index_pending
        calls = 0

        def failing() -> None:
            nonlocal calls
            calls += 1
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(writer, "_index_pending", failing)
        for _ in range(3):
            assert [True] == (await store.append([make_event(message="manatee")])).stored
        await wait_for(lambda: writer.counters["index_failures"] >= 1)
        assert 3 == (await store.stats()).details["index_pending"]
        await asyncio.sleep(0.5)  # with no backoff the writer retried without pausing
        assert calls <= 4
        monkeypatch.setattr(writer, "_index_pending", real)
        await wait_for(lambda: writer.counters["index_pending"] == 0)
        assert 3 == len((await store.query(Query(q="manatee", limit=10))).events)
        assert 1 <= writer.counters["index_flushes"]


async def test_dropped_pending_documents_are_rebuilt_from_the_table(
    tmp_path: Path, make_event: Callable[..., Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When indexing keeps failing past the memory cap, the pending documents are dropped;
    the next indexing takes every row after `fts_gen` from the table instead, so nothing is
    lost and nothing is indexed twice."""
    path = tmp_path / "events.db"
    monkeypatch.setattr(_sqlite_writer, "_FTS_PENDING_MAX", 2)
    async with SqliteStore(path, retention_days=None, index_delay=0.0) as store:
        writer = store._writer
        assert isinstance(writer, Writer)
        real = writer._index_pending

        def failing() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(writer, "_index_pending", failing)
        for _ in range(3):
            await store.append([make_event(message="sturgeon") for _ in range(2)])
        assert writer._fts_rebuild  # the first four documents were dropped at the cap
        monkeypatch.setattr(writer, "_index_pending", real)
        await store.append([make_event(message="sturgeon")])
        assert 7 == len((await store.query(Query(q="sturgeon", limit=10))).events)
        assert 6 <= (await store.stats()).details["index_caught_up"]
    assert 7 == search(path, "sturgeon")
    gen, indexed = generations(path)
    assert gen == indexed


async def test_uses_index_matches_the_plan(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """`uses_index` decides whether a read first brings the index up to date; it must name
    exactly the queries whose plan walks the index, or a read could miss fresh events."""
    await store.append(
        [make_event(service="api", node="n", session_id="S", level="error", message="w")]
    )
    reader = store._reader()
    queries = [
        Query(),
        Query(q="w"),
        Query(q="   "),
        Query(service="api"),
        Query(node="n"),
        Query(session_id="S"),
        Query(level="info"),
        Query(level="warn"),
        Query(since=0.0),
    ]
    for query in queries:
        plan = reader._plan(query, 10, None, 1, 0)
        walks = plan is not None and "fts MATCH" in plan.sql
        assert uses_index(query) == walks, query
