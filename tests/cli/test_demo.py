"""`logbeacon demo`: a real subprocess whose traffic gives every troubleshooting view material."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from logbeacon.cli.main import app
from tests.helpers.server import free_port

DEADLINE = 60.0  # seconds from spawning the demo to every view having what it needs
STARTUP = 10.0  # the promise: the demo finishes starting within this


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    output_path: Path

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("logbeacon")
    return [str(script)] if script.exists() else [sys.executable, "-m", "logbeacon.cli.main"]


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM by PID (what Ctrl-C does), SIGKILL if it does not stop in time."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
    return proc.returncode


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """A `logbeacon demo` subprocess on a free loopback port, stopped by PID afterwards."""
    port = free_port()
    data_dir = tmp_path / "demo-data"
    output_path = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if k != "LOGBEACON_RAISE_INTERNAL"}
    env["PYTHONUNBUFFERED"] = "1"
    command = [*_command(), "demo", "--host", "127.0.0.1", "--port", str(port)]
    with output_path.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--data-dir", str(data_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    handle = Demo(proc, f"http://127.0.0.1:{port}", data_dir, output_path)
    try:
        yield handle
    except BaseException as exc:
        exc.add_note(f"logbeacon demo output:\n{handle.output()}")
        raise
    finally:
        _stop(proc)


def _get(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert 200 == response.status_code, response.text
    return response.json()


def _wait_for_banner(demo: Demo, started: float) -> str:
    while time.monotonic() - started < DEADLINE:
        assert demo.proc.poll() is None, f"the demo exited:\n{demo.output()}"
        for line in demo.output().splitlines():
            if "dashboard:" in line and "?token=" in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no dashboard URL within {DEADLINE} s:\n{demo.output()}")


def _spanning_trace(client: httpx.Client, wanted: set[str]) -> dict[str, Any] | None:
    """A trace of a browser chat failure whose services include all of `wanted`."""
    page = _get(client, "/v1/logs", service="web", event="chat_failed", limit=20)
    for event in page["events"]:
        trace = _get(client, f"/v1/traces/{event['trace_id']}")
        if wanted <= set(trace["services"]):
            return trace
    return None


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_produces_failed_runs_error_groups_browser_events_and_a_cross_service_trace(
    demo: Demo,
) -> None:
    """Within 60 s the demo's API shows a failed run, 3+ categorised error groups, a browser
    event and one trace spanning web, api and langgraph; it starts in under 10 s and stops
    cleanly on SIGTERM."""
    started = time.monotonic()
    banner = _wait_for_banner(demo, started)
    assert time.monotonic() - started < STARTUP, demo.output()
    token = (demo.data_dir / "read_token").read_text().strip()
    assert f"{demo.url}/?token={token}" in banner

    found: dict[str, Any] = {}
    with httpx.Client(
        base_url=demo.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        while time.monotonic() - started < DEADLINE and len(found) < 4:
            runs = _get(client, "/v1/runs", status="error")["runs"]
            if runs:
                found["failed_run"] = runs[0]
            groups = [g for g in _get(client, "/v1/errors")["groups"] if g["category"]]
            if len(groups) >= 3:
                found["groups"] = groups
            web = _get(client, "/v1/logs", service="web", limit=1)["events"]
            if web:
                found["browser_event"] = web[0]
            if "trace" not in found:
                trace = _spanning_trace(client, {"web", "api", "langgraph"})
                if trace is not None:
                    found["trace"] = trace
            time.sleep(0.5)

    assert {"failed_run", "groups", "browser_event", "trace"} == set(found), demo.output()
    assert "error" == found["failed_run"]["status"]
    categories = {g["category"] for g in found["groups"]}
    assert {"timeout", "rate_limit"} <= categories
    assert "web" == found["browser_event"]["service"]
    assert {"web", "api", "langgraph"} <= set(found["trace"]["services"])
    assert 0 == _stop(demo.proc), demo.output()


def test_demo_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    """The demo generates its own keys for loopback use, so --host 0.0.0.0 exits 2."""
    result = CliRunner().invoke(
        app, ["demo", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")]
    )
    assert 2 == result.exit_code
    assert "loopback" in result.stderr
    assert not (tmp_path / "d").exists()


def test_demo_reports_a_busy_port(tmp_path: Path) -> None:
    """A port already in use stops the demo at once, naming the port and --port."""
    import socket

    with contextlib.closing(socket.socket()) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            app, ["demo", "--port", str(port), "--data-dir", str(tmp_path / "d")]
        )
    assert 2 == result.exit_code
    assert f"127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr
