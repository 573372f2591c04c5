"""Where finished events go: a stream (stdout), a rotating JSONL file, test captures.

Every sink gets the event dict *and* its JSON line, rendered once by the pipeline, so adding a
sink never adds a serialisation. A sink must be thread-safe and must not block for long; a
sink that raises is reported through the guard by the pipeline and the other sinks still get
the event. The background shipper (a later version) is one more `Sink`.

Locks are re-created in a forked child (`os.register_at_fork`), so a fork while another
thread was writing cannot leave the child deadlocked on a lock nobody will release.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final, Protocol, runtime_checkable

from logbeacon.sdk.renderers import ConsoleRenderer

__all__ = [
    "DEFAULT_FILE_BACKUPS",
    "DEFAULT_FILE_MAX_BYTES",
    "CaptureSink",
    "RotatingFileSink",
    "Sink",
    "StreamSink",
    "attach",
    "attached_sinks",
]

DEFAULT_FILE_MAX_BYTES: Final = 10 * 1024 * 1024
DEFAULT_FILE_BACKUPS: Final = 3
_REOPEN_INTERVAL_S: Final = 1.0


@runtime_checkable
class Sink(Protocol):
    """Receives every emitted event; `name` labels its failures in the guard's counts."""

    name: str

    def emit(self, event: dict[str, Any], line: bytes) -> None:
        """Write one event; `line` is its JSON rendering (newline-terminated UTF-8)."""

    def flush(self, timeout: float) -> bool:
        """Push buffered output out; False if that did not finish within `timeout` seconds."""

    def close(self) -> None:
        """Flush and release resources; later `emit` calls are ignored."""


# --------------------------------------------------------------------------- fork safety

_lock_owners: weakref.WeakSet[_Locked] = weakref.WeakSet()


class _Locked:
    """Base for sinks owning a lock that must be fresh in a forked child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _lock_owners.add(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


def _reinit_locks_after_fork() -> None:
    for owner in list(_lock_owners):
        owner._after_fork()


os.register_at_fork(after_in_child=_reinit_locks_after_fork)


# --------------------------------------------------------------------------- stream


def _is_binary(stream: IO[Any]) -> bool:
    if isinstance(stream, io.TextIOBase):
        return False
    if isinstance(stream, io.RawIOBase | io.BufferedIOBase):
        return True
    return "b" in str(getattr(stream, "mode", ""))


class StreamSink(_Locked):
    """Writes each event as one line to a stream and flushes, so lines appear promptly.

    `stream=None` means "whatever `sys.stdout` is at the time of the write": test runners and
    daemons that swap stdout keep working. With a `console` renderer the line is the readable
    console form, else the JSON line. Binary streams receive bytes, text streams text.
    """

    def __init__(
        self, stream: IO[Any] | None = None, console: ConsoleRenderer | None = None
    ) -> None:
        super().__init__()
        self.name = "stream"
        self._stream = stream
        self._console = console
        self._binary = stream is not None and _is_binary(stream)
        self._closed = False

    def emit(self, event: dict[str, Any], line: bytes) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        if self._console is not None:
            text = self._console(event) + "\n"
            data: str | bytes = text.encode("utf-8", "replace") if self._binary else text
        else:
            data = line if self._binary else line.decode("utf-8", "replace")
        # acquire/try/finally: the same guarantee as `with`, without its two special-method
        # calls on every event.
        lock = self._lock
        lock.acquire()
        try:
            if self._closed:
                return
            stream.write(data)  # type: ignore[arg-type] # bytes only to binary streams
            stream.flush()
        finally:
            lock.release()

    def flush(self, timeout: float) -> bool:
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            stream = self._stream if self._stream is not None else sys.stdout
            if not self._closed:
                stream.flush()
            return True
        finally:
            self._lock.release()

    def close(self) -> None:
        """Stop writing; the stream itself belongs to the caller and stays open."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            stream = self._stream if self._stream is not None else sys.stdout
            if not getattr(stream, "closed", False):
                stream.flush()


# --------------------------------------------------------------------------- file


class RotatingFileSink(_Locked):
    """Appends JSON lines to ``<directory>/<name>.jsonl``, rotating at `max_bytes`.

    Keeps `backups` older files (`.1` is the newest); `backups=0` truncates instead. A write
    that fails (disk full, permission revoked, directory removed) raises to the pipeline,
    which counts it; the broken handle is dropped and reopened at most once a second, so
    logging recovers by itself when the disk does.

    One writer per file: several processes appending to the same file would rotate over each
    other, so give each process its own `service` name or log to stdout.
    """

    def __init__(
        self,
        directory: Path,
        filename: str,
        max_bytes: int = DEFAULT_FILE_MAX_BYTES,
        backups: int = DEFAULT_FILE_BACKUPS,
    ) -> None:
        super().__init__()
        self.name = "file"
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / filename
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: IO[bytes] | None = None
        self._size = 0
        self._next_open = 0.0
        self._closed = False
        self._open()

    def _open(self) -> None:
        handle = open(self.path, "ab")  # noqa: SIM115 - held open across writes, closed in close()
        self._file = handle
        self._size = handle.tell()

    def _drop_handle(self) -> None:
        handle, self._file = self._file, None
        self._next_open = time.monotonic() + _REOPEN_INTERVAL_S
        if handle is not None:
            # The data it held is lost either way; the write error was reported.
            with contextlib.suppress(OSError):
                handle.close()

    def emit(self, event: dict[str, Any], line: bytes) -> None:
        lock = self._lock
        lock.acquire()  # not `with`: see StreamSink.emit
        try:
            if self._closed:
                return
            try:
                if self._file is None:
                    if time.monotonic() < self._next_open:
                        return
                    self._open()
                if self._size and self._size + len(line) > self.max_bytes:
                    self._rotate()
                handle = self._file
                assert handle is not None
                handle.write(line)
                handle.flush()
                self._size += len(line)
            except OSError:
                self._drop_handle()
                raise
        finally:
            lock.release()

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.backups > 0:
            for index in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{index}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            self._open()
        else:
            handle = open(self.path, "wb")  # noqa: SIM115 - kept as the sink's handle
            self._file = handle
            self._size = 0

    def flush(self, timeout: float) -> bool:
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            if self._file is not None:
                self._file.flush()
            return True
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                handle, self._file = self._file, None
                handle.close()


# --------------------------------------------------------------------------- captures


class CaptureSink:
    """Appends every event dict to a list (`logbeacon.testing.capture_logs`)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.name = "capture"
        self.events = events

    def emit(self, event: dict[str, Any], line: bytes) -> None:
        self.events.append(event)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self) -> None:
        return None


_attach_lock = threading.Lock()
# Replaced wholesale on change, read without a lock on every event.
_attached: tuple[Sink, ...] = ()


def attach(sink: Sink) -> Callable[[], None]:
    """Add a process-wide sink that survives `configure()`/`reset()`; returns a detacher.

    For test captures and tools that watch everything a process logs, whatever the
    configuration of the moment.
    """
    global _attached  # noqa: PLW0603 - one registry, copy-on-write
    with _attach_lock:
        _attached = (*_attached, sink)

    def detach() -> None:
        global _attached  # noqa: PLW0603
        with _attach_lock:
            _attached = tuple(s for s in _attached if s is not sink)

    return detach


def attached_sinks() -> tuple[Sink, ...]:
    """The sinks added with `attach`, in order."""
    return _attached
