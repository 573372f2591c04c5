"""Ingest and query benchmark of `logbeacon serve` over real HTTP on 127.0.0.1.

Run from the repository root::

    .venv/bin/python bench/ingest.py              # full run, writes bench/results/ingest.md
    .venv/bin/python bench/ingest.py --quick      # smoke run (< 1 minute), prints only

One run measures three servers, each a real subprocess under uvicorn on a free loopback port
(one worker, no access log, uvloop + httptools where installed — the same for all three):

- **logbeacon** — `logbeacon serve` on a fresh data dir (open loopback ingestion, default
  durability: WAL + synchronous=NORMAL), with `--rate`/`--burst` far above the offered load;
- **naive schema** — logbeacon's own app (`create_app`) over `bench/_naive_server.py`'s
  `NaiveStore`: one row per event with its JSON, five secondary indexes, an FTS5 table over
  `message`, `executemany` and one commit per request, WAL + synchronous=NORMAL. Same HTTP
  stack, parsing, validation and redaction, so only the storage design differs;
- **seed design** — `bench/_seed_server.py`, the back end plan 000 describes
  (`BaseHTTPMiddleware`, pydantic validation per event, one JSON line per event through a
  `logging.FileHandler`; nothing is indexed or queryable).

For each server and scenario (batches of 100 events; single-event POSTs), `--concurrency`
(32) keep-alive connections post pre-serialised bodies as fast as answers come back, for
`--duration` seconds after a warm-up. The bodies carry new events in time order, as a live
application sends them: enough are built that no body is sent twice in a run (until
2026-12-07 the run cycled through 400 batch bodies, sending each event about ten times with
the same timestamp). This repeats `--repeats` times (a fresh server each time, servers
interleaved) and the median is reported. Every answer is checked: non-2xx
statuses and 2xx answers that did not accept every event are counted and reported. The load
generator is a minimal HTTP/1.1 client on raw asyncio streams (uvloop) in this process: on a
2-core machine it shares the CPU with the server under test, so it must cost as little as
possible (httpx spent over ten times more CPU per request in a check on this machine).
Because other processes may share the machine, the server's CPU time per event (per request
for single events) is reported next to the rates, with the cores the load generator, other
processes and the hypervisor (steal) took during each run.

The query part fills a store of `--events` events (1,000,000 by default; realistic traces,
sessions, LangGraph runs, 5 % errors, rare words; normalised as the server would) **in
process** through `SqliteStore.append` in batches of 1,000, then starts `logbeacon serve` on
that data dir and times `--samples` requests of each kind through the HTTP API, one at a time
(after one warm-up round). "Errors by service and event over an hour" has no endpoint of its
own, so it is measured as the closest HTTP query (`GET /v1/logs?level=error&since=1h
&limit=1000`), as the grouped SQL run in-process on the store's file, and — when the server
answers them — through `GET /v1/errors?since=1h` and `GET /v1/analysis?since=1h`. Bytes per
event (database + WAL after a checkpoint) are measured on that store and on the same events
in `NaiveStore`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import hashlib
import itertools
import os
import platform
import random
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
import orjson
import psutil

from logbeacon.event import format_timestamp, normalize_event
from logbeacon.store.base import Query
from logbeacon.store.sqlite import SqliteStore

HERE: Final = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _naive_server import NaiveStore  # noqa: E402 - a sibling script, not a package

Event = dict[str, Any]
T = TypeVar("T")

SERVERS: Final = ("logbeacon", "naive", "seed")
TITLES: Final = {"logbeacon": "logbeacon", "naive": "naive schema", "seed": "seed design"}
STARTUP_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 30.0
HIGH_RATE: Final = "1000000000"  # events/s and burst: far above anything offered here

SERVICES: Final = ("api", "web", "langgraph")
API_EVENTS: Final = ("http_request", "db_query", "cache_miss", "auth_check")
WEB_EVENTS: Final = ("page_view", "network_error", "window_error", "fetch_failed")
GRAPH_EVENTS: Final = ("node_start", "node_complete", "llm_start", "llm_complete", "tool_start")
NODES: Final = ("planner", "researcher", "developer", "reviewer", "writer")
ROUTES: Final = ("/api/v1/items/{id}", "/api/v1/users/{id}", "/api/v1/search", "/api/v1/runs")
ERRORS: Final = (
    ("TimeoutError", "upstream timed out after {n}s", "timeout"),
    ("ConnectionError", "connection refused by db-{n}.internal", "network"),
    ("RateLimitError", "provider returned 429, retry in {n}s", "rate_limit"),
    ("ValueError", "invalid literal for int() with base 10: 'x{n}'", "validation"),
)
WORDS: Final = [
    "handled",
    "request",
    "for",
    "user",
    "item",
    "cache",
    "query",
    "graph",
    "step",
    "token",
    "model",
    "tool",
    "result",
    "checkout",
    "payment",
    "session",
    "upstream",
    "retry",
]
# One bug per (error type, service), as the SDK's error analysis would fingerprint them.
FINGERPRINTS: Final = {
    (kind, service): hashlib.blake2b(f"{kind}:{service}".encode(), digest_size=8).hexdigest()
    for kind, _, _ in ERRORS
    for service in SERVICES
}
RARE_EVERY: Final = 997  # one event in ~1000 carries a rare word shared by ~10 events
STORE_SPAN: Final = 3 * 86_400.0  # the query store covers the last three days

TARGETS: Final = {
    "batch_vs_naive": 2.5,
    "batch_vs_seed": 1.0,
    "single_vs_seed": 3.0,
    "trace_p99": 5.0,
    "fts_p50": 5.0,
    "filtered_p99": 20.0,
    "grouped": 20.0,
    "bytes": 600.0,
}


# --------------------------------------------------------------------------- events


def rare_word(index: int) -> str:
    return f"zebra{index:05d}quux"


def make_events(
    count: int, seed: int, *, start: float, end: float, rare_words: int = 0
) -> Iterator[Event]:
    """Events as an application sends them, oldest first, spread evenly over [start, end).

    11-13 top-level fields: timestamp, level, service, environment, release, event, message,
    session_id, request_id, trace_id, plus node + duration_ms (LangGraph), an `http` object
    (API) or component (web), and an `error` object on errors. Traces hold 6-14 events of one
    service. With `rare_words`, one event in ~1000 carries one of that many rare words.
    """
    rnd = random.Random(seed)
    step = (end - start) / max(1, count)
    sessions = [f"sess-{rnd.getrandbits(48):012x}" for _ in range(max(50, count // 2000))]
    left = 0
    trace = request = session = service = ""
    for i in range(count):
        if left == 0:
            left = rnd.randint(6, 14)
            trace = f"{rnd.getrandbits(128):032x}"
            request = f"req-{rnd.getrandbits(48):012x}"
            session = rnd.choice(sessions)
            service = rnd.choice(SERVICES)
        left -= 1
        level = rnd.choices(("debug", "info", "warn", "error"), (8, 77, 10, 5))[0]
        words = " ".join(rnd.choices(WORDS, k=4))
        if rare_words and i % RARE_EVERY == 0:
            words += " " + rare_word(rnd.randrange(rare_words))
        event: Event = {
            "timestamp": format_timestamp(start + i * step + rnd.random() * step),
            "level": level,
            "service": service,
            "environment": "prod",
            "release": "2.3.1",
            "event": "",
            "message": f"{words} in {rnd.randrange(2000)} ms",
            "session_id": session,
            "request_id": request,
            "trace_id": trace,
        }
        if service == "langgraph":
            event["event"] = rnd.choice(GRAPH_EVENTS)
            event["node"] = rnd.choice(NODES)
            event["duration_ms"] = round(rnd.random() * 4000, 1)
        elif service == "api":
            event["event"] = rnd.choice(API_EVENTS)
            event["http"] = {
                "method": rnd.choice(("GET", "POST")),
                "route": rnd.choice(ROUTES),
                "status": 500 if level == "error" else 200,
                "duration_ms": round(rnd.random() * 300, 2),
            }
        else:
            event["event"] = rnd.choice(WEB_EVENTS)
            event["component"] = rnd.choice(("Chat", "RunList", "Settings"))
        if level == "error":
            kind, text, category = rnd.choice(ERRORS)
            event["error"] = {
                "type": kind,
                "message": text.format(n=rnd.randrange(60)),
                "category": category,
                "fingerprint": FINGERPRINTS[kind, service],
            }
        yield event


# --------------------------------------------------------------------------- HTTP client


class ProtocolError(Exception):
    """The server answered something this minimal HTTP/1.1 client cannot read."""


class Connection:
    """One keep-alive HTTP/1.1 connection sending pre-built requests, one at a time.

    httpx spends several times more CPU per request than this, and on a 2-core machine the
    load generator's CPU is taken from the server being measured.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(reader, writer)

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one request; return (status, body)."""
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            raise ProtocolError(f"not an HTTP/1.1 answer: {head[:40]!r}")
        status = int(head[9:12])
        lower = head.lower()
        pos = lower.find(b"\r\ncontent-length:")
        if pos >= 0:
            end = lower.index(b"\r\n", pos + 2)
            body = await self.reader.readexactly(int(lower[pos + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            body = await self.reader.read()
            self.closed = True
        if b"\r\nconnection: close" in lower:
            self.closed = True
        return status, body

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        self.closed = True
        self.writer.close()


def post_request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /v1/logs HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get_request(port: int, target: str, token: str) -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {token}\r\n\r\n"
    ).encode()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed: the load generator should cost as little CPU as it can."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """One server subprocess on a loopback port; stopped by PID."""

    kind: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def read_token(self) -> str:
        return (self.data_dir / "read_token").read_text().strip()

    def stop(self) -> None:
        """SIGTERM (graceful: logbeacon checkpoints its WAL), SIGKILL if it hangs."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(kind: str, port: int, data_dir: Path) -> list[str]:
    python = sys.executable
    if kind == "logbeacon":
        script = Path(python).with_name("logbeacon")
        base = [str(script)] if script.exists() else [python, "-m", "logbeacon.cli.main"]
        return [
            *base,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--rate",
            HIGH_RATE,
            "--burst",
            HIGH_RATE,
            "--no-stdout",
        ]
    script = HERE / ("_naive_server.py" if kind == "naive" else "_seed_server.py")
    return [python, str(script), "--port", str(port), "--data-dir", str(data_dir)]


