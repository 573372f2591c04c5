"""`logbeacon run`: a real child process, its output passed through and stored as events."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from logbeacon.cli.run import ProgressModel, pump, register
from logbeacon.store import open_store
from logbeacon.store.base import Query
from tests.helpers.server import running_server

PY = sys.executable

# The CLI as its own process (signals, terminals): a Typer app with just `run` registered.
_CLI = textwrap.dedent(
    """
    import typer
    from logbeacon.cli.run import register
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


def invoke(data_dir: Path, *args: str) -> Any:
    return CliRunner().invoke(make_app(), ["run", "--data-dir", str(data_dir), *args])


def stored(data_dir: Path, job_id: str) -> list[dict[str, Any]]:
    """The job's events in the local store, oldest first."""

    async def read() -> list[dict[str, Any]]:
        store = open_store("sqlite:", data_dir=data_dir, durability="normal", retention_days=14)
        await store.open()
        events: list[dict[str, Any]] = []
        cursor = None
        try:
            while True:
                page = await store.query(Query(job_id=job_id, limit=1000, cursor=cursor))
                events.extend(page.events)
                cursor = page.next_cursor
                if cursor is None:
                    break
        finally:
            await store.close()
        return list(reversed(events))

    return asyncio.run(read())


def child(code: str) -> list[str]:
    return ["--", PY, "-c", textwrap.dedent(code)]


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBEACON_")}
    env["LOGBEACON_DATA_DIR"] = str(tmp_path / "data")
    return env


# --------------------------------------------------------------------------- events


def test_json_and_plain_lines_become_events(tmp_path: Path) -> None:
    """JSON layer events keep their fields, plain lines become `output` events, all tagged
    with the job id; stdout passes through unchanged and progress goes to stderr."""
    result = invoke(
        tmp_path,
        "--job-id",
        "job-7",
        "--service",
        "pipeline",
        *child(
            """
            import json, sys
            print(json.dumps({"event": "layer_start", "layer": 1, "layer_name": "fetch"}))
            print("plain progress line")
            print("warning: on stderr", file=sys.stderr)
            print(json.dumps({"event": "layer_complete", "layer": 1, "layer_name": "fetch",
                              "status": "success", "duration_ms": 12, "fit_score": 85}))
            print(json.dumps({"message": "from another logger", "levelname": "WARNING"}))
            """
        ),
    )
    assert 0 == result.exit_code, result.output
    events = stored(tmp_path, "job-7")
    names = [e["event"] for e in events]
    assert ("command_start", "command_exit") == (names[0], names[-1])
    # stdout and stderr are read by two threads: only the order within a stream is fixed
    assert sorted(["layer_start", "output", "output", "layer_complete", "log"]) == sorted(
        names[1:-1]
    )
    stdout_names = [e["event"] for e in events[1:-1] if e.get("stream") != "stderr"]
    assert ["layer_start", "output", "layer_complete", "log"] == stdout_names
    assert {"job-7"} == {e["job_id"] for e in events}
    assert {"job-7"} == {e["run_id"] for e in events}
    assert {"pipeline"} == {e["service"] for e in events}
    outputs = {(e["stream"], e["text"]) for e in events if e["event"] == "output"}
    assert {("stdout", "plain progress line"), ("stderr", "warning: on stderr")} == outputs
    complete = next(e for e in events if e["event"] == "layer_complete")
    assert (1, "fetch", "success", 12, 85) == (
        complete["layer"],
        complete["layer_name"],
        complete["status"],
        complete["duration_ms"],
        complete["fit_score"],
    )
    assert "warn" == next(e for e in events if e["event"] == "log")["level"]
    assert "plain progress line\n" in result.stdout
    assert "[logbeacon] layer 1 fetch: running" in result.stderr
    assert "[logbeacon] layer 1 fetch: complete (0.0s)" in result.stderr


