"""The SQLite writer in a child process: same answers, its own failures, no orphans.

The Store behaviour itself runs against this writer in test_contract_stores.py
(`sqlite-process`); these tests cover what only a second process can do: die on its own,
outlive a killed parent, and cost a start-up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from logbeacon.exceptions import StoreUnavailable
from logbeacon.server.settings import Settings
from logbeacon.store.sqlite import SqliteStore
from tests.helpers.server import start_server

Event = dict[str, Any]


def writer_children(pid: int) -> list[psutil.Process]:
    """The SQLite writer processes a process started."""
    children = []
    for child in psutil.Process(pid).children():
        try:
            command = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "_sqlite_writer_main" in command:
            children.append(child)
    return children


def stored_after_restart(tmp_path: Path, event: str) -> list[Event]:
    """Start `logbeacon serve` again on the same data and read the events named `event`."""
    restarted = start_server(tmp_path, data_dir=tmp_path / "data", name="again")
    try:
        page = httpx.get(
            f"{restarted.url}/v1/logs", params={"event": event}, headers=restarted.read_headers
        ).json()
    finally:
        restarted.stop()
    events: list[Event] = page["events"]
    return events


@pytest.fixture
async def process_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    instance = SqliteStore(tmp_path / "events.db", retention_days=None, writer_process=True)
    await instance.open()
    yield instance
    await instance.close()


async def test_appends_commit_in_a_child_process(
    process_store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Batches are committed by a child, answered in order, and counted in stats."""
    (child,) = writer_children(os.getpid())
    batches = [[make_event() for _ in range(50)] for _ in range(20)]
    results = await asyncio.gather(*(process_store.append(batch) for batch in batches))
    assert all(result.stored == [True] * 50 for result in results)
    again = await process_store.append(batches[0])
    assert [False] * 50 == again.stored  # duplicates found by the child's writer
    stats = await process_store.stats()
    assert 1000 == stats.events
    assert 1000 == stats.details["events_stored"]
    assert 50 == stats.details["duplicates"]
    assert child.is_running()


async def test_close_stops_the_child(tmp_path: Path, make_event: Callable[..., Event]) -> None:
    """Closing commits, checkpoints and ends the child; the file is then complete."""
    store = SqliteStore(tmp_path / "events.db", retention_days=None, writer_process=True)
    await store.open()
    (child,) = writer_children(os.getpid())
    await store.append([make_event() for _ in range(10)])
    await store.close()
    child.wait(timeout=10)
    assert [] == writer_children(os.getpid())
    wal = tmp_path / "events.db-wal"
    assert not wal.exists() or 0 == wal.stat().st_size
    reopened = SqliteStore(tmp_path / "events.db", retention_days=None)
    await reopened.open()
    try:
        assert 10 == (await reopened.stats()).events
    finally:
        await reopened.close()


async def test_a_killed_child_fails_its_batch_and_is_replaced(
    process_store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """SIGKILL of the writer: unanswered batches get StoreUnavailable (retryable, nothing was
    acknowledged), a new child takes over, and the retried batch is stored once."""
    (child,) = writer_children(os.getpid())
    await process_store.append([make_event()])
    child.send_signal(signal.SIGSTOP)  # hold it so the next batch is surely unanswered
    batch = [make_event() for _ in range(5)]
    pending = asyncio.ensure_future(process_store.append(batch))
    await asyncio.sleep(0.2)
    assert not pending.done()
    child.kill()
    with pytest.raises(StoreUnavailable, match="retry"):
        await asyncio.wait_for(pending, 10)

    deadline = time.monotonic() + 30
    while True:
        try:
            result = await process_store.append(batch)
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "no new writer process"
            await asyncio.sleep(0.2)
    # The child was stopped before the batch reached it, so the retry stores it (once).
    assert [True] * 5 == result.stored
    assert 6 == (await process_store.stats()).events
    (replacement,) = writer_children(os.getpid())
    assert replacement.pid != child.pid


async def test_purge_runs_in_the_child(
    process_store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Retention purges go through the child like appends."""
    await process_store.append([make_event() for _ in range(30)])
    assert 30 == await process_store.purge(time.time())
    assert 0 == (await process_store.stats()).events


def test_settings_choose_the_writer_process_on_more_than_one_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Automatic: a child writer when there is a second core; explicit settings win."""
    monkeypatch.setattr("logbeacon.server.settings.usable_cores", lambda: 2)
    assert Settings().resolved_writer_process
    assert not Settings(writer_process=False).resolved_writer_process
    monkeypatch.setattr("logbeacon.server.settings.usable_cores", lambda: 1)
    assert not Settings().resolved_writer_process
    assert Settings(writer_process=True).resolved_writer_process
    assert Settings.from_env({"LOGBEACON_WRITER_PROCESS": "on"}).writer_process is True


@pytest.mark.skipif(sys.platform != "linux", reason="process inspection via psutil on Linux")
def test_writer_child_exits_when_the_server_is_killed(tmp_path: Path) -> None:
    """SIGKILL of `logbeacon serve` leaves no writer process behind holding the database."""
    server = start_server(tmp_path, args=["--writer-process"])
    try:
        response = httpx.post(f"{server.url}/v1/logs", json={"event": "before_kill"})
        assert 200 == response.status_code, server.output()
        (child,) = writer_children(server.proc.pid)
    finally:
        server.kill()
    child.wait(timeout=30)  # raises if it is still running
    assert ["before_kill"] == [e["event"] for e in stored_after_restart(tmp_path, "before_kill")]


@pytest.mark.skipif(sys.platform != "linux", reason="process inspection via psutil on Linux")
def test_sigterm_to_the_whole_group_still_stops_cleanly(tmp_path: Path) -> None:
    """systemd signals every process of the service: the writer ignores SIGTERM, the server
    shuts down, stops the writer after its last commit, and nothing acknowledged is lost."""
    server = start_server(tmp_path, args=["--writer-process"])
    try:
        response = httpx.post(f"{server.url}/v1/logs", json=[{"event": "before_term"}] * 3)
        assert 200 == response.status_code, server.output()
        (child,) = writer_children(server.proc.pid)
        child.send_signal(signal.SIGTERM)
        os.kill(server.proc.pid, signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown.
        assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.output()
        child.wait(timeout=30)
    finally:
        server.stop()
    assert 3 == len(stored_after_restart(tmp_path, "before_term"))