def start_server(kind: str, work: Path, data_dir: Path | None = None) -> Server:
    """Start a server and wait until `/v1/logs/health` answers 200."""
    port = free_port()
    data = data_dir or work / f"{kind}-{port}"
    log_path = work / f"{kind}-{port}.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOGBEACON_")
        and k not in ("ENVIRONMENT", "LOG_INGEST_HMAC_SECRET", "LOG_DIAGNOSTIC_SECRET")
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            server_command(kind, port, data), stdout=log, stderr=log, env=env, cwd=work
        )
    server = Server(kind, port, data, proc, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{kind} server exited with {proc.returncode}:\n{server.output()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/v1/logs/health", timeout=2.0).status_code == 200:
                    return server
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server not healthy in time:\n{server.output()}")
            time.sleep(0.05)
    except BaseException:
        server.stop()
        raise


# --------------------------------------------------------------------------- throughput


@dataclass
class LoadResult:
    """One scenario against one server: what was answered inside the measured window."""

    seconds: float
    requests: int = 0
    events: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    short: int = 0  # 2xx answers that did not accept every event sent
    errors: int = 0  # connection or protocol failures
    server_cpu: float = 0.0  # cores used by the server process
    client_cpu: float = 0.0  # cores used by this process
    other_cpu: float = 0.0  # cores used by every other process on the machine
    steal: float = 0.0  # cores the hypervisor took away

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        """Server CPU time per accepted event: what a busy shared machine distorts least."""
        return self.server_cpu * self.seconds / max(1, self.events) * 1e6

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu * self.seconds / max(1, self.requests) * 1e6

    @property
    def failures(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300) + (
            self.short + self.errors
        )


async def run_load(
    port: int,
    pid: int,
    requests: Sequence[bytes],
    per_request: int,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
) -> LoadResult:
    """`concurrency` connections, each sending its next request as soon as the last answered."""
    result = LoadResult(seconds=duration)
    feed = itertools.cycle(requests)
    connections = [await Connection.open(port) for _ in range(concurrency)]
    began = time.perf_counter()
    window = began + warmup
    end = window + duration
    process = psutil.Process(pid)

    async def worker(conn: Connection) -> None:
        while True:
            sent = time.perf_counter()
            if sent >= end:
                return
            try:
                status, body = await conn.request(next(feed))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError):
                result.errors += 1
                conn.close()
                conn = await Connection.open(port)
                continue
            done = time.perf_counter()
            if conn.closed:
                conn = await Connection.open(port)
            if sent < window or done > end:
                continue
            result.requests += 1
            result.statuses[status] += 1
            result.latencies.append(done - sent)
            if 200 <= status < 300:
                accepted = orjson.loads(body).get("accepted")
                if accepted == per_request:
                    result.events += per_request
                else:
                    result.short += 1

    async def meter() -> None:
        await asyncio.sleep(max(0.0, window - time.perf_counter()))
        server0, client0, busy0 = server_seconds(), time.process_time(), busy_seconds()
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        result.server_cpu = (server_seconds() - server0) / duration
        result.client_cpu = (time.process_time() - client0) / duration
        busy1 = busy_seconds()
        busy = (busy1[0] - busy0[0]) / duration
        result.other_cpu = max(0.0, busy - result.server_cpu - result.client_cpu)
        result.steal = (busy1[1] - busy0[1]) / duration

    def server_seconds() -> float:
        """CPU of the server and its child processes (logbeacon's SQLite writer process)."""
        times = process.cpu_times()
        total = float(times.user + times.system)
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                total += float(child_times.user + child_times.system)
        return total

    try:
        await asyncio.gather(meter(), *(worker(conn) for conn in connections))
    finally:
        for conn in connections:
            conn.close()
    return result


def busy_seconds() -> tuple[float, float]:
    """CPU seconds all cores spent running something so far, and seconds the hypervisor stole.

    Steal is time this virtual machine wanted a core and did not get one: on a shared host it
    slows every server alike, and it is reported apart from the other processes' CPU.
    """
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system
    busy += getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)
    return float(busy), float(getattr(times, "steal", 0.0))