def test_own_run_id_and_job_id_win(tmp_path: Path) -> None:
    """A line naming its own run_id keeps it; one naming only a job_id runs under that job."""
    result = invoke(
        tmp_path,
        "--job-id",
        "outer",
        *child(
            """
            import json
            print(json.dumps({"event": "node_start", "node": "a", "run_id": "r-1"}))
            print(json.dumps({"event": "pipeline_start", "job_id": "inner"}))
            """
        ),
    )
    assert 0 == result.exit_code
    outer = {e["event"]: e for e in stored(tmp_path, "outer")}
    assert ("outer", "r-1") == (outer["node_start"]["job_id"], outer["node_start"]["run_id"])
    inner = stored(tmp_path, "inner")
    assert [("pipeline_start", "inner")] == [(e["event"], e["run_id"]) for e in inner]


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_is_propagated(tmp_path: Path, code: int) -> None:
    """The runner exits with the command's code and records it in `command_exit`."""
    result = invoke(tmp_path, "--job-id", f"exit-{code}", *child(f"raise SystemExit({code})"))
    assert code == result.exit_code
    final = stored(tmp_path, f"exit-{code}")[-1]
    assert ("command_exit", code, "error" if code else "info") == (
        final["event"],
        final["exit_code"],
        final["level"],
    )


def test_awkward_output(tmp_path: Path) -> None:
    """Invalid UTF-8 is replaced, a line over 1 MiB is cut and marked, a last line without
    newline still counts, and the raw bytes pass through untouched."""
    code = """
        import sys
        out = sys.stdout.buffer
        out.write(b"bad \\xff\\xfe bytes\\n")
        out.write(b"x" * (1024 * 1024 + 500) + b"\\n")
        out.write(b"y" * 1_000_000 + b"\\n")
        out.write(b"no newline at the end")
        out.flush()
        """
    result = invoke(tmp_path, "--job-id", "odd", *child(code))
    assert 0 == result.exit_code
    expected = (
        b"bad \xff\xfe bytes\n"
        + b"x" * (1024 * 1024 + 500)
        + b"\n"
        + b"y" * 1_000_000
        + b"\n"
        + b"no newline at the end"
    )
    assert expected == result.stdout_bytes
    outputs = [e for e in stored(tmp_path, "odd") if e["event"] == "output"]
    assert 4 == len(outputs)
    assert "bad \ufffd\ufffd bytes" == outputs[0]["text"]
    assert outputs[1]["truncated"] is True
    assert outputs[1]["text"].startswith("x" * 8192)
    assert "text" in outputs[1]["_truncated"]
    assert "truncated" not in outputs[2]
    assert outputs[2]["text"].startswith("y" * 8192)
    assert "no newline at the end" == outputs[3]["text"]


@pytest.mark.timeout(30)
def test_silent_command(tmp_path: Path) -> None:
    """A command that prints nothing still finishes promptly and leaves start/exit events."""
    started = time.monotonic()
    result = invoke(tmp_path, "--job-id", "quiet", *child("import time; time.sleep(0.3)"))
    assert 0 == result.exit_code
    assert "" == result.stdout
    assert time.monotonic() - started < 15
    events = stored(tmp_path, "quiet")
    assert ["command_start", "command_exit"] == [e["event"] for e in events]
    assert events[1]["duration_ms"] >= 300


def test_lots_of_output_on_both_streams_does_not_deadlock(tmp_path: Path) -> None:
    """Megabytes interleaved on stdout and stderr are read concurrently, nothing lost."""
    code = """
        import sys
        for i in range(2000):
            print(f"out {i} " + "o" * 500)
            print(f"err {i} " + "e" * 500, file=sys.stderr)
        """
    result = invoke(tmp_path, "--job-id", "busy", "--no-progress", *child(code))
    assert 0 == result.exit_code
    outputs = [e for e in stored(tmp_path, "busy") if e["event"] == "output"]
    assert 4000 == len(outputs)
    assert 2000 == sum(1 for e in outputs if e["stream"] == "stderr")


