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


async def test_many_small_appends_of_one_loop_pass_all_commit(
    process_store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Single-event appends submitted together travel together and are each answered."""
    events = [make_event() for _ in range(300)]
    results = await asyncio.gather(*(process_store.append([event]) for event in events))
    assert all([True] == result.stored for result in results)
    assert 300 == (await process_store.stats()).events
    assert 0 == process_store._require_writer().backlog


async def test_a_full_pipe_never_blocks_the_event_loop(
    process_store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """With the child stopped, megabytes of batches queue in the parent while the loop keeps
    running; once the child resumes, every batch commits."""
    (child,) = writer_children(os.getpid())
    big = "x" * 2_000
    batches = [[make_event(message=f"{big} {i} {j}") for j in range(100)] for i in range(20)]
    child.send_signal(signal.SIGSTOP)
    try:
        pending = [asyncio.ensure_future(process_store.append(batch)) for batch in batches]
        started = time.monotonic()
        for _ in range(20):  # the loop turns over while ~4 MB wait for a 64 KiB pipe
            await asyncio.sleep(0.005)
        assert time.monotonic() - started < 2.0
        assert not any(future.done() for future in pending)
    finally:
        child.send_signal(signal.SIGCONT)
    results = await asyncio.wait_for(asyncio.gather(*pending), 60)
    assert all(result.stored == [True] * 100 for result in results)
    assert 2_000 == (await process_store.stats()).events


async def test_appends_from_another_thread_and_loop(
    process_store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """The pipes belong to the loop that opened the store; a caller on another loop (in
    another thread) is served through it and answered on its own loop."""
    batch = [make_event() for _ in range(7)]

    def elsewhere() -> list[bool]:
        async def append() -> list[bool]:
            return (await process_store.append(batch)).stored

        return asyncio.run(append())

    stored = await asyncio.to_thread(elsewhere)
    assert [True] * 7 == stored
    assert 7 == (await process_store.stats()).events


def test_frames_split_anywhere_are_read_whole() -> None:
    """Replies arrive in arbitrary pieces; only complete messages are taken off the buffer."""
    from logbeacon.store._sqlite_writer_process import _frame, _unframe

    messages = [
        ("ok", 1, [True]),
        {"counters": list(range(300))},
        ("error", 2, ("store", "x", None)),
    ]
    wire = b"".join(_frame(message) for message in messages)
    for cut in range(len(wire) + 1):
        buffer = bytearray(wire[:cut])
        got = _unframe(buffer)
        buffer += wire[cut:]
        got += _unframe(buffer)
        assert messages == got
        assert not buffer


async def test_closing_while_a_new_child_starts_leaves_no_child(
    tmp_path: Path, make_event: Callable[..., Event]
) -> None:
    """The store closes during the restart after a crash, while the replacement child is still
    starting: that child is stopped too, never left holding the database."""
    store = SqliteStore(tmp_path / "events.db", retention_days=None, writer_process=True)
    await store.open()
    (child,) = writer_children(os.getpid())
    await store.append([make_event()])
    child.kill()
    deadline = time.monotonic() + 30
    while not [c for c in writer_children(os.getpid()) if c.pid != child.pid]:
        assert time.monotonic() < deadline, "no replacement was started"
        await asyncio.sleep(0.01)
    (replacement,) = [c for c in writer_children(os.getpid()) if c.pid != child.pid]
    await store.close()  # the replacement is most likely still importing
    replacement.wait(timeout=30)  # raises if it is still running
    assert [] == writer_children(os.getpid())
