"""The background shipper: events leave the process without ever blocking the application.

Shape (after sentry-python's batcher, STYLE.md 5):

* `emit` appends the event's JSON line to a bounded in-memory queue and returns; it never
  touches the network. A full queue drops its *oldest* events and counts them: when a server
  is down for long, the newest events are the ones worth keeping.
* One daemon thread takes batches (up to `batch_size` events or `max_batch_bytes`, or
  whatever arrived within `flush_interval`), gzips them and POSTs them to `/v1/logs`.
* Failures are classified like OTLP/Vector: connection errors, timeouts, 408, 429 and 5xx
  except 501 are retried with exponential backoff and full jitter (capped), honouring a
  server's `Retry-After`; 413 and 400 split the batch in halves (each half is sent once, and
  split again if needed) so one oversized or poisonous event costs only itself; per-event
  rejections inside a 200 are final; 401/403 and other 4xx drop the batch. Everything
  dropped is counted by reason, and a periodic `events_dropped` warning event tells the
  server what it did not get.
* With `spool_dir`, a batch that fails is written to a disk segment instead of waiting in
  memory, and segments are re-sent (oldest first) when the server answers again — also by
  the next process after a restart. A segment is deleted only after a 2xx.
* The thread ignores anything logged from itself (no feedback loop: its own warnings go to
  the `logbeacon.internal.shipper` logger, which the stdlib bridge never captures), and a
  forked child gets a fresh queue, fresh locks and its own thread on first use.

Delivery is at-least-once on the wire: a response lost after the server committed means the
batch is sent again. Event ids make that exactly-once in the store, which drops duplicates
by `event_id`.

HTTP goes through the standard library's `http.client` with a keep-alive connection, not
httpx: `import logbeacon` must stay light (httpx lives in the server extra), and httpx logs
every request through stdlib logging, which a host app capturing stdlib logs would feed
straight back into this shipper.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import http.client
import logging
import math
import os
import random
import secrets
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from logbeacon import signing
from logbeacon._version import __version__
from logbeacon.event import decode, encode, new_event_id, utc_now
from logbeacon.exceptions import ConfigError
from logbeacon.sdk._guard import report
from logbeacon.sdk._spool import DEFAULT_SPOOL_BYTES, Segment, Spool

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "BatchSender",
    "HttpTransport",
    "Response",
    "SendResult",
    "Shipper",
    "ShipperStats",
    "Transport",
    "parse_retry_after",
]

INGEST_PATH: Final = "/v1/logs"
#: Seconds to wait after a 429 that names no (valid) Retry-After, as Sentry's SDKs do.
DEFAULT_RETRY_AFTER: Final = 60.0
#: A server may ask for a pause, not for silence: longer Retry-After values are capped.
MAX_RETRY_AFTER: Final = 600.0
_RETRYABLE: Final = frozenset({408, 429, 500, 502, 503, 504})
_SPLITTABLE: Final = {413: "too_large", 400: "invalid"}
_MAX_RESPONSE_BYTES: Final = 1024 * 1024
_SPOOL_RESCAN_S: Final = 30.0
_MAX_QUEUED_REPORTS: Final = 32

_log = logging.getLogger("logbeacon.internal.shipper")
# Set on every shipper thread (and around re-entrant calls): whatever is logged there — our
# own warnings, a library's debug line — is dropped by every shipper, never shipped.
_active = threading.local()


class Response(NamedTuple):
    """What a transport returns; header names are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes


#: The network seam: `(gzipped body, headers) -> (status, headers, body)`. Raising any
#: exception means "no answer" (connection refused, timeout, reset) and is retried.
Transport = Callable[[bytes, Mapping[str, str]], tuple[int, Mapping[str, str], bytes]]


# --------------------------------------------------------------------------- helpers


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value: delay-seconds or an HTTP-date.

    None when it is missing or unparseable; a date in the past means 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64 or not text.isascii():
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


