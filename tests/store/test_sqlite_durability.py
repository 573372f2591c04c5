"""Accepted means durable: pragmas, failed commits, locks, a full disk, group commit (§9)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logbeacon.exceptions import StoreError, StoreUnavailable
from logbeacon.store.base import Query
from logbeacon.store.sqlite import SqliteStore

Event = dict[str, Any]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "storage.md"


def _documented_pragmas() -> dict[str, dict[str, str]]:
    """The pragma table of docs/storage.md: durability mode -> {pragma: value}."""
    table: dict[str, dict[str, str]] = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\| `(normal|full)` \| (.+) \|", line.strip())
        if match:
            pairs = re.findall(r"`(\w+)=(\w+)`", match.group(2))
            table[match.group(1)] = dict(pairs)
    return table


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
async def test_pragmas_match_the_documentation(
    tmp_path: Path, durability: str, synchronous: int
) -> None:
    """WAL, synchronous and busy_timeout read back from the live connection agree with the
    table in docs/storage.md (DUR-01)."""
    store = SqliteStore(tmp_path / "e.db", durability=durability)  # type: ignore[arg-type]
    await store.open()
    try:
        pragmas = (await store.stats()).details["pragmas"]
    finally:
        await store.close()
    assert "wal" == pragmas["journal_mode"]
    assert synchronous == pragmas["synchronous"]
    assert pragmas["busy_timeout"] >= 5000
    assert 0 == pragmas["foreign_keys"]
    documented = _documented_pragmas()[durability]
    assert {
        "journal_mode": "wal",
        "synchronous": {1: "NORMAL", 2: "FULL"}[synchronous],
        "busy_timeout": str(pragmas["busy_timeout"]),
    } == {name: documented[name] for name in ("journal_mode", "synchronous", "busy_timeout")}


async def test_failed_commit_acknowledges_nothing(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """A COMMIT that raises gives StoreUnavailable, stores none of the batch, and the store
    keeps working once commits succeed again (DUR-02)."""
    failing = threading.Event()

    def hook() -> None:
        if failing.is_set():
            raise sqlite3.OperationalError("disk I/O error")

    store = SqliteStore(tmp_path / "e.db", retention_days=None, commit_hook=hook)
    await store.open()
    try:
        failing.set()
        batch = [make_event(message="lost"), make_event(message="lost too")]
        with pytest.raises(StoreUnavailable) as caught:
            await store.append(batch)
        assert caught.value.retry_after > 0
        assert await store.get(batch[0]["event_id"]) is None
        assert [] == (await store.query(Query(q="lost"))).events
        assert 0 == (await store.stats()).events
        failing.clear()
        assert [True, True] == (await store.append(batch)).stored
        assert 2 == (await store.stats()).events
    finally:
        await store.close()


async def test_write_lock_held_past_busy_timeout_is_unavailable(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """Another connection holding the write lock longer than busy_timeout gives
    StoreUnavailable, not a hang or a 500, and nothing is stored (DUR-06)."""
    path = tmp_path / "e.db"
    store = SqliteStore(path, retention_days=None, busy_timeout=0.2)
    await store.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        event = make_event()
        with pytest.raises(StoreUnavailable, match="lock"):
            await store.append([event])
        blocker.execute("ROLLBACK")
        assert await store.get(event["event_id"]) is None
        assert [True] == (await store.append([event])).stored
    finally:
        blocker.close()
        await store.close()


async def test_full_database_is_unavailable_and_recovers_after_purge(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """At the size cap appends give StoreUnavailable while queries keep working; freeing
    space lets ingestion resume without a restart (DUR-07, INJ-13)."""
    store = SqliteStore(tmp_path / "e.db", retention_days=None, max_db_bytes=400 * 1024)
    await store.open()
    stored = 0

    async def fill() -> None:
        nonlocal stored
        for _ in range(200):
            batch = [make_event(message="x" * 400) for _ in range(50)]
            stored += (await store.append(batch)).accepted

    try:
        with pytest.raises(StoreUnavailable, match="full"):
            await fill()
        assert stored > 0
        assert stored == (await store.stats()).events
        assert 10 == len((await store.query(Query(limit=10))).events)
        assert stored == await store.purge(before=4_000_000_000)
        assert [True] == (await store.append([make_event()])).stored
    finally:
        await store.close()


async def test_group_commit_uses_fewer_transactions_than_calls(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """Concurrent appends queued behind a busy writer share one transaction."""
    release = threading.Event()
    entered = threading.Event()
    calls = 0

    def hook() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            release.wait(10)

    store = SqliteStore(tmp_path / "e.db", retention_days=None, commit_hook=hook)
    await store.open()
    try:
        first = asyncio.create_task(store.append([make_event()]))
        assert await asyncio.to_thread(entered.wait, 10)
        rest = [asyncio.create_task(store.append([make_event(), make_event()])) for _ in range(40)]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *rest)
        details = (await store.stats()).details
    finally:
        await store.close()
    assert 81 == sum(r.accepted for r in results)
    assert 41 == details["append_calls"]
    assert 2 == details["transactions"]


async def test_batch_breaking_a_shared_transaction_is_retried_alone(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """When a combined transaction fails for a non-environmental reason, each batch is
    retried in its own transaction, so innocent batches still commit."""
    release = threading.Event()
    entered = threading.Event()
    calls = 0

    def hook() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            release.wait(10)
        elif calls == 2:
            raise sqlite3.IntegrityError("simulated constraint failure")

    store = SqliteStore(tmp_path / "e.db", retention_days=None, commit_hook=hook)
    await store.open()
    try:
        first = asyncio.create_task(store.append([make_event()]))
        assert await asyncio.to_thread(entered.wait, 10)
        rest = [asyncio.create_task(store.append([make_event()])) for _ in range(5)]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *rest)
        stats = await store.stats()
    finally:
        await store.close()
    assert [[True]] * 6 == [r.stored for r in results]
    assert 6 == stats.events
    assert 7 == calls  # blocker, failed group, five single retries


async def test_failing_data_error_reaches_only_its_caller(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """A batch whose own transaction fails with a data error gets StoreError, nothing stored."""

    def hook() -> None:
        raise sqlite3.IntegrityError("simulated")

    store = SqliteStore(tmp_path / "e.db", retention_days=None, commit_hook=hook)
    await store.open()
    try:
        with pytest.raises(StoreError, match="rejected"):
            await store.append([make_event()])
        assert 0 == (await store.stats()).events
    finally:
        await store.close()


async def test_write_backlog_is_bounded(tmp_path: Path, make_event: Callable[..., Event]) -> None:
    """When the writer falls behind, append refuses with StoreUnavailable instead of queueing
    without bound."""
    release = threading.Event()

    def hook() -> None:
        release.wait(10)

    store = SqliteStore(
        tmp_path / "e.db", retention_days=None, commit_hook=hook, group_events=10, max_backlog=40
    )
    await store.open()
    try:
        pending = [asyncio.create_task(store.append([make_event() for _ in range(10)]))]
        await asyncio.sleep(0.05)  # the writer is now stuck in the first commit
        pending += [
            asyncio.create_task(store.append([make_event() for _ in range(10)])) for _ in range(3)
        ]
        await asyncio.sleep(0.05)
        with pytest.raises(StoreUnavailable, match="backlog"):
            await store.append([make_event() for _ in range(10)])
        release.set()
        assert [10, 10, 10, 10] == [r.accepted for r in await asyncio.gather(*pending)]
    finally:
        release.set()
        await store.close()


async def test_backup_during_ingestion_is_consistent(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """A backup taken while appends continue passes integrity_check and holds every event
    acknowledged before it began (DUR-09)."""
    store = SqliteStore(tmp_path / "e.db", retention_days=None)
    await store.open()
    acked = [make_event() for _ in range(300)]
    try:
        await store.append(acked)

        async def more() -> None:
            for _ in range(20):
                await store.append([make_event() for _ in range(20)])

        await asyncio.gather(store.backup(tmp_path / "backup.db"), more())
        with pytest.raises(StoreError, match="exists"):
            await store.backup(tmp_path / "backup.db")
    finally:
        await store.close()
    copy = SqliteStore(tmp_path / "backup.db", retention_days=None)
    await copy.open()
    try:
        for event in acked:
            assert event == await copy.get(event["event_id"])
    finally:
        await copy.close()
    conn = sqlite3.connect(tmp_path / "backup.db")
    try:
        assert [("ok",)] == conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
