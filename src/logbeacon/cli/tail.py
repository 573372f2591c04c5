"""`logbeacon tail [-f] [filters]`: recent events, oldest first, then (with `-f`) new ones as the
server stores them.

Following uses the server's live stream (`GET /v1/stream`). The stream is opened before the
recent events are read, so nothing stored in between is missed (an event in both is shown
once); a dropped connection is resumed with `Last-Event-ID`, so the server sends what was
missed meanwhile. Every value is printed escaped: control characters, ANSI/OSC sequences,
CR/LF and Unicode line breaks cannot forge lines or drive the terminal.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from logbeacon.cli._common import (
    DEFAULT_DATA_DIR,
    DEFAULT_URL,
    DataDirOption,
    TokenOption,
    UrlOption,
    api_request,
    escape_terminal,
    fail,
    json_line,
    make_client,
    resolve_token,
    safe_text,
    stderr_console,
)

if TYPE_CHECKING:
    import httpx
    from rich.console import Console
    from rich.text import Text

__all__ = ["register", "tail"]

_LEVEL_STYLES: Final = {
    "debug": "dim",
    "info": "cyan",
    "warn": "yellow",
    "error": "red",
    "critical": "bold white on red",
}
_DETAIL_KEYS: Final = (
    "node",
    "layer",
    "status",
    "duration_ms",
    "trace_id",
    "request_id",
    "session_id",
    "run_id",
    "job_id",
)
_DETAILS_WIDTH: Final = 400
# The server sends a heartbeat every 15 s by default; four missed ones mean a dead link.
_READ_TIMEOUT: Final = 60.0
_BACKOFF_START: Final = 0.5
_BACKOFF_MAX: Final = 10.0
_SEEN_MAX: Final = 10_000
_EXIT_INTERRUPTED: Final = 130

# Replaced by tests that must not wait out a backoff.
_pause: Callable[[float], None] = time.sleep


def register(app: typer.Typer) -> None:
    app.command("tail")(tail)


def _option(name: str, help_text: str) -> Any:
    return typer.Option(name, help=help_text, show_default=False)


def tail(  # noqa: PLR0917 - Typer maps each parameter to an option
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new events as they are stored."),
    ] = False,
    since: Annotated[
        str | None,
        _option("--since", "Events since this RFC 3339 time or duration (15m, 1h, 7d)."),
    ] = None,
    level: Annotated[str | None, _option("--level", "Minimum level: debug … critical.")] = None,
    service: Annotated[str | None, _option("--service", "Exact service.")] = None,
    environment: Annotated[str | None, _option("--environment", "Exact environment.")] = None,
    event: Annotated[str | None, _option("--event", "Exact event name.")] = None,
    trace_id: Annotated[str | None, _option("--trace-id", "Exact trace id.")] = None,
    request_id: Annotated[str | None, _option("--request-id", "Exact request id.")] = None,
    session_id: Annotated[str | None, _option("--session-id", "Exact session id.")] = None,
    run_id: Annotated[str | None, _option("--run-id", "Exact run id.")] = None,
    job_id: Annotated[str | None, _option("--job-id", "Exact job id.")] = None,
    correlation_id: Annotated[
        str | None, _option("--correlation-id", "Exact correlation id.")
    ] = None,
    node: Annotated[str | None, _option("--node", "Exact agent node.")] = None,
    q: Annotated[
        str | None, typer.Option("--q", "-q", help="Full-text search.", show_default=False)
    ] = None,
    lines: Annotated[
        int,
        typer.Option(
            "--lines",
            "-n",
            min=1,
            max=1000,
            help="How many recent events to show (without --since).",
        ),
    ] = 20,
    json_output: Annotated[
        bool, typer.Option("--json", help="One raw JSON event per line (for jq).")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    data_dir: DataDirOption = Path(DEFAULT_DATA_DIR),
) -> None:
    """Show recent events, oldest first; with -f, follow new ones live (Ctrl-C to stop)."""
    filters = {
        "since": since,
        "level": level,
        "service": service,
        "environment": environment,
        "event": event,
        "trace_id": trace_id,
        "request_id": request_id,
        "session_id": session_id,
        "run_id": run_id,
        "job_id": job_id,
        "correlation_id": correlation_id,
        "node": node,
        "q": q,
    }
    params = {name: value for name, value in filters.items() if value is not None}
    printer = _Printer(json_output=json_output)
    read_token = resolve_token(token, data_dir)
    try:
        if follow:
            _follow(url, read_token, params, lines, printer)
        else:
            with make_client(url, token=read_token) as client:
                for item in _recent(client, params, lines):
                    printer.event(item)
    except KeyboardInterrupt:
        raise typer.Exit(_EXIT_INTERRUPTED) from None


def _recent(client: httpx.Client, params: dict[str, str], lines: int) -> list[dict[str, Any]]:
    """The newest matching events (all since `--since`, up to 1000), oldest first."""
    query: dict[str, str | int] = {**params, "limit": 1000 if "since" in params else lines}
    page = api_request(client, "GET", "/v1/logs", params=query)
    events: list[dict[str, Any]] = page.get("events", [])
    return events[::-1]


# --------------------------------------------------------------------------- output


class _Printer:
    """One line per event: escaped and coloured by level (colour only on a terminal)."""

    def __init__(self, *, json_output: bool) -> None:
        self.json_output = json_output
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False, soft_wrap=True)
        return self._console

    def event(self, item: dict[str, Any]) -> None:
        if self.json_output:
            typer.echo(json_line(item))
        else:
            self.console.print(render_line(item))

    @staticmethod
    def note(text: str) -> None:
        stderr_console().print(safe_text(text, style="dim"))


def render_line(event: dict[str, Any]) -> Text:
    """`2026-01-31 12:00:00.123 ERROR api node_failed  message  key=value …`, escaped."""
    from rich.text import Text

    timestamp = str(event.get("timestamp", ""))
    when = f"{timestamp[:10]} {timestamp[11:23]}" if len(timestamp) >= 23 else timestamp
    level = str(event.get("level", ""))
    line = Text()
    line.append(escape_terminal(when), style="dim")
    line.append(" ")
    line.append(escape_terminal(level.upper().ljust(5)), style=_LEVEL_STYLES.get(level, ""))
    line.append(" ")
    line.append(escape_terminal(event.get("service", "")), style="bold")
    line.append(" ")
    line.append(escape_terminal(event.get("event", "")))
    details = _details(event)
    if details:
        line.append("  ")
        line.append(escape_terminal(details))
    return line


def _details(event: dict[str, Any]) -> str:
    parts: list[str] = []
    message = event.get("message")
    if message:
        parts.append(str(message))
    error = event.get("error")
    if isinstance(error, dict):
        parts.append(f"{error.get('type', 'Error')}: {error.get('message', '')}")
    parts.extend(f"{key}={event[key]}" for key in _DETAIL_KEYS if key in event)
    text = "  ".join(parts)
    return text if len(text) <= _DETAILS_WIDTH else text[: _DETAILS_WIDTH - 1] + "…"


# --------------------------------------------------------------------------- following


@dataclass(slots=True)
class SseMessage:
    """One dispatched Server-Sent Events message (`id` is the last id seen on the stream)."""

    event: str
    data: str
    id: str | None


def parse_sse(lines: Iterator[str]) -> Iterator[SseMessage]:
    """Messages of an SSE line stream by the WHATWG rules: `field: value` lines, `:`
    comments, a blank line dispatches. The id counts only once its message is complete, and
    an id-only message (event "") still moves it."""
    event = ""
    data: list[str] = []
    last_id: str | None = None
    id_changed = False
    for line in lines:
        if not line:
            if data:
                yield SseMessage(event or "message", "\n".join(data), last_id)
            elif id_changed:
                yield SseMessage("", "", last_id)
            event, data, id_changed = "", [], False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\x00" not in value:
            last_id = value
            id_changed = True


class _StreamRefused(Exception):
    """The server answered the stream request with a status worth retrying later."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