def throughput_bodies(seed: int, batches: int, singles: int) -> tuple[list[bytes], list[bytes]]:
    """Pre-serialised bodies: `batches` lists of 100 events and `singles` single events.

    Each pool is in time order, one event about every millisecond of the last ten minutes,
    and the load generator sends its bodies in order: like a live application's stream,
    every event is new and the timestamps advance (32 clients interleave them only within a
    few bodies). No event carries an `event_id`, so should a run outlast its pool the bodies
    are sent again without being duplicates (the server gives every event its own id).
    """
    now = time.time()
    batch_pool = make_events(batches * 100, seed, start=now - 600, end=now - 1)
    batch_bodies = [orjson.dumps(list(itertools.islice(batch_pool, 100))) for _ in range(batches)]
    single_pool = make_events(singles, seed + 1, start=now - 600, end=now - 1)
    single_bodies = [orjson.dumps(event) for event in single_pool]
    return batch_bodies, single_bodies


# The most any server reached here, with headroom: a run should not need to repeat a body.
_PEAK_EVENTS_PER_S: Final = 25_000
_PEAK_SINGLE_PER_S: Final = 3_000

SCENARIOS: Final = (("batch", 100), ("single", 1))


def measure_throughput(
    args: argparse.Namespace, work: Path
) -> dict[tuple[str, str], list[LoadResult]]:
    seconds = args.warmup + args.duration
    batch_bodies, single_bodies = throughput_bodies(
        args.seed,
        max(100, int(_PEAK_EVENTS_PER_S * seconds / 100)),
        max(1000, int(_PEAK_SINGLE_PER_S * seconds)),
    )
    bodies = {"batch": batch_bodies, "single": single_bodies}
    results: dict[tuple[str, str], list[LoadResult]] = collections.defaultdict(list)
    for repeat in range(args.repeats):
        for kind in SERVERS:
            server = start_server(kind, work)
            try:
                for scenario, per_request in SCENARIOS:
                    requests = [post_request(server.port, body) for body in bodies[scenario]]
                    result = run_async(
                        run_load(
                            server.port,
                            server.proc.pid,
                            requests,
                            per_request,
                            concurrency=args.concurrency,
                            duration=args.duration,
                            warmup=args.warmup,
                        )
                    )
                    results[kind, scenario].append(result)
                    p50, p99 = percentiles(result.latencies)
                    log(
                        f"[{repeat + 1}/{args.repeats}] {TITLES[kind]:>12} {scenario:>6}: "
                        f"{result.events_per_s:9,.0f} events/s {result.requests_per_s:8,.0f} req/s "
                        f"p50 {p50:6.1f} ms p99 {p99:6.1f} ms  server {result.server_cpu:.2f} "
                        f"cores, client {result.client_cpu:.2f}, others {result.other_cpu:.2f}, "
                        f"steal {result.steal:.2f}"
                        f"  failures {result.failures}"
                    )
            finally:
                server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)
    return results


