"""`logbeacon run [--job-id ID] -- CMD …`: run a command and turn its output into events.

The command's stdout and stderr are read concurrently (one thread each, reading whatever the
pipe has, so a child that fills one pipe while we wait on the other never deadlocks) and
passed through unchanged. Each line becomes an event (`logbeacon._lines`): JSON lines with
an `event`/`message` keep their fields, anything else is an `output` event with `stream`
and `text`. Every event is tagged with `job_id` (generated when not given) and `run_id`
(the job id unless the line names its own), and the runner adds `command_start` and
`command_exit` (exit code, duration) so even a silent command leaves a record.

Events go to `--url` through the background `Shipper` — a dead server never stalls the
command: at worst events are dropped and counted, and the count is printed at the end — or,
without a URL, into the local store in `--data-dir`.

`layer_*` and `node_*` events drive a progress view: a live Rich table when stdout is a
terminal, plain `[logbeacon] …` lines on stderr otherwise.

Signals: SIGTERM is forwarded to the child. SIGINT is forwarded too, except when it came
from the terminal's Ctrl-C — the terminal already sent it to the child, which runs in our
process group, and a second one would interrupt the child's own clean-up. The runner exits
with the child's exit code (128 + N when the child died of signal N), 127 when the command
does not exist and 126 when it cannot be executed.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Annotated, Any, Final

import typer

from logbeacon._lines import MAX_LINE_BYTES, line_to_event
from logbeacon.event import encode, new_event_id, normalize_event
from logbeacon.exceptions import ConfigError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

__all__ = ["ProgressModel", "pump", "register", "run_command"]

Event = dict[str, Any]

_READ_CHUNK: Final = 64 * 1024
_READER_GRACE_S: Final = 5.0

_LAYER_STATES: Final = {
    "layer_start": "running",
    "layer_complete": "complete",
    "layer_error": "error",
    "layer_skip": "skipped",
}
_NODE_STATES: Final = {
    "node_start": "running",
    "node_complete": "complete",
    "node_failed": "error",
}
_SYMBOLS: Final = {
    "pending": ("·", "dim"),
    "running": ("●", "yellow"),
    "complete": ("✓", "green"),
    "error": ("✗", "red"),
    "skipped": ("–", "dim"),
}


# --------------------------------------------------------------------------- reading


def pump(
    fd: int,
    on_chunk: Callable[[bytes], None],
    on_line: Callable[[bytes, bool], None],
    max_line: int = MAX_LINE_BYTES,
) -> None:
    """Read `fd` to EOF: every chunk as it arrives (pass-through), and every line.

    A line longer than `max_line` is cut there (`on_line(data, True)`), its rest skipped;
    a last line without newline is still a line. Reading whatever the pipe holds (not
    waiting for a newline) keeps prompts and progress bars flowing to the terminal.
    """
    pending = bytearray()
    overflow = False
    while True:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except OSError:
            break
        if not chunk:
            break
        on_chunk(chunk)
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            piece = chunk[start : newline if newline >= 0 else len(chunk)]
            room = max_line - len(pending)
            if len(piece) > room:
                overflow = True
                piece = piece[: max(room, 0)]
            pending += piece
            if newline < 0:
                break
            on_line(bytes(pending), overflow)
            pending.clear()
            overflow = False
            start = newline + 1
    if pending or overflow:
        on_line(bytes(pending), overflow)


# --------------------------------------------------------------------------- progress


@dataclass(slots=True)
class Step:
    kind: str
    index: int | None
    name: str
    state: str = "pending"
    started: float | None = None
    duration_ms: float | None = None

    def label(self) -> str:
        if self.kind == "layer" and self.index is not None:
            return f"layer {self.index} {self.name}".rstrip()
        return f"{self.kind} {self.name}"


class ProgressModel:
    """Layer and node states, from `layer_*`/`node_*`/`pipeline_start` events."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, str], Step] = {}
        self._lock = threading.Lock()

    def _step(self, kind: str, index: object, name: object) -> Step:
        number = index if isinstance(index, int) and not isinstance(index, bool) else None
        label = name if isinstance(name, str) else ""
        key = (kind, str(number) if number is not None else label)
        step = self.steps.get(key)
        if step is None:
            step = Step(kind, number, label)
            self.steps[key] = step
        elif label and not step.name:
            step.name = label
        return step

    def update(self, event: Event) -> str | None:
        """Apply one event; return a one-line description of the change, if any."""
        name = event.get("event")
        with self._lock:
            if name == "pipeline_start" and isinstance(event.get("layers"), list):
                for item in event["layers"]:
                    if isinstance(item, dict):
                        self._step("layer", item.get("layer"), item.get("layer_name"))
                    else:
                        self._step("layer", item, item)
                return None
            if name in _LAYER_STATES:
                if event.get("layer") is None and not event.get("layer_name"):
                    return None
                step = self._step("layer", event.get("layer"), event.get("layer_name"))
                state = _LAYER_STATES[str(name)]
            elif name in _NODE_STATES and isinstance(event.get("node"), str):
                step = self._step("node", None, event["node"])
                state = _NODE_STATES[str(name)]
            else:
                return None
            step.state = state
            if state == "running":
                step.started = time.monotonic()
            duration = event.get("duration_ms")
            if isinstance(duration, int | float) and not isinstance(duration, bool):
                step.duration_ms = float(duration)
            elif state != "running" and step.started is not None:
                step.duration_ms = (time.monotonic() - step.started) * 1000
            timing = f" ({step.duration_ms / 1000:.1f}s)" if step.duration_ms is not None else ""
            return f"{step.label()}: {state}{timing}"

    def __rich__(self) -> Any:
        """Rebuilt on every refresh of the live display, so running timers tick."""
        return self.table()

    def table(self) -> Any:
        """The Rich renderable of the current states."""
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 1))
        now = time.monotonic()
        with self._lock:
            steps = list(self.steps.values())
        for step in steps:
            symbol, style = _SYMBOLS.get(step.state, ("?", ""))
            if step.duration_ms is not None:
                timing = f"{step.duration_ms / 1000:.1f}s"
            elif step.state == "running" and step.started is not None:
                timing = f"{now - step.started:.1f}s"
            else:
                timing = ""
            table.add_row(
                Text(symbol, style=style),
                Text(step.label()),
                Text(step.state, style=style),
                Text(timing, style="dim"),
            )
        return table