def _follow(
    url: str, token: str | None, params: dict[str, str], lines: int, printer: _Printer
) -> None:
    import httpx

    timeout = httpx.Timeout(10.0, read=_READ_TIMEOUT)
    seen: dict[str, None] = {}  # ids printed from history, to skip them on the stream
    last_id: str | None = None
    first = True
    backoff = _BACKOFF_START
    with make_client(url, token=token, timeout=10.0) as client:
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            stream_params = params if first or "since" not in params else _without_since(params)
            try:
                with client.stream(
                    "GET", "/v1/stream", params=stream_params, headers=headers, timeout=timeout
                ) as response:
                    _check_stream(response)
                    if first:
                        first = False
                        if "since" not in params:
                            # Subscribed: history now overlaps the stream instead of leaving a gap.
                            for item in _recent(client, params, lines):
                                printer.event(item)
                                _remember(seen, item.get("event_id"))
                        printer.note("following live events (Ctrl-C to stop)")
                    for message in parse_sse(response.iter_lines()):
                        if message.id is not None:
                            last_id = message.id
                        if message.event == "log":
                            backoff = _BACKOFF_START
                            _print_stream_event(message.data, seen, printer)
                        elif message.event == "notice":
                            _print_notice(message.data, printer)
                delay = backoff
                printer.note(f"stream ended; reconnecting in {delay:.1f} s")
            except _StreamRefused as exc:
                delay = max(exc.delay, backoff)
                printer.note(f"server busy; retrying in {delay:.1f} s")
            except httpx.TransportError as exc:
                if first:
                    fail(
                        f"cannot reach a logbeacon server at {url} ({type(exc).__name__}); "
                        "start one with `logbeacon serve` or pass --url / set LOGBEACON_URL"
                    )
                delay = backoff
                printer.note(
                    f"connection to {url} lost ({type(exc).__name__}); reconnecting in "
                    f"{delay:.1f} s"
                )
            _pause(delay * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, _BACKOFF_MAX)


