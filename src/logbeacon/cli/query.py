"""`logbeacon query [filters] [--json]` and `logbeacon trace ID`: read events from a server.

Tables are for people (escaped, one event per line); `--json` prints one event per line for
`jq`. Filters are passed to the server as given, so the server's parser is the only one.
"""

from __future__ import annotations

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
    json_line,
    make_client,
    resolve_token,
    safe_text,
    stderr_console,
    stdout_console,
)

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["query", "register", "trace"]

_LEVEL_STYLES: Final = {
    "debug": "dim",
    "info": "cyan",
    "warn": "yellow",
    "error": "red",
    "critical": "bold white on red",
}
_MESSAGE_WIDTH: Final = 160


def register(app: typer.Typer) -> None:
    app.command("query")(query)
    app.command("trace")(trace)


def _option(name: str, help_text: str) -> Any:
    return typer.Option(name, help=help_text, show_default=False)


def query(  # noqa: PLR0917 - Typer maps each parameter to an option
    since: Annotated[
        str | None, _option("--since", "RFC 3339 time or duration: 15m, 1h, 7d.")
    ] = None,
    until: Annotated[str | None, _option("--until", "RFC 3339 time or duration.")] = None,
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
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Most events to show.")] = 100,
    cursor: Annotated[str | None, _option("--cursor", "Continue after a previous page.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON event per line (for jq).")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    data_dir: DataDirOption = Path(DEFAULT_DATA_DIR),
) -> None:
    """Query stored events, newest first."""
    filters = {
        "since": since,
        "until": until,
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
        "cursor": cursor,
    }
    params: dict[str, str | int] = {k: v for k, v in filters.items() if v is not None}
    params["limit"] = limit
    with make_client(url, token=resolve_token(token, data_dir)) as client:
        page = api_request(client, "GET", "/v1/logs", params=params)
    events: list[dict[str, Any]] = page.get("events", [])
    if json_output:
        for item in events:
            typer.echo(json_line(item))
    else:
        stdout_console().print(_events_table(events, time_format="clock"))
    next_cursor = page.get("next_cursor")
    if next_cursor and not json_output:
        stderr_console().print(safe_text(f"more: --cursor {next_cursor}", style="dim"))
    if not events and not json_output:
        stderr_console().print(safe_text("no events match", style="dim"))


def trace(
    trace_id: Annotated[str, typer.Argument(help="32-hex trace id.", show_default=False)],
    json_output: Annotated[bool, typer.Option("--json", help="The trace as JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    data_dir: DataDirOption = Path(DEFAULT_DATA_DIR),
) -> None:
    """Show every event of one trace across services, in time order."""
    with make_client(url, token=resolve_token(token, data_dir)) as client:
        doc = api_request(
            client,
            "GET",
            f"/v1/traces/{trace_id.strip().lower()}",
            not_found=f"no events with trace id {trace_id[:64]!r} are stored",
        )
    if json_output:
        typer.echo(json_line(doc))
        return
    console = stdout_console()
    services = ", ".join(doc.get("services", []))
    console.print(safe_text(f"trace {doc.get('trace_id')}", style="bold"))
    console.print(
        safe_text(
            f"started {doc.get('started_at')}  duration {doc.get('duration_ms')} ms  "
            f"errors {doc.get('error_count')}  services {services}"
        )
    )
    console.print(_events_table(doc.get("events", []), time_format="offset"))


def _events_table(events: list[dict[str, Any]], *, time_format: str) -> Table:
    from rich.table import Table

    from logbeacon.event import parse_timestamp
    from logbeacon.exceptions import EventError

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("+ms" if time_format == "offset" else "time", no_wrap=True)
    table.add_column("level", no_wrap=True)
    table.add_column("service", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("details", overflow="fold")
    start: float | None = None
    for item in events:
        timestamp = str(item.get("timestamp", ""))
        when = timestamp
        if time_format == "offset":
            try:
                seconds = parse_timestamp(timestamp)
            except EventError:
                seconds = None
            if seconds is not None:
                start = seconds if start is None else start
                when = f"{(seconds - start) * 1000:.1f}"
        elif len(timestamp) >= 23:
            when = timestamp[:10] + " " + timestamp[11:23]
        level = str(item.get("level", ""))
        table.add_row(
            safe_text(when, style="dim"),
            safe_text(level, style=_LEVEL_STYLES.get(level, "")),
            safe_text(item.get("service", "")),
            safe_text(item.get("event", "")),
            safe_text(_details(item)),
        )
    return table


def _details(event: dict[str, Any]) -> str:
    parts: list[str] = []
    message = event.get("message")
    if message:
        parts.append(str(message))
    error = event.get("error")
    if isinstance(error, dict):
        parts.append(f"{error.get('type', 'Error')}: {error.get('message', '')}")
    keys = ("node", "status", "duration_ms", "trace_id", "request_id")
    parts.extend(f"{key}={event[key]}" for key in keys if key in event)
    text = "  ".join(parts)
    return text if len(text) <= _MESSAGE_WIDTH else text[: _MESSAGE_WIDTH - 1] + "…"
