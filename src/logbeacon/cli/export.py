"""`logbeacon export` and `logbeacon import`: every stored event as JSON lines, and back.

For backups and for moving a store (SQLite → ClickHouse). Both stream: export pages through
the Store protocol's `query` with its cursor (one page of `MAX_LIMIT` events in memory at a
time), import reads one line at a time and appends in batches through `Store.append`.

- Export writes **newest first** (the Store's order; a cursor never skips or repeats an event
  that existed when the first page was read, and events arriving meanwhile are left out).
  `-o FILE` is written to `FILE.partial` and renamed when complete, so an interrupted export
  never looks finished. The source store is opened without retention: exporting never purges.
- Import validates each line like ingestion does (`normalize_event`, then the redactor), and
  keeps what the server added when it first stored the event (`received_at`, truncation and
  clock-skew markers). `event_id`s are kept, so importing the same file twice stores nothing
  the second time and reports duplicates. A bad line is reported with its number and
  skipped; the exit code is 1 when any line was bad. Events older than the target store's
  retention are skipped and counted (the store would purge them at once).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Final

import typer

from logbeacon.cli._common import DEFAULT_DATA_DIR, fail, json_line, safe_text, stderr_console

if TYPE_CHECKING:
    from logbeacon.redact import Redactor
    from logbeacon.store.base import Store

__all__ = ["ImportReport", "export_command", "import_command", "register"]

Event = dict[str, Any]

# Longest line import reads (events are at most 64 KiB; escaping can grow them).
MAX_LINE_BYTES: Final = 1024 * 1024
# Bad lines printed one by one; the rest are only counted.
MAX_REPORTED_LINES: Final = 100
# Room for the truncation marker ("…[truncated N chars]") a stored value may already end
# with: without it, normalising an exported event again would cut such a value a second time.
_MARKER_ROOM: Final = 64
# Attempts of one batch while the store answers "unavailable" (locked, busy).
_APPEND_ATTEMPTS: Final = 8

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="LOGBEACON_STORE",
        help="Store URL: sqlite:///path/events.db, chdb:///dir, clickhouse://… "
        "(default: events.db in the data directory).",
        show_default=False,
    ),
]
StoreDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="LOGBEACON_DATA_DIR",
        help="Data directory of the store (relative store URLs resolve here).",
    ),
]


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("import")(import_command)


def _filter(name: str, help_text: str) -> Any:
    return typer.Option(name, help=help_text, show_default=False)


def _open(url: str | None, data_dir: Path, *, retention_days: float | None) -> Store:
    from logbeacon.exceptions import ConfigError
    from logbeacon.store import open_store

    try:
        return open_store(
            url or "sqlite:",
            data_dir=data_dir,
            durability=os.environ.get("LOGBEACON_DURABILITY", "").strip() or "normal",
            retention_days=retention_days,  # None: no retention purge
        )
    except ConfigError as exc:
        fail(str(exc), code=2)


# --------------------------------------------------------------------------- export


def export_command(  # noqa: PLR0917 - Typer maps each parameter to an option
    since: Annotated[
        str | None, _filter("--since", "Only events at or after: RFC 3339 or 15m, 1h, 7d.")
    ] = None,
    until: Annotated[
        str | None, _filter("--until", "Only events before: RFC 3339 or a duration.")
    ] = None,
    level: Annotated[str | None, _filter("--level", "Minimum level: debug … critical.")] = None,
    service: Annotated[str | None, _filter("--service", "Exact service.")] = None,
    environment: Annotated[str | None, _filter("--environment", "Exact environment.")] = None,
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="File to write, or - for stdout."),
    ] = "-",
    store: StoreOption = None,
    data_dir: StoreDirOption = Path(DEFAULT_DATA_DIR),
) -> None:
    """Write stored events as JSON lines, newest first (for backups and migrations)."""
    from logbeacon.server.filters import FilterError, parse_filters
    from logbeacon.store.base import MAX_LIMIT
    from logbeacon.store.sqlite import SqliteStore

    given = {"since": since, "until": until, "level": level, "service": service}
    given["environment"] = environment
    try:
        query = parse_filters(
            [(k, v) for k, v in given.items() if v is not None],
            now=time.time(),
            default_limit=MAX_LIMIT,
        )
    except FilterError as exc:
        fail(f"--{exc.param}: {exc}", code=2)
    source = _open(store, data_dir, retention_days=None)
    if isinstance(source, SqliteStore) and not source.path.exists():
        fail(f"no event store at {source.path}; pass --data-dir or --store", code=2)
    if output == "-":
        count = asyncio.run(_export(source, query, typer.get_binary_stream("stdout")))
        where = "stdout"
    else:
        target = Path(output)
        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("wb") as sink:
                count = asyncio.run(_export(source, query, sink))
                sink.flush()
                os.fsync(sink.fileno())
            partial.replace(target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            fail(f"cannot write {output}: {exc.strerror or type(exc).__name__}")
        except BaseException:  # a failed or interrupted export leaves no half file behind
            partial.unlink(missing_ok=True)
            raise
        where = str(target)
    stderr_console().print(safe_text(f"exported {count} events (newest first) to {where}"))


async def _export(source: Store, query: Any, sink: IO[bytes]) -> int:
    """Stream every event matching `query` to `sink`, one page in memory at a time."""
    from logbeacon.exceptions import StoreError

    count = 0
    try:
        await source.open()
    except StoreError as exc:
        fail(str(exc), code=2)
    try:
        while True:
            page = await source.query(query)
            sink.write(b"".join(json_line(event).encode() + b"\n" for event in page.events))
            count += len(page.events)
            if page.next_cursor is None:
                return count
            query = replace(query, cursor=page.next_cursor)
    finally:
        await source.close()


# --------------------------------------------------------------------------- import


@dataclass(slots=True)
class ImportReport:
    """What an import did; `bad` holds (line number, reason) of the first bad lines."""

    lines: int = 0
    stored: int = 0
    duplicates: int = 0
    expired: int = 0
    bad_count: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)

    def add_bad(self, number: int, reason: str) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_REPORTED_LINES:
            self.bad.append((number, reason))


def import_command(
    source: Annotated[
        str, typer.Argument(help="JSON-lines file (from `logbeacon export`), or - for stdin.")
    ],
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=10_000, help="Events per append.")
    ] = 1000,
    store: StoreOption = None,
    data_dir: StoreDirOption = Path(DEFAULT_DATA_DIR),
) -> None:
    """Append JSON-lines events to a store; ids are kept, so re-importing is idempotent."""
    try:
        retention = float(os.environ.get("LOGBEACON_RETENTION_DAYS", "").strip() or 14)
    except ValueError:
        fail("LOGBEACON_RETENTION_DAYS must be a number of days", code=2)
    target = _open(store, data_dir, retention_days=retention)
    if source == "-":
        report = asyncio.run(_import(typer.get_binary_stream("stdin"), target, batch, retention))
    else:
        try:
            stream = Path(source).open("rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            fail(f"cannot read {source}: {exc.strerror or type(exc).__name__}", code=2)
        with stream:
            report = asyncio.run(_import(stream, target, batch, retention))
    console = stderr_console()
    for number, reason in report.bad:
        console.print(safe_text(f"line {number}: {reason}", style="red"))
    if report.bad_count > len(report.bad):
        console.print(safe_text(f"… and {report.bad_count - len(report.bad)} more bad lines"))
    console.print(
        safe_text(
            f"imported {report.stored} events, {report.duplicates} duplicates (already "
            f"stored), {report.bad_count} bad lines skipped, of {report.lines} lines"
        )
    )
    if report.expired:
        console.print(
            safe_text(
                f"{report.expired} events older than the retention ({retention:g} days) "
                "were skipped; set LOGBEACON_RETENTION_DAYS to keep them",
                style="yellow",
            )
        )
    if report.bad_count:
        raise typer.Exit(1)


async def _import(stream: IO[bytes], target: Store, batch: int, retention: float) -> ImportReport:
    from logbeacon.exceptions import StoreError
    from logbeacon.redact import default_redactor

    report = ImportReport()
    redactor = default_redactor()
    oldest = _timestamp_text(time.time() - retention * 86_400)
    try:
        await target.open()
    except StoreError as exc:
        fail(str(exc), code=2)
    pending: list[Event] = []
    try:
        for number, line in enumerate(_lines(stream), start=1):
            report.lines = number
            if line is None:
                report.add_bad(number, f"longer than {MAX_LINE_BYTES} bytes")
                continue
            if not line.strip():
                continue
            try:
                event = prepare_event(line, redactor)
            except ValueError as exc:
                report.add_bad(number, str(exc))
                continue
            if event["timestamp"] < oldest:
                report.expired += 1
                continue
            pending.append(event)
            if len(pending) >= batch:
                await _append(target, pending, report)
                pending = []
        if pending:
            await _append(target, pending, report)
    finally:
        await target.close()
    return report


def _timestamp_text(epoch: float) -> str:
    from logbeacon.event import format_timestamp

    return format_timestamp(max(0.0, epoch))


def _lines(stream: IO[bytes]) -> Any:
    """Each line without its line break; None for a line over `MAX_LINE_BYTES` (skipped to
    its end without holding it)."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_LINE_BYTES)
            yield None
            continue
        yield line.rstrip(b"\r\n")


