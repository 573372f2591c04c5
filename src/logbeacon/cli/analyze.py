"""`logbeacon analyze [--since 1h] [--service S] [--level L] [--markdown] [--json]`: what
happened in a window, from a server's `GET /v1/analysis`.

Rich tables by default (event text escaped, never parsed as markup); `--markdown` prints the
server's compact Markdown (for a ticket or a language model), `--json` the raw document.
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
    fail,
    json_line,
    make_client,
    resolve_token,
    safe_text,
    stdout_console,
)

if TYPE_CHECKING:
    import httpx
    from rich.console import Console

__all__ = ["analyze", "register"]

_MESSAGE_WIDTH: Final = 100
# Markdown from the server has no control characters but newlines; keep it that way.
_UNPRINTABLE: Final = {
    code: None for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if code != 0x0A
}


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)


def analyze(  # noqa: PLR0917 - Typer maps each parameter to an option
    since: Annotated[
        str, typer.Option("--since", help="Window start: RFC 3339 time or duration (15m, 1h, 7d).")
    ] = "1h",
    until: Annotated[
        str | None,
        typer.Option("--until", help="Window end (default now).", show_default=False),
    ] = None,
    service: Annotated[
        str | None, typer.Option("--service", help="Only this service.", show_default=False)
    ] = None,
    level: Annotated[
        str | None,
        typer.Option("--level", help="Minimum level of counted events.", show_default=False),
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Compact Markdown (for a ticket or an LLM).")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="The analysis as JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    data_dir: DataDirOption = Path(DEFAULT_DATA_DIR),
) -> None:
    """Summarise a window: counts, top errors, slowest steps, failing runs, error timeline."""
    if markdown and json_output:
        fail("choose one of --markdown and --json", code=2)
    given = {"since": since, "until": until, "service": service, "level": level}
    params: dict[str, str | int] = {k: v for k, v in given.items() if v is not None}
    with make_client(url, token=resolve_token(token, data_dir)) as client:
        if markdown:
            params["format"] = "markdown"
            typer.echo(_markdown(client, params).translate(_UNPRINTABLE), nl=False)
            return
        doc = api_request(client, "GET", "/v1/analysis", params=params)
    if json_output:
        typer.echo(json_line(doc))
        return
    _print_tables(stdout_console(), doc)


def _markdown(client: httpx.Client, params: dict[str, str | int]) -> str:
    """The Markdown body; failures go through `api_request` for the same messages."""
    import httpx

    try:
        response = client.get("/v1/analysis", params=params)
    except httpx.HTTPError:
        response = None
    if response is None or response.status_code != 200:
        api_request(client, "GET", "/v1/analysis", params=params)  # exits with the reason
        fail("the server did not answer with an analysis")
    return response.text


def _cut(text: object) -> str:
    value = str(text)
    return value if len(value) <= _MESSAGE_WIDTH else value[: _MESSAGE_WIDTH - 1] + "…"


def _print_tables(console: Console, doc: dict[str, Any]) -> None:
    from rich.table import Table

    window = doc.get("window", {})
    totals = doc.get("totals", {})
    console.print(
        safe_text(
            f"{window.get('since')} → {window.get('until')}: {totals.get('events', 0)} events, "
            f"{totals.get('errors', 0)} errors ({100 * totals.get('error_rate', 0):.1f} %)",
            style="bold",
        )
    )
    levels = doc.get("by_level", {})
    console.print(safe_text("  ".join(f"{name} {count}" for name, count in levels.items())))

    def table(title: str, *columns: str) -> Table:
        result = Table(title=title, title_justify="left", box=None, header_style="bold")
        for column in columns:
            result.add_column(column, overflow="fold")
        return result

    services = table("services", "service", "events", "errors")
    for item in doc.get("by_service", []):
        services.add_row(*(safe_text(item.get(k, "")) for k in ("service", "events", "errors")))
    errors = table("top errors", "count", "type", "message", "category", "services", "suggestion")
    for group in doc.get("top_errors", []):
        suggestions = group.get("suggestions") or [""]
        errors.add_row(
            safe_text(group.get("count", "")),
            safe_text(group.get("type") or "", style="red"),
            safe_text(_cut(group.get("message") or "")),
            safe_text(group.get("category") or ""),
            safe_text(", ".join(group.get("services", []))),
            safe_text(_cut(suggestions[0]), style="dim"),
        )
    steps = table("slowest steps", "kind", "name", "count", "failed", "p50 ms", "p95 ms", "max ms")
    for step in doc.get("slowest_steps", []):
        steps.add_row(
            *(
                safe_text(step.get(k, ""))
                for k in ("kind", "name", "count", "errors", "p50_ms", "p95_ms", "max_ms")
            )
        )
    runs = table("failing runs", "run_id", "kind", "name", "status", "failed steps", "started")
    for run in doc.get("failing_runs", []):
        runs.add_row(
            *(
                safe_text(run.get(k) if run.get(k) is not None else "")
                for k in ("run_id", "kind", "name", "status", "error_count", "started_at")
            )
        )
    timeline = table("timeline", "start", "events", "errors")
    for bucket in doc.get("timeline", []):
        if bucket.get("events"):
            timeline.add_row(*(safe_text(bucket.get(k, "")) for k in ("start", "events", "errors")))
    for part in (services, errors, steps, runs, timeline):
        if part.row_count:
            console.print()
            console.print(part)
    if doc.get("sampled"):
        console.print(
            safe_text(
                f"step percentiles from a {100 * doc.get('step_sample_rate', 1):.1f} % sample",
                style="dim",
            )
        )