# --------------------------------------------------------------------------- query store


@dataclass
class StoreBuild:
    """The in-process store for the query part and what the queries need to know about it."""

    data_dir: Path
    events: int
    seconds: float
    trace_ids: list[str]
    rare_words: list[str]
    ours_bytes: int
    naive_bytes: int
    naive_seconds: float


def file_bytes(path: Path) -> int:
    """Database + WAL after a checkpoint (the shm file is a fixed-size index of the WAL)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(
        os.path.getsize(f"{path}{suffix}")
        for suffix in ("", "-wal")
        if os.path.exists(f"{path}{suffix}")
    )


async def build_store(count: int, seed: int, work: Path, samples: int) -> StoreBuild:
    """Fill logbeacon's store (and the naive one, for its size) with the same events.

    Events are normalised exactly as the server does (`normalize_event` + `received_at`) and
    appended in batches of 1,000, generated chunk by chunk so a million never sit in memory.
    """
    data_dir = work / "query-store"
    rnd = random.Random(seed + 1)
    end = time.time() - 60
    rare_count = max(1, count // (RARE_EVERY * 10))
    ours = SqliteStore(data_dir / "events.db", retention_days=None)
    naive = NaiveStore(work / "naive-size" / "naive.db")
    await ours.open()
    await naive.open()
    trace_ids: list[str] = []
    words: set[str] = set()
    ours_seconds = naive_seconds = 0.0
    keep_every = max(1, count // (samples * 20))
    try:
        chunk: list[Event] = []
        source = make_events(count, seed, start=end - STORE_SPAN, end=end, rare_words=rare_count)
        for index, raw in enumerate(source):
            event = normalize_event(raw)
            event["received_at"] = event["timestamp"]
            chunk.append(event)
            if index % keep_every == 0:
                trace_ids.append(event["trace_id"])
            if "zebra" in event["message"]:
                words.update(w for w in event["message"].split() if w.startswith("zebra"))
            if len(chunk) == 1000 or index == count - 1:
                began = time.perf_counter()
                await ours.append(chunk)
                ours_seconds += time.perf_counter() - began
                began = time.perf_counter()
                await naive.append(chunk)
                naive_seconds += time.perf_counter() - began
                chunk = []
            if index % 200_000 == 199_999:
                log(f"  {index + 1:,} events stored")
    finally:
        await ours.close()
        await naive.close()
    rare = sorted(words)
    return StoreBuild(
        data_dir=data_dir,
        events=count,
        seconds=ours_seconds,
        trace_ids=rnd.sample(trace_ids, min(samples, len(trace_ids))),
        rare_words=[rnd.choice(rare) for _ in range(samples)] if rare else [],
        ours_bytes=file_bytes(data_dir / "events.db"),
        naive_bytes=file_bytes(work / "naive-size" / "naive.db"),
        naive_seconds=naive_seconds,
    )


GROUPED_SQL: Final = """
SELECT s.value, v.value, count(*)
FROM events AS e
LEFT JOIN names AS s ON s.code = e.svc
LEFT JOIN names AS v ON v.code = e.evt
WHERE e.id >= ? AND e.ts >= ? AND e.lvl >= 40
GROUP BY e.svc, e.evt
"""


def grouped_sql_timings(path: Path, runs: int) -> tuple[list[float], int, str | None]:
    """Error counts by (service, event) over the last hour, as SQL on the store's own file.

    This is what a grouping endpoint would run; it reads the store's internal schema (the
    time key `id = ts_micros << 10 | slot`, level numbers, the `names` dictionary), so a
    schema change is reported as "n/a" rather than crashing the run.
    """
    timings: list[float] = []
    groups = 0
    try:
        uri = f"file:{path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as conn:
            conn.execute("PRAGMA mmap_size = 268435456")
            for _ in range(2):  # the first round warms the page cache, like a running server
                timings.clear()
                for _ in range(runs):
                    since = round((time.time() - 3600) * 1_000_000)
                    began = time.perf_counter()
                    rows = conn.execute(GROUPED_SQL, (since << 10, since)).fetchall()
                    timings.append(time.perf_counter() - began)
                    groups = len(rows)
    except sqlite3.Error as exc:
        return [], 0, f"{type(exc).__name__}: {exc}"
    return timings, groups, None


async def store_grouping_timings(path: Path, runs: int) -> list[float]:
    """The same grouping through the Store protocol (paged `query`, counted in Python)."""
    store = SqliteStore(path, retention_days=None)
    await store.open()
    timings: list[float] = []
    try:
        for _ in range(2):
            timings.clear()
            for _ in range(runs):
                began = time.perf_counter()
                groups: collections.Counter[tuple[str, str]] = collections.Counter()
                cursor = None
                while True:
                    page = await store.query(
                        Query(level="error", since=time.time() - 3600, limit=1000, cursor=cursor)
                    )
                    groups.update((e["service"], e["event"]) for e in page.events)
                    if (cursor := page.next_cursor) is None:
                        break
                timings.append(time.perf_counter() - began)
    finally:
        await store.close()
    return timings


Check = Callable[[dict[str, Any]], bool]

OPTIONAL_QUERIES: Final = {
    "errors_groups": "/v1/errors?since=1h",
    "analysis": "/v1/analysis?since=1h",
}


def trace_check(trace_id: str) -> Check:
    return lambda doc: doc.get("trace_id") == trace_id and bool(doc.get("events"))


def page_check(at_least: int) -> Check:
    return lambda doc: len(doc.get("events", ())) >= at_least


def word_check(word: str) -> Check:
    return lambda doc: bool(doc.get("events")) and word in doc["events"][0].get("message", "")


@dataclass
class QueryTimings:
    latencies: dict[str, list[float]]
    counts: dict[str, float]  # average events per answer
    failures: dict[str, int]
    server_ms: dict[str, float] = field(default_factory=dict)  # mean server CPU per request
    other_cpu: float = 0.0  # cores other processes used while the queries ran


async def http_queries(
    port: int, pid: int, token: str, build: StoreBuild, samples: int
) -> QueryTimings:
    """Sequential GETs (one connection, one request at a time): latency, not throughput."""
    kinds: dict[str, list[tuple[str, Check]]] = {
        "trace": [(f"/v1/traces/{t}", trace_check(t)) for t in build.trace_ids],
        "filtered": [("/v1/logs?service=api&level=warn&limit=100", page_check(100))] * samples,
        "fts": [(f"/v1/logs?q={quote(w)}", word_check(w)) for w in build.rare_words],
        "errors_http": [("/v1/logs?level=error&since=1h&limit=1000", page_check(1))] * samples,
    }
    conn = await Connection.open(port)
    # Grouping endpoints other helpers may have added by the time this runs: measured when the
    # server answers them, named as missing otherwise.
    for name, target in OPTIONAL_QUERIES.items():
        status, _ = await conn.request(get_request(port, target, token))
        if status == 200:
            kinds[name] = [(target, lambda doc: isinstance(doc, dict) and bool(doc))] * samples
    out = QueryTimings({}, {}, {})
    server = psutil.Process(pid)
    began_at = time.perf_counter()
    busy0, server0, client0 = busy_seconds()[0], sum(server.cpu_times()[:2]), time.process_time()
    try:
        for name, calls in kinds.items():
            for _ in range(2):  # the first round warms the page cache
                timings: list[float] = []
                sizes: list[int] = []
                failures = 0
                cpu0 = sum(server.cpu_times()[:2])
                for target, check in calls:
                    data = get_request(port, target, token)
                    began = time.perf_counter()
                    status, body = await conn.request(data)
                    timings.append(time.perf_counter() - began)
                    doc = orjson.loads(body) if status == 200 else {}
                    if status != 200 or not check(doc):
                        failures += 1
                    sizes.append(len(doc.get("events", ())))
                    if conn.closed:
                        conn = await Connection.open(port)
            out.server_ms[name] = (sum(server.cpu_times()[:2]) - cpu0) / len(calls) * 1000
            out.latencies[name] = timings
            out.counts[name] = statistics.fmean(sizes) if sizes else 0.0
            out.failures[name] = failures
        elapsed = time.perf_counter() - began_at
        busy = busy_seconds()[0] - busy0
        mine = sum(server.cpu_times()[:2]) - server0 + time.process_time() - client0
        out.other_cpu = max(0.0, busy - mine) / elapsed
    finally:
        conn.close()
    return out


@dataclass
class QueryReport:
    build: StoreBuild
    http: QueryTimings
    grouped_sql: list[float]
    grouped_groups: int
    grouped_error: str | None
    grouped_store: list[float]


def measure_queries(args: argparse.Namespace, work: Path) -> QueryReport:
    log(f"query store: generating and storing {args.events:,} events in-process")
    build = run_async(build_store(args.events, args.seed, work, args.samples))
    log(
        f"  logbeacon store {build.events / build.seconds:,.0f} events/s in-process, "
        f"{build.ours_bytes / build.events:.0f} B/event; naive "
        f"{build.events / build.naive_seconds:,.0f} events/s, "
        f"{build.naive_bytes / build.events:.0f} B/event"
    )
    path = build.data_dir / "events.db"
    grouped, groups, error = grouped_sql_timings(path, args.samples)
    grouped_store = run_async(store_grouping_timings(path, max(20, args.samples // 4)))
    server = start_server("logbeacon", work, data_dir=build.data_dir)
    try:
        http = run_async(
            http_queries(server.port, server.proc.pid, server.read_token(), build, args.samples)
        )
    finally:
        server.stop()
    return QueryReport(build, http, grouped, groups, error, grouped_store)


# --------------------------------------------------------------------------- report


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds (nearest rank)."""
    if not samples:
        return float("nan"), float("nan")
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 * 1000, p99 * 1000


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def machine() -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    loops = []
    for module in ("uvloop", "httptools"):
        try:
            __import__(module)
            loops.append(module)
        except ImportError:
            pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- machine: `nproc` = {os.cpu_count()} ({cpu}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}; load average at start {load}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"uvicorn with {' + '.join(loops) or 'asyncio + h11'} (one worker per server)",
    ]