def test_command_not_found_and_not_executable(tmp_path: Path) -> None:
    """A missing command exits 127 and a non-executable one 126, each with a clear message."""
    missing = invoke(tmp_path, "--", str(tmp_path / "no-such-command"))
    assert 127 == missing.exit_code
    assert "command not found" in missing.stderr
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    if os.geteuid() == 0:
        script.chmod(0o600)  # root may read anything, but exec still needs an x bit
    denied = invoke(tmp_path, "--", str(script))
    assert 126 == denied.exit_code
    assert "permission denied" in denied.stderr


def test_remote_server_and_dead_server(tmp_path: Path) -> None:
    """With --url events go to the server; with a dead server the command still runs and
    exits with its code, and the runner says how many events were lost."""
    code = """
        import json
        print(json.dumps({"event": "layer_start", "layer": 2, "layer_name": "mine"}))
        print("hello server")
        raise SystemExit(5)
        """
    with running_server(tmp_path) as server:
        result = invoke(tmp_path, "--url", server.url, "--job-id", "remote", *child(code))
        assert 5 == result.exit_code
        response = httpx.get(
            f"{server.url}/v1/logs",
            params={"job_id": "remote"},
            headers=server.read_headers,
            timeout=10,
        )
        events = response.json()["events"]
        assert {"command_start", "layer_start", "output", "command_exit"} == {
            e["event"] for e in events
        }
        port = server.port
    started = time.monotonic()
    dead = invoke(
        tmp_path,
        "--url",
        f"http://127.0.0.1:{port}",
        "--flush-timeout",
        "1",
        *child(code),
    )
    assert 5 == dead.exit_code
    assert time.monotonic() - started < 10
    assert "some events did not reach" in dead.stderr


# --------------------------------------------------------------------------- signals, tty


