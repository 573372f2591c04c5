"""Benchmark of the embedded SQLite event store against a naive SQLite schema.

Run from the repository root::

    .venv/bin/python bench/store.py                 # 1,000,000 events (a few minutes)
    .venv/bin/python bench/store.py --events 200000 # quicker

Everything happens in-process (no HTTP, no loopback) in a temporary directory that is
removed afterwards. Both stores get the same realistic events (services api/web/langgraph,
traces of ~10 events, sessions, LangGraph runs, 5 % errors with messages, a few rare words)
and the same durability (WAL, synchronous=NORMAL: an acknowledged event survives a process
crash). The naive store is what one writes first: one row per event with the full JSON,
five secondary indexes (timestamp, trace_id, request_id, session_id, run_id), a regular
FTS5 table, `executemany` in transactions of 1,000 events.

Ingest throughput counts until every event is committed and in every index (both stores
index inside the committing transaction).
Our store is fed the way the server feeds it: `--concurrency` tasks each appending batches
of `--batch` events (one batch = one HTTP request), group-committed by the writer thread.
The two stores ingest in alternating slices of `--slice` events, so a change of machine load
during the run hits both alike.
The result is a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from logbeacon.event import format_timestamp
from logbeacon.store.base import Query
from logbeacon.store.sqlite import SqliteStore

Event = dict[str, Any]

SERVICES = ("api", "web", "langgraph")
API_EVENTS = ("http_request", "db_query", "cache_miss", "auth_check")
WEB_EVENTS = ("page_view", "network_error", "window_error", "http_request")
GRAPH_EVENTS = ("node_start", "node_complete", "llm_start", "llm_complete", "tool_start")
NODES = ("planner", "researcher", "developer", "reviewer", "writer")
ROUTES = ("/api/v1/items/{id}", "/api/v1/users/{id}", "/api/v1/search", "/api/v1/runs")
ERRORS = (
    ("TimeoutError", "upstream timed out after {n}s", "timeout"),
    ("ConnectionError", "connection refused by db-{n}.internal", "network"),
    ("RateLimitError", "provider returned 429, retry in {n}s", "rate_limit"),
    ("ValueError", "invalid literal for int() with base 10: 'x{n}'", "validation"),
)
WORDS = [
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
]
SPAN_SECONDS = 3 * 86_400  # events cover the last three days
RARE_EVERY = 997  # one event in ~1000 carries a rare word shared by ~10 events


def rare_word(index: int) -> str:
    return f"zebra{index:05d}quux"


def generate(count: int, seed: int) -> list[Event]:
    """Realistic normalised events, oldest first, the newest a minute ago."""
    rnd = random.Random(seed)
    end = time.time() - 60
    start = end - SPAN_SECONDS
    step = SPAN_SECONDS / count
    sessions = [f"sess-{rnd.getrandbits(48):012x}" for _ in range(max(50, count // 2000))]
    rare_words = max(1, count // (RARE_EVERY * 10))
    events: list[Event] = []
    left = 0
    trace = request = session = service = run = ""
    for i in range(count):
        if left == 0:
            left = rnd.randint(6, 14)
            trace = f"{rnd.getrandbits(128):032x}"
            request = f"req-{rnd.getrandbits(48):012x}"
            session = rnd.choice(sessions)
            service = rnd.choice(SERVICES)
            run = f"{rnd.getrandbits(128):032x}"
        left -= 1
        level = rnd.choices(("debug", "info", "warn", "error"), (8, 77, 10, 5))[0]
        words = " ".join(rnd.choices(WORDS, k=4))
        if i % RARE_EVERY == 0:
            words += " " + rare_word(rnd.randrange(rare_words))
        event: Event = {
            "timestamp": format_timestamp(start + i * step + rnd.random() * step),
            "level": level,
            "event": "",
            "message": f"{words} in {rnd.randrange(2000)} ms",
            "service": service,
            "environment": "prod",
            "release": "2.3.1",
            "logger": f"app.{service}",
            "event_id": _uuid7(rnd, start + i * step),
            "trace_id": trace,
            "span_id": f"{rnd.getrandbits(64):016x}",
            "request_id": request,
            "session_id": session,
        }
        if service == "langgraph":
            event["event"] = rnd.choice(GRAPH_EVENTS)
            event["node"] = rnd.choice(NODES)
            event["run_id"] = run
            event["thread_id"] = f"thread-{session[5:]}"
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
            event["route"] = "/runs/[id]"
        if level == "error":
            kind, text, category = rnd.choice(ERRORS)
            event["error"] = {
                "type": kind,
                "message": text.format(n=rnd.randrange(60)),
                "category": category,
                "fingerprint": f"{rnd.getrandbits(64):016x}",
            }
        events.append(event)
    return events


def _uuid7(rnd: random.Random, seconds: float) -> str:
    value = (
        (int(seconds * 1000) & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | rnd.getrandbits(12) << 64
        | 0b10 << 62
        | rnd.getrandbits(62)
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def db_bytes(path: Path) -> int:
    return sum(
        os.path.getsize(f"{path}{suffix}")
        for suffix in ("", "-wal", "-shm")
        if os.path.exists(f"{path}{suffix}")
    )


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 * 1000, p99 * 1000


# --------------------------------------------------------------------------- our store


class Naive:
    """The naive schema: one row per event with the full JSON, five secondary indexes, a
    regular FTS5 table, `executemany` in transactions of 1,000 events."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.executescript(NAIVE_SCHEMA)
        self.next_id = 1

    def ingest(self, events: list[Event]) -> None:
        conn = self.conn
        for start in range(0, len(events), 1000):
            rows = []
            texts = []
            for event in events[start : start + 1000]:
                rows.append(
                    (
                        self.next_id,
                        event["event_id"],
                        event["timestamp"],
                        event["level"],
                        event.get("service"),
                        event.get("trace_id"),
                        event.get("request_id"),
                        event.get("session_id"),
                        event.get("run_id"),
                        orjson.dumps(event).decode(),
                    )
                )
                texts.append((self.next_id, naive_text(event)))
                self.next_id += 1
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO events_fts (rowid, text) VALUES (?, ?)", texts)
            conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


