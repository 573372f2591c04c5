"""The SQLite writer in a child process, so the server's Python work and the writer's run at once.

Python runs one thread at a time per process. In `logbeacon serve` the event loop (HTTP,
validation, redaction) and the writer thread (encoding rows, inserts, derived tables) took
turns on that one lock: under batch load the writer waited for it about half of its time and
the server used one core of two (bench/README.md). `WriterProcess` runs the very same
`Writer` — same thread, group commit and transactions — in a child process with its own
interpreter, and talks to it over two pipes:

- the parent's event loop owns both pipe ends (non-blocking, watched by the loop): appends
  submitted during one pass of the loop go to the child as one pickled message, and the
  child's answers resolve the callers' futures right where they are read. No helper thread
  takes the interpreter lock from the event loop (with threads, every hand-over cost a
  wake-up and a lock transfer per message: about a sixth of the parent's CPU per
  single-event request); a full pipe only delays the next write, never the loop;
- "accepted means durable" holds exactly as with the thread: the child answers after COMMIT;
- the child's answers carry the writer's counters, so `stats()` stays a local read;
- a child that dies (killed, out of memory) fails the batches it had not answered with
  `StoreUnavailable` (503, retry) — none of them was acknowledged — and a new child is
  started; a committed batch whose answer was lost is stored, and a retried copy with the
  same `event_id` is recognised as a duplicate;
- the child exits when the parent does, even on SIGKILL (its request pipe reaches EOF),
  after committing what it had already received; it ignores SIGINT/SIGTERM sent to the
  process group so that the parent decides when it stops;
- it is started as `python -m logbeacon.store._sqlite_writer_main` with the two pipes'
  descriptors: not `fork` (the parent has threads, whose locks a fork would copy), and not
  multiprocessing's `spawn`, which re-imports the parent's main script and so would run an
  embedding app's unguarded top-level code a second time.

`SqliteStore(writer_process=True)` chooses it; a `commit_hook` (a test seam, not picklable in
general) keeps the writer in a thread. The store attaches the pipes to the loop that opened
it; a caller on another loop or thread is served through that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final, cast

from logbeacon.exceptions import EventError, StoreError, StoreUnavailable
from logbeacon.store._sqlite_writer import Writer, WriterConfig, check_admission
from logbeacon.store.base import AppendResult

__all__ = ["WriterProcess", "child_main"]

log = logging.getLogger("logbeacon.store")

Event = dict[str, Any]

_START_TIMEOUT: Final = 60.0  # seconds for a child to import, open and migrate
_STOP_TIMEOUT: Final = 60.0  # seconds to commit what is queued and checkpoint
_RESTART_DELAY: Final = 1.0
_READ_SIZE: Final = 1 << 20
# Requests wait for the end of the event loop's pass, so that many small ones travel as one
# message; once this many events wait they go at once, so the child starts on them while the
# loop prepares the next requests. (Holding everything to the end of a long pass left the
# child and the loop waiting on each other: batch throughput fell 14 % in an A/B run; of 1, 8,
# 16 and 50, 8 did best under single-event load.)
_SEND_NOW: Final = 8
# `multiprocessing.connection.Connection` framing, which the child reads and writes: a
# 4-byte big-endian signed length, or -1 and an 8-byte length for messages of 2 GiB or more.
_HEADER: Final = struct.Struct("!i")
_LONG_HEADER: Final = struct.Struct("!Q")
_SHORT_MAX: Final = 0x7FFFFFFF
# Its own module: `python -m` of this one would load it twice (the package imports it).
_CHILD_MODULE: Final = "logbeacon.store._sqlite_writer_main"


@dataclass(slots=True)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    size: int  # events, for the backlog
    kind: str  # "append", "purge" or "index"


def _frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > _SHORT_MAX:
        return _HEADER.pack(-1) + _LONG_HEADER.pack(len(payload)) + payload
    return _HEADER.pack(len(payload)) + payload


def _unframe(buffer: bytearray) -> list[Any]:
    """Take every complete message off the front of `buffer`."""
    messages = []
    view = 0
    while len(buffer) - view >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer, view)
        start = view + _HEADER.size
        if size == -1:
            if len(buffer) - start < _LONG_HEADER.size:
                break
            (size,) = _LONG_HEADER.unpack_from(buffer, start)
            start += _LONG_HEADER.size
        if len(buffer) - start < size:
            break
        messages.append(pickle.loads(buffer[start : start + size]))  # noqa: S301 - our child
        view = start + size
    del buffer[:view]
    return messages


class _Child:
    """One running child and the parent's non-blocking ends of its two pipes."""

    def __init__(self, process: subprocess.Popen[bytes], requests: int, replies: int) -> None:
        self.process = process
        self.requests = requests  # fd the parent writes
        self.replies = replies  # fd the parent reads
        self.outgoing = bytearray()  # framed requests the pipe did not take yet
        self.incoming = bytearray()
        self.writing = False  # the loop watches `requests` for room
        self.gone = False

    def close(self) -> None:
        for fd in (self.requests, self.replies):
            with contextlib.suppress(OSError):
                os.close(fd)


