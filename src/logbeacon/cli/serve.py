"""`logbeacon serve`: run the ingestion and query server under uvicorn.

Every flag has an environment variable (docs/server.md lists them); a flag wins over its
variable. Settings are validated before anything binds, so a bad value or an unsafe exposure
(listening beyond loopback without keys) stops with a message naming what to set.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlsplit, urlunsplit

import typer

from logbeacon._compiled import compiled_modules
from logbeacon.cli._common import fail, safe_text, stderr_console

if TYPE_CHECKING:
    from logbeacon.server.settings import Settings

__all__ = ["register", "serve"]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(  # noqa: PLR0917 - Typer maps each parameter to an option
    host: Annotated[
        str | None,
        typer.Option(
            help="Bind address (env LOGBEACON_HOST; default 127.0.0.1).", show_default=False
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port (env LOGBEACON_PORT; default 8765).", show_default=False),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data directory (env LOGBEACON_DATA_DIR; default ./.logbeacon).",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Store URL, e.g. sqlite:///var/lib/logbeacon/events.db (env LOGBEACON_STORE; "
            "default: events.db in the data directory).",
            show_default=False,
        ),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            help="Environment name; prod turns the level policy on (env ENVIRONMENT; default dev).",
            show_default=False,
        ),
    ] = None,
    stdout: Annotated[
        bool | None,
        typer.Option(
            "--stdout/--no-stdout",
            help="Mirror accepted events to stdout as JSON lines (env LOGBEACON_STDOUT=1).",
            show_default=False,
        ),
    ] = None,
    retention_days: Annotated[
        int | None,
        typer.Option(
            help="Purge events older than this (env LOGBEACON_RETENTION_DAYS; default 14).",
            show_default=False,
        ),
    ] = None,
    durability: Annotated[
        str | None,
        typer.Option(
            help="normal: survives a process crash; full: survives power loss "
            "(env LOGBEACON_DURABILITY; default normal).",
            show_default=False,
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest request body, also after gzip (env LOGBEACON_MAX_BODY_BYTES; "
            "default 1048576).",
            show_default=False,
        ),
    ] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(
            help="Most events per request (env LOGBEACON_MAX_BATCH; default 1000).",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Events per second per client (IP and key) (env LOGBEACON_RATE; default 50).",
            show_default=False,
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(
            help="Bucket size per client (env LOGBEACON_BURST; default 500).", show_default=False
        ),
    ] = None,
    alerts: Annotated[
        Path | None,
        typer.Option(
            "--alerts",
            help="Alert rules and webhooks, a TOML file (env LOGBEACON_ALERTS; default: new "
            "error groups and failed runs in prod/staging, kept in the history).",
            show_default=False,
        ),
    ] = None,
    writer_process: Annotated[
        bool | None,
        typer.Option(
            "--writer-process/--no-writer-process",
            help="Commit to SQLite from a child process, beside the one answering HTTP (env "
            "LOGBEACON_WRITER_PROCESS; default: on when the machine has two cores or more).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the ingestion and query server (dashboard URL printed at start)."""
    from logbeacon.exceptions import ConfigError, StoreError
    from logbeacon.server.app import create_app
    from logbeacon.server.settings import Settings

    try:
        settings = Settings.from_env(
            os.environ,
            host=host,
            port=port,
            data_dir=data_dir,
            store=store,
            environment=environment,
            stdout=stdout,
            retention_days=retention_days,
            durability=durability,
            max_body_bytes=max_body_bytes,
            max_batch=max_batch,
            rate=rate,
            burst=burst,
            alerts=alerts,
            writer_process=writer_process,
        )
        app = create_app(settings)
    except (ConfigError, StoreError) as exc:
        fail(str(exc), code=2)
    except OSError as exc:
        fail(f"cannot use the data directory: {exc.strerror or type(exc).__name__}", code=2)

    _print_banner(settings, app.state.logbeacon.generated_read_token)
    _run(app, settings)