async def ingest_both(
    events: list[Event],
    ours_path: Path,
    naive_path: Path | None,
    batch: int,
    concurrency: int,
    slice_events: int,
) -> tuple[float, float]:
    """Ingest into both stores in alternating slices; return each one's events/s.

    Alternating keeps the comparison fair on a machine whose load changes during the run.
    """
    store = SqliteStore(ours_path, retention_days=None)
    await store.open()
    naive = Naive(naive_path) if naive_path is not None else None
    ours_seconds = naive_seconds = 0.0
    for start in range(0, len(events), slice_events):
        part = events[start : start + slice_events]
        feed: Iterator[list[Event]] = iter(
            [part[i : i + batch] for i in range(0, len(part), batch)]
        )

        async def client(feed: Iterator[list[Event]] = feed) -> None:
            for chunk in feed:
                await store.append(chunk)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        ours_seconds += time.perf_counter() - began
        if naive is not None:
            began = time.perf_counter()
            naive.ingest(part)
            naive_seconds += time.perf_counter() - began
    await store.close()
    if naive is not None:
        naive.close()
    return len(events) / ours_seconds, len(events) / naive_seconds if naive_seconds else 0.0


async def query_ours(
    path: Path, events: list[Event], samples: int, rnd: random.Random
) -> dict[str, list[float]]:
    store = SqliteStore(path, retention_days=None)
    await store.open()
    timings: dict[str, list[float]] = collections.defaultdict(list)
    traces = [e["trace_id"] for e in rnd.sample(events, samples)]
    words = _rare_words(events, samples, rnd)

    async def timed(name: str, call: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        result = await call()
        timings[name].append(time.perf_counter() - began)
        return result

    for _ in range(2):  # first round warms the page cache, like a running server
        timings.clear()
        for trace_id in traces:
            found = await timed("trace", lambda t=trace_id: store.trace(t))
            assert found
            assert found[0]["trace_id"] == trace_id
        for word in words:
            page = await timed("fts", lambda w=word: store.query(Query(q=w, limit=100)))
            assert page.events
            assert word in page.events[0]["message"]
        for i in range(samples):
            query = Query(service=SERVICES[i % 3], level=("warn", "error")[i % 2], limit=100)
            page = await timed("filtered", lambda q=query: store.query(q))
            assert len(page.events) == 100
        for _ in range(max(20, samples // 10)):
            groups = await timed("errors_1h", lambda: errors_last_hour(store))
            assert groups
    await store.close()
    return timings


async def errors_last_hour(store: SqliteStore) -> collections.Counter[tuple[str, str]]:
    """Error counts by (service, event) over the last hour, through the Store protocol."""
    groups: collections.Counter[tuple[str, str]] = collections.Counter()
    cursor = None
    since = time.time() - 3600
    while True:
        page = await store.query(Query(level="error", since=since, limit=1000, cursor=cursor))
        groups.update((e["service"], e["event"]) for e in page.events)
        cursor = page.next_cursor
        if cursor is None:
            return groups


def _rare_words(events: list[Event], samples: int, rnd: random.Random) -> list[str]:
    present = sorted({w for e in events for w in e["message"].split() if w.startswith("zebra")})
    return [rnd.choice(present) for _ in range(samples)]


# --------------------------------------------------------------------------- naive store

NAIVE_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    timestamp TEXT NOT NULL,
    level TEXT NOT NULL,
    service TEXT,
    trace_id TEXT,
    request_id TEXT,
    session_id TEXT,
    run_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX events_timestamp ON events (timestamp);
CREATE INDEX events_trace ON events (trace_id);
CREATE INDEX events_request ON events (request_id);
CREATE INDEX events_session ON events (session_id);
CREATE INDEX events_run ON events (run_id);
CREATE VIRTUAL TABLE events_fts USING fts5 (text);
"""


def naive_text(event: Event) -> str:
    error = event.get("error") or {}
    return " ".join(
        str(part)
        for part in (event["event"], event.get("message"), error.get("type"), error.get("message"))
        if part
    )


def query_naive(
    path: Path, events: list[Event], samples: int, rnd: random.Random
) -> dict[str, list[float]]:
    conn = sqlite3.connect(path, isolation_level=None)
    timings: dict[str, list[float]] = collections.defaultdict(list)
    traces = [e["trace_id"] for e in rnd.sample(events, samples)]
    words = _rare_words(events, samples, rnd)

    def timed(name: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
        began = time.perf_counter()
        rows = [orjson.loads(row[0]) for row in conn.execute(sql, params)]
        timings[name].append(time.perf_counter() - began)
        return rows

    for _ in range(2):
        timings.clear()
        for trace_id in traces:
            timed(
                "trace",
                "SELECT data FROM events WHERE trace_id = ? ORDER BY timestamp",
                (trace_id,),
            )
        for word in words:
            timed(
                "fts",
                "SELECT e.data FROM events_fts JOIN events AS e ON e.id = events_fts.rowid"
                " WHERE events_fts MATCH ? ORDER BY e.timestamp DESC LIMIT 100",
                (word,),
            )
        for i in range(samples):
            levels = ("warn", "error", "critical") if i % 2 == 0 else ("error", "critical")
            marks = ",".join("?" * len(levels))
            timed(
                "filtered",
                f"SELECT data FROM events WHERE service = ? AND level IN ({marks})"
                " ORDER BY timestamp DESC LIMIT 100",
                (SERVICES[i % 3], *levels),
            )
        for _ in range(max(20, samples // 10)):
            since = format_timestamp(time.time() - 3600)
            began = time.perf_counter()
            conn.execute(
                "SELECT service, json_extract(data, '$.event'), count(*) FROM events"
                " WHERE timestamp >= ? AND level IN ('error', 'critical') GROUP BY 1, 2",
                (since,),
            ).fetchall()
            timings["errors_1h"].append(time.perf_counter() - began)
    conn.close()
    return timings


# --------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100, help="events per append call")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent appenders")
    parser.add_argument("--samples", type=int, default=200, help="queries of each kind")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive schema")
    parser.add_argument(
        "--slice", type=int, default=50_000, help="events per alternating ingest slice"
    )
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: temp)")
    args = parser.parse_args()

    began = time.perf_counter()
    events = generate(args.events, args.seed)
    # The corpus stays alive for the whole run; without this every collection of the cyclic
    # GC would walk millions of benchmark dicts, a cost no server pays.
    gc.collect()
    gc.freeze()
    avg_json = sum(len(orjson.dumps(e)) for e in events[:10_000]) / min(len(events), 10_000)
    print(
        f"generated {len(events):,} events (avg {avg_json:.0f} B of JSON)"
        f" in {time.perf_counter() - began:.1f}s",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        ours_path = Path(tmp) / "ours.db"
        naive_path = Path(tmp) / "naive.db"
        rate, naive_rate = asyncio.run(
            ingest_both(
                events,
                ours_path,
                None if args.no_naive else naive_path,
                args.batch,
                args.concurrency,
                args.slice,
            )
        )
        size = db_bytes(ours_path)
        naive_size = db_bytes(naive_path) if naive_rate else 0
        print(f"ingest: ours {rate:,.0f}/s, naive {naive_rate:,.0f}/s", file=sys.stderr)
        ours_q = asyncio.run(query_ours(ours_path, events, args.samples, random.Random(1)))
        naive_q: dict[str, list[float]] = {}
        if naive_rate:
            naive_q = query_naive(naive_path, events, args.samples, random.Random(1))

    n = len(events)
    print(
        f"\n{n:,} events, avg {avg_json:.0f} B of JSON each; ours fed by "
        f"{args.concurrency} concurrent appenders x batches of {args.batch}; "
        "naive in transactions of 1,000.\n"
    )
    print("| metric | ours | naive | ours vs naive |")
    print("|---|---:|---:|---:|")
    ratio = f"{rate / naive_rate:.2f}x" if naive_rate else "–"
    naive_cell = f"{naive_rate:,.0f}" if naive_rate else "–"
    print(
        f"| ingest, events/s (committed + full-text indexed) | {rate:,.0f} | {naive_cell} "
        f"| {ratio} |"
    )
    naive_b = f"{naive_size / n:,.0f}" if naive_size else "–"
    bratio = f"{size / naive_size:.2f}x" if naive_size else "–"
    print(f"| bytes on disk per event | {size / n:,.0f} | {naive_b} | {bratio} |")
    labels = {
        "trace": "trace lookup (~10 events)",
        "fts": "full text, rare word, newest 100",
        "filtered": "service=X and level>=warn|error, newest 100",
        "errors_1h": "errors by service+event, last hour",
    }
    for key, label in labels.items():
        p50, p99 = percentiles(ours_q[key])
        cell = "–"
        if key in naive_q:
            n50, n99 = percentiles(naive_q[key])
            cell = f"{n50:.2f} / {n99:.2f}"
        print(f"| {label}, p50 / p99 ms | {p50:.2f} / {p99:.2f} | {cell} | |")


if __name__ == "__main__":
    main()