# --------------------------------------------------------------------------- display


class PlainDisplay:
    """Pass-through of raw bytes; progress changes as `[logbeacon] …` lines on stderr."""

    def __init__(self, *, progress: bool) -> None:
        self.progress = progress
        self._lock = threading.Lock()

    def output(self, stream: str, chunk: bytes) -> None:
        target = sys.stdout if stream == "stdout" else sys.stderr
        with self._lock:
            _write_bytes(target, chunk)

    def change(self, text: str) -> None:
        if self.progress:
            with self._lock:
                _write_bytes(sys.stderr, f"[logbeacon] {text}\n".encode())

    def note(self, text: str) -> None:
        with self._lock:
            _write_bytes(sys.stderr, f"[logbeacon] {text}\n".encode())

    def close(self) -> None:
        return None


def _write_bytes(stream: IO[Any], data: bytes) -> None:
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(data)
            buffer.flush()
        else:
            stream.write(data.decode("utf-8", "replace"))
            stream.flush()
    except (OSError, ValueError):
        pass  # our own stdout went away (closed pipe); the child keeps running and logging


class LiveDisplay:
    """A live progress table at the bottom of the terminal; output lines scroll above it."""

    def __init__(self, model: ProgressModel) -> None:
        from rich.console import Console
        from rich.live import Live

        self.model = model
        self.console: Console = Console()
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")("replace") for name in ("stdout", "stderr")
        }
        self._partial = {"stdout": "", "stderr": ""}
        self._lock = threading.Lock()
        self.live: Live = Live(
            model,
            console=self.console,
            refresh_per_second=4,
            redirect_stdout=False,
            redirect_stderr=False,
            transient=False,
        )
        self.live.start()

    def output(self, stream: str, chunk: bytes) -> None:
        from rich.text import Text

        with self._lock:
            text = self._partial[stream] + self._decoders[stream].decode(chunk)
            *lines, self._partial[stream] = text.split("\n")
            for line in lines:
                rendered = Text.from_ansi(line)
                if stream == "stderr":
                    rendered.stylize("red")
                self.console.print(rendered, soft_wrap=True)

    def change(self, text: str) -> None:
        with self._lock:
            self.live.refresh()

    def note(self, text: str) -> None:
        from rich.text import Text

        with self._lock:
            self.console.print(Text(f"[logbeacon] {text}", style="dim"))

    def close(self) -> None:
        with self._lock:
            for stream, partial in self._partial.items():
                rest = partial + self._decoders[stream].decode(b"", final=True)
                if rest:
                    self.console.print(rest, markup=False, highlight=False)
            self.live.refresh()
            self.live.stop()