def prepare_event(line: bytes, redactor: Redactor) -> Event:
    """One exported line as the event to append; ValueError says why it cannot be one."""
    from logbeacon.event import (
        DEFAULT_LIMITS,
        decode,
        format_timestamp,
        normalize_event,
        parse_timestamp,
    )
    from logbeacon.exceptions import EventError

    limits = replace(
        DEFAULT_LIMITS,
        max_string=DEFAULT_LIMITS.max_string + _MARKER_ROOM,
        max_message=DEFAULT_LIMITS.max_message + _MARKER_ROOM,
    )

    try:
        raw = decode(line)
    except ValueError:
        raise ValueError("not valid JSON (torn or garbled line)") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    try:
        event = normalize_event(raw, limits=limits)
        received = raw.get("received_at")
        if received is not None:
            event["received_at"] = format_timestamp(parse_timestamp(received))
    except EventError as exc:
        raise ValueError(f"invalid event ({exc.reason})") from None
    marked = raw.get("_truncated")
    if isinstance(marked, list) and all(isinstance(path, str) for path in marked):
        event["_truncated"] = sorted({*marked, *event.get("_truncated", ())})
    try:
        redacted: Event = redactor.redact_event(event)
    except Exception as exc:  # never store what could not be scrubbed
        raise ValueError(f"redaction failed ({type(exc).__name__})") from None
    return redacted


async def _append(target: Store, events: Sequence[Event], report: ImportReport) -> None:
    from logbeacon.exceptions import StoreUnavailable

    delay = 0.2
    for attempt in range(_APPEND_ATTEMPTS):
        try:
            result = await target.append(events)
        except StoreUnavailable as exc:
            if attempt == _APPEND_ATTEMPTS - 1:
                fail(
                    f"the store stayed unavailable ({exc}); {report.stored} events were "
                    "imported — run the same import again to finish (stored events are "
                    "reported as duplicates)"
                )
            await asyncio.sleep(min(max(exc.retry_after, delay), 10.0))
            delay *= 2
            continue
        report.stored += result.accepted
        report.duplicates += result.duplicates
        return