def _base_url(settings: Settings) -> str:
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _print_banner(settings: Settings, generated_token: str | None) -> None:
    console = stderr_console()
    base = _base_url(settings)
    lines = [f"logbeacon serving on {base}"]
    if generated_token is not None:
        lines.append(f"  dashboard: {base}/?token={generated_token}")
        lines.append(f"  read token saved to {settings.data_dir / 'read_token'} (mode 0600)")
    else:
        lines.append(f"  dashboard: {base}/ (read token from LOGBEACON_READ_TOKENS)")
    store = (
        _without_credentials(settings.store) if settings.store else f"sqlite in {settings.data_dir}"
    )
    survives = "power loss" if settings.durability == "full" else "a process crash"
    lines.append(f"  store: {store}; acknowledged events survive {survives}")
    policy = "warn and above (level policy on)" if settings.is_prod else "every level"
    lines.append(f"  environment: {settings.environment}; storing {policy}")
    if settings.ingest_open:
        lines.append("  ingestion: open to loopback clients only (no keys configured)")
    compiled = compiled_modules()
    hot_path = "compiled with mypyc" if compiled else "pure Python"
    lines.append(f"  hot path: {hot_path} (docs/server.md, 'Compiled hot path')")
    for line in lines:
        console.print(safe_text(line))


def _without_credentials(url: str) -> str:
    """A store URL fit for printing: any `user:password@` is dropped."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


_QUERY_RE = re.compile(r"\?[^\s\"']*")


class StripQueryFilter(logging.Filter):
    """Remove query strings from server log lines.

    uvicorn logs WebSocket handshakes with the full path (`"WebSocket /v1/ws?token=…"`), and
    a query string may carry a read token or a browser key: never write those to a log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _QUERY_RE.sub("", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _QUERY_RE.sub("", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def _log_config() -> dict[str, Any]:
    """uvicorn's logging plus our `logbeacon` logger, to stderr; no access log (URLs may
    carry `?token=`, and request lines are not ours to keep), query strings stripped."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["strip_query"] = {"()": StripQueryFilter}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("strip_query")
    config["loggers"]["logbeacon"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


_GC_YOUNG: Final = 20_000  # allocations between young-generation collections
_SWITCH_INTERVAL: Final = 0.001  # seconds


def _http_protocol() -> Any:
    """One socket write per response with httptools (`_http_protocol.py`); else uvicorn's
    own choice."""
    try:
        from logbeacon.cli._http_protocol import CoalescingHttpToolsProtocol
    except ImportError:  # uvicorn without httptools
        return "auto"
    return CoalescingHttpToolsProtocol


def _run(app: Any, settings: Settings) -> None:
    import uvicorn

    from logbeacon.server.stream import end_streams

    class _Server(uvicorn.Server):
        """Live-tail streams never end by themselves: end them before waiting for requests."""

        async def shutdown(self, sockets: Any = None) -> None:
            end_streams(app)
            await super().shutdown(sockets=sockets)

    trusted = list(settings.trusted_proxies)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=_log_config(),
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        server_header=False,
        timeout_graceful_shutdown=10,
        http=_http_protocol(),
    )
    server = _Server(config)
    # The event loop shares the interpreter lock with helper threads (SQLite readers
    # answering queries, alert delivery); at the default 5 ms a helper that wakes up can wait
    # that long for its turn. 1 ms raised batch throughput by about a fifth while the writer
    # process's pipes had threads too (bench/README.md); it keeps queries prompt under load.
    # This is the server's own process, so the setting is ours to make.
    sys.setswitchinterval(_SWITCH_INTERVAL)
    # What exists now (modules, the app, its routes and models) lives as long as the
    # process: keep it out of the collector's full passes, which otherwise walk it again and
    # again while batches of events come and go (bench/README.md).
    gc.collect()
    gc.freeze()
    # Requests allocate thousands of short-lived objects (a batch of 100 events is ~2,000);
    # at the default 700 the young generation is collected several times per batch, each
    # time walking every event still waiting for its commit.
    gc.set_threshold(_GC_YOUNG, 10, 10)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE, as `uvicorn.run` exits
