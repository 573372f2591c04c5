"""`logbeacon tail [-f]`: recent events oldest first, live following, terminal-safe output."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner, Result

from logbeacon.cli import tail as tail_module
from logbeacon.cli.main import app
from logbeacon.cli.tail import parse_sse
from logbeacon.event import format_timestamp
from tests.helpers.server import RunningServer, clean_environment, free_port, running_server

pytestmark = pytest.mark.e2e

ANSI = "\x1b[31mred alert\x1b[0m"
HOSTILE = "line one\r\nFAKE line\u2028x\x1b]0;pwned\x07"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("cli-tail")) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def _tag() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


def _post(server: RunningServer, events: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{server.url}/v1/logs", json=events, timeout=10)
    assert 200 == response.status_code, response.text


def _run(server: RunningServer, *args: str) -> Result:
    extra = ["--url", server.url, "--token", server.read_token]
    return CliRunner().invoke(app, ["tail", *args, *extra], env={"COLUMNS": "200"})


def _history(server: RunningServer, service: str) -> None:
    start = time.time() - 30
    _post(
        server,
        [
            {
                "service": service,
                "event": f"step{i}",
                "level": "error" if i == 2 else "info",
                "timestamp": format_timestamp(start + i),
                **({"message": HOSTILE} if i == 1 else {}),
            }
            for i in range(3)
        ],
    )


# --------------------------------------------------------------------------- without -f


def test_tail_prints_recent_events_oldest_first_and_escaped(server: RunningServer) -> None:
    """Recent matching events, oldest first, one line each; CR/LF, U+2028 and OSC escaped."""
    service = _tag()
    _history(server, service)
    result = _run(server, "--service", service)
    lines = result.stdout.splitlines()
    assert 0 == result.exit_code
    assert ["step0", "step1", "step2"] == [line.split()[4] for line in lines]
    assert "line one\\r\\nFAKE line\\u2028x\\x1b]0;pwned\\x07" in lines[1]
    assert "ERROR" in lines[2]
    assert not {"\x1b", "\r", "\u2028", "\x07"} & set(result.stdout)


def test_tail_json_prints_raw_events(server: RunningServer) -> None:
    """--json prints the newest -n events as JSON lines, oldest first, values intact."""
    service = _tag()
    _history(server, service)
    result = _run(server, "--service", service, "--json", "-n", "2")
    events = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert 0 == result.exit_code
    assert [("step1", HOSTILE), ("step2", None)] == [(e["event"], e.get("message")) for e in events]


def test_tail_filters_are_validated_by_the_server(server: RunningServer) -> None:
    """A bad filter value exits 1 with the server's explanation."""
    result = _run(server, "--level", "loud")
    assert 1 == result.exit_code
    assert "level" in result.stderr


# --------------------------------------------------------------------------- -f


class Follower:
    """`logbeacon tail -f` as a real process; its output lines are read with timeouts."""

    def __init__(self, server: RunningServer, tmp_path: Path, *args: str) -> None:
        self.stderr_path = tmp_path / f"tail-{uuid.uuid4().hex[:6]}.err"
        command = [
            str(Path(sys.executable).with_name("logbeacon")),
            "tail",
            "-f",
            *args,
            "--url",
            server.url,
            "--token",
            server.read_token,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBEACON_")}
        env.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        self.pump = threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True)
        self.pump.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_following(self, seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        while "following live events" not in self.stderr():
            assert self.proc.poll() is None, self.stderr()
            assert time.monotonic() < deadline, self.stderr()
            time.sleep(0.05)

    def next_line(self, seconds: float = 10.0) -> str:
        return self.lines.get(timeout=seconds)

    def interrupt(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.pump.join(timeout=10)  # EOF once the process is gone
            assert self.proc.stdout is not None
            self.proc.stdout.close()


def test_follow_prints_history_then_live_events_escaped(
    server: RunningServer, tmp_path: Path
) -> None:
    """-f shows recent events, then live ones with ANSI escapes made visible; Ctrl-C exits 130."""
    service = _tag()
    _history(server, service)
    follower = Follower(server, tmp_path, "--service", service, "-n", "1")
    try:
        follower.wait_following()
        history = follower.next_line()
        _post(server, [{"service": service, "event": "live", "level": "warn", "message": ANSI}])
        live = follower.next_line()
    finally:
        code = follower.interrupt()
    assert "step2" in history
    assert "WARN" == live.split()[2]
    assert live.endswith(f"{service} live  \\x1b[31mred alert\\x1b[0m")
    assert "\x1b" not in live
    assert 130 == code
    assert "Traceback" not in follower.stderr()


def test_follow_json_prints_raw_live_events(server: RunningServer, tmp_path: Path) -> None:
    """-f --json prints each live event as one JSON line with its value intact."""
    service = _tag()
    follower = Follower(server, tmp_path, "--service", service, "--json")
    try:
        follower.wait_following()
        _post(server, [{"service": service, "event": "live", "message": ANSI}])
        line = follower.next_line()
    finally:
        follower.interrupt()
    assert ("live", ANSI) == (orjson.loads(line)["event"], orjson.loads(line)["message"])
    assert "\x1b" not in line


# --------------------------------------------------------------------------- reconnecting


def test_parse_sse_commits_an_id_only_with_its_message() -> None:
    """An id counts once its message is complete; comments are skipped; id-only messages move it."""
    lines = [
        "retry: 2000",
        "id: A",
        "",
        ": ping",
        "",
        "id: B",
        "event: log",
        "data: {}",
        "",
        "id: C",
    ]
    messages = [(m.event, m.data, m.id) for m in parse_sse(iter(lines))]
    assert [("", "", "A"), ("log", "{}", "B")] == messages


def test_follow_resumes_from_the_last_event_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the stream ends, -f reconnects with Last-Event-ID; a 401 then stops it with exit 1."""
    seen: list[str | None] = []
    bodies = [
        b"retry: 2000\nid: P0\n\nid: P1\nevent: log\ndata: "
        + orjson.dumps({"event": "first", "level": "info", "service": "api", "event_id": "e1"})
        + b"\n\n",
        b"id: P2\nevent: log\ndata: "
        + orjson.dumps({"event": "second", "level": "info", "service": "api", "event_id": "e2"})
        + b'\n\nevent: notice\ndata: {"reason":"slow_consumer","dropped":3}\n\n',
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/logs":
            return httpx.Response(200, json={"events": [], "next_cursor": None})
        seen.append(request.headers.get("last-event-id"))
        if bodies:
            return httpx.Response(
                200, content=bodies.pop(0), headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(401, json={"error": "invalid_token", "message": "unknown"})

    def client(url: str, *, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=url, transport=httpx.MockTransport(handler), timeout=timeout)

    monkeypatch.setattr(tail_module, "make_client", client)
    monkeypatch.setattr(tail_module, "_pause", lambda seconds: None)
    result = CliRunner().invoke(app, ["tail", "-f", "--json", "--url", "http://logbeacon.test"])
    assert [None, "P1", "P2"] == seen
    assert ["first", "second"] == [orjson.loads(x)["event"] for x in result.stdout.splitlines()]
    assert "3 events not delivered" in result.stderr
    assert (1, True) == (result.exit_code, "LOGBEACON_TOKEN" in result.stderr)


def test_follow_without_a_server_says_what_to_do() -> None:
    """-f against nothing listening exits 1 with a message instead of retrying forever."""
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["tail", "-f", "--url", url, "--token", "x"])
    assert 1 == result.exit_code
    assert "cannot reach a logbeacon server" in result.stderr