def median_of(results: Sequence[LoadResult], metric: Callable[[LoadResult], float]) -> float:
    return statistics.median(metric(r) for r in results)


def throughput_table(
    results: dict[tuple[str, str], list[LoadResult]], args: argparse.Namespace
) -> list[str]:
    def cell(kind: str, scenario: str, metric: Callable[[LoadResult], float], fmt: str) -> str:
        return format(median_of(results[kind, scenario], metric), fmt)

    def p50(r: LoadResult) -> float:
        return percentiles(r.latencies)[0]

    def p99(r: LoadResult) -> float:
        return percentiles(r.latencies)[1]

    def rate(kind: str, scenario: str, per: str) -> float:
        key = (lambda r: r.events_per_s) if per == "events" else (lambda r: r.requests_per_s)
        return median_of(results[kind, scenario], key)

    lines = [
        f"### Ingest throughput ({args.concurrency} concurrent keep-alive connections, "
        f"{args.duration:g} s per run after {args.warmup:g} s warm-up, median of "
        f"{args.repeats} run{'s' if args.repeats > 1 else ''})",
        "",
        "| scenario | logbeacon | naive schema | seed design |",
        "|---|---:|---:|---:|",
    ]
    for scenario, label in (("batch", "batches of 100"), ("single", "single-event POSTs")):
        lines.append(
            f"| {label}: events/s | "
            + " | ".join(cell(k, scenario, lambda r: r.events_per_s, ",.0f") for k in SERVERS)
            + " |"
        )
        lines.append(
            f"| {label}: requests/s | "
            + " | ".join(cell(k, scenario, lambda r: r.requests_per_s, ",.0f") for k in SERVERS)
            + " |"
        )
        lines.append(
            f"| {label}: latency p50 / p99, ms | "
            + " | ".join(
                f"{cell(k, scenario, p50, '.1f')} / {cell(k, scenario, p99, '.1f')}"
                for k in SERVERS
            )
            + " |"
        )
        per = "event" if scenario == "batch" else "request"
        lines.append(
            f"| {label}: server CPU per {per}, µs | "
            + " | ".join(
                cell(
                    k,
                    scenario,
                    (lambda r: r.cpu_us_per_event)
                    if per == "event"
                    else (lambda r: r.cpu_us_per_request),
                    ",.0f",
                )
                for k in SERVERS
            )
            + " |"
        )
        lines.append(
            f"| {label}: cores used by server / load generator / other processes / "
            "hypervisor steal | "
            + " | ".join(
                " / ".join(
                    cell(k, scenario, metric, ".2f")
                    for metric in (
                        lambda r: r.server_cpu,
                        lambda r: r.client_cpu,
                        lambda r: r.other_cpu,
                        lambda r: r.steal,
                    )
                )
                for k in SERVERS
            )
            + " |"
        )
    failed = {k: sum(r.failures for s, _ in SCENARIOS for r in results[k, s]) for k in SERVERS}
    answered = {k: sum(r.requests for s, _ in SCENARIOS for r in results[k, s]) for k in SERVERS}
    lines.append(
        "| answers not 2xx-with-every-event-accepted (of all measured requests) | "
        + " | ".join(f"{failed[k]} of {answered[k]:,}" for k in SERVERS)
        + " |"
    )

    ours_batch = rate("logbeacon", "batch", "events")
    ours_single = rate("logbeacon", "single", "requests")
    vs_naive = ours_batch / rate("naive", "batch", "events")
    vs_seed = ours_batch / rate("seed", "batch", "events")
    single_vs_seed = ours_single / rate("seed", "single", "requests")

    def cpu(kind: str, scenario: str) -> float:
        key = (
            (lambda r: r.cpu_us_per_event)
            if scenario == "batch"
            else (lambda r: r.cpu_us_per_request)
        )
        return median_of(results[kind, scenario], key)

    cpu_naive = cpu("naive", "batch") / cpu("logbeacon", "batch")
    cpu_seed = cpu("seed", "batch") / cpu("logbeacon", "batch")
    cpu_single = cpu("seed", "single") / cpu("logbeacon", "single")
    lines += [
        "",
        "| target | measured (rate ratio) | server CPU-time ratio | result (on the rate) |",
        "|---|---:|---:|---|",
        f"| batch 100: logbeacon ≥ {TARGETS['batch_vs_naive']:g}× the naive schema's events/s "
        f"| {vs_naive:.2f}× | {cpu_naive:.2f}× | "
        f"{verdict(vs_naive >= TARGETS['batch_vs_naive'])} |",
        f"| batch 100: logbeacon ≥ {TARGETS['batch_vs_seed']:g}× the seed design's events/s "
        f"| {vs_seed:.2f}× | {cpu_seed:.2f}× | {verdict(vs_seed >= TARGETS['batch_vs_seed'])} |",
        f"| single events: logbeacon ≥ {TARGETS['single_vs_seed']:g}× the seed design's "
        f"requests/s | {single_vs_seed:.2f}× | {cpu_single:.2f}× | "
        f"{verdict(single_vs_seed >= TARGETS['single_vs_seed'])} |",
        f"| every request answered 2xx with every event accepted | "
        f"{sum(failed.values())} failures | | {verdict(sum(failed.values()) == 0)} |",
        "",
        "The CPU-time ratio is the other server's CPU time per event (per request for single "
        "events) divided by logbeacon's: how the rates would compare if each server had the "
        "same CPU to itself.",
    ]
    return lines


