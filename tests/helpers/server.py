"""A real `logbeacon serve` subprocess on a free 127.0.0.1 port, for end-to-end tests.

    with running_server(tmp_path, env={"ENVIRONMENT": "prod"}) as server:
        httpx.post(f"{server.url}/v1/logs", json={...})
        httpx.get(f"{server.url}/v1/logs", headers=server.read_headers)

The server's output goes to a file; if it dies or never becomes healthy, the error shows that
output. It is stopped by PID (SIGTERM, then SIGKILL), never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

__all__ = [
    "RunningServer",
    "ServerFailed",
    "clean_environment",
    "free_port",
    "running_server",
    "start_server",
]

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class ServerFailed(RuntimeError):
    """The server exited or never answered its health check."""


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> list[str]:
    script = Path(sys.executable).with_name("logbeacon")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "logbeacon.cli.main"]


def _clean_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOGBEACON_")
        and k not in ("ENVIRONMENT", "LOG_INGEST_HMAC_SECRET", "LOG_DIAGNOSTIC_SECRET")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class RunningServer:
    """Handle on one server process."""

    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    read_token: str = ""
    stdout_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def read_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_token}"}

    def output(self) -> str:
        """Everything the server printed so far (stderr, and stdout unless captured apart)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        if self.stdout_path is not None and self.stdout_path.exists():
            text += "\n--- stdout ---\n" + self.stdout_path.read_text(errors="replace")
        return text

    def stdout(self) -> str:
        """What the server wrote to stdout (only when started with `separate_stdout=True`)."""
        assert self.stdout_path is not None, "start the server with separate_stdout=True"
        return self.stdout_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown code runs."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)


def start_server(
    tmp_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    data_dir: Path | None = None,
    separate_stdout: bool = False,
    name: str = "server",
) -> RunningServer:
    """Start `logbeacon serve` and wait until `/v1/logs/health` answers 200."""
    port = free_port()
    data = data_dir or tmp_path / "data"
    log_path = tmp_path / f"{name}-{port}.log"
    stdout_path = tmp_path / f"{name}-{port}.stdout" if separate_stdout else None
    command = [
        *_command(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        *args,
    ]
    full_env = _clean_env(env)
    with contextlib.ExitStack() as files:
        log_file = files.enter_context(log_path.open("wb"))
        out_file = files.enter_context(stdout_path.open("wb")) if stdout_path else log_file
        proc = subprocess.Popen(command, stdout=out_file, stderr=log_file, env=full_env)
    server = RunningServer(
        url=f"http://127.0.0.1:{port}",
        port=port,
        data_dir=data,
        proc=proc,
        log_path=log_path,
        stdout_path=stdout_path,
    )
    try:
        _wait_healthy(server)
    except BaseException:
        server.stop()
        raise
    configured = full_env.get("LOGBEACON_READ_TOKENS", "")
    if configured:
        server.read_token = configured.split(",")[0].strip()
    else:
        server.read_token = (data / "read_token").read_text().strip()
    return server


def _wait_healthy(server: RunningServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        code = server.proc.poll()
        if code is not None:
            raise ServerFailed(f"logbeacon serve exited with {code}:\n{server.output()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/v1/logs/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise ServerFailed(f"logbeacon serve not healthy after {STARTUP_TIMEOUT}s:\n{server.output()}")


@contextlib.contextmanager
def running_server(
    tmp_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    data_dir: Path | None = None,
    separate_stdout: bool = False,
) -> Iterator[RunningServer]:
    """A healthy server for the duration of the block; its output is shown if the block fails."""
    server = start_server(
        tmp_path, env=env, args=args, data_dir=data_dir, separate_stdout=separate_stdout
    )
    try:
        yield server
    except BaseException as exc:
        exc.add_note(f"logbeacon serve output:\n{server.output()}")
        raise
    finally:
        server.stop()


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every logbeacon variable from the test process (for in-process CLI runs)."""
    for name in list(os.environ):
        if name.startswith("LOGBEACON_") or name in (
            "ENVIRONMENT",
            "LOG_INGEST_HMAC_SECRET",
            "LOG_DIAGNOSTIC_SECRET",
        ):
            monkeypatch.delenv(name)