def ingest_url(url: str) -> str:
    """`<base>/v1/logs` for a server base URL (a URL already ending in it is kept)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"ship_to must be the server's base URL such as http://127.0.0.1:8765, got {url!r}"
        )
    path = parts.path.rstrip("/")
    if not path.endswith(INGEST_PATH):
        path += INGEST_PATH
    return f"{parts.scheme}://{parts.netloc}{path}"


class _Notices:
    """Local warnings, each said once per shipper: a dead server must not flood stderr."""

    def __init__(self) -> None:
        self._said: set[str] = set()
        self._lock = threading.Lock()

    def once(self, key: str, message: str, *args: object) -> None:
        with self._lock:
            if key in self._said:
                return
            self._said.add(key)
        with contextlib.suppress(Exception):
            _log.warning(message, *args)

    def forget(self, key: str) -> None:
        """Allow `key` to be said again (a new outage after a recovery is news)."""
        with self._lock:
            self._said.discard(key)

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._said = set()


# --------------------------------------------------------------------------- transport


class HttpTransport:
    """POSTs to the ingest URL over one keep-alive `http.client` connection.

    A request on a reused connection that fails before any answer (the server closed an idle
    connection, or restarted) is tried once more on a fresh connection at once; every other
    failure raises to the caller, which backs off.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        full = ingest_url(url)
        parts = urlsplit(full)
        self.url = full
        self.timeout = timeout
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = parts.path
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def __call__(self, body: bytes, headers: Mapping[str, str]) -> Response:
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._conn or self._connect()
            self._conn = conn
            try:
                conn.request("POST", self._path, body=body, headers=dict(headers))
                answer = conn.getresponse()
                data = answer.read(_MAX_RESPONSE_BYTES)
                status = answer.status
                reply = {k.lower(): v for k, v in answer.getheaders()}
                if answer.will_close or not answer.isclosed():
                    self.reset()
                return Response(status, reply, data)
            except (
                http.client.RemoteDisconnected,
                ConnectionResetError,
                BrokenPipeError,
            ):
                self.reset()
                if not reused or attempt:
                    raise
            except BaseException:
                self.reset()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def reset(self) -> None:
        """Drop the connection (after an error, or in a forked child that must not share it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


# --------------------------------------------------------------------------- one batch


@dataclass(slots=True)
class SendResult:
    """What happened to one batch: final outcomes and the parts to try again later."""

    delivered: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    retry: list[list[bytes]] = field(default_factory=list)
    retry_after: float | None = None
    error: str | None = None
    requests: int = 0

    @property
    def finished(self) -> bool:
        return not self.retry


class BatchSender:
    """Sends one batch of JSON lines and classifies the answer; no queue, no thread.

    Shared by the shipper's thread and `logbeacon collect`, which waits for each batch.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        ingest_key: str | None = None,
        hmac_secret: str | bytes | None = None,
        notices: _Notices | None = None,
    ) -> None:
        self.transport = transport
        self.ingest_key = ingest_key or None
        self.hmac_secret = hmac_secret or None
        self.notices = notices or _Notices()

    def headers(self, body: bytes) -> dict[str, str]:
        """Request headers for the gzipped `body`; an HMAC is computed over those bytes."""
        headers = {
            "content-type": "application/json",
            "content-encoding": "gzip",
            "user-agent": f"logbeacon-python/{__version__}",
        }
        if self.ingest_key:
            headers["authorization"] = f"Bearer {self.ingest_key}"
        if self.hmac_secret:
            headers.update(signing.sign(body, self.hmac_secret))
        return headers

    @staticmethod
    def envelope(lines: Sequence[bytes]) -> bytes:
        """The JSON body: `{"sent_at", "nonce", "events": [...]}`.

        The nonce makes every attempt a different request, so a retry of the same batch
        within the same second never looks like a replay to a server that refuses replayed
        signatures; a captured request replayed by someone else still does.
        """
        head = f'{{"sent_at":"{utc_now()}","nonce":"{secrets.token_hex(8)}","events":['
        return head.encode("ascii") + b",".join(lines) + b"]}"

    def send(self, lines: Sequence[bytes]) -> SendResult:
        """One POST (more if the server asks for a split); never raises for the network."""
        return self.send_parts([list(lines)])

    def send_parts(self, parts: Sequence[list[bytes]]) -> SendResult:
        """Send parts left by an earlier split as they are, so a part that was too large
        together is never re-sent whole; after a retryable failure the rest waits too."""
        result = SendResult()
        for part in parts:
            if part:
                self._send(part, result)
        return result

    def _send(self, lines: list[bytes], result: SendResult) -> None:
        if result.retry:
            # The server just failed another part of this batch: don't hammer it, queue this
            # part for the same retry.
            result.retry.append(lines)
            return
        body = gzip.compress(self.envelope(lines), 6, mtime=0)
        result.requests += 1
        try:
            status, headers, reply = self.transport(body, self.headers(body))
        except Exception as exc:
            result.retry.append(lines)
            result.error = type(exc).__name__
            return
        if 200 <= status < 300:
            self._accepted(lines, reply, result)
            return
        if status in _SPLITTABLE:
            reason = _SPLITTABLE[status]
            if len(lines) == 1:
                result.dropped[reason] += 1
                self.notices.once(
                    f"http:{status}",
                    "logbeacon shipper: the server answered %s to a single event; it is "
                    "dropped (counted as %r) and never resent",
                    status,
                    reason,
                )
                return
            middle = len(lines) // 2
            self._send(lines[:middle], result)
            self._send(lines[middle:], result)
            return
        lowered = {k.lower(): v for k, v in headers.items()}
        if status in _RETRYABLE or (500 <= status < 600 and status != 501):
            delay = parse_retry_after(lowered.get("retry-after"))
            if status == 429 and delay is None:
                delay = DEFAULT_RETRY_AFTER
            if delay is not None:
                result.retry_after = max(result.retry_after or 0.0, delay)
            result.retry.append(lines)
            result.error = f"HTTP {status}"
            return
        reason = {401: "unauthorized", 403: "forbidden"}.get(status, f"http_{status}")
        result.dropped[reason] += len(lines)
        hint = (
            " (check ingest_key / hmac_secret against the server's LOGBEACON_INGEST_KEYS / "
            "LOGBEACON_HMAC_SECRETS)"
            if status in (401, 403)
            else ""
        )
        self.notices.once(
            f"http:{status}",
            "logbeacon shipper: the server answered %s; that batch is dropped and counted as %r%s",
            status,
            reason,
            hint,
        )

    def _accepted(self, lines: list[bytes], reply: bytes, result: SendResult) -> None:
        rejected: dict[int, str] = {}
        duplicates = 0
        try:
            answer = decode(reply) if reply else {}
        except ValueError:
            answer = {}
        if isinstance(answer, dict):
            for item in answer.get("rejected") or ():
                if isinstance(item, dict) and isinstance(item.get("index"), int):
                    index = item["index"]
                    if 0 <= index < len(lines):
                        rejected[index] = str(item.get("reason") or "rejected")[:64]
            dup = answer.get("duplicates")
            if isinstance(dup, int) and dup >= 0:
                duplicates = dup
        delivered = len(lines) - len(rejected)
        result.delivered += delivered
        result.duplicates += min(duplicates, delivered)
        for reason in rejected.values():
            result.rejected[reason] += 1
            self.notices.once(
                f"rejected:{reason}",
                "logbeacon shipper: the server rejected events (reason %r); they are not "
                "retried (further ones are only counted)",
                reason,
            )