def _without_since(params: dict[str, str]) -> dict[str, str]:
    """A resumed stream reads what it missed from its position; a relative `since` would
    mean something else by now."""
    return {k: v for k, v in params.items() if k != "since"}


def _check_stream(response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    response.read()
    if status in (429, 503):
        raw = response.headers.get("retry-after", "")
        raise _StreamRefused(float(raw) if raw.isdigit() else _BACKOFF_MAX)
    if status == 401:
        fail(
            "the server needs a valid token: pass --token or set LOGBEACON_TOKEN (a local "
            "server writes its generated token to <data-dir>/read_token)"
        )
    message = response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    fail(f"the server answered {status}: {escape_terminal(message)}")


def _remember(seen: dict[str, None], event_id: object) -> None:
    if isinstance(event_id, str):
        seen[event_id] = None
        if len(seen) > _SEEN_MAX:
            del seen[next(iter(seen))]


def _print_stream_event(data: str, seen: dict[str, None], printer: _Printer) -> None:
    from logbeacon.event import decode

    try:
        item = decode(data)
    except ValueError:
        printer.note("skipped a message that is not JSON")
        return
    if not isinstance(item, dict):
        return
    event_id = item.get("event_id")
    if isinstance(event_id, str) and event_id in seen:
        del seen[event_id]
        return
    printer.event(item)


def _print_notice(data: str, printer: _Printer) -> None:
    from logbeacon.event import decode

    try:
        notice = decode(data)
    except ValueError:
        return
    if not isinstance(notice, dict):
        return
    reason = notice.get("reason")
    dropped = notice.get("dropped", 0)
    if reason == "slow_consumer":
        printer.note(f"the server cut this stream off: {dropped} events not delivered; resuming")
    elif reason == "backlog_limit":
        printer.note(f"{dropped} older matching events were skipped (too many to replay)")
    else:
        printer.note(f"server notice: {escape_terminal(reason)}")