# --------------------------------------------------------------------------- outputs


class _RemoteSink:
    """The background shipper: the command never waits for the server."""

    def __init__(self, url: str, key: str | None, secret: str | None, base: Event) -> None:
        from logbeacon.sdk.shipper import Shipper

        self.shipper = Shipper(
            url,
            ingest_key=key,
            hmac_secret=secret,
            queue_size=100_000,
            flush_interval=0.25,
            backoff_cap=10.0,
            base_fields=base,
        )
        self.where = self.shipper.url

    def put(self, event: Event) -> None:
        self.shipper.emit(event, encode(event))

    def close(self, timeout: float) -> tuple[int, dict[str, int]]:
        self.shipper.flush(timeout)
        self.shipper.close(0.5)
        stats = self.shipper.stats()
        lost = dict(stats.dropped)
        for reason, count in stats.rejected.items():
            lost[f"rejected:{reason}"] = count
        return stats.delivered, lost


class _LocalSink:
    """Batches events into the local store from a writer thread (the disk is local and fast,
    so readers may wait on it: bounded queue, blocking put)."""

    def __init__(self, data_dir: Path) -> None:
        import queue

        from logbeacon.cli.collect import LocalStoreOutput

        self.output = LocalStoreOutput(data_dir)
        self.where = str(data_dir)
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=10_000)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="logbeacon-run-store")
        self._thread.start()

    def put(self, event: Event) -> None:
        if self._error is None:
            self._queue.put(event)

    def _drain(self) -> None:
        import queue

        done = False
        while not done:
            batch: list[Event] = []
            item = self._queue.get()
            while True:
                if item is None:
                    done = True
                    break
                batch.append(item)
                if len(batch) >= 500:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch and self._error is None:
                try:
                    self.output.write(batch)
                except Exception as exc:  # reported once at the end; the command goes on
                    self._error = exc
                    with contextlib.suppress(queue.Empty):
                        while True:
                            if self._queue.get_nowait() is None:
                                done = True

    def close(self, timeout: float) -> tuple[int, dict[str, int]]:
        self._queue.put(None)
        self._thread.join()
        self.output.close()
        lost = {"store_error": 1} if self._error is not None else {}
        return self.output.delivered, lost


# --------------------------------------------------------------------------- signals


