"""`logbeacon demo`: a server, the example support-chat app, and traffic that breaks on purpose.

One process, one asyncio loop, loopback only (`make run` starts this):

- the logbeacon server (`create_app`) on `--host:--port`, SQLite store in `--data-dir`;
- the example FastAPI + LangGraph app (`logbeacon.demo.agent`) on the next free port, with
  its chat page at `/` using the browser client;
- the traffic generator (`logbeacon.demo.traffic`): successful, slow and failing chats,
  browser errors, and a pipeline job with a skipped and a failed layer, every few seconds.

The app's events are shipped by the SDK with a generated ingest key, the page's with a
generated browser key valid only from the app's origin; the read token is the server's
usual generated one (`<data-dir>/read_token`), printed in the dashboard URL. The demo runs
with its own configuration: `LOGBEACON_*` variables (and their seed aliases) of the calling
shell are ignored, so a real deployment's settings cannot point the demo elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from logbeacon.cli._common import DEFAULT_URL, fail, safe_text, stdout_console

if TYPE_CHECKING:
    import uvicorn

    from logbeacon.demo.traffic import RoundResult, Traffic

__all__ = ["DEFAULT_DEMO_DATA_DIR", "DEMO_RELEASE", "demo", "register"]

DEFAULT_DEMO_DATA_DIR: Final = Path(".logbeacon-demo")
DEMO_RELEASE: Final = "demo-1.4.2"
_STARTUP_TIMEOUT: Final = 30.0


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    host: Annotated[
        str, typer.Option(help="Bind address of the server and the example app (loopback only).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Server port; the example app takes the next.")
    ] = 8765,
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir", help="Data directory of the demo's store and read token (kept)."
        ),
    ] = DEFAULT_DEMO_DATA_DIR,
) -> None:
    """Run a server, an instrumented FastAPI + LangGraph app and traffic with failures."""
    from logbeacon.server.settings import is_loopback_host

    if not is_loopback_host(host):
        fail(
            f"the demo listens on loopback only (it generates its own keys); got --host {host}",
            code=2,
        )
    server_sock = _bind(host, port)
    app_sock = _bind_next(host, port + 1)
    _isolate_environment()
    try:
        server_url = _url(host, server_sock)
        app_url = _url(host, app_sock)
        parts = _build(host, server_sock, app_url, server_url, data_dir)
        asyncio.run(_main(parts, server_sock, app_sock))
    finally:
        server_sock.close()
        app_sock.close()


# --------------------------------------------------------------------------- set-up


def _isolate_environment() -> None:
    """Forget the shell's logbeacon settings: `LOGBEACON_*` and every alias the SDK or the
    server reads (`ENVIRONMENT`, `LOG_LEVEL`, …), so the demo runs as documented anywhere."""
    from logbeacon.sdk.config import SETTINGS
    from logbeacon.server.settings import ENV_VARS

    aliases = {name for setting in SETTINGS for name in setting.env}
    aliases.update(name for names in ENV_VARS.values() for name in names)
    for name in list(os.environ):
        if name.startswith("LOGBEACON_") or name in aliases:
            del os.environ[name]


def _try_bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts so a busy port fails at once."""
    try:
        return _try_bind(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (pass --port)", code=2)


def _bind_next(host: str, port: int) -> socket.socket:
    """The example app on the port after the server's when it is free, else any free one."""
    if port <= 65535:
        with contextlib.suppress(OSError):
            return _try_bind(host, port)
    try:
        return _try_bind(host, 0)
    except OSError as exc:
        fail(f"cannot listen on {host} for the example app: {exc.strerror or exc}", code=2)


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}"


@dataclass(frozen=True, slots=True)
class _Demo:
    """Everything `_main` runs: two apps under their uvicorn servers, and the traffic."""

    server: uvicorn.Server
    app_server: uvicorn.Server
    traffic: Traffic
    server_url: str
    app_url: str
    data_dir: Path
    read_token: str


def _build(
    host: str, server_sock: socket.socket, app_url: str, server_url: str, data_dir: Path
) -> _Demo:
    import logbeacon
    from logbeacon.demo.agent import BrowserPage, create_app
    from logbeacon.demo.traffic import Target, Traffic
    from logbeacon.exceptions import ConfigError, StoreError
    from logbeacon.server.app import create_app as create_server_app
    from logbeacon.server.settings import Settings

    ingest_key = secrets.token_urlsafe(24)
    browser_key = f"demo-{secrets.token_urlsafe(12)}"
    target = Target(
        app_url=app_url,
        server_url=server_url,
        ingest_key=ingest_key,
        browser_key=browser_key,
        release=DEMO_RELEASE,
    )
    try:
        settings = Settings(
            host=host,
            port=server_sock.getsockname()[1],
            data_dir=data_dir,
            ingest_keys=(ingest_key,),
            browser_key=browser_key,
            allowed_origins=(target.origin,),
        )
        server_app = create_server_app(settings)
    except (ConfigError, StoreError) as exc:
        fail(str(exc), code=2)
    except OSError as exc:
        fail(f"cannot use the data directory: {exc.strerror or type(exc).__name__}", code=2)
    read_token = server_app.state.logbeacon.generated_read_token
    assert read_token is not None  # the demo configures no read token: one is generated

    # The app's own events go to the server only: its terminal shows the banner, not JSON.
    logbeacon.configure(
        service="api",
        environment="dev",
        release=DEMO_RELEASE,
        format="json",
        ship_to=server_url,
        ingest_key=ingest_key,
        stream=open(os.devnull, "w"),  # noqa: SIM115 - lives as long as the process
    )
    app = create_app(browser=BrowserPage(server_url, browser_key, DEMO_RELEASE, "dev"))
    return _Demo(
        server=_server(server_app),
        app_server=_server(app),
        traffic=Traffic(target),
        server_url=server_url,
        app_url=app_url,
        data_dir=data_dir,
        read_token=read_token,
    )


