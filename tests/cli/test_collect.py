"""`logbeacon collect`: follow files across rotation and restarts, every line stored once."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from logbeacon.cli.collect import Collector, LocalStoreOutput, register
from logbeacon.store import open_store
from logbeacon.store.base import Query
from tests.helpers.server import running_server

_CLI = textwrap.dedent(
    """
    import typer
    from logbeacon.cli.collect import register
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        "logbeacon"

    register(app)
    app()
    """
)


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """logbeacon (test app)."""

    register(app)
    return app


def invoke(*args: str) -> Any:
    return CliRunner().invoke(make_app(), ["collect", *args])


def stored(data_dir: Path, service: str = "collect") -> list[dict[str, Any]]:
    """Every event of `service` in the local store, oldest first."""

    async def read() -> list[dict[str, Any]]:
        store = open_store("sqlite:", data_dir=data_dir, durability="normal", retention_days=14)
        await store.open()
        events: list[dict[str, Any]] = []
        cursor = None
        try:
            while True:
                page = await store.query(Query(service=service, limit=1000, cursor=cursor))
                events.extend(page.events)
                cursor = page.next_cursor
                if cursor is None:
                    break
        finally:
            await store.close()
        return list(reversed(events))

    return asyncio.run(read())


def texts(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e.get("text") or e.get("message") or e["event"] for e in events)


def append(path: Path, *lines: str) -> None:
    with path.open("a") as handle:
        for line in lines:
            handle.write(line + "\n")


def lines(prefix: str, count: int) -> list[str]:
    return [f"{prefix} {i:04d}" for i in range(count)]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def collector_for(data_dir: Path) -> Iterator[Any]:
    """Build collectors on the local store; polled by hand so every step is deterministic."""
    outputs: list[LocalStoreOutput] = []

    def build(*paths: Path, from_start: bool = True) -> Collector:
        output = LocalStoreOutput(data_dir)
        outputs.append(output)
        return Collector(
            list(paths), output=output, data_dir=data_dir, service="collect", from_start=from_start
        )

    yield build
    for output in outputs:
        output.close()


def poll(collector: Collector) -> int:
    return sum(tailed.poll() for tailed in collector.files)


def finish(collector: Collector) -> None:
    for tailed in collector.files:
        tailed.finish()


def assert_once(data_dir: Path, expected: list[str]) -> None:
    events = stored(data_dir)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert sorted(expected) == texts(events)


# --------------------------------------------------------------------------- the command


def test_json_and_plain_lines(tmp_path: Path, data_dir: Path) -> None:
    """JSON lines keep their fields, plain lines become `output` events naming the file."""
    log = tmp_path / "app.log"
    append(
        log,
        json.dumps({"event": "job_done", "level": "warn", "service": "worker", "n": 3}),
        "plain line",
        '{"not": "an event"}',
    )
    result = invoke(str(log), "--from-start", "--once", "--data-dir", str(data_dir))
    assert 0 == result.exit_code, result.output
    worker = stored(data_dir, "worker")
    assert [("job_done", "warn", 3)] == [(e["event"], e["level"], e["n"]) for e in worker]
    plain = stored(data_dir)
    assert [("output", "plain line", str(log)), ("output", '{"not": "an event"}', str(log))] == [
        (e["event"], e["text"], e["file"]) for e in plain
    ]


def test_default_starts_at_the_end(tmp_path: Path, data_dir: Path) -> None:
    """Without --from-start only lines written after the collector started are shipped."""
    log = tmp_path / "app.log"
    append(log, *lines("old", 3))
    assert 0 == invoke(str(log), "--once", "--data-dir", str(data_dir)).exit_code
    assert [] == stored(data_dir)
    append(log, *lines("new", 2))
    assert 0 == invoke(str(log), "--once", "--data-dir", str(data_dir)).exit_code
    assert_once(data_dir, lines("new", 2))


def test_restart_resumes_without_duplicates(tmp_path: Path, data_dir: Path) -> None:
    """A restart resumes at the checkpoint; a re-read after a crash (an old checkpoint) is
    deduplicated by the deterministic event ids."""
    log = tmp_path / "app.log"
    append(log, *lines("a", 10))
    assert 0 == invoke(str(log), "--from-start", "--once", "--data-dir", str(data_dir)).exit_code
    checkpoint_dir = data_dir / "collect"
    saved = {p.name: p.read_bytes() for p in checkpoint_dir.glob("*.json")}
    assert 1 == len(saved)
    append(log, *lines("b", 5))
    assert 0 == invoke(str(log), "--once", "--data-dir", str(data_dir)).exit_code
    assert_once(data_dir, lines("a", 10) + lines("b", 5))
    for name, data in saved.items():  # crash: the newer checkpoint never reached the disk
        (checkpoint_dir / name).write_bytes(data)
    assert 0 == invoke(str(log), "--once", "--data-dir", str(data_dir)).exit_code
    assert_once(data_dir, lines("a", 10) + lines("b", 5))


def test_ships_to_a_server_once(tmp_path: Path) -> None:
    """With --url lines go to the server; with the offsets deleted, a full re-read is
    recognised by the server as duplicates."""
    log = tmp_path / "app.log"
    append(log, *lines("srv", 40))
    data = tmp_path / "collector"
    with running_server(tmp_path) as server:
        args = [str(log), "--from-start", "--once", "--url", server.url, "--data-dir", str(data)]
        assert 0 == invoke(*args).exit_code
        shutil.rmtree(data / "collect")
        assert 0 == invoke(*args).exit_code
        response = httpx.get(
            f"{server.url}/v1/logs",
            params={"service": "collect", "limit": 1000},
            headers=server.read_headers,
            timeout=10,
        )
        events = response.json()["events"]
    assert sorted(lines("srv", 40)) == sorted(e["text"] for e in events)


# --------------------------------------------------------------------------- rotation


def test_rename_and_create_rotation(tmp_path: Path, data_dir: Path, collector_for: Any) -> None:
    """Lines written just before a rename are read from the old file; the new file is read
    from its start; nothing is lost or doubled."""
    log = tmp_path / "app.log"
    append(log, *lines("one", 5))
    collector = collector_for(log)
    assert 5 == poll(collector)
    append(log, *lines("two", 5))
    with log.open("a") as handle:
        handle.write("unfinished last line")  # rotation makes it final
    log.rename(tmp_path / "app.log.1")
    append(log, *lines("three", 5))
    assert 11 == poll(collector)
    append(log, *lines("four", 2))
    assert 2 == poll(collector)
    finish(collector)
    expected = lines("one", 5) + lines("two", 5) + ["unfinished last line"]
    assert_once(data_dir, expected + lines("three", 5) + lines("four", 2))


def test_copytruncate_rotation(tmp_path: Path, data_dir: Path, collector_for: Any) -> None:
    """Lines the truncation took before they were read come from the copy; the truncated
    file is then read from its start; nothing is lost or doubled."""
    log = tmp_path / "app.log"
    append(log, *lines("one", 5))
    collector = collector_for(log)
    assert 5 == poll(collector)
    append(log, *lines("two", 5))
    shutil.copyfile(log, tmp_path / "app.log.1")
    with log.open("r+") as handle:
        handle.truncate(0)
    append(log, *lines("three", 3))
    assert 8 == poll(collector)
    append(log, *lines("four", 30))  # grows past the old size again
    assert 30 == poll(collector)
    finish(collector)
    assert_once(data_dir, lines("one", 5) + lines("two", 5) + lines("three", 3) + lines("four", 30))


def test_copytruncate_that_regrows_before_the_poll(
    tmp_path: Path, data_dir: Path, collector_for: Any
) -> None:
    """A truncated file that is already longer than before is still seen as new content."""
    log = tmp_path / "app.log"
    append(log, *lines("one", 3))
    collector = collector_for(log)
    assert 3 == poll(collector)
    shutil.copyfile(log, tmp_path / "app.log.1")
    with log.open("r+") as handle:
        handle.truncate(0)
    append(log, *lines("two", 20))
    assert 20 == poll(collector)
    finish(collector)
    assert_once(data_dir, lines("one", 3) + lines("two", 20))


def test_rotation_while_stopped(tmp_path: Path, data_dir: Path, collector_for: Any) -> None:
    """Rotated while the collector was down: the rest of the old file is found by inode and
    content, then the new file is read from its start."""
    log = tmp_path / "app.log"
    append(log, *lines("one", 4))
    first = collector_for(log)
    assert 4 == poll(first)
    finish(first)
    append(log, *lines("two", 4))
    log.rename(tmp_path / "app.log.1")
    append(log, *lines("three", 4))
    second = collector_for(log, from_start=False)
    assert 8 == poll(second)
    finish(second)
    assert_once(data_dir, lines("one", 4) + lines("two", 4) + lines("three", 4))


def test_copytruncate_while_stopped(tmp_path: Path, data_dir: Path, collector_for: Any) -> None:
    """Truncated while the collector was down: unread lines come from the copy."""
    log = tmp_path / "app.log"
    append(log, *lines("one", 4))
    first = collector_for(log)
    assert 4 == poll(first)
    finish(first)
    append(log, *lines("two", 4))
    shutil.copyfile(log, tmp_path / "app.log-20260131")
    with log.open("r+") as handle:
        handle.truncate(0)
    append(log, *lines("three", 2))
    second = collector_for(log, from_start=False)
    assert 6 == poll(second)
    finish(second)
    assert_once(data_dir, lines("one", 4) + lines("two", 4) + lines("three", 2))


def test_file_created_later_is_read_from_its_start(
    tmp_path: Path, data_dir: Path, collector_for: Any
) -> None:
    """A path that does not exist yet is followed; once created, all of it is shipped."""
    log = tmp_path / "later.log"
    collector = collector_for(log, from_start=False)
    assert 0 == poll(collector)
    append(log, *lines("late", 3))
    assert 3 == poll(collector)
    finish(collector)
    assert_once(data_dir, lines("late", 3))


def test_huge_line_is_capped_and_partial_line_waits(
    tmp_path: Path, data_dir: Path, collector_for: Any
) -> None:
    """A 3 MB line is cut at 1 MiB and marked; an unfinished line waits for its newline."""
    log = tmp_path / "big.log"
    with log.open("wb") as handle:
        handle.write(b"h" * 3_000_000 + b"\n" + b"half a li")
    collector = collector_for(log)
    assert 1 == poll(collector)
    with log.open("ab") as handle:
        handle.write(b"ne\n")
    assert 1 == poll(collector)
    finish(collector)
    events = stored(data_dir)
    assert [True, None] == [e.get("truncated") for e in events]
    assert events[0]["text"].startswith("h" * 8192)
    assert "half a line" == events[1]["text"]
    assert [] == [tailed.reader for tailed in collector.files if tailed.reader is not None]


# --------------------------------------------------------------------------- signals


def test_sigterm_stops_after_a_final_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    """A following collector stops on SIGTERM with exit 0 and its offsets saved, so a
    restart ships only what came after."""
    log = tmp_path / "app.log"
    append(log, *lines("first", 3))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBEACON_")}
    cmd = [
        sys.executable,
        "-c",
        _CLI,
        "collect",
        str(log),
        "--from-start",
        "--data-dir",
        str(data_dir),
        "--poll-interval",
        "0.05",
    ]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not list((data_dir / "collect").glob("*.json")):
            time.sleep(0.05)
        append(log, *lines("second", 2))
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert 0 == proc.returncode, err.decode()
    assert "shipped 5 lines" in err.decode()
    append(log, *lines("third", 1))
    assert 0 == invoke(str(log), "--once", "--data-dir", str(data_dir)).exit_code
    assert_once(data_dir, lines("first", 3) + lines("second", 2) + lines("third", 1))


def test_stop_while_the_server_is_down_keeps_the_checkpoint(tmp_path: Path) -> None:
    """With the server unreachable the collector waits (never skips); a stop request ends it
    without advancing the checkpoint past undelivered lines."""
    from logbeacon.cli.collect import RemoteOutput
    from tests.helpers.server import free_port

    log = tmp_path / "app.log"
    append(log, *lines("x", 3))
    stop = threading.Event()
    output = RemoteOutput(
        f"http://127.0.0.1:{free_port()}", ingest_key=None, hmac_secret=None, stop=stop
    )
    collector = Collector(
        [log], output=output, data_dir=tmp_path / "d", service="collect", from_start=True, stop=stop
    )
    runner = threading.Thread(target=collector.run)
    runner.start()
    time.sleep(0.5)
    stop.set()
    runner.join(10)
    assert not runner.is_alive()
    checkpoints = list((tmp_path / "d" / "collect").glob("*.json"))
    offsets = [json.loads(p.read_text())["offset"] for p in checkpoints]
    assert [0] == offsets
    assert 0 == output.delivered