@dataclass(frozen=True)
class QueryRow:
    """One line of the query table and the target it is judged against."""

    label: str
    path: str
    judged: str  # "p50" or "p99"
    limit_ms: float
    samples: Sequence[float]
    failures: int = 0
    server_ms: float | None = None
    error: str | None = None

    def line(self) -> str:
        target = f"{self.judged} ≤ {self.limit_ms:g} ms"
        cpu = "–" if self.server_ms is None else f"{self.server_ms:.2f}"
        if self.error is not None:
            return (
                f"| {self.label} | {self.path} | n/a | n/a | {cpu} | {target} "
                f"| n/a ({self.error}) |"
            )
        p50, p99 = percentiles(self.samples)
        ok = (p50 if self.judged == "p50" else p99) <= self.limit_ms and self.failures == 0
        note = f" ({self.failures} wrong answers)" if self.failures else ""
        return (
            f"| {self.label} | {self.path} | {p50:.2f} | {p99:.2f} | {cpu} | {target} "
            f"| {verdict(ok)}{note} |"
        )


def query_rows(report: QueryReport) -> tuple[list[QueryRow], list[str]]:
    http = report.http

    def over_http(name: str, label: str, judged: str, limit: float) -> QueryRow:
        return QueryRow(
            label,
            "HTTP",
            judged,
            limit,
            http.latencies[name],
            http.failures[name],
            http.server_ms[name],
        )

    rows = [
        over_http(
            "trace",
            "trace lookup, `GET /v1/traces/{id}` (6-14 events)",
            "p99",
            TARGETS["trace_p99"],
        ),
        over_http(
            "fts",
            "full text on a rare word, `GET /v1/logs?q=<word>`",
            "p50",
            TARGETS["fts_p50"],
        ),
        over_http(
            "filtered",
            "filtered newest 100, `GET /v1/logs?service=api&level=warn&limit=100`",
            "p99",
            TARGETS["filtered_p99"],
        ),
        over_http(
            "errors_http",
            "errors of the last hour, `GET /v1/logs?level=error&since=1h&limit=1000` (closest "
            f"HTTP query: {http.counts['errors_http']:.0f} events per answer, no grouping)",
            "p99",
            TARGETS["grouped"],
        ),
        QueryRow(
            "errors of the last hour grouped by service and event: SQL on the store's file "
            f"({report.grouped_groups} groups)",
            "in-process",
            "p99",
            TARGETS["grouped"],
            report.grouped_sql,
            error=report.grouped_error,
        ),
    ]
    labels = {
        "errors_groups": "error groups of the last hour, `GET /v1/errors?since=1h` "
        "(grouped by fingerprint)",
        "analysis": "summary of the last hour, `GET /v1/analysis?since=1h`",
    }
    missing = []
    for name, label in labels.items():
        if name in http.latencies:
            rows.append(over_http(name, label, "p99", TARGETS["grouped"]))
        else:
            missing.append(f"`{OPTIONAL_QUERIES[name]}`")
    return rows, missing