class WriterProcess:
    """`Writer`'s interface (start, stop, submit_append, submit_purge, counters, pragmas,
    backlog) with the writer in a child process (see the module docstring)."""

    def __init__(self, config: WriterConfig) -> None:
        if config.commit_hook is not None:
            raise ValueError("a commit_hook cannot cross into a writer process")
        self.config = config
        self.pragmas: dict[str, Any] = {}
        self.counters: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # `_waiting` and `_backlog`, for callers off the loop
        self._waiting: dict[int, _Waiter] = {}
        self._backlog = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._child: _Child | None = None
        self._spawned: _Child | None = None  # started, not yet attached to the loop
        self._pending: list[tuple[Any, ...]] = []  # requests of this loop pass
        self._pending_events = 0
        self._flush_scheduled = False
        self._restarting: asyncio.Task[None] | None = None
        self._exited: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the child and wait until it has opened (and migrated) the database.

        Blocking (run it in a thread); `attach` then hands the pipes to the event loop.
        """
        self._spawned = self._spawn()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve appends on `loop` (the loop that opened the store); call on that loop."""
        self._loop = loop
        self._exited = asyncio.Event()
        child, self._spawned = self._spawned, None
        if child is not None:
            self._adopt(child)

    def _spawn(self) -> _Child:
        # Two one-way pipes: the child reads requests from one and writes answers to the other.
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        command = [sys.executable, "-m", _CHILD_MODULE, str(requests_read), str(replies_write)]
        try:
            process = subprocess.Popen(  # noqa: S603 - our interpreter and module, fd numbers
                command,
                stdin=subprocess.DEVNULL,
                pass_fds=(requests_read, replies_write),
                close_fds=True,
            )
        except (OSError, ValueError) as exc:  # ValueError: no fd passing on this platform
            for fd in (requests_read, requests_write, replies_read, replies_write):
                os.close(fd)
            raise StoreError(f"cannot start the event store's writer process: {exc}") from exc
        os.close(requests_read)
        os.close(replies_write)
        # Blocking Connection objects for the hand-shake only; they read whole frames.
        requests = Connection(requests_write, readable=False)
        replies = Connection(replies_read, writable=False)
        try:
            requests.send(self.config)
            if not replies.poll(_START_TIMEOUT):
                raise StoreError(
                    f"the event store's writer process did not start in {_START_TIMEOUT:.0f} s"
                )
            message = replies.recv()
        except (EOFError, OSError, StoreError) as exc:
            process.kill()
            process.wait()
            requests.close()
            replies.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError("the event store's writer process exited while starting") from exc
        if message[0] == "failed":
            process.wait()
            requests.close()
            replies.close()
            raise StoreError(str(message[1]))
        _, self.pragmas, counters = message
        self.counters = dict(counters)
        # From here the loop reads and writes the raw descriptors, without blocking.
        child = _Child(process, os.dup(requests.fileno()), os.dup(replies.fileno()))
        requests.close()
        replies.close()
        os.set_blocking(child.requests, False)
        os.set_blocking(child.replies, False)
        return child

    def _adopt(self, child: _Child) -> None:
        loop = self._loop
        assert loop is not None
        self._child = child
        loop.add_reader(child.replies, self._on_replies, child)

    def stop(self) -> None:
        """A writer that was started but never attached: end its child (blocking)."""
        child, self._spawned = self._spawned, None
        self._stopping = True
        if child is None:
            return
        with contextlib.suppress(OSError):
            os.set_blocking(child.requests, True)
            os.write(child.requests, _frame([("stop",)]))
        _wait_or_kill(child.process)
        child.close()

    async def aclose(self) -> None:
        """Let the child commit what is queued, checkpoint and exit; idempotent.

        Call on the loop the writer is attached to.
        """
        if self._stopping:
            return
        self._stopping = True
        if self._restarting is not None:
            # Not cancelled: a child being started in a thread would be lost, still holding
            # the database. The restart sees `_stopping` and stops what it started.
            await self._restarting
        child = self._child
        if child is not None and not child.gone:
            # After every append already submitted: the child stops after the last batch.
            self._pending.append(("stop",))
            self._flush()
            await asyncio.to_thread(_wait_or_kill, child.process)
            # Its last answers are read by the loop until the pipe's end.
            if self._exited is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._exited.wait(), _STOP_TIMEOUT)
        if child is not None:
            self._detach(child)
        self._fail_all(StoreUnavailable("event store is closed; retry once it is open", 1.0))

    @property
    def backlog(self) -> int:
        """Events handed to the child and not yet answered."""
        return self._backlog

    # ------------------------------------------------------------------ submission

    def submit_append(self, events: Sequence[Event], loop: asyncio.AbstractEventLoop) -> Any:
        """Queue one caller's batch; return the future the child's COMMIT resolves."""
        future: asyncio.Future[AppendResult] = loop.create_future()
        with self._lock:
            check_admission(self._stopping, self._backlog, len(events), self.config.max_backlog)
            call_id = next(self._ids)
            self._waiting[call_id] = _Waiter(loop, future, len(events), "append")
            self._backlog += len(events)
        self._submit(("append", call_id, events), loop)
        return future

    def submit_purge(self, before_micros: int, loop: asyncio.AbstractEventLoop) -> Any:
        """Delete events older than `before_micros` (chunked between appends, in the child)."""
        return self._submit_job("purge", before_micros, loop)

    def submit_index(self, loop: asyncio.AbstractEventLoop) -> Any:
        """Bring the full-text index up to the last commit; resolves once it is searchable."""
        return self._submit_job("index", None, loop)

    def _submit_job(self, kind: str, argument: Any, loop: asyncio.AbstractEventLoop) -> Any:
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._stopping:
                raise StoreUnavailable("event store is closed; retry once it is open", 1.0)
            call_id = next(self._ids)
            self._waiting[call_id] = _Waiter(loop, future, 0, kind)
        self._submit((kind, call_id, argument), loop)
        return future

    def _submit(self, message: tuple[Any, ...], loop: asyncio.AbstractEventLoop) -> None:
        owner = self._loop
        if owner is loop:
            self._queue(message)
            return
        try:
            if owner is None:
                raise RuntimeError("not attached")
            owner.call_soon_threadsafe(self._queue, message)
        except RuntimeError:  # the owning loop is closed: nothing can reach the child
            self._fail(message[1], StoreUnavailable("event store is closed; reopen it", 1.0))

    # ------------------------------------------------------------------ on the loop

    def _queue(self, message: tuple[Any, ...]) -> None:
        if self._child is None or self._child.gone:
            # Between a child's death and its replacement: this batch never reached one.
            self._fail(message[1], _writer_gone())
            return
        self._pending.append(message)
        if message[0] == "append":
            self._pending_events += len(message[2])
            if self._pending_events >= _SEND_NOW:
                # Enough work to start the child on now: waiting for the end of this loop
                # pass would hold it back while the loop prepares the next requests.
                self._flush()
                return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send what this loop pass submitted as one message, as far as the pipe takes it."""
        self._flush_scheduled = False
        child = self._child
        if child is None or child.gone:
            return
        if self._pending:
            child.outgoing += _frame(self._pending)
            self._pending = []
            self._pending_events = 0
        self._write(child)

    def _write(self, child: _Child) -> None:
        if child.gone:
            return
        out = child.outgoing
        try:
            while out:
                written = os.write(child.requests, out)
                del out[:written]
        except BlockingIOError:
            pass
        except OSError:  # the child is gone; its replies pipe says so and fails the batches
            out.clear()
        loop = self._loop
        assert loop is not None
        if out and not child.writing:
            child.writing = True
            loop.add_writer(child.requests, self._write, child)
        elif not out and child.writing:
            child.writing = False
            loop.remove_writer(child.requests)

    def _on_replies(self, child: _Child) -> None:
        ended = False
        try:
            while True:
                chunk = os.read(child.replies, _READ_SIZE)
                if not chunk:
                    ended = True
                    break
                child.incoming += chunk
                if len(chunk) < _READ_SIZE:
                    break
        except BlockingIOError:
            pass
        except OSError:
            ended = True
        for messages, counters in _unframe(child.incoming):
            self.counters = counters
            self._settle(messages)
        if ended:
            self._child_gone(child)

    def _settle(self, messages: list[tuple[Any, ...]]) -> None:
        loop = self._loop
        elsewhere: list[tuple[_Waiter, Any]] = []
        with self._lock:
            for kind, call_id, payload in messages:
                waiter = self._waiting.pop(call_id, None)
                if waiter is None:
                    continue
                self._backlog -= waiter.size
                if kind == "ok":
                    value = AppendResult(stored=payload) if waiter.kind == "append" else payload
                else:
                    value = _rebuild_error(payload)
                if waiter.loop is loop:
                    _resolve_one(waiter.future, value)
                else:
                    elsewhere.append((waiter, value))
        for waiter, value in elsewhere:
            with contextlib.suppress(RuntimeError):  # the caller's loop is already closed
                waiter.loop.call_soon_threadsafe(_resolve, [(waiter.future, value)])

    def _child_gone(self, child: _Child) -> None:
        self._detach(child)
        self._fail_all(_writer_gone())
        if self._exited is not None:
            self._exited.set()
        if self._stopping:
            return
        log.error("the event store's writer process exited; starting a new one")
        loop = self._loop
        assert loop is not None
        self._restarting = loop.create_task(self._restart(child))

    def _detach(self, child: _Child) -> None:
        if child.gone:
            return
        child.gone = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(child.replies)
            if child.writing:
                loop.remove_writer(child.requests)
        child.close()
        if self._child is child:
            self._child = None

    async def _restart(self, old: _Child) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(old.process.wait, 1.0)
        while not self._stopping:
            await asyncio.sleep(_RESTART_DELAY)
            try:
                child = await asyncio.to_thread(self._spawn)
            except StoreError as exc:
                log.error("cannot restart the event store's writer process: %s", exc)
                continue
            if self._stopping:
                await asyncio.to_thread(_end, child)
                return
            assert self._exited is not None
            self._exited.clear()
            self._adopt(child)
            return

    def _fail(self, call_id: int, error: BaseException) -> None:
        with self._lock:
            waiter = self._waiting.pop(call_id, None)
            if waiter is None:
                return
            self._backlog -= waiter.size
        _resolve_at(waiter, error)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._backlog = 0
        for waiter in waiting.values():
            _resolve_at(waiter, error)


def _resolve_at(waiter: _Waiter, value: Any) -> None:
    """Resolve a waiter's future on its own loop (this one, or through its thread)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is waiter.loop:
        _resolve_one(waiter.future, value)
        return
    with contextlib.suppress(RuntimeError):  # the caller's loop is already closed
        waiter.loop.call_soon_threadsafe(_resolve, [(waiter.future, value)])