def test_sigint_is_forwarded_and_exit_code_reflects_the_child(tmp_path: Path) -> None:
    """SIGINT to the runner reaches the child, which cleans up and exits 130; so does the
    runner, and the child's last words are stored."""
    code = """
        import signal, sys, time
        def stop(signum, frame):
            print("got SIGINT", flush=True)
            sys.exit(130)
        signal.signal(signal.SIGINT, stop)
        print("ready", flush=True)
        time.sleep(30)
        """
    proc = subprocess.Popen(
        [PY, "-c", _CLI, "run", "--job-id", "sig", "--no-progress", *child(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(tmp_path),
        start_new_session=True,  # no terminal: the signal comes only from us
    )
    try:
        assert proc.stdout is not None
        assert b"ready\n" == proc.stdout.readline()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert 130 == proc.returncode, err.decode()
    assert b"got SIGINT\n" == out
    events = stored(tmp_path / "data", "sig")
    assert "got SIGINT" in [e.get("text") for e in events]
    assert 130 == events[-1]["exit_code"]


def test_terminal_shows_live_progress(tmp_path: Path) -> None:
    """On a terminal the layer table is drawn live with each layer's final state."""
    code = """
        import json, time
        for n, name in ((1, "fetch"), (2, "rank")):
            print(json.dumps({"event": "layer_start", "layer": n, "layer_name": name}))
            time.sleep(0.1)
        print(json.dumps({"event": "layer_complete", "layer": 1, "layer_name": "fetch"}))
        print(json.dumps({"event": "layer_error", "layer": 2, "layer_name": "rank"}))
        print("done")
        """
    master, slave = pty.openpty()
    env = cli_env(tmp_path)
    env.update({"TERM": "xterm", "COLUMNS": "100", "LINES": "30"})
    proc = subprocess.Popen(
        [PY, "-c", _CLI, "run", "--job-id", "tty", *child(code)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 20)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(20)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert 0 == proc.returncode, screen
    assert "layer 1 fetch" in screen
    assert "complete" in screen
    assert "error" in screen
    assert "done" in screen


# --------------------------------------------------------------------------- parts


def test_progress_model_states() -> None:
    """Layers and nodes move pending → running → complete/error/skipped."""
    model = ProgressModel()
    assert model.update({"event": "pipeline_start", "layers": [1, 2, 3]}) is None
    assert ["pending"] * 3 == [s.state for s in model.steps.values()]
    assert "layer 1 fetch: running" == model.update(
        {"event": "layer_start", "layer": 1, "layer_name": "fetch"}
    )
    assert "layer 1 fetch: complete (2.5s)" == model.update(
        {"event": "layer_complete", "layer": 1, "duration_ms": 2500}
    )
    assert "layer 2: skipped" == model.update({"event": "layer_skip", "layer": 2})
    assert "layer 3: error" == model.update({"event": "layer_error", "layer": 3})[:14]
    assert "node writer: running" == model.update({"event": "node_start", "node": "writer"})
    assert model.update({"event": "node_failed", "node": "writer"}).startswith("node writer: error")
    assert model.update({"event": "output", "text": "x"}) is None
    assert ["complete", "skipped", "error", "error"] == [s.state for s in model.steps.values()]


def test_pump_splits_lines_and_caps_them() -> None:
    """pump passes every chunk through and yields capped lines, the last one even unended."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"one\ntwo\r\n" + b"z" * 50 + b"\nlast")
    os.close(write_fd)
    chunks: list[bytes] = []
    lines: list[tuple[bytes, bool]] = []
    pump(read_fd, chunks.append, lambda data, cut: lines.append((data, cut)), max_line=10)
    os.close(read_fd)
    assert b"one\ntwo\r\n" + b"z" * 50 + b"\nlast" == b"".join(chunks)
    assert [(b"one", False), (b"two\r", False), (b"z" * 10, True), (b"last", False)] == lines


def test_seed_plan_layer_sequence_renders_and_is_queryable(tmp_path: Path) -> None:
    """The origin plan's pipeline (layers 2-7 printing its own JSON, with `metadata`, a string
    `error` and a skipped layer) is shown layer by layer and stored under its job id."""
    code = """
        import json
        def emit(event, **fields):
            print(json.dumps({"event": event, "job_id": "6929c97b45fa", **fields}), flush=True)
        emit("pipeline_start")
        layers = [(2, "pain_point_miner"), (3, "company_researcher"), (4, "opportunity_mapper"),
                  (5, "people_mapper"), (6, "generator"), (7, "publisher")]
        for n, name in layers:
            if n == 5:
                emit("layer_skip", layer=n, layer_name=name, status="skipped")
                continue
            emit("layer_start", layer=n, layer_name=name)
            if n == 6:
                emit("layer_error", layer=n, layer_name=name, status="error",
                     error="LLM returned no text", duration_ms=40)
                continue
            emit("layer_complete", layer=n, layer_name=name, status="success", duration_ms=10 * n,
                 metadata={"fit_score": 85, "tokens_used": 1200})
        emit("pipeline_complete", status="partial")
        """
    result = invoke(tmp_path, *child(code))
    assert 0 == result.exit_code, result.output
    progress = [line for line in result.stderr.splitlines() if line.startswith("[logbeacon] layer")]
    assert [
        "[logbeacon] layer 2 pain_point_miner: running",
        "[logbeacon] layer 2 pain_point_miner: complete (0.0s)",
        "[logbeacon] layer 3 company_researcher: running",
        "[logbeacon] layer 3 company_researcher: complete (0.0s)",
        "[logbeacon] layer 4 opportunity_mapper: running",
        "[logbeacon] layer 4 opportunity_mapper: complete (0.0s)",
        "[logbeacon] layer 5 people_mapper: skipped",
        "[logbeacon] layer 6 generator: running",
        "[logbeacon] layer 6 generator: error (0.0s)",
        "[logbeacon] layer 7 publisher: running",
        "[logbeacon] layer 7 publisher: complete (0.1s)",
    ] == progress
    events = stored(tmp_path, "6929c97b45fa")
    layered = [(e["event"], e.get("layer")) for e in events if "layer" in e]
    assert 11 == len(layered)
    failed = next(e for e in events if e["event"] == "layer_error")
    mapper = next(e for e in events if e["event"] == "layer_complete" and e["layer"] == 4)
    assert ("LLM returned no text", 85) == (
        failed["error"] if isinstance(failed["error"], str) else failed["error"]["message"],
        mapper["metadata"]["fit_score"],
    )