def query_table(report: QueryReport, args: argparse.Namespace) -> list[str]:
    build, http = report.build, report.http
    rows, missing = query_rows(report)
    lines = [
        f"### Queries on a {build.events:,}-event store",
        "",
        f"{len(build.trace_ids)} traces, {len(build.rare_words)} rare words, {args.samples} "
        "requests per kind, one at a time on one keep-alive connection, after a warm-up round. "
        "Server CPU is the server process's CPU time per request (mean), which other "
        f"processes disturb less than latency; they used {http.other_cpu:.2f} cores meanwhile.",
        "",
        "| query | path | p50 ms | p99 ms | server CPU ms | target | result |",
        "|---|---|---:|---:|---:|---|---|",
        *(row.line() for row in rows),
    ]
    if missing:
        lines += ["", f"Not measured (not answered 200 by this server): {', '.join(missing)}."]
    g50, g99 = percentiles(report.grouped_store)
    ours_b = build.ours_bytes / build.events
    naive_b = build.naive_bytes / build.events
    lines += [
        "",
        "For comparison, the same grouping through the Store protocol in-process (paged "
        f"`SqliteStore.query`, counted in Python): p50 {g50:.2f} ms, p99 {g99:.2f} ms.",
        "",
        f"### Database size ({build.events:,} events, database + WAL after a checkpoint)",
        "",
        "| store | bytes per event | target | result |",
        "|---|---:|---|---|",
        f"| logbeacon | {ours_b:,.0f} | ≤ {TARGETS['bytes']:g} | "
        f"{verdict(ours_b <= TARGETS['bytes'])} |",
        f"| naive schema | {naive_b:,.0f} | | |",
        "",
        "The query store was filled in-process (not over HTTP) in batches of 1,000, one "
        f"appender: logbeacon {build.events / build.seconds:,.0f} events/s, naive schema "
        f"{build.events / build.naive_seconds:,.0f} events/s.",
    ]
    return lines


