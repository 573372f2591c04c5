"""`logbeacon collect`: follow files across rotation and restarts, every line stored once."""

from __future__ import annotations

import asyncio
import contextlib
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

from logbeacon.cli import collect
from logbeacon.cli.collect import Collector, LocalStoreOutput, register
from logbeacon.event import format_timestamp
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


def test_rename_and_create_rotation(
    tmp_path: Path, data_dir: Path, collector_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines written just before a rename are read from the old file; the new file is read
    from its start; nothing is lost or doubled."""
    log = tmp_path / "app.log"
    append(log, *lines("one", 5))
    collector = collector_for(log)
    assert 5 == poll(collector)
    append(log, *lines("two", 5))
    with log.open("a") as handle:
        handle.write("unfinished last line")  # rotation makes it final (once quiet)
    log.rename(tmp_path / "app.log.1")
    append(log, *lines("three", 5))
    assert 10 == poll(collector)  # the app may still finish that line: it waits
    append(log, *lines("four", 2))
    monkeypatch.setattr(collect, "ROTATE_WAIT_S", 0.0)  # the old file has been quiet enough
    assert 3 == poll(collector)
    finish(collector)
    expected = lines("one", 5) + lines("two", 5) + ["unfinished last line"]
    assert_once(data_dir, expected + lines("three", 5) + lines("four", 2))


def test_writes_to_the_renamed_file_after_the_rename_are_read(
    tmp_path: Path, data_dir: Path, collector_for: Any
) -> None:
    """An app appends to its old handle after the rename: before the new file exists (the
    collector keeps following the old one) and after (the old one stays open a while)."""
    log = tmp_path / "app.log"
    append(log, *lines("one", 3))
    collector = collector_for(log)
    assert 3 == poll(collector)
    with log.open("a") as app:
        log.rename(tmp_path / "app.log.1")
        assert 0 == poll(collector)  # nothing at the path yet
        app.write("late 0000\n")
        app.flush()
        assert 1 == poll(collector)
        append(log, *lines("new", 2))  # logrotate's `create`; the app has not reopened yet
        app.write("late 0001\n")
        app.flush()
        assert 3 == poll(collector)
        app.write("late 0002\n")
        app.flush()
    assert 1 == poll(collector)
    finish(collector)
    assert_once(data_dir, lines("one", 3) + lines("late", 3) + lines("new", 2))


def test_checkpoint_moves_to_the_new_file_at_once(
    tmp_path: Path, data_dir: Path, collector_for: Any
) -> None:
    """Killed right after following a rename (no `finish`), then the new file is
    copytruncated while down: that is one rotation since the checkpoint, so nothing is lost
    — also the lines of the new file read before the kill are not doubled."""
    log = tmp_path / "app.log"
    append(log, *lines("one", 3))
    first = collector_for(log)
    assert 3 == poll(first)
    log.rename(tmp_path / "app.log.2")
    log.touch()  # empty when followed: its fingerprint is fixed by the first read
    assert 0 == poll(first)
    append(log, *lines("two", 4))
    assert 4 == poll(first)  # then SIGKILL: no final checkpoint
    append(log, *lines("three", 5))
    shutil.copyfile(log, tmp_path / "app.log.1")
    os.truncate(log, 0)
    append(log, *lines("four", 2))
    poll(collector_for(log))  # "two" may come again from the copy, under the same ids
    assert_once(data_dir, lines("one", 3) + lines("two", 4) + lines("three", 5) + lines("four", 2))


class HookedOutput(LocalStoreOutput):
    """Runs `hook` after its `after`-th write: a rotation while a backlog is shipped."""

    def __init__(self, data_dir: Path, after: int, hook: Any) -> None:
        super().__init__(data_dir)
        self.writes, self.after, self.hook = 0, after, hook

    def write(self, events: Any) -> None:
        super().write(events)
        self.writes += 1
        if self.writes == self.after:
            self.hook()


def test_new_file_copytruncated_while_a_backlog_is_shipped(tmp_path: Path, data_dir: Path) -> None:
    """Renamed, re-created, written and copytruncated while the collector is still shipping
    the old file's backlog: the new file is held (and fingerprinted) as soon as it is seen
    between two batches, so its copy is found and its first lines are not lost."""
    log = tmp_path / "app.log"
    append(log, "first")

    def copytruncate() -> None:
        shutil.copyfile(log, tmp_path / "app.log.1")
        os.truncate(log, 0)
        append(log, *lines("after", 2))

    output = HookedOutput(data_dir, 3, copytruncate)  # after the backlog's second batch
    try:
        collector = Collector(
            [log], output=output, data_dir=data_dir, service="collect", from_start=True
        )
        assert 1 == collector.files[0].poll()
        append(log, *lines("old", 3 * collect.BATCH_EVENTS))
        log.rename(tmp_path / "app.log.2")
        append(log, *lines("new", 4))
        collector.run(once=True)
    finally:
        output.close()
    expected = ["first", *lines("old", 3 * collect.BATCH_EVENTS), *lines("new", 4)]
    expected += lines("after", 2)
    assert_once(data_dir, expected)


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


# --------------------------------------------------------------------------- docker

# No Docker engine runs on the test machines, so `collect --docker` is tested against a
# stand-in `docker` executable first on PATH. It implements the one command the collector
# runs, `docker logs --timestamps [--follow] [--since UNIX] NAME`, from a file the test
# writes: one "<RFC 3339 nano timestamp> <stdout|stderr> <text>" record per line, printed as
# Docker prints it (timestamp, space, text) on the matching stream; with --follow it keeps
# printing records appended later, until it is terminated.
_FAKE_DOCKER = textwrap.dedent(
    """\
    #!{python}
    import datetime, os, sys, time
    args = sys.argv[1:]
    assert args[0] == "logs" and "--timestamps" in args, args
    follow = "--follow" in args
    since = float(args[args.index("--since") + 1]) if "--since" in args else 0.0
    name = args[-1]
    with open(os.environ["FAKE_DOCKER_DIR"] + "/calls", "a") as calls:
        calls.write(" ".join(args) + "\\n")
    path = os.path.join(os.environ["FAKE_DOCKER_DIR"], name + ".records")
    if not os.path.exists(path):
        print(f"Error response from daemon: No such container: {{name}}", file=sys.stderr)
        sys.exit(1)

    def seconds(stamp):
        whole, _, frac = stamp.rstrip("Z").partition(".")
        moment = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
        moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp() + float("0." + (frac or "0"))

    done = 0
    with open(path) as records:
        while True:
            line = records.readline()
            if not line.endswith("\\n"):
                if not follow:
                    break
                time.sleep(0.02)
                records.seek(done)
                continue
            done = records.tell()
            stamp, stream, text = line[:-1].split(" ", 2)
            if seconds(stamp) >= since:
                out = sys.stdout if stream == "stdout" else sys.stderr
                out.write(f"{{stamp}} {{text}}\\n")
                out.flush()
    """
)


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `docker` first on PATH; returns the directory its records live in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(_FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    records = tmp_path / "docker"
    records.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_DIR", str(records))
    return records


def docker_records(
    directory: Path, name: str, start: int, count: int, at: float, step: float
) -> None:
    """Append `count` records (even ones on stdout, odd on stderr), `step` s apart from `at`."""
    with (directory / f"{name}.records").open("a") as handle:
        for i in range(start, start + count):
            moment = at + i * step
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
            stamp += f".{int(moment % 1 * 1e9):09d}Z"
            stream = "stderr" if i % 2 else "stdout"
            text = json.dumps({"event": "tick", "n": i}) if i % 10 == 0 else f"line {i:05d}"
            handle.write(f"{stamp} {stream} {text}\n")


def test_docker_container_output_is_stored_once(
    tmp_path: Path, data_dir: Path, fake_docker: Path
) -> None:
    """`--docker NAME --once` stores the container's stdout and stderr lines with Docker's
    timestamps; a second run re-reads only the overlap, which the store deduplicates."""
    at = time.time() - 120
    docker_records(fake_docker, "web-1", 0, 200, at, 0.1)
    args = ["--docker", "web-1", "--once", "--data-dir", str(data_dir)]
    first = invoke(*args)
    assert 0 == first.exit_code, first.output
    docker_records(fake_docker, "web-1", 200, 50, at, 0.1)
    second = invoke(*args)
    assert 0 == second.exit_code, second.output
    events = stored(data_dir, "web-1")
    assert len(events) == len({e["event_id"] for e in events})
    ticks = sorted(e["n"] for e in events if e["event"] == "tick")
    outputs = [e for e in events if e["event"] == "output"]
    assert list(range(0, 250, 10)) == ticks
    assert 250 - 25 == len(outputs)
    assert {("stdout", 0), ("stderr", 1)} == {
        (e["stream"], int(e["text"][-1]) % 2) for e in outputs
    }
    assert {"web-1"} == {e["container"] for e in events}
    first_line = next(e for e in outputs if e["text"] == "line 00001")
    assert format_timestamp(at + 0.1)[:21] == first_line["timestamp"][:21]
    calls = (fake_docker / "calls").read_text().splitlines()
    assert 2 == len(calls)
    assert "--since" not in calls[0]
    assert "--since" in calls[1]


def test_docker_collector_killed_and_restarted_loses_and_doubles_nothing(
    tmp_path: Path, data_dir: Path, fake_docker: Path
) -> None:
    """A following `collect --docker` SIGKILLed while the container writes, then restarted,
    ends with every line in the store exactly once."""
    docker_records(fake_docker, "api-1", 0, 0, 0, 0)  # the container exists, no output yet
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBEACON_")}
    cmd = [sys.executable, "-c", _CLI, "collect", "--docker", "api-1", "--data-dir",
           str(data_dir), "--poll-interval", "0.05"]  # fmt: skip
    at = time.time() - 60
    written = 0

    def write(count: int) -> None:
        nonlocal written
        docker_records(fake_docker, "api-1", written, count, at, 0.01)
        written += count

    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL))
        for _ in range(10):
            write(100)
            time.sleep(0.1)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(10)
        write(300)  # while nobody collects
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE))
        write(200)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(stored(data_dir, "api-1")) < written:
            time.sleep(0.3)
        procs[1].send_signal(signal.SIGTERM)
        procs[1].communicate(timeout=20)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    events = stored(data_dir, "api-1")
    ids = [e["event_id"] for e in events]
    assert (written, len(ids)) == (len(ids), len(set(ids)))
    texts_ = {e.get("text") or f"tick {e['n']}" for e in events}
    assert written == len(texts_)


def test_docker_needs_a_source_and_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without FILE or --docker, or with --docker but no docker on PATH, collect exits 2."""
    monkeypatch.setenv("PATH", str(tmp_path))
    nothing = invoke("--data-dir", str(tmp_path / "d"))
    missing = invoke("--docker", "web-1", "--data-dir", str(tmp_path / "d"))
    assert (2, 2) == (nothing.exit_code, missing.exit_code)
    assert "docker CLI" in missing.stderr


class RotatingWriter(threading.Thread):
    """Appends numbered JSON lines to `path` and rotates it every `every` lines, alternating
    rename-and-create (the old handle keeps writing a few lines first, as an app that has not
    reopened yet) and copytruncate (copy, then truncate under the open O_APPEND handle).
    While `rotations` has reached `hold_at` it keeps writing but postpones rotating.

    `every` counts from the previous rotation, so a postponed rotation is not followed a few
    lines later by the next one: a file created and copytruncated between two polls was
    never seen by the collector (docs/shipping.md), whatever it does."""

    def __init__(self, path: Path, total: int, every: int) -> None:
        super().__init__(daemon=True)
        self.path, self.total, self.every = path, total, every
        self.written = 0
        self.rotations = 0
        self.hold_at: int | None = None
        self.rotated = threading.Condition()
        self.error: BaseException | None = None

    def _shift(self) -> None:
        """logrotate's numbering: app.log.N → app.log.N+1, so app.log.1 is free."""
        rotated = sorted(
            (int(p.name.rsplit(".", 1)[1]), p) for p in self.path.parent.glob(self.path.name + ".*")
        )
        for number, old in reversed(rotated):
            old.rename(self.path.with_name(f"{self.path.name}.{number + 1}"))

    def line(self, handle: Any) -> None:
        record = {"event": "numbered", "service": "rotating", "seq": self.written}
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        self.written += 1
        time.sleep(0.0005)

    def _rotate(self, handle: Any) -> Any:
        self._shift()
        if self.rotations % 2 == 0:  # rename-and-create
            self.path.rename(self.path.with_name(self.path.name + ".1"))
            for _ in range(3):
                self.line(handle)
            handle.close()
            handle = self.path.open("a")
        else:  # copytruncate
            shutil.copyfile(self.path, self.path.with_name(self.path.name + ".1"))
            os.truncate(self.path, 0)
        with self.rotated:
            self.rotations += 1
            self.rotated.notify_all()
        return handle

    def run(self) -> None:
        try:
            handle = self.path.open("a")
            due_at = self.every
            while self.written < self.total:
                self.line(handle)
                held = self.hold_at is not None and self.rotations >= self.hold_at
                if self.written >= due_at and not held:
                    handle = self._rotate(handle)
                    due_at = self.written + self.every
            handle.close()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def wait_rotations(self, count: int, seconds: float = 30.0) -> None:
        with self.rotated:
            assert self.rotated.wait_for(lambda: self.rotations >= count, seconds), count


def _wait(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("killed_at", [3, 4], ids=["copytruncate-while-down", "rename-while-down"])
def test_collector_killed_during_rotations_stores_every_line_once(
    tmp_path: Path, data_dir: Path, killed_at: int
) -> None:
    """SIGKILLed mid-stream and restarted while a writer appends and rotates both ways (one
    rotation while it is down), the collector stores every line exactly once.

    Limits, as docs/shipping.md states them: a line written between logrotate's copy and its
    truncate is in neither file, so no `tail -F` reader can recover it (this writer never
    writes inside that window, so exactly-once holds here); and the promise for a stopped
    collector covers one rotation since its checkpoint (the checkpointed file is found among
    its siblings). So the kill comes after the collector followed the last rotation, and
    later rotations wait for the restart. Two rotations since the checkpoint (e.g. killed
    before it noticed a rotation, then one more while down) lose the middle file's lines.
    """
    log = tmp_path / "app.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBEACON_")}
    cmd = [sys.executable, "-c", _CLI, "collect", str(log), "--from-start", "--data-dir",
           str(data_dir), "--poll-interval", "0.05"]  # fmt: skip
    writer = RotatingWriter(log, total=4000, every=300)
    with log.open("a") as handle:
        writer.line(handle)  # something to checkpoint, so the test sees the collector is up
    procs: list[subprocess.Popen[bytes]] = []

    def count() -> int:
        return len(stored(data_dir, "rotating"))

    try:
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL))
        _wait(lambda: any((data_dir / "collect").glob("*.json")), 30, "the collector to start")
        writer.start()
        writer.hold_at = killed_at
        writer.wait_rotations(killed_at)
        past_rotation = writer.written + 20
        _wait(lambda: count() >= past_rotation, 30, "the collector to follow the rotation")
        os.kill(procs[0].pid, signal.SIGKILL)  # mid-stream: the writer goes on
        procs[0].wait(10)
        writer.hold_at = killed_at + 1  # exactly one rotation while the collector is down
        writer.wait_rotations(killed_at + 1)
        before_restart = count()
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE))
        _wait(lambda: count() > before_restart, 30, "the restarted collector to store lines")
        writer.hold_at = None
        writer.join(60)
        assert (None, False) == (writer.error, writer.is_alive())
        with contextlib.suppress(AssertionError):
            _wait(lambda: count() >= writer.written, 30, "the collector to catch up")
        procs[1].send_signal(signal.SIGTERM)
        _, err = procs[1].communicate(timeout=20)
    finally:
        writer.hold_at = None
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    seqs = [e["seq"] for e in stored(data_dir, "rotating")]
    missing = sorted(set(range(writer.written)) - set(seqs))
    assert (0, True) == (procs[1].returncode, writer.rotations > killed_at + 2), err.decode()
    assert ([], writer.written) == (missing, len(seqs))