class Backoff:
    """Exponential backoff with full jitter; a server-given delay wins over the formula."""

    def __init__(self, base: float, cap: float, rng: random.Random) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng
        self.failures = 0

    def next_delay(self, server_delay: float | None = None) -> float:
        self.failures += 1
        if server_delay is not None:
            # Honoured, but never as a hot loop: "Retry-After: 0" still waits a little.
            return min(max(server_delay, self.base / 2), MAX_RETRY_AFTER)
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 32))
        return self.rng.uniform(ceiling / 20, ceiling)

    def reset(self) -> None:
        self.failures = 0


# --------------------------------------------------------------------------- the shipper


@dataclass(frozen=True, slots=True)
class ShipperStats:
    """Counters since the shipper started (in a forked child: since the fork).

    Accounting identity once queue and flight are empty:
    `emitted + reports == delivered + sum(rejected) + sum(dropped) + spooled_pending`, where
    `spooled_pending` are events this process wrote to the spool and nobody sent yet.
    """

    emitted: int
    delivered: int
    duplicates: int
    rejected: dict[str, int]
    dropped: dict[str, int]
    spooled: int
    queued: int
    in_flight: int
    reports: int
    requests: int
    spool_error: str | None


@dataclass(slots=True)
class _Job:
    """A batch taken from the queue or the spool, until it is settled."""

    parts: list[list[bytes]]
    first_seq: int | None
    segment: Segment | None = None
    started: float = 0.0

    @property
    def count(self) -> int:
        return sum(len(part) for part in self.parts)