def _resolve_one(future: asyncio.Future[Any], value: Any) -> None:
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


def _resolve(items: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, value in items:
        _resolve_one(future, value)


def _wait_or_kill(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.error("the event store's writer process did not stop; killing it")
        process.kill()
        process.wait()


def _end(child: _Child) -> None:
    """Stop a child nobody will use (started while the store was closing)."""
    with contextlib.suppress(OSError):
        os.set_blocking(child.requests, True)
        os.write(child.requests, _frame([("stop",)]))
    _wait_or_kill(child.process)
    child.close()


def _writer_gone() -> StoreUnavailable:
    return StoreUnavailable(
        "the event store's writer process exited before committing (nothing of this batch "
        "was acknowledged); retry",
        1.0,
    )


def _error_payload(exc: BaseException) -> tuple[str, str, Any]:
    """An exception as plain data: custom exception classes do not all survive pickling."""
    if isinstance(exc, StoreUnavailable):
        return ("unavailable", str(exc), exc.retry_after)
    if isinstance(exc, StoreError):
        return ("store", str(exc), None)
    if isinstance(exc, EventError):  # a malformed event fails its own call
        return ("event", str(exc), exc.reason)
    return ("other", f"{type(exc).__name__}: {exc}", None)


def _rebuild_error(payload: tuple[str, str, Any]) -> Exception:
    kind, message, extra = payload
    if kind == "unavailable":
        return StoreUnavailable(message, float(extra))
    if kind == "store":
        return StoreError(message)
    if kind == "event":
        return EventError(str(extra), message)
    return StoreError(f"event store writer failed: {message}")


# --------------------------------------------------------------------------- the child


class _InlineLoop:
    """What `Writer` needs of an event loop, run in place on the writer's own thread.

    The child has no event loop: the writer resolves a whole group's futures with one
    `call_soon_threadsafe`, which here runs the resolution at once and then sends every
    answer of the group in one message. A real loop in between cost a thread hand-over per
    group (a third of the writer's time under single-event load).
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def create_future(self) -> Future[Any]:
        return Future()

    def call_soon_threadsafe(self, callback: Callable[..., None], *args: Any) -> None:
        callback(*args)
        self._flush()


def child_main(requests: Connection, replies: Connection, config: WriterConfig) -> None:
    """The writer process's work: serve requests until `("stop",)` or the parent is gone."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # the parent says when: ("stop",) or EOF
    # Two busy threads here (reading requests, writing): hand the interpreter lock over
    # within a millisecond instead of five.
    sys.setswitchinterval(0.001)
    writer = Writer(config)
    try:
        writer.start()
    except BaseException as exc:
        replies.send(("failed", f"cannot open the event store at {config.path}: {exc}"))
        return
    replies.send(("ready", dict(writer.pragmas), dict(writer.counters)))
    # Imports and the open writer live as long as this process: spare the collector's full
    # passes from walking them again while batches of events come and go.
    gc.collect()
    gc.freeze()
    # Each batch allocates thousands of short-lived objects (rows, parameters): collect the
    # young generation less often than every 700 allocations (as `logbeacon serve` does).
    gc.set_threshold(20_000, 10, 10)
    outgoing: list[tuple[Any, ...]] = []
    send_lock = threading.Lock()

    def flush() -> None:
        with send_lock:
            if outgoing:
                messages = outgoing.copy()
                outgoing.clear()
                with contextlib.suppress(OSError):
                    replies.send((messages, dict(writer.counters)))

    loop = cast("asyncio.AbstractEventLoop", _InlineLoop(flush))

    def answer(call_id: int, future: Future[Any]) -> None:
        error = future.exception()
        if error is None:
            result = future.result()
            payload = result.stored if isinstance(result, AppendResult) else result
            message: tuple[Any, ...] = ("ok", call_id, payload)
        else:
            message = ("error", call_id, _error_payload(error))
        with send_lock:
            outgoing.append(message)

    while True:
        try:
            messages = requests.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        stop = False
        for kind, *arguments in messages:
            if kind == "stop":
                stop = True
                break
            call_id, argument = arguments
            try:
                if kind == "append":
                    future = writer.submit_append(argument, loop)
                elif kind == "index":
                    future = writer.submit_job(writer.index_job(), loop)
                else:
                    future = writer.submit_job(writer.purge_job(argument), loop)
            except Exception as exc:  # closed or backlog full: answer at once
                with send_lock:
                    outgoing.append(("error", call_id, _error_payload(exc)))
                flush()
                continue
            future.add_done_callback(lambda done, call_id=call_id: answer(call_id, done))
        # A batch committed before its callback was added was answered on this thread.
        flush()
        if stop:
            break
    writer.stop()  # commits what was queued (answering it), checkpoints, closes
    flush()
    with contextlib.suppress(OSError):
        replies.close()