def _terminal_sent_it() -> bool:
    """Whether our process group is the terminal's foreground group (Ctrl-C reached all)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def _forward_signals(proc: subprocess.Popen[bytes]) -> Any:
    def forward(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and _terminal_sent_it():
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, forward)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --------------------------------------------------------------------------- the command


def _lifecycle(name: str, defaults: Event, **fields: Any) -> Event:
    return normalize_event({**defaults, "event": name, **fields, "event_id": new_event_id()})


def run_command(
    *,
    command: Annotated[
        list[str], typer.Argument(help="The command to run and its arguments (after --).")
    ],
    job_id: Annotated[
        str | None,
        typer.Option("--job-id", help="Tag every event with this job id (default: generated)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", envvar="LOGBEACON_URL", help="Server base URL (else local store)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", envvar="LOGBEACON_INGEST_KEY", help="Ingest key (Bearer)."),
    ] = None,
    hmac_secret: Annotated[
        str | None,
        typer.Option(
            "--hmac-secret",
            envvar=["LOGBEACON_HMAC_SECRET", "LOG_INGEST_HMAC_SECRET"],
            help="Sign requests with this secret.",
        ),
    ] = None,
    service: Annotated[
        str,
        typer.Option("--service", envvar="LOGBEACON_SERVICE", help="service of the events"),
    ] = "run",
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", envvar="LOGBEACON_DATA_DIR", help="Local store (no --url)."),
    ] = Path(".logbeacon"),
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show layer/node progress.")
    ] = True,
    flush_timeout: Annotated[
        float,
        typer.Option("--flush-timeout", min=0.0, help="Seconds to wait for delivery at exit."),
    ] = 10.0,
) -> None:
    """Run CMD, pass its output through, and log its lines as events tagged with a job id."""
    job = job_id or uuid.uuid4().hex[:12]
    defaults: Event = {"service": service, "job_id": job, "run_id": job}
    try:
        sink: _RemoteSink | _LocalSink = (
            _RemoteSink(url, key, hmac_secret, {"service": service, "job_id": job})
            if url
            else _LocalSink(data_dir)
        )
    except ConfigError as exc:
        typer.echo(f"logbeacon run: {exc}", err=True)
        raise typer.Exit(2) from None

    model = ProgressModel()
    display: PlainDisplay | LiveDisplay = (
        LiveDisplay(model) if progress and sys.stdout.isatty() else PlainDisplay(progress=progress)
    )
    env = {**os.environ, "LOGBEACON_JOB_ID": job}
    # Python buffers a pipe in 8 KiB blocks: progress would arrive at the end, all at once.
    env.setdefault("PYTHONUNBUFFERED", "1")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(  # noqa: S603 - running the user's command is the point
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        code = 126 if isinstance(exc, PermissionError) else 127
        reason = "permission denied" if code == 126 else "command not found"
        display.close()
        sink.close(0.0)
        typer.echo(f"logbeacon run: {reason}: {command[0]}", err=True)
        raise typer.Exit(code) from None

    sink.put(_lifecycle("command_start", defaults, command=Path(command[0]).name, pid=proc.pid))

    def reader(name: str, stream: IO[bytes]) -> threading.Thread:
        fields = {"stream": name}

        def on_line(data: bytes, truncated: bool) -> None:
            event = line_to_event(
                data, defaults=defaults, output_fields=fields, truncated=truncated
            )
            sink.put(event)
            change = model.update(event)
            if change is not None:
                display.change(change)

        def on_chunk(chunk: bytes) -> None:
            display.output(name, chunk)

        thread = threading.Thread(
            target=pump, args=(stream.fileno(), on_chunk, on_line), name=f"logbeacon-{name}"
        )
        thread.daemon = True
        thread.start()
        return thread

    assert proc.stdout is not None
    assert proc.stderr is not None
    readers = [reader("stdout", proc.stdout), reader("stderr", proc.stderr)]
    with _forward_signals(proc):
        returncode = proc.wait()
    # A grandchild that inherited the pipes may keep them open: don't wait forever.
    for thread in readers:
        thread.join(_READER_GRACE_S)
    proc.stdout.close()
    proc.stderr.close()
    exit_code = returncode if returncode >= 0 else 128 - returncode
    duration_ms = round((time.monotonic() - started) * 1000, 3)
    sink.put(
        _lifecycle(
            "command_exit",
            defaults,
            level="info" if exit_code == 0 else "error",
            exit_code=exit_code,
            duration_ms=duration_ms,
        )
    )
    display.close()
    delivered, lost = sink.close(flush_timeout)
    if lost:
        detail = ", ".join(f"{count} {reason}" for reason, count in sorted(lost.items()))
        typer.echo(f"logbeacon run: some events did not reach {sink.where}: {detail}", err=True)
    elif progress:
        typer.echo(f"[logbeacon] job {job}: {delivered} events to {sink.where}", err=True)
    raise typer.Exit(exit_code)


def register(app: typer.Typer) -> None:
    """Add `run` to the `logbeacon` CLI."""
    app.command(
        "run",
        context_settings={"allow_interspersed_args": False},
    )(run_command)
