"""`logbeacon collect FILE …`: follow log files like `tail -F` and ship every line once.

Nothing lost:

* A batch is checkpointed only after the server acknowledged it (or the local store
  committed it); a crash re-reads from the last checkpoint.
* Rename-and-create rotation: while nothing is at the path yet, the renamed file is still
  the one followed (the writer may still append to it). Once a new file is there, the old
  one is read to its end, and the new file is checkpointed and read from its start; the old
  one stays open and is read on until it has been quiet for `ROTATE_WAIT_S` (an app that
  reopens its log only on a signal after logrotate's `create` keeps writing to it for a
  while), then its last line without newline counts too.
* copytruncate rotation: lines the truncation took before they were read are recovered from
  the rotated copy next to the file (`app.log.1`, `app.log-20260131` …), found by its
  content fingerprint; then the truncated file is read from its start.
* Rotation while the collector was stopped: on restart the checkpointed file is looked up
  among its siblings by inode and fingerprint, drained from the saved offset, and the new
  file is read from its start.

Nothing doubled: every line's `event_id` is derived from the file's identity (device, inode,
a hash of its first bytes, and a generation bumped on each truncation) and the line's byte
offset, so a line read twice (after a crash, or from the rotated copy) has the same id and
the server (or the local store) keeps one copy.

Memory stays bounded: a line longer than 1 MiB is cut there and marked `truncated`; the rest
of it is skipped. A last line still being written (no newline yet) waits for its newline —
unless its file was rotated away, in which case it is complete by definition.

`--docker NAME` follows a container's output through `docker logs --follow --timestamps`
(the Docker CLI on PATH): stdout and stderr lines become events of that container, timed by
Docker. The checkpoint is the timestamp of the last shipped line; a restart asks for
`--since` that time minus a few seconds of overlap (the two pipes are read independently, so
one may lag the other), and the overlap is deduplicated by event ids derived from the
container, the stream, Docker's timestamp and the line's rank among lines with that
timestamp. If the `docker logs` process ends (container restarted, daemon restarted) it is
started again from the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import random
import re
import shutil
import signal
import stat as stat_mod
import subprocess
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, Final, TypeVar

import typer

from logbeacon._lines import MAX_LINE_BYTES, line_to_event
from logbeacon.event import encode, format_timestamp
from logbeacon.exceptions import ConfigError, StoreUnavailable
from logbeacon.sdk.shipper import Backoff, BatchSender, HttpTransport

__all__ = [
    "Collector",
    "DockerLogs",
    "LocalStoreOutput",
    "Output",
    "RemoteOutput",
    "StopRequestedError",
    "TailedFile",
    "collect_command",
    "register",
]

Event = dict[str, Any]
T = TypeVar("T")

FINGERPRINT_BYTES: Final = 1024
BATCH_EVENTS: Final = 500
BATCH_BYTES: Final = 512 * 1024
_READ_CHUNK: Final = 64 * 1024
_CHECKPOINT_EVERY_S: Final = 1.0
#: Seconds a renamed-away file is still read after its last new line.
ROTATE_WAIT_S: Final = 5.0
_ID_NAMESPACE: Final = uuid.UUID("6f1c0a52-8d43-4c1e-9a57-0b6b1f3f5e21")
#: Seconds re-read before a container's checkpoint on restart (duplicates are dropped by id).
DOCKER_OVERLAP_S: Final = 5.0
_DOCKER_RESTART_S: Final = 1.0
_DOCKER_TS: Final = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?Z ?")


class StopRequestedError(Exception):
    """A stop was requested while a batch was still waiting for the server."""


# --------------------------------------------------------------------------- outputs


class Output(ABC):
    """Where events go; `write` returns only once they are durable (or finally refused)."""

    @abstractmethod
    def write(self, events: Sequence[Event]) -> None:
        """Store or ship `events`; return once they are durable or finally refused."""

    @abstractmethod
    def close(self) -> None:
        """Release the store or the HTTP client."""


class RemoteOutput(Output):
    """POSTs batches to a server and waits for each answer, retrying until it comes.

    Waiting (rather than dropping) is right for files: the file is the buffer, and the
    checkpoint must never pass a line the server has not acknowledged.
    """

    def __init__(
        self,
        url: str,
        *,
        ingest_key: str | None,
        hmac_secret: str | None,
        stop: threading.Event,
        timeout: float = 10.0,
        backoff_cap: float = 30.0,
    ) -> None:
        self._transport = HttpTransport(url, timeout)
        self.url = self._transport.url
        self._sender = BatchSender(self._transport, ingest_key=ingest_key, hmac_secret=hmac_secret)
        self._backoff = Backoff(0.25, backoff_cap, random.Random())
        self._stop = stop
        self.delivered = 0
        self.rejected = 0
        self.dropped = 0

    def write(self, events: Sequence[Event]) -> None:
        parts = [[encode(event) for event in events]]
        while parts:
            result = self._sender.send_parts(parts)
            self.delivered += result.delivered
            self.rejected += sum(result.rejected.values())
            self.dropped += sum(result.dropped.values())
            if result.finished:
                self._backoff.reset()
                return
            parts = result.retry
            if self._stop.wait(self._backoff.next_delay(result.retry_after)):
                raise StopRequestedError

    def close(self) -> None:
        self._transport.reset()


class LocalStoreOutput(Output):
    """Appends to the local store in `data_dir` (no server needed).

    The store is async; it runs on a private event loop in a daemon thread so the callers
    (reader threads of `run`, the collect loop) stay plain synchronous code. Settings come
    from the same environment variables as `logbeacon serve`: LOGBEACON_STORE,
    LOGBEACON_DURABILITY, LOGBEACON_RETENTION_DAYS.
    """

    def __init__(self, data_dir: Path, *, stop: threading.Event | None = None) -> None:
        from logbeacon.store import open_store

        self._stop = stop or threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="logbeacon-local-store", daemon=True
        )
        self._thread.start()
        try:
            retention = float(os.environ.get("LOGBEACON_RETENTION_DAYS", "").strip() or 14)
        except ValueError:
            raise ConfigError("LOGBEACON_RETENTION_DAYS must be a number of days") from None
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._store = open_store(
                os.environ.get("LOGBEACON_STORE", "").strip() or "sqlite:",
                data_dir=data_dir,
                durability=os.environ.get("LOGBEACON_DURABILITY", "").strip() or "normal",
                retention_days=retention,
            )
            self._call(self._store.open())
        except BaseException:
            self._stop_loop()
            raise
        self.delivered = 0
        self.rejected = 0
        self.dropped = 0

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def write(self, events: Sequence[Event]) -> None:
        received = format_timestamp(time.time())
        batch = [{**event, "received_at": received} for event in events]
        delay = 0.1
        while True:
            try:
                result = self._call(self._store.append(batch))
            except StoreUnavailable as exc:
                if self._stop.wait(min(max(exc.retry_after, delay), 10.0)):
                    raise StopRequestedError from None
                delay = min(delay * 2, 10.0)
                continue
            self.delivered += len(result.stored)
            return

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def close(self) -> None:
        try:
            self._call(self._store.close())
        finally:
            self._stop_loop()


def open_output(
    url: str | None,
    *,
    key: str | None,
    hmac_secret: str | None,
    data_dir: Path,
    stop: threading.Event,
) -> Output:
    """A server when `url` is given, else the local store in `data_dir`."""
    if url:
        return RemoteOutput(url, ingest_key=key, hmac_secret=hmac_secret, stop=stop)
    return LocalStoreOutput(data_dir, stop=stop)


# --------------------------------------------------------------------------- one file


@dataclass(slots=True)
class Line:
    offset: int
    data: bytes
    truncated: bool


@dataclass(slots=True)
class Identity:
    """What makes a file *this* file across renames, restarts and inode reuse."""

    dev: int
    ino: int
    fp: str = ""
    fp_len: int = 0
    gen: int = 0

    def key(self) -> str:
        return f"{self.dev}:{self.ino}:{self.fp}:{self.fp_len}:{self.gen}"

    def event_id(self, offset: int) -> str:
        return str(uuid.uuid5(_ID_NAMESPACE, f"{self.key()}@{offset}"))


def _fingerprint(fd: int, length: int) -> str:
    data = os.pread(fd, length, 0)
    if len(data) != length:
        return ""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclass(slots=True)
class Reader:
    """Reads complete lines from one open file from `offset` on, with a bounded buffer."""

    fd: int
    ident: Identity
    offset: int
    read_pos: int = -1
    pending: bytearray = field(default_factory=bytearray)
    overflow: bool = False

    def __post_init__(self) -> None:
        if self.read_pos < 0:
            self.read_pos = self.offset

    def ensure_fingerprint(self) -> None:
        """Fix the fingerprint the first time the file has content; ids depend on it."""
        if self.ident.fp_len:
            return
        size = os.fstat(self.fd).st_size
        if size:
            length = min(size, FINGERPRINT_BYTES)
            self.ident.fp = _fingerprint(self.fd, length)
            self.ident.fp_len = length

    def same_content(self) -> bool:
        """Whether the bytes the fingerprint covers are still the ones it was taken over."""
        if not self.ident.fp_len:
            return True
        return _fingerprint(self.fd, self.ident.fp_len) == self.ident.fp

    def read(self, max_events: int, max_bytes: int, *, final: bool = False) -> list[Line]:
        """Up to `max_events` complete lines; with `final`, a last partial line counts too."""
        lines: list[Line] = []
        size = 0
        while len(lines) < max_events and size < max_bytes:
            chunk = os.pread(self.fd, _READ_CHUNK, self.read_pos)
            if not chunk:
                break
            self.ensure_fingerprint()
            start = 0
            while start < len(chunk):
                newline = chunk.find(b"\n", start)
                end = newline if newline >= 0 else len(chunk)
                piece = chunk[start:end]
                room = MAX_LINE_BYTES - len(self.pending)
                if len(piece) > room:
                    self.overflow = True
                    piece = piece[: max(room, 0)]
                self.pending += piece
                if newline < 0:
                    self.read_pos += len(chunk) - start
                    break
                consumed = self.read_pos + (newline + 1 - start)
                lines.append(Line(self.offset, bytes(self.pending), self.overflow))
                size += len(self.pending)
                self.pending.clear()
                self.overflow = False
                self.offset = consumed
                self.read_pos = consumed
                start = newline + 1
                if len(lines) >= max_events or size >= max_bytes:
                    break
        if final and not lines and (self.pending or self.overflow):
            lines.append(Line(self.offset, bytes(self.pending), self.overflow))
            self.pending.clear()
            self.overflow = False
            self.offset = self.read_pos
        return lines

    def rewind(self, offset: int) -> None:
        """Forget buffered bytes and continue from `offset` (the last delivered line end)."""
        self.offset = offset
        self.read_pos = offset
        self.pending.clear()
        self.overflow = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _open(path: Path) -> tuple[int, os.stat_result] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat_mod.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def _start_of_last_line(fd: int, size: int) -> int:
    """Where the last (possibly unfinished) line starts, so following from the end never
    begins in the middle of a line."""
    if size == 0:
        return 0
    tail = os.pread(fd, min(size, MAX_LINE_BYTES), max(0, size - MAX_LINE_BYTES))
    if tail.endswith(b"\n"):
        return size
    newline = tail.rfind(b"\n")
    return size - len(tail) + newline + 1 if newline >= 0 else max(0, size - len(tail))


def _siblings(path: Path) -> Iterator[Path]:
    """Files next to `path` whose names extend it: where rotation puts the old content."""
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in sorted(entries):
        if entry.name != path.name and entry.name.startswith(path.name):
            yield entry


def _find_rotated(path: Path, ident: Identity, *, same_inode: bool) -> int | None:
    """Open the rotated copy of the file `ident` names (by inode, or by content).

    Without a fingerprint the file was empty when last checkpointed (an identity is saved
    before any line is shipped under it), so a renamed file is found by its inode alone; a
    copy cannot be told apart without one.
    """
    if not ident.fp_len and not same_inode:
        return None
    for candidate in _siblings(path):
        opened = _open(candidate)
        if opened is None:
            continue
        fd, st = opened
        inode_ok = (st.st_dev, st.st_ino) == (ident.dev, ident.ino)
        if inode_ok == same_inode and (
            not ident.fp_len or _fingerprint(fd, ident.fp_len) == ident.fp
        ):
            return fd
        os.close(fd)
    return None


# --------------------------------------------------------------------------- checkpoints


class Checkpoints:
    """One small JSON file per followed path under `<data-dir>/collect/`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _file(self, path: Path | str) -> Path:
        digest = hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()
        return self.directory / f"{digest[:24]}.json"

    def load_docker(self, container: str) -> str | None:
        """The Docker timestamp of the container's last shipped line, if any."""
        import orjson

        try:
            since = orjson.loads(self._file(f"docker:{container}").read_bytes())["since"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            since = None
        if not isinstance(since, str) or not _DOCKER_TS.match(since.encode()):
            print(
                f"logbeacon collect: ignoring an unreadable checkpoint for container {container}",
                file=sys.stderr,
            )
            return None
        return since

    def save_docker(self, container: str, since: str) -> None:
        self._write(self._file(f"docker:{container}"), {"container": container, "since": since})

    def load(self, path: Path) -> tuple[Identity, int] | None:
        import orjson

        try:
            doc = orjson.loads(self._file(path).read_bytes())
            ident = Identity(
                int(doc["dev"]),
                int(doc["ino"]),
                str(doc["fp"]),
                int(doc["fp_len"]),
                int(doc.get("gen", 0)),
            )
            return ident, int(doc["offset"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            print(
                f"logbeacon collect: ignoring an unreadable checkpoint for {path}",
                file=sys.stderr,
            )
            return None

    def save(self, path: Path, ident: Identity, offset: int) -> None:
        doc = {
            "path": str(path),
            "dev": ident.dev,
            "ino": ident.ino,
            "fp": ident.fp,
            "fp_len": ident.fp_len,
            "gen": ident.gen,
            "offset": offset,
        }
        self._write(self._file(path), doc)

    @staticmethod
    def _write(target: Path, doc: dict[str, Any]) -> None:
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(encode(doc))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)


# --------------------------------------------------------------------------- a followed path


class TailedFile:
    """Follows one path across rotations; `poll` ships what is new."""

    def __init__(
        self,
        path: Path,
        *,
        from_start: bool,
        checkpoints: Checkpoints,
        make_event: Callable[[Identity, Line], Event],
        output: Output,
    ) -> None:
        self.path = path
        self.from_start = from_start
        self.checkpoints = checkpoints
        self.make_event = make_event
        self.output = output
        self.reader: Reader | None = None
        #: Renamed-away files still read for a while, each with when it was last seen growing.
        self.rotated: list[tuple[Reader, float]] = []
        #: The file that replaced the followed one at the path, opened as soon as noticed.
        self.next: Reader | None = None
        self._saved: tuple[str, int] | None = None
        self._saved_at = 0.0
        self._started = False
        self._resume = checkpoints.load(path)

    # -- opening

    def _open_current(self, *, new_file: bool) -> bool:
        opened = _open(self.path)
        if opened is None:
            return False
        fd, st = opened
        ident = Identity(st.st_dev, st.st_ino)
        offset = 0 if new_file or self.from_start else _start_of_last_line(fd, st.st_size)
        self.reader = Reader(fd, ident, offset)
        self.reader.ensure_fingerprint()
        self._checkpoint(self.reader, force=True)  # at once: see `poll`
        return True

    def _start(self) -> int:
        """First open: resume from the checkpoint, recovering a rotation missed while down.

        Returns how many lines were shipped from a rotated copy on the way.
        """
        resume, self._resume = self._resume, None
        if resume is None:
            self._open_current(new_file=False)
            return 0
        ident, offset = resume
        opened = _open(self.path)
        if opened is not None:
            fd, st = opened
            if (st.st_dev, st.st_ino) == (ident.dev, ident.ino):
                if (
                    ident.fp_len == 0 or _fingerprint(fd, ident.fp_len) == ident.fp
                ) and st.st_size >= offset:
                    self.reader = Reader(fd, ident, offset)
                    self.reader.ensure_fingerprint()
                    return 0
                # Same inode, other content: truncated (copytruncate) while we were away.
                try:
                    shipped = self._drain_copy(ident, offset, same_inode=False)
                except BaseException:
                    os.close(fd)
                    raise
                self.reader = Reader(fd, Identity(ident.dev, ident.ino, gen=ident.gen + 1), 0)
                self.reader.ensure_fingerprint()
                return shipped
            os.close(fd)
        # Another file (or none) at the path: ours was renamed away while we were down.
        shipped = self._drain_copy(ident, offset, same_inode=True)
        self._open_current(new_file=True)
        return shipped

    def _drain_copy(self, ident: Identity, offset: int, *, same_inode: bool) -> int:
        """Ship the rest of a rotated-away file from `offset`; return how many lines."""
        fd = _find_rotated(self.path, ident, same_inode=same_inode)
        if fd is None:
            if os.environ.get("LOGBEACON_COLLECT_QUIET") is None:
                print(
                    f"logbeacon collect: {self.path} was rotated and its old content is "
                    "gone; lines after the last checkpoint may be missing",
                    file=sys.stderr,
                )
            return 0
        reader = Reader(fd, ident, offset)
        try:
            return self._ship_all(reader, final=True)
        finally:
            reader.close()

    # -- shipping

    def _ship_all(self, reader: Reader, *, final: bool, checkpoint: bool = True) -> int:
        """Ship `reader`'s lines to its end; `checkpoint=False` for a renamed-away file,
        whose progress must not replace the checkpoint of the file now at the path."""
        shipped = 0
        while True:
            start = reader.offset
            lines = reader.read(BATCH_EVENTS, BATCH_BYTES, final=final)
            if not lines:
                return shipped
            if reader is self.reader and self._truncated(reader):
                # Truncated while we read: those bytes may be new content at old offsets.
                reader.rewind(start)
                return shipped
            if checkpoint and (self._saved is None or self._saved[0] != reader.ident.key()):
                # The fingerprint was just fixed (ids depend on it): save the identity before
                # any line goes out under it, or a restart would take a longer fingerprint
                # and give the same lines other ids.
                self._checkpoint(reader, force=True, offset=start)
            events = [self.make_event(reader.ident, line) for line in lines]
            try:
                self.output.write(events)
            except BaseException:
                reader.rewind(start)
                raise
            shipped += len(lines)
            if checkpoint:
                self._checkpoint(reader, force=False)
            if reader is self.reader:
                self._look()

    def _checkpoint(self, reader: Reader, *, force: bool, offset: int | None = None) -> None:
        state = (reader.ident.key(), reader.offset if offset is None else offset)
        if state == self._saved:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < _CHECKPOINT_EVERY_S:
            return
        self.checkpoints.save(self.path, reader.ident, state[1])
        self._saved = state
        self._saved_at = now

    def poll(self) -> int:
        """Ship new complete lines, handle rotation; return how many lines were shipped."""
        shipped = self._poll_rotated()
        if self.reader is None:
            first = not self._started
            self._started = True
            if first and self._resume is not None:
                shipped += self._start()
            else:
                # A file that appears after we started following its path is new: all of it.
                self._open_current(new_file=not first)
            if self.reader is None:
                return shipped
        if self._truncated(self.reader):
            shipped += self._restart_truncated(self.reader)
        reader = self.reader
        assert reader is not None
        shipped += self._ship_all(reader, final=False)
        self._look()  # nothing at the path (renamed, not re-created yet): keep following
        if self.next is not None:
            # Another file at the path: the old one is read to its end and checkpointed
            # before the new one is (a restart finds the old one by inode and drains it
            # first); the writer may still append to it, so it stays open for a while.
            shipped += self._ship_all(reader, final=False)
            self._checkpoint(reader, force=True)
            self.rotated.append((reader, time.monotonic()))
            self.reader, self.next = self.next, None
            # At once, not within a second: a rotation of this file while we are down must
            # find the checkpoint on it, not on the file before (two rotations back).
            self._checkpoint(self.reader, force=True)
            shipped += self.poll()  # a copytruncate since `_look` is noticed there
        return shipped

    def _look(self) -> None:
        """Open a new file at the path as soon as it is noticed (also between the batches of
        a backlog), and fingerprint it as soon as it has content.

        Until then it is only a name: if it were copytruncated before we held it and knew
        its first bytes, its first content could not be told from what came after.
        """
        reader = self.reader
        if self.next is None and reader is not None:
            try:
                st = os.stat(self.path)
            except OSError:
                return
            if (st.st_dev, st.st_ino) == (reader.ident.dev, reader.ident.ino):
                return
            opened = _open(self.path)
            if opened is None:
                return
            fd, st = opened
            if (st.st_dev, st.st_ino) == (reader.ident.dev, reader.ident.ino):
                os.close(fd)
                return
            self.next = Reader(fd, Identity(st.st_dev, st.st_ino), 0)
        if self.next is not None:
            self.next.ensure_fingerprint()

    def _poll_rotated(self) -> int:
        """Ship what was appended to renamed-away files; close those quiet for a while."""
        shipped = 0
        now = time.monotonic()
        for entry in list(self.rotated):
            reader, last_growth = entry
            got = self._ship_all(reader, final=False, checkpoint=False)
            if got:
                self.rotated[self.rotated.index(entry)] = (reader, now)
            elif now - last_growth >= ROTATE_WAIT_S:
                got = self._ship_all(reader, final=True, checkpoint=False)
                self.rotated.remove(entry)
                reader.close()
            shipped += got
        return shipped

    @staticmethod
    def _truncated(reader: Reader) -> bool:
        """Shorter than what we read, or other bytes where the fingerprint was taken."""
        return os.fstat(reader.fd).st_size < reader.read_pos or not reader.same_content()

    def _restart_truncated(self, reader: Reader) -> int:
        """Copytruncate: recover unread lines from the copy, then read the file from 0."""
        shipped = self._drain_copy(reader.ident, reader.offset, same_inode=False)
        ident = reader.ident
        self.reader = Reader(reader.fd, Identity(ident.dev, ident.ino, gen=ident.gen + 1), 0)
        self.reader.ensure_fingerprint()
        self._checkpoint(self.reader, force=True)
        return shipped

    def finish(self) -> None:
        """Save the final checkpoint and close the file (and read renamed-away ones to the
        end: the checkpoint is on the new file, so a restart would not come back to them)."""
        while self.rotated:
            reader, _ = self.rotated.pop()
            try:
                with contextlib.suppress(StopRequestedError):
                    self._ship_all(reader, final=True, checkpoint=False)
            finally:
                reader.close()
        if self.next is not None:
            self.next.close()  # not checkpointed yet: a restart finds the old file renamed
            self.next = None
        if self.reader is not None:
            self._checkpoint(self.reader, force=True)
            self.reader.close()
            self.reader = None


# --------------------------------------------------------------------------- a container


def _docker_seconds(stamp: str) -> float:
    """Unix seconds of a Docker RFC 3339 timestamp (`2026-01-31T12:00:00.123456789Z`)."""
    from datetime import UTC, datetime

    match = _DOCKER_TS.match(stamp.encode())
    assert match is not None
    whole = datetime.strptime(match.group(1).decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    fraction = match.group(2) or b".0"
    return whole.timestamp() + float(fraction.decode())


class DockerLogs:
    """Follows one container through `docker logs --timestamps`; `poll` ships what is new.

    Two reader threads put lines on a bounded queue (a full queue stops them reading, so the
    pipes push back on Docker instead of memory growing).
    """

    def __init__(
        self,
        container: str,
        *,
        follow: bool,
        checkpoints: Checkpoints,
        output: Output,
        service: str,
        docker: str = "docker",
    ) -> None:
        self.container = container
        self.follow = follow
        self.checkpoints = checkpoints
        self.output = output
        self.docker = docker
        self.defaults = {"service": service, "container": container}
        self.since = checkpoints.load_docker(container)
        self.done = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._lines: queue.Queue[tuple[str, bytes, bool]] = queue.Queue(BATCH_EVENTS * 4)
        self._ranks: dict[tuple[str, str], int] = {}
        self._restart_at = 0.0
        self._saved: str | None = self.since
        self._saved_at = 0.0
        self.failures = 0

    # -- the docker process

    def _command(self) -> list[str]:
        command = [self.docker, "logs", "--timestamps"]
        if self.follow:
            command.append("--follow")
        if self.since is not None:
            start = max(_docker_seconds(self.since) - DOCKER_OVERLAP_S, 0.0)
            command += ["--since", f"{start:.9f}"]
        return [*command, self.container]

    def _spawn(self) -> None:
        self._ranks.clear()  # a new process re-reads the overlap: ranks count from scratch
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv list, no shell; the user named it
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot run {self.docker!r} for --docker {self.container}: {exc.strerror or exc}"
            ) from None
        self._proc = proc
        assert proc.stdout is not None
        assert proc.stderr is not None
        self._readers = [
            threading.Thread(
                target=self._read, args=(pipe, name), name=f"docker-{name}", daemon=True
            )
            for pipe, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: Any, stream: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            pending = bytearray()
            overflow = False
            for chunk in iter(lambda: pipe.readline(MAX_LINE_BYTES), b""):
                if chunk.endswith(b"\n"):
                    if not overflow:
                        pending += chunk[:-1]
                    self._lines.put((stream, bytes(pending), overflow))
                    pending.clear()
                    overflow = False
                elif not overflow:
                    room = MAX_LINE_BYTES - len(pending)
                    pending += chunk[:room]
                    overflow = len(chunk) > room or len(pending) >= MAX_LINE_BYTES
            if pending:
                self._lines.put((stream, bytes(pending), overflow))

    def _reap(self) -> int:
        """Wait for the ended `docker logs`, its readers and pipes; its exit code."""
        proc, self._proc = self._proc, None
        assert proc is not None
        code = proc.wait()
        for reader in self._readers:
            # A reader blocked on a full queue after a stop has nobody to drain it.
            while reader.is_alive():
                with contextlib.suppress(queue.Empty):
                    self._lines.get_nowait()
                reader.join(0.05)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def _running(self) -> bool:
        return self._proc is not None and (
            self._proc.poll() is None or any(r.is_alive() for r in self._readers)
        )

    # -- shipping

    def _event(self, stream: str, raw: bytes, truncated: bool) -> tuple[Event, str] | None:
        match = _DOCKER_TS.match(raw)
        if match is None:
            return None  # Docker's own messages ("Error: No such container") are not lines
        stamp = (match.group(1) + (match.group(2) or b"")).decode() + "Z"
        rank = self._ranks.get((stream, stamp), 0)
        self._ranks[stream, stamp] = rank + 1
        if len(self._ranks) > 10_000:
            self._ranks = {key: n for key, n in self._ranks.items() if key[1] >= stamp}
        fraction = (match.group(2) or b".0").decode()[:7].ljust(7, "0")
        timestamp = match.group(1).decode() + fraction + "Z"
        ident = f"docker:{self.container}:{stream}:{stamp}:{rank}"
        event = line_to_event(
            raw[match.end() :],
            defaults={**self.defaults, "timestamp": timestamp},
            output_fields={"stream": stream},
            truncated=truncated,
            event_id=str(uuid.uuid5(_ID_NAMESPACE, ident)),
        )
        return event, stamp

    def poll(self) -> int:
        """Ship queued lines; (re)start `docker logs` when needed; return how many lines."""
        if self.done:
            return 0
        if not self._running() and self._lines.empty():
            if self._proc is not None:
                code = self._reap()
                if not self.follow:
                    self.done = True
                    if code:
                        self.failures += 1
                    return 0
                self._restart_at = time.monotonic() + _DOCKER_RESTART_S
            if time.monotonic() < self._restart_at:
                return 0
            self._spawn()
        batch: list[Event] = []
        newest = self.since
        deadline = time.monotonic() + 0.05
        while len(batch) < BATCH_EVENTS:
            try:
                stream, raw, truncated = self._lines.get(
                    timeout=max(deadline - time.monotonic(), 0.001)
                )
            except queue.Empty:
                break
            made = self._event(stream, raw, truncated)
            if made is not None:
                batch.append(made[0])
                newest = max(newest or made[1], made[1])
        if batch:
            self.output.write(batch)  # raises on a stop request: the checkpoint stays put
            self.since = newest
        self._checkpoint(force=False)
        return len(batch)

    def _checkpoint(self, *, force: bool) -> None:
        if self.since is None or self.since == self._saved:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < _CHECKPOINT_EVERY_S:
            return
        self.checkpoints.save_docker(self.container, self.since)
        self._saved = self.since
        self._saved_at = now

    def finish(self) -> None:
        """Save the checkpoint and stop `docker logs` (by its PID)."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
            self._reap()
        # Lines read but not shipped are not checkpointed: the overlap re-reads them.
        self._checkpoint(force=True)


# --------------------------------------------------------------------------- the loop


class Collector:
    """Polls every followed file until stopped (or once, with `once=True`)."""

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        output: Output,
        data_dir: Path,
        service: str,
        from_start: bool,
        poll_interval: float = 0.25,
        stop: threading.Event | None = None,
        containers: Sequence[str] = (),
        docker_service: str | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self.output = output
        self.poll_interval = poll_interval
        checkpoints = Checkpoints(data_dir / "collect")
        defaults = {"service": service}

        def factory(path: Path) -> Callable[[Identity, Line], Event]:
            output_fields = {"file": str(path)}

            def make_event(ident: Identity, line: Line) -> Event:
                return line_to_event(
                    line.data,
                    defaults=defaults,
                    output_fields=output_fields,
                    truncated=line.truncated,
                    event_id=ident.event_id(line.offset),
                )

            return make_event

        self.files = [
            TailedFile(
                path,
                from_start=from_start,
                checkpoints=checkpoints,
                make_event=factory(path),
                output=output,
            )
            for path in paths
        ]
        self.containers = [
            DockerLogs(
                name,
                follow=True,
                checkpoints=checkpoints,
                output=output,
                service=docker_service or name,
            )
            for name in containers
        ]
        self.shipped = 0

    def run(self, *, once: bool = False) -> None:
        for container in self.containers:
            container.follow = not once
        sources: list[TailedFile | DockerLogs] = [*self.files, *self.containers]
        try:
            while not self.stop.is_set():
                busy = 0
                for source in sources:
                    busy += source.poll()
                self.shipped += busy
                if once and not busy and all(c.done for c in self.containers):
                    break
                if not busy:
                    self.stop.wait(self.poll_interval)
        except StopRequestedError:
            pass
        finally:
            for source in sources:
                source.finish()


# --------------------------------------------------------------------------- CLI


def collect_command(
    *,
    files: Annotated[
        list[Path] | None, typer.Argument(help="Files to follow (they may not exist yet).")
    ] = None,
    docker: Annotated[
        list[str] | None,
        typer.Option(
            "--docker",
            help="Follow this container's output with `docker logs` (repeatable).",
        ),
    ] = None,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            envvar="LOGBEACON_SERVICE",
            help="service of plain lines (default: collect, or the container's name)",
        ),
    ] = None,
    from_start: Annotated[
        bool,
        typer.Option("--from-start", help="Read files from the beginning (default: the end)."),
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Ship what is there now, then exit.")
    ] = False,
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
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            envvar="LOGBEACON_DATA_DIR",
            help="Local store and the collect offsets live here.",
        ),
    ] = Path(".logbeacon"),
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.01, help="Seconds between polls.")
    ] = 0.25,
) -> None:
    """Follow FILEs across rotation and ship each line once; offsets survive restarts."""
    stop = threading.Event()
    paths = [Path(os.path.abspath(f)) for f in files or ()]
    containers = list(docker or ())
    if not paths and not containers:
        typer.echo("logbeacon collect: name at least one FILE or --docker CONTAINER", err=True)
        raise typer.Exit(2)
    if containers and shutil.which("docker") is None:
        typer.echo("logbeacon collect: --docker needs the docker CLI on PATH", err=True)
        raise typer.Exit(2)
    try:
        output = open_output(url, key=key, hmac_secret=hmac_secret, data_dir=data_dir, stop=stop)
    except ConfigError as exc:
        typer.echo(f"logbeacon collect: {exc}", err=True)
        raise typer.Exit(2) from None
    collector = Collector(
        paths,
        output=output,
        data_dir=data_dir,
        service=service or "collect",
        from_start=from_start,
        poll_interval=poll_interval,
        stop=stop,
        containers=containers,
        docker_service=service,
    )

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
    try:
        collector.run(once=once)
    except ConfigError as exc:
        typer.echo(f"logbeacon collect: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        output.close()
    typer.echo(f"logbeacon collect: shipped {collector.shipped} lines", err=True)


def register(app: typer.Typer) -> None:
    """Add `collect` to the `logbeacon` CLI."""
    app.command("collect")(collect_command)