def _server(app: Any) -> uvicorn.Server:
    import uvicorn

    from logbeacon.cli.serve import _log_config
    from logbeacon.server.stream import end_streams

    class _Server(uvicorn.Server):
        """Signals are the demo's to handle: it stops both servers and the traffic."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def shutdown(self, sockets: Any = None) -> None:
            end_streams(app)  # live-tail streams never end by themselves
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(
        app,
        log_config=_log_config(),
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=3,
    )
    return _Server(config)


# --------------------------------------------------------------------------- running


async def _main(parts: _Demo, server_sock: socket.socket, app_sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    servers = (parts.server, parts.app_server)

    def on_signal() -> None:
        if stop.is_set():  # a second Ctrl-C: do not wait for open streams
            for server in servers:
                server.force_exit = True
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    tasks = [
        asyncio.create_task(parts.server.serve(sockets=[server_sock])),
        asyncio.create_task(parts.app_server.serve(sockets=[app_sock])),
    ]
    traffic: asyncio.Task[None] | None = None
    try:
        await _started(servers, tasks)
        _print_banner(parts)
        traffic = asyncio.create_task(parts.traffic.run(stop, on_round=_first_round_printer()))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([*tasks, traffic, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        if traffic is not None:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic
        await _shutdown(servers, tasks)


async def _started(servers: tuple[uvicorn.Server, ...], tasks: list[asyncio.Task[None]]) -> None:
    deadline = asyncio.get_running_loop().time() + _STARTUP_TIMEOUT
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            fail("the demo's servers did not start (see the messages above)")
        if asyncio.get_running_loop().time() > deadline:
            fail(f"the demo's servers did not start within {_STARTUP_TIMEOUT:.0f} s")
        await asyncio.sleep(0.02)


async def _shutdown(servers: tuple[uvicorn.Server, ...], tasks: list[asyncio.Task[None]]) -> None:
    """Deliver the app's last events, then stop the app and the server, in that order."""
    import logbeacon
    from logbeacon.sdk import reset

    # The shipper's thread posts to the server on this loop: wait for it off the loop.
    await asyncio.to_thread(logbeacon.flush, 5.0)
    await asyncio.to_thread(reset)
    for server, task in zip(reversed(servers), reversed(tasks), strict=True):
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task


def _first_round_printer() -> Callable[[RoundResult], None]:
    printed = False

    def on_round(result: RoundResult) -> None:
        nonlocal printed
        if printed:
            return
        printed = True
        console = stdout_console()
        summary = (
            f"first round sent: {result.requests} requests ({result.failed} failed on purpose), "
            f"{result.browser_events} browser events, {result.pipelines} pipeline job; "
            "more every few seconds"
        )
        console.print(safe_text(summary), soft_wrap=True)
        for problem in result.problems:
            console.print(safe_text(f"  demo problem: {problem}", style="yellow"), soft_wrap=True)

    return on_round


def _print_banner(parts: _Demo) -> None:
    url_flag = "" if parts.server_url == DEFAULT_URL else f" --url {parts.server_url}"
    data = parts.data_dir
    cli = f"logbeacon {{}}{url_flag} --data-dir {data}"
    lines = [
        ("logbeacon demo is running (Ctrl-C to stop)", "bold"),
        (f"  dashboard:   {parts.server_url}/?token={parts.read_token}", "bold green"),
        (f"  example app: {parts.app_url}/  (a chat page using the browser client)", ""),
        (f"  data:        {data} (read token in {data / 'read_token'})", ""),
        ("  traffic:     chats that succeed, a slow node, a timeout, an LLM rate limit,", ""),
        ("               browser errors, a pipeline with a skipped and a failed layer", ""),
        (f"  try:         {cli.format('query --level error')}", ""),
        (f"               {cli.format('analyze --since 15m')}", ""),
    ]
    console = stdout_console()
    for text, style in lines:
        console.print(safe_text(text, style=style), soft_wrap=True)  # URLs stay on one line
    sys.stdout.flush()