_instances: weakref.WeakSet[Shipper] = weakref.WeakSet()


def _reset_all_in_child() -> None:
    for shipper in list(_instances):
        shipper._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_all_in_child)


class Shipper:
    """A `Sink` that ships events to a logbeacon server in the background.

    `emit` costs a lock and a deque append; `flush(timeout)` waits for what is queued now;
    `close(timeout)` flushes, spools or counts what is left, and stops the thread.
    """

    def __init__(
        self,
        url: str,
        *,
        ingest_key: str | None = None,
        hmac_secret: str | bytes | None = None,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        timeout: float = 5.0,
        spool_dir: str | os.PathLike[str] | None = None,
        transport: Transport | None = None,
        max_queue_bytes: int = 32 * 1024 * 1024,
        max_batch_bytes: int = 512 * 1024,
        spool_max_bytes: int = DEFAULT_SPOOL_BYTES,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        retry_budget: float = 900.0,
        report_interval: float = 10.0,
        base_fields: Mapping[str, Any] | None = None,
    ) -> None:
        if queue_size < 1:
            raise ConfigError(f"ship_queue_size must be at least 1, got {queue_size}")
        if not 1 <= batch_size <= 1000:
            raise ConfigError(f"batch_size must be 1..1000 (the server's limit), got {batch_size}")
        if flush_interval <= 0 or timeout <= 0:
            raise ConfigError("flush_interval and timeout must be positive seconds")
        self.name = "shipper"
        self.url = ingest_url(url)
        http_transport = HttpTransport(url, timeout) if transport is None else None
        self._http = http_transport
        self._notices = _Notices()
        self._sender = BatchSender(
            transport or http_transport,  # type: ignore[arg-type]
            ingest_key=ingest_key,
            hmac_secret=hmac_secret,
            notices=self._notices,
        )
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue_bytes = max_queue_bytes
        self.max_batch_bytes = max_batch_bytes
        self.retry_budget = retry_budget
        self.report_interval = report_interval
        self._base_fields = dict(base_fields or {})
        self._rng = random.Random()
        self._backoff = Backoff(backoff_base, backoff_cap, self._rng)
        self._spool = Spool(Path(spool_dir), spool_max_bytes) if spool_dir is not None else None
        self._init_state()
        _instances.add(self)
        if self._spool is not None and self._spool.has_pending():
            # Segments from an earlier run: send them without waiting for a first event.
            self._spool_pending = True
            with self._cond:
                self._ensure_thread()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[bytes] = deque()
        self._queue_bytes = 0
        self._queued_reports = 0
        self._seq_in = 0
        self._flush_target = 0
        self._job: _Job | None = None
        self._next_attempt = 0.0
        self._server_delay = False
        self._oldest_at = 0.0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._close_deadline = math.inf
        self._spool_pending = False
        self._spool_checked = time.monotonic()
        self._last_report = time.monotonic()
        self._unreported: Counter[str] = Counter()
        self._emitted = 0
        self._delivered = 0
        self._duplicates = 0
        self._rejected: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._spooled = 0
        self._report_count = 0
        self._requests = 0

    def _after_fork_in_child(self) -> None:
        """Fresh locks, an empty queue and no thread: the parent still owns what it queued."""
        job = self._job
        closed = self._closed
        self._init_state()
        self._closed = closed
        self._closing = closed
        if job is not None and job.segment is not None:
            # The inherited descriptor would keep the parent's claim on the segment alive.
            with contextlib.suppress(OSError):
                os.close(job.segment.fd)
        if self._http is not None:
            self._http.reset()
        if self._spool is not None:
            self._spool.after_fork()
            self._spool_pending = self._spool.has_pending()
        self._notices.reset()
        self._rng.seed()

    # ------------------------------------------------------------------ Sink API

    def emit(self, event: Mapping[str, Any], line: bytes) -> None:
        """Queue one event; never blocks on the network and never raises for a full queue."""
        if getattr(_active, "flag", False):
            return  # logged from inside the shipper (its thread, or a re-entrant call)
        if "event_id" not in event:
            line = encode({**event, "event_id": new_event_id()})
        elif line.endswith(b"\n"):
            line = line.rstrip(b"\r\n")
        with self._cond:
            if self._closing:
                self._dropped["closed"] += 1
                return
            if self._thread is None:
                self._ensure_thread()
            self._emitted += 1
            self._enqueue_locked(line)

    def _enqueue_locked(self, line: bytes) -> None:
        queue = self._queue
        if not queue:
            self._oldest_at = time.monotonic()  # a partial batch waits flush_interval from here
        queue.append(line)
        self._seq_in += 1
        self._queue_bytes += len(line)
        reports = self._queued_reports
        while len(queue) - reports > self.queue_size or (
            self._queue_bytes > self.max_queue_bytes and len(queue) - reports > 1
        ):
            # Oldest first, but never a drop report (they wait at the head of the queue).
            if reports:
                dropped = queue[reports]
                del queue[reports]
            else:
                dropped = queue.popleft()
            self._queue_bytes -= len(dropped)
            self._dropped["queue_overflow"] += 1
            self._unreported["queue_overflow"] += 1
        if len(queue) == self.batch_size:
            self._cond.notify_all()

    def _enqueue_report_locked(self, line: bytes) -> None:
        """Drop reports go first and outside the bound: reporting a drop must not cause one."""
        if not self._queue:
            self._oldest_at = time.monotonic()
        self._queue.appendleft(line)
        self._queued_reports += 1
        self._seq_in += 1
        self._queue_bytes += len(line)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is delivered, finally rejected,
        dropped and counted, or written to the spool; False if `timeout` ran out first.

        Drops counted so far are reported (`events_dropped`) as part of the same flush.
        """
        if getattr(_active, "flag", False):
            return False  # the shipper's own thread cannot wait for itself
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            self._make_reports_locked(time.monotonic(), force=True)
            target = self._seq_in
            if self._oldest_unsettled() >= target:
                return True
            if self._thread is None and not self._ensure_thread():
                return False
            self._flush_target = max(self._flush_target, target)
            if not self._server_delay:
                self._next_attempt = min(self._next_attempt, time.monotonic())
            self._cond.notify_all()
            while self._oldest_unsettled() < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._thread is not None and not self._thread.is_alive()):
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within `timeout`, spool or count the rest, stop.

        Idempotent; `emit` after close is counted as dropped (`closed`).
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._make_reports_locked(time.monotonic(), force=True)
            self._close_deadline = deadline
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._cond:
            self._closed = True
            leftover = self._take_all_locked()
        self._spool_or_drop(leftover, "shutdown")
        if self._http is not None:
            self._http.reset()

    def stats(self) -> ShipperStats:
        with self._cond:
            job = self._job
            return ShipperStats(
                emitted=self._emitted,
                delivered=self._delivered,
                duplicates=self._duplicates,
                rejected=dict(self._rejected),
                dropped=dict(self._dropped),
                spooled=self._spooled,
                queued=len(self._queue),
                in_flight=job.count if job is not None and job.segment is None else 0,
                reports=self._report_count,
                requests=self._requests,
                spool_error=self._spool.error if self._spool is not None else None,
            )

    # ------------------------------------------------------------------ internals

    def _ensure_thread(self) -> bool:
        """Start the worker (caller holds the lock); False at interpreter shutdown."""
        if self._thread is not None:
            return True
        thread = threading.Thread(target=self._run, name="logbeacon-shipper", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            return False  # "can't create new thread at interpreter shutdown"
        self._thread = thread
        return True

    def _oldest_unsettled(self) -> int:
        job = self._job
        if job is not None and job.first_seq is not None:
            return job.first_seq
        return self._seq_in - len(self._queue)

    def _take_batch_locked(self) -> _Job | None:
        first = self._seq_in - len(self._queue)
        queue = self._queue
        lines: list[bytes] = []
        size = 0
        while queue and len(lines) < self.batch_size:
            if lines and size + len(queue[0]) > self.max_batch_bytes:
                break
            line = queue.popleft()
            size += len(line)
            lines.append(line)
        self._queue_bytes -= size
        self._queued_reports -= min(self._queued_reports, len(lines))
        if queue:
            self._oldest_at = time.monotonic()
        if not lines:
            return None
        return _Job([lines], first, started=time.monotonic())

    def _take_all_locked(self) -> list[bytes]:
        lines: list[bytes] = []
        job = self._job
        if job is not None and job.segment is None:
            for part in job.parts:
                lines.extend(part)
            self._job = None
        lines.extend(self._queue)
        self._queue.clear()
        self._queue_bytes = 0
        self._queued_reports = 0
        self._cond.notify_all()
        return lines

    def _spool_or_drop(self, lines: list[bytes], reason: str) -> None:
        if not lines:
            return
        for start in range(0, len(lines), self.batch_size):
            chunk = lines[start : start + self.batch_size]
            if self._write_spool(chunk):
                continue
            with self._cond:
                self._dropped[reason] += len(chunk)

    def _write_spool(self, lines: list[bytes]) -> bool:
        if self._spool is None or not self._spool.enabled:
            return False
        written, evicted = self._spool.write(lines)
        with self._cond:
            if evicted:
                self._dropped["spool_full"] += evicted
                self._unreported["spool_full"] += evicted
            if written:
                self._spooled += len(lines)
                self._spool_pending = True
        if not written:
            self._notices.once(
                "spool",
                "logbeacon shipper: the spool directory cannot be written (%s); spooling is "
                "off for this process and undelivered events stay in memory",
                self._spool.error,
            )
        return written

    def _make_reports_locked(self, now: float, *, force: bool = False) -> None:
        """Queue one `events_dropped` warning per reason dropped since the last report."""
        if not self._unreported or self._queued_reports >= _MAX_QUEUED_REPORTS:
            return  # still counted in _unreported, and reported once the queue moves
        if not force and now - self._last_report < self.report_interval:
            return
        self._last_report = now
        pending = sorted(self._unreported.items())
        self._unreported.clear()
        for reason, count in pending:
            event = {
                "timestamp": utc_now(),
                "level": "warn",
                **self._base_fields,
                "event": "events_dropped",
                "message": f"logbeacon dropped {count} events ({reason})",
                "count": count,
                "reason": reason,
                "logger": "logbeacon.shipper",
                "event_id": new_event_id(),
            }
            self._report_count += 1
            self._enqueue_report_locked(encode(event))

    def _run(self) -> None:
        _active.flag = True
        while True:
            try:
                if not self._cycle():
                    return
            except Exception as exc:
                report("shipper", exc)  # re-raises under the test suite
                with self._cond:
                    self._cond.wait(1.0)

    def _cycle(self) -> bool:
        """Do one unit of work; False when the thread should end."""
        with self._cond:
            action = self._decide_locked()
            if action == "finish":
                leftover = self._take_all_locked()
                self._closed = True
            elif action in ("send", "to_spool"):
                self._job = self._take_batch_locked()
        if action == "finish":
            self._spool_or_drop(leftover, "shutdown")
            return False
        if action == "to_spool":
            self._spool_job()
        elif action in {"send", "retry"}:
            self._attempt()
        elif action == "spool_send":
            self._send_segment()
        return True

    def _decide_locked(self) -> str:
        """Wait (holding the condition) until there is something to do, and name it."""
        while True:
            now = time.monotonic()
            self._make_reports_locked(now)
            closing = self._closing
            if closing and now >= self._close_deadline:
                return "finish"
            waiting_on_server = now < self._next_attempt
            if (
                self._spool is not None
                and not self._spool_pending
                and self._job is None
                and now - self._spool_checked > _SPOOL_RESCAN_S
            ):
                self._spool_checked = now
                self._spool_pending = self._spool.has_pending()
            spool_on = self._spool is not None and self._spool.enabled
            has_queue = bool(self._queue)
            if self._job is not None:
                if not waiting_on_server:
                    return "retry"
                if closing and self._next_attempt > self._close_deadline:
                    return "finish"
                wait = self._next_attempt - now
            elif waiting_on_server:
                if has_queue and spool_on:
                    return "to_spool"
                if closing and (self._next_attempt > self._close_deadline or not has_queue):
                    return "finish"
                wait = self._next_attempt - now
            elif self._spool_pending and not (closing and has_queue):
                # Oldest first, except at shutdown: memory is lost on exit, segments are not.
                return "spool_send"
            elif has_queue:
                full = (
                    len(self._queue) >= self.batch_size or self._queue_bytes >= self.max_batch_bytes
                )
                flushing = self._flush_target > self._oldest_unsettled()
                due = self._oldest_at + self.flush_interval
                if full or flushing or closing or now >= due:
                    return "send"
                wait = due - now
            else:
                if closing:
                    return "finish"
                wait = self.flush_interval
            if self._unreported:
                wait = min(wait, max(self._last_report + self.report_interval - now, 0.01))
            if closing:
                wait = min(wait, max(self._close_deadline - now, 0.0))
            self._cond.wait(min(max(wait, 0.001), self.flush_interval))

    def _settle(self, result: SendResult) -> None:
        """Fold one attempt's final outcomes into the counters (caller holds the lock)."""
        self._requests += result.requests
        self._delivered += result.delivered
        self._duplicates += result.duplicates
        self._rejected.update(result.rejected)
        self._dropped.update(result.dropped)
        for reason, count in result.dropped.items():
            if reason not in ("unauthorized", "forbidden"):
                self._unreported[reason] += count

    def _retry_later_locked(self, result: SendResult) -> None:
        self._server_delay = result.retry_after is not None
        self._next_attempt = time.monotonic() + self._backoff.next_delay(result.retry_after)
        self._notices.once(
            "retrying",
            "logbeacon shipper: %s did not take events (%s); retrying with backoff (this is "
            "said once)",
            self.url,
            result.error,
        )

    def _attempt(self) -> None:
        job = self._job
        assert job is not None
        result = self._sender.send_parts(job.parts)
        spool_it = False
        with self._cond:
            self._settle(result)
            if result.finished:
                self._job = None
                self._notices.forget("retrying")
                self._backoff.reset()
                self._next_attempt = 0.0
                self._server_delay = False
            else:
                job.parts = result.retry
                self._retry_later_locked(result)
                if self._spool is not None and self._spool.enabled:
                    spool_it = True
                elif time.monotonic() - job.started > self.retry_budget:
                    self._job = None
                    lost = job.count
                    self._dropped["retry_exhausted"] += lost
                    self._unreported["retry_exhausted"] += lost
            self._cond.notify_all()
        if spool_it:
            self._spool_job()

    def _spool_job(self) -> None:
        """Move the current in-memory job to the spool; it stays in memory if that fails."""
        job = self._job
        if job is None:
            return
        written = all(self._write_spool(part) for part in job.parts)
        with self._cond:
            if written:
                self._job = None
            self._cond.notify_all()

    def _send_segment(self) -> None:
        assert self._spool is not None
        segment, lines, corrupt = self._spool.claim_oldest()
        with self._cond:
            if corrupt:
                self._dropped["spool_corrupt"] += corrupt
                self._unreported["spool_corrupt"] += corrupt
            if segment is None:
                self._spool_pending = False
                self._spool_checked = time.monotonic()
                return
        result = self._sender.send(lines)
        with self._cond:
            self._settle(result)
            if result.finished:
                self._backoff.reset()
                self._next_attempt = 0.0
                self._server_delay = False
            else:
                self._retry_later_locked(result)
            self._cond.notify_all()
        if result.finished:
            self._spool.release(segment, delete=True)
            return
        if sum(len(part) for part in result.retry) == len(lines):
            self._spool.release(segment, delete=False)
            return
        # Part of it went through: keep only the rest, as new segments, before the old goes.
        if all(self._write_spool(part) for part in result.retry):
            with self._cond:
                self._spooled -= sum(len(part) for part in result.retry)
            self._spool.release(segment, delete=True)
        else:
            self._spool.release(segment, delete=False)