def render(
    args: argparse.Namespace,
    throughput: dict[tuple[str, str], list[LoadResult]] | None,
    queries: QueryReport | None,
    started: float,
) -> str:
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    lines = [
        "# logbeacon ingest and query benchmark",
        "",
        f"- command: `{command}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; total run time "
        f"{time.monotonic() - started:.0f} s",
        *machine(),
        "- the load generator (a minimal asyncio HTTP/1.1 client on uvloop, pre-serialised "
        "bodies) runs on the same machine and shares its cores with the server under test; "
        "other processes may have been running too",
        "- load: new events in time order (unique timestamps advancing about one per "
        "millisecond, 11-13 fields, 5 % errors), no body sent twice in a run, the same bodies "
        "for every server",
        "- servers: real subprocesses on 127.0.0.1 ports; logbeacon = `logbeacon serve` "
        f"(WAL, synchronous=NORMAL, `--rate`/`--burst` {HIGH_RATE}); naive schema = the same "
        "app over one-row-per-JSON SQLite with 5 secondary indexes + unique event_id + FTS5 "
        "over message, one commit per request, WAL, synchronous=NORMAL; seed design = "
        "BaseHTTPMiddleware + pydantic + one JSON line per event via logging.FileHandler, "
        "no index",
        "",
    ]
    if throughput is not None:
        lines += [*throughput_table(throughput, args), ""]
    if queries is not None:
        lines += [*query_table(queries, args), ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Ingest and query benchmark of logbeacon serve (loopback only)."
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="query store size")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario (median)")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--samples", type=int, default=200, help="requests per query kind")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run under a minute: 10,000 events, 1.5 s runs, 1 repeat, 20 samples",
    )
    parser.add_argument(
        "--only",
        choices=("throughput", "queries"),
        default=None,
        help="run one part only",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="Markdown file for the results (default bench/results/ingest.md; with --quick "
        "nothing is written unless given); '-' prints only",
    )
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: temp)")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = min(args.events, 10_000)
        args.duration = min(args.duration, 1.5)
        args.warmup = min(args.warmup, 0.5)
        args.repeats = 1
        args.samples = min(args.samples, 20)
    if args.out is None and not args.quick:
        args.out = str(HERE / "results" / "ingest.md")
    if args.events < 1000 or args.duration <= 0 or args.repeats < 1 or args.samples < 1:
        parser.error("--events must be >= 1000; --duration, --repeats, --samples positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    gc.freeze()  # the benchmark's own long-lived objects need no cyclic GC walks
    throughput = queries = None
    with tempfile.TemporaryDirectory(prefix="logbeacon-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        if args.only in (None, "throughput"):
            throughput = measure_throughput(args, work)
        if args.only in (None, "queries"):
            queries = measure_queries(args, work)
    text = render(args, throughput, queries, started)
    print(text)
    if args.out and args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        log(f"results written to {out}")


if __name__ == "__main__":
    main()
