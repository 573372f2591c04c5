"""Purge, retention, stats, schema migrations, closing and the store URL factory."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logbeacon.event import format_timestamp
from logbeacon.exceptions import ConfigError, StoreError, StoreUnavailable
from logbeacon.store import SqliteStore, open_store
from logbeacon.store._sqlite_schema import SCHEMA_VERSION, migrate
from logbeacon.store.base import Query, Store

from .conftest import BASE_TIME

Event = dict[str, Any]


def _integrity(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        # FTS5's own check of its index structure.
        conn.execute("INSERT INTO fts (fts, rank) VALUES ('integrity-check', 0)")
    finally:
        conn.close()
    return rows


def _wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return os.path.getsize(wal) if wal.exists() else 0


async def test_purge_removes_old_events_in_chunks(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """purge() deletes exactly the events before the cutoff, in chunks, index entries too."""
    path = tmp_path / "e.db"
    store = SqliteStore(path, retention_days=None, purge_chunk=50)
    await store.open()
    try:
        old = [
            make_event(
                timestamp=format_timestamp(BASE_TIME + i),
                trace_id="aa" * 16,
                message="ancient walrus",
            )
            for i in range(230)
        ]
        new = [
            make_event(
                timestamp=format_timestamp(BASE_TIME + 1000 + i),
                trace_id="bb" * 16,
                message="fresh walrus",
            )
            for i in range(20)
        ]
        await store.append(old + new)
        assert 230 == await store.purge(before=BASE_TIME + 1000)
        stats = await store.stats()
        assert (20, 230) == (stats.events, stats.details["purged"])
        assert [] == await store.trace("aa" * 16)
        assert {e["event_id"] for e in new} == {
            e["event_id"] for e in (await store.query(Query(q="walrus", limit=1000))).events
        }
        assert 0 == await store.purge(before=BASE_TIME + 1000)
    finally:
        await store.close()
    assert [("ok",)] == _integrity(path)


async def test_appends_keep_flowing_during_a_long_purge(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """Appends interleave with purge chunks instead of waiting for the whole purge (DUR-13)."""
    store = SqliteStore(tmp_path / "e.db", retention_days=None, purge_chunk=100)
    await store.open()
    try:
        old = [make_event(timestamp=format_timestamp(BASE_TIME + i / 100)) for i in range(6000)]
        for start in range(0, 6000, 1000):
            await store.append(old[start : start + 1000])
        started = time.perf_counter()
        purge = asyncio.create_task(store.purge(before=BASE_TIME + 3600))
        await asyncio.sleep(0)
        latencies = []
        while not purge.done():
            began = time.perf_counter()
            await store.append([make_event(timestamp=format_timestamp(BASE_TIME + 7200))])
            latencies.append(time.perf_counter() - began)
        assert 6000 == await purge
        purge_seconds = time.perf_counter() - started
        # Appends completed all along the purge, typically waiting for about one chunk.
        assert len(latencies) >= 10
        assert sorted(latencies)[len(latencies) // 2] < purge_seconds / 10
    finally:
        await store.close()


async def test_retention_task_deletes_expired_events(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """The background retention task started by open() removes events past retention_days."""
    now = time.time()
    store = SqliteStore(tmp_path / "e.db", retention_days=1, retention_interval=0.05)
    await store.open()
    try:
        expired = make_event(timestamp=format_timestamp(now - 2 * 86_400))
        kept = make_event(timestamp=format_timestamp(now - 3600))
        await store.append([expired, kept])
        deadline = time.monotonic() + 10
        while await store.get(expired["event_id"]) is not None:
            assert time.monotonic() < deadline, "retention never purged the expired event"
            await asyncio.sleep(0.05)
        assert kept == await store.get(kept["event_id"])
    finally:
        await store.close()


async def test_stats_report_counts_times_and_sizes(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """stats() gives the count, oldest/newest timestamps, bytes on disk and schema version."""
    empty = await store.stats()
    assert (0, None, None) == (empty.events, empty.oldest, empty.newest)
    events = [make_event(timestamp=format_timestamp(BASE_TIME + s)) for s in (30, 10, 20)]
    await store.append(events)
    stats = await store.stats()
    assert ("sqlite", 3, SCHEMA_VERSION) == (stats.kind, stats.events, stats.schema_version)
    assert (events[1]["timestamp"], events[0]["timestamp"]) == (stats.oldest, stats.newest)
    assert stats.bytes_on_disk > 0
    assert {"transactions", "append_calls", "wal_bytes", "durability"} <= set(stats.details)


def test_migrate_brings_an_empty_database_to_the_current_version(tmp_path: Path) -> None:
    """A database at version 0 (a new or foreign empty file) migrates to SCHEMA_VERSION."""
    conn = sqlite3.connect(tmp_path / "e.db", isolation_level=None)
    try:
        assert 0 == migrate(conn)
        assert SCHEMA_VERSION == conn.execute("PRAGMA user_version").fetchone()[0]
        assert SCHEMA_VERSION == migrate(conn)  # already current: nothing to do
    finally:
        conn.close()


async def test_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    """A schema newer than this code knows is an error naming both versions, not a guess."""
    path = tmp_path / "e.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SqliteStore(path)
    with pytest.raises(StoreError, match=f"version {SCHEMA_VERSION + 1}"):
        await store.open()


async def test_reopen_keeps_events_and_schema(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """Closing and reopening the same file keeps the events, dedup and cursors working."""
    path = tmp_path / "e.db"
    events = [make_event() for _ in range(10)]
    first = SqliteStore(path, retention_days=None)
    await first.open()
    await first.append(events)
    page = await first.query(Query(limit=4))
    await first.close()
    second = SqliteStore(path, retention_days=None)
    await second.open()
    try:
        assert [False] * 10 == (await second.append(events)).stored
        rest = await second.query(Query(limit=100, cursor=page.next_cursor))
        assert 6 == len(rest.events)
    finally:
        await second.close()


async def test_close_is_idempotent_and_truncates_the_wal(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """close() twice is fine, leaves an empty WAL, and later calls say the store is closed."""
    path = tmp_path / "e.db"
    store = SqliteStore(path, retention_days=None)
    await store.open()
    await store.append([make_event() for _ in range(100)])
    await store.close()
    await store.close()
    assert 0 == _wal_size(path)
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.append([make_event()])
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.query(Query())
    assert [("ok",)] == _integrity(path)


async def test_store_satisfies_the_protocol(store: SqliteStore) -> None:
    """SqliteStore is a `Store` as the server sees it."""
    assert isinstance(store, Store)


def test_open_store_parses_sqlite_urls(tmp_path: Path) -> None:
    """sqlite URLs resolve absolute paths as given and relative ones inside data_dir."""
    absolute = open_store(
        f"sqlite://{tmp_path}/abs.db",
        data_dir=tmp_path / "d",
        durability="full",
        retention_days=3,
    )
    assert isinstance(absolute, SqliteStore)
    assert (tmp_path / "abs.db", "full", 3) == (
        absolute.path,
        absolute.durability,
        absolute.retention_days,
    )
    relative = open_store(
        "sqlite://rel.db", data_dir=tmp_path, durability="normal", retention_days=14
    )
    assert isinstance(relative, SqliteStore)
    assert tmp_path / "rel.db" == relative.path
    default = open_store("sqlite:", data_dir=tmp_path, durability="normal", retention_days=14)
    assert isinstance(default, SqliteStore)
    assert tmp_path / "events.db" == default.path


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("clickhouse:///logs", "needs a host"),
        ("chdb:///tmp/x?database=1x", "database name"),
        ("postgres://x", "unknown store URL"),
        ("sqlite:///tmp/x.db?mode=ro", "no \\?query"),
    ],
)
def test_open_store_rejects_other_urls(tmp_path: Path, url: str, message: str) -> None:
    """Schemes that are not implemented raise ConfigError saying what to use instead."""
    with pytest.raises(ConfigError, match=message):
        open_store(url, data_dir=tmp_path, durability="normal", retention_days=14)


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    """Invalid durability or retention are refused at construction with the accepted values."""
    with pytest.raises(ConfigError, match="durability"):
        open_store("sqlite:", data_dir=tmp_path, durability="sometimes", retention_days=14)
    with pytest.raises(ConfigError, match="retention_days"):
        SqliteStore(tmp_path / "e.db", retention_days=0)
