"""The SQLite writer in a child process, so the server's Python work and the writer's run at once.

Python runs one thread at a time per process. In `logbeacon serve` the event loop (HTTP,
validation, redaction) and the writer thread (encoding rows, inserts, derived tables) took
turns on that one lock: under batch load the writer waited for it about half of its time and
the server used one core of two (bench/README.md). `WriterProcess` runs the very same
`Writer` — same thread, group commit and transactions — in a child process with its own
interpreter, and talks to it over two pipes:

- the parent pickles each append batch to the child (a sender thread, so a full pipe never
  blocks the event loop) and resolves the caller's future when the child says it committed;
  "accepted means durable" holds exactly as with the thread: the child answers after COMMIT;
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
general) keeps the writer in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
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
_REPLY_BATCH: Final = 1024  # answers resolved per event-loop wake-up at most
_COALESCE: Final = 256  # requests sent in one pipe message at most
# Its own module: `python -m` of this one would load it twice (the package imports it).
_CHILD_MODULE: Final = "logbeacon.store._sqlite_writer_main"


@dataclass(slots=True)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    size: int  # events, for the backlog
    kind: str  # "append" or "purge"


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
        self._lock = threading.Lock()
        self._waiting: dict[int, _Waiter] = {}
        self._backlog = 0
        self._stopping = False
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._process: subprocess.Popen[bytes] | None = None  # the current child
        self._requests: Connection | None = None
        self._replies: Connection | None = None
        self._receiver: threading.Thread | None = None
        self._sender: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the child and wait until it has opened (and migrated) the database."""
        self._spawn()
        self._sender = threading.Thread(
            target=self._send_loop, name="logbeacon-sqlite-writer-send", daemon=True
        )
        self._sender.start()
        self._receiver = threading.Thread(
            target=self._receive_loop, name="logbeacon-sqlite-writer-recv", daemon=True
        )
        self._receiver.start()

    def _spawn(self) -> None:
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
        self._process = process
        self._requests = requests
        self._replies = replies

    def stop(self) -> None:
        """Let the child commit what is queued, checkpoint and exit; idempotent."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._outbox.put(None)  # the sender asks the child to stop after the last batch
        if self._sender is not None:
            self._sender.join()
        process = self._process
        if process is not None:
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.error("the event store's writer process did not stop; killing it")
                process.kill()
                process.wait()
        if self._receiver is not None:
            self._receiver.join(_STOP_TIMEOUT)
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
        self._outbox.put(("append", call_id, events))
        return future

    def submit_purge(self, before_micros: int, loop: asyncio.AbstractEventLoop) -> Any:
        """Delete events older than `before_micros` (chunked between appends, in the child)."""
        future: asyncio.Future[int] = loop.create_future()
        with self._lock:
            if self._stopping:
                raise StoreUnavailable("event store is closed; retry once it is open", 1.0)
            call_id = next(self._ids)
            self._waiting[call_id] = _Waiter(loop, future, 0, "purge")
        self._outbox.put(("purge", call_id, before_micros))
        return future

    # ------------------------------------------------------------------ parent threads

    def _send_loop(self) -> None:
        """Send what is queued, coalesced: under single-event load one pipe write (and one
        wake-up of the child) carries many requests instead of one each."""
        while True:
            batch = [self._outbox.get()]
            while len(batch) < _COALESCE:
                try:
                    batch.append(self._outbox.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            requests = [message for message in batch if message is not None]
            if requests:
                self._send(requests)
            if stop:
                with contextlib.suppress(OSError, ValueError):
                    if self._requests is not None:
                        self._requests.send([("stop",)])
                return

    def _send(self, messages: list[tuple[Any, ...]]) -> None:
        connection = self._requests
        try:
            if connection is None:
                raise OSError("no writer process")
            connection.send(messages)
        except (OSError, ValueError):
            # The child is gone: the receiver fails what was waiting and restarts it; these
            # batches never reached a child, so they fail the same way.
            for message in messages:
                self._fail(message[1], _writer_gone())

    def _receive_loop(self) -> None:
        while True:
            replies = self._replies
            assert replies is not None
            try:
                messages, self.counters = replies.recv()
                while len(messages) < _REPLY_BATCH and replies.poll():
                    more, self.counters = replies.recv()
                    messages.extend(more)
            except (EOFError, OSError):
                messages = []
                gone = True
            else:
                gone = False
            if messages:
                self._settle(messages)
            if not gone:
                continue
            self._fail_all(_writer_gone())
            with self._lock:
                stopping = self._stopping
            if stopping:
                return
            self._restart()

    def _restart(self) -> None:
        log.error("the event store's writer process exited; starting a new one")
        old = self._process
        if old is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                old.wait(1.0)
        for connection in (self._requests, self._replies):
            if connection is not None:
                with contextlib.suppress(OSError):
                    connection.close()
        while True:
            time.sleep(_RESTART_DELAY)
            with self._lock:
                if self._stopping:
                    return
            try:
                self._spawn()
                return
            except StoreError as exc:
                log.error("cannot restart the event store's writer process: %s", exc)

    def _settle(self, messages: list[tuple[Any, ...]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
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
                by_loop.setdefault(waiter.loop, []).append((waiter.future, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the callers' loop is already closed
                loop.call_soon_threadsafe(_resolve, items)

    def _fail(self, call_id: int, error: BaseException) -> None:
        with self._lock:
            waiter = self._waiting.pop(call_id, None)
            if waiter is None:
                return
            self._backlog -= waiter.size
        with contextlib.suppress(RuntimeError):
            waiter.loop.call_soon_threadsafe(_resolve, [(waiter.future, error)])

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
            self._backlog = 0
        for waiter in waiting.values():
            with contextlib.suppress(RuntimeError):
                waiter.loop.call_soon_threadsafe(_resolve, [(waiter.future, error)])


def _resolve(items: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, value in items:
        if future.done():
            continue
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)


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
