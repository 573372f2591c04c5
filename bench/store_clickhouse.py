"""Benchmark: the SQLite store against the ClickHouse store (in-process chdb), one run.

Run from the repository root::

    .venv/bin/python bench/store_clickhouse.py                             # 1,000,000 events
    .venv/bin/python bench/store_clickhouse.py --events 100000             # quicker
    .venv/bin/python bench/store_clickhouse.py --events 1000000,10000000 \\
        --out bench/results/store_clickhouse.md                            # two sizes, one run

Both stores get the same realistic events (`bench/store.py`'s generator: services
api/web/langgraph, traces of ~10 events, LangGraph runs, 5 % errors, rare words) through the
Store protocol, the way the server feeds them: `--concurrency` tasks appending batches of
`--batch` events (one batch = one HTTP request), group-committed by each store.

Memory stays bounded whatever `--events` is: the events are generated lazily (the same
sequence as `bench/store.py`'s `generate`, seed 1) and handed to a store in slices of
`--slice` events; only one slice is held at a time. The query phase needs only a few ids,
which reservoir samples collect while the events are generated (trace ids, LangGraph run ids,
rare words; the same samples for both stores). Each store gets its own pass of the generator,
its newest event a minute before that store's ingest starts; apart from timestamps (and the
time bits of the event ids) the two passes are identical. The "last hour" analysis windows end
at the time of the queries, so they hold the events of (60 - ingest minutes) minutes: fewer
for the store that ingested longer (at 10M events on a slow machine, noticeably fewer).

Ingest counts the time until every append of a slice returned (committed, indexed, derived
views updated), summed over the slices; generating a slice is not counted. Queries are timed
after one warm-up round. Sizes on disk are measured after closing each store. Everything
happens in a temporary directory per size that is removed afterwards; the result is a
Markdown table on stdout (and in `--out`), with the RSS of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import importlib.util
import os
import random
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from logbeacon.event import format_timestamp
from logbeacon.store._clickhouse_exec import parse_target
from logbeacon.store.base import AnalysisWindow, ErrorGroupQuery, Query, RunQuery, Store
from logbeacon.store.clickhouse import ClickHouseStore
from logbeacon.store.sqlite import SqliteStore

_spec = importlib.util.spec_from_file_location("bench_store", Path(__file__).with_name("store.py"))
assert _spec is not None
assert _spec.loader is not None
bench_store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_store)

Event = dict[str, Any]
STORES = ("sqlite", "chdb")
LABELS = {"sqlite": "SQLite", "chdb": "ClickHouse (chdb)"}


# --------------------------------------------------------------------------- events


def iter_events(count: int, seed: int, end: float) -> Iterator[Event]:
    """`bench/store.py`'s `generate(count, seed)`, one event at a time (same random draws,
    same events), with the newest event at `end` instead of a minute before the call."""
    b = bench_store
    rnd = random.Random(seed)
    start = end - b.SPAN_SECONDS
    step = b.SPAN_SECONDS / count
    sessions = [f"sess-{rnd.getrandbits(48):012x}" for _ in range(max(50, count // 2000))]
    rare_words = max(1, count // (b.RARE_EVERY * 10))
    left = 0
    trace = request = session = service = run = ""
    for i in range(count):
        if left == 0:
            left = rnd.randint(6, 14)
            trace = f"{rnd.getrandbits(128):032x}"
            request = f"req-{rnd.getrandbits(48):012x}"
            session = rnd.choice(sessions)
            service = rnd.choice(b.SERVICES)
            run = f"{rnd.getrandbits(128):032x}"
        left -= 1
        level = rnd.choices(("debug", "info", "warn", "error"), (8, 77, 10, 5))[0]
        words = " ".join(rnd.choices(b.WORDS, k=4))
        if i % b.RARE_EVERY == 0:
            words += " " + b.rare_word(rnd.randrange(rare_words))
        event: Event = {
            "timestamp": format_timestamp(start + i * step + rnd.random() * step),
            "level": level,
            "event": "",
            "message": f"{words} in {rnd.randrange(2000)} ms",
            "service": service,
            "environment": "prod",
            "release": "2.3.1",
            "logger": f"app.{service}",
            "event_id": b._uuid7(rnd, start + i * step),
            "trace_id": trace,
            "span_id": f"{rnd.getrandbits(64):016x}",
            "request_id": request,
            "session_id": session,
        }
        if service == "langgraph":
            event["event"] = rnd.choice(b.GRAPH_EVENTS)
            event["node"] = rnd.choice(b.NODES)
            event["run_id"] = run
            event["thread_id"] = f"thread-{session[5:]}"
            event["duration_ms"] = round(rnd.random() * 4000, 1)
        elif service == "api":
            event["event"] = rnd.choice(b.API_EVENTS)
            event["http"] = {
                "method": rnd.choice(("GET", "POST")),
                "route": rnd.choice(b.ROUTES),
                "status": 500 if level == "error" else 200,
                "duration_ms": round(rnd.random() * 300, 2),
            }
        else:
            event["event"] = rnd.choice(b.WEB_EVENTS)
            event["component"] = rnd.choice(("Chat", "RunList", "Settings"))
            event["route"] = "/runs/[id]"
        if level == "error":
            kind, text, category = rnd.choice(b.ERRORS)
            event["error"] = {
                "type": kind,
                "message": text.format(n=rnd.randrange(60)),
                "category": category,
                "fingerprint": f"{rnd.getrandbits(64):016x}",
            }
        yield event


class Reservoir:
    """A uniform sample of `size` items from a stream of unknown length (algorithm R)."""

    def __init__(self, size: int, rnd: random.Random) -> None:
        self.size = size
        self.rnd = rnd
        self.seen = 0
        self.items: list[str] = []

    def add(self, item: str) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self.rnd.randrange(self.seen)
        if slot < self.size:
            self.items[slot] = item


class Samples:
    """What the query phase needs, collected while the events stream past: trace ids (one
    per sampled event, as `random.sample(events)` would weigh them), run ids of LangGraph node
    events, and rare words (per occurrence)."""

    def __init__(self, size: int) -> None:
        rnd = random.Random(3)
        self.traces = Reservoir(size, rnd)
        self.runs = Reservoir(size, rnd)
        self.words = Reservoir(size, rnd)

    def add(self, event: Event) -> None:
        self.traces.add(event["trace_id"])
        if event["event"].startswith("node_"):
            self.runs.add(event["run_id"])
        if "zebra" in event["message"]:
            for word in event["message"].split():
                if word.startswith("zebra"):
                    self.words.add(word)

    def key(self) -> tuple[list[str], list[str], list[str]]:
        return self.traces.items, self.runs.items, self.words.items


# --------------------------------------------------------------------------- stores


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def make_store(kind: str, root: Path) -> Store:
    if kind == "sqlite":
        return SqliteStore(root / "events.db", retention_days=None)
    return ClickHouseStore(
        parse_target(f"chdb://{root / 'chdb'}", data_dir=str(root)), retention_days=None
    )


class Load:
    """The machine's 1-minute load average, sampled at every slice."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def sample(self) -> None:
        self.samples.append(os.getloadavg()[0])


async def ingest(
    store: Store,
    events: Iterator[Event],
    samples: Samples,
    *,
    count: int,
    batch: int,
    concurrency: int,
    slice_events: int,
    load: Load,
) -> tuple[float, float]:
    """Feed `events` to `store` slice by slice; return (events/s of ingest, seconds spent
    generating)."""
    ingest_seconds = generate_seconds = 0.0
    done = 0
    while done < count:
        began = time.perf_counter()
        part: list[Event] = []
        for event in events:
            samples.add(event)
            part.append(event)
            if len(part) == slice_events:
                break
        generate_seconds += time.perf_counter() - began
        if not part:
            break
        chunks = iter([part[i : i + batch] for i in range(0, len(part), batch)])

        async def client(chunks: Iterator[list[Event]] = chunks) -> None:
            for chunk in chunks:
                await store.append(chunk)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        ingest_seconds += time.perf_counter() - began
        done += len(part)
        load.sample()
        del part, chunks
    assert done == count, (done, count)
    return count / ingest_seconds, generate_seconds


async def queries(store: Store, samples: Samples, n: int) -> dict[str, list[float]]:
    traces, runs, words = samples.key()
    now = time.time()
    hour = AnalysisWindow(since=now - 3600, until=now)
    timings: dict[str, list[float]] = {}

    async def timed(name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        began = time.perf_counter()
        result = await call()
        timings.setdefault(name, []).append(time.perf_counter() - began)
        return result

    for _ in range(2):  # the first round warms caches, like a running server
        timings.clear()
        for trace_id in traces:
            assert await timed("trace", lambda t=trace_id: store.trace(t))
        for word in words:
            assert (
                await timed("full text (rare word)", lambda w=word: store.query(Query(q=w)))
            ).events
        for i in range(n):
            query = Query(service=bench_store.SERVICES[i % 3], level=("warn", "error")[i % 2])
            assert (
                await timed("service + level, newest 100", lambda q=query: store.query(q))
            ).events
        for _ in range(n):
            page = await timed("newest 100, page 5", lambda: _page(store, 5))
            assert page
        for run_id in runs:
            assert await timed("run(id)", lambda r=run_id: store.run(r))
        for _ in range(max(5, n // 10)):
            assert await timed("runs (newest 50)", lambda: store.runs(RunQuery()))
            assert await timed("error groups", lambda: store.error_groups(ErrorGroupQuery()))
            await timed("analysis: counts 1h", lambda: store.window_counts(hour))
            await timed("analysis: top errors 1h", lambda: store.window_errors(hour))
            await timed("analysis: slow steps 1h", lambda: store.window_steps(hour))
    return timings


async def _page(store: Store, pages: int) -> list[Event]:
    cursor = None
    events: list[Event] = []
    for _ in range(pages):
        page = await store.query(Query(cursor=cursor))
        events = page.events
        cursor = page.next_cursor
    return events


def rss_mib() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def run_size(
    count: int, *, batch: int, concurrency: int, samples: int, slice_events: int, load: Load
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    reference: tuple[list[str], list[str], list[str]] | None = None
    with tempfile.TemporaryDirectory(prefix="logbeacon-bench-ch-") as tmp:
        for kind in STORES:
            root = Path(tmp) / kind
            root.mkdir()
            store = make_store(kind, root)
            await store.open()
            collected = Samples(samples)
            events = iter_events(count, seed=1, end=time.time() - 60)
            rate, generating = await ingest(
                store,
                events,
                collected,
                count=count,
                batch=batch,
                concurrency=concurrency,
                slice_events=slice_events,
                load=load,
            )
            if reference is None:
                reference = collected.key()
            assert collected.key() == reference, "the two passes sampled different ids"
            print(
                f"{count:,} {kind}: ingest {rate:,.0f} events/s"
                f" ({count / rate:,.0f}s; generating {generating:,.0f}s, not counted),"
                f" RSS {rss_mib():,.0f} MiB",
                file=sys.stderr,
            )
            timings = await queries(store, collected, samples)
            stats = await store.stats()
            await store.close()
            size = dir_bytes(root)
            results[kind] = {
                "rate": rate,
                "seconds": count / rate,
                "timings": timings,
                "events": stats.events,
                "bytes": size,
                "rss": rss_mib(),
            }
            print(
                f"{count:,} {kind}: queries done, {size / 2**20:,.1f} MiB on disk,"
                f" RSS {rss_mib():,.0f} MiB, peak {peak_rss_mib():,.0f} MiB",
                file=sys.stderr,
            )
    return results


# --------------------------------------------------------------------------- report


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)] * 1000
    return f"{p50:.1f} / {p95:.1f}"


def short(count: int) -> str:
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count % 1_000 == 0:
        return f"{count // 1_000}k"
    return f"{count:,}"


def table(results: dict[int, dict[str, dict[str, Any]]]) -> str:
    columns = [(count, kind) for kind in STORES for count in results]
    header = " | ".join(f"{LABELS[kind]} {short(count)}" for count, kind in columns)

    def row(name: str, cell: Callable[[int, dict[str, Any]], str]) -> str:
        return f"| {name} | " + " | ".join(cell(c, results[c][k]) for c, k in columns) + " |"

    lines = [
        f"| | {header} |",
        "|---|" + "---:|" * len(columns),
        row("ingest (events/s)", lambda c, r: f"{r['rate']:,.0f}"),
        row("ingest time (s)", lambda c, r: f"{r['seconds']:,.0f}"),
        row("stored events", lambda c, r: f"{r['events']:,}"),
        row("size on disk (MiB)", lambda c, r: f"{r['bytes'] / 2**20:,.1f}"),
        row("bytes per event", lambda c, r: f"{r['bytes'] / c:,.0f}"),
    ]
    first = next(iter(results.values()))
    for name in first["sqlite"]["timings"]:
        lines.append(row(f"{name}, ms p50 / p95", lambda c, r, n=name: _ms(r["timings"][n])))
    return "\n".join(lines)


def document(
    results: dict[int, dict[str, dict[str, Any]]],
    args: argparse.Namespace,
    *,
    started: datetime.datetime,
    load_start: tuple[float, float, float],
    load: Load,
    finished: bool,
) -> str:
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    load_end = os.getloadavg()
    sizes = ", ".join(f"{c:,}" for c in results)
    peak = max(load.samples) if load.samples else load_end[0]
    status = "" if finished else " (partial: written when only the sizes below had finished)"
    return "\n".join(
        [
            "# SQLite store vs ClickHouse store (in-process chdb)",
            "",
            f"Command (repository root, started {started:%Y-%m-%d %H:%M} UTC,"
            f" {datetime.datetime.now(datetime.UTC):%H:%M} UTC at the end{status}):",
            "",
            "```",
            command,
            "```",
            "",
            f"Machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB"
            f" RAM, shared with other work; chdb {importlib.metadata.version('chdb')},"
            f" Python {sys.version.split()[0]}. Load average (1/5/15 min) at the start"
            f" {' / '.join(f'{x:.2f}' for x in load_start)}, at the end"
            f" {' / '.join(f'{x:.2f}' for x in load_end)}; 1-minute load during ingest"
            f" {statistics.median(load.samples) if load.samples else 0:.2f} median,"
            f" {peak:.2f} max.",
            "",
            f"{sizes} events; batches of {args.batch}, {args.concurrency} concurrent appenders,"
            f" slices of {args.slice:,} events, {args.samples} samples per query.",
            "Both stores are fed through the Store protocol the way the server feeds them;"
            " events are generated lazily, one slice at a time (generation not counted in"
            " ingest); queries are timed after one warm-up round; sizes are the store's files"
            " after closing.",
            "",
            table(results),
            "",
            f"RSS of the benchmark process (Python and the in-process chdb engine) at the end:"
            f" {rss_mib():,.0f} MiB; peak {peak_rss_mib():,.0f} MiB. After each store"
            " (closed): "
            + ", ".join(
                f"{LABELS[k]} {short(c)} {results[c][k]['rss']:,.0f} MiB"
                for c in results
                for k in STORES
            )
            + ".",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--events",
        default="1000000",
        help="event count, or several separated by commas (1000000,10000000)",
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--slice", type=int, default=100_000, help="events held at a time")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()
    counts = [int(part.replace("_", "")) for part in args.events.split(",") if part.strip()]
    started = datetime.datetime.now(datetime.UTC)
    load_start = os.getloadavg()
    load = Load()
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for count in counts:
        results[count] = asyncio.run(
            run_size(
                count,
                batch=args.batch,
                concurrency=args.concurrency,
                samples=args.samples,
                slice_events=args.slice,
                load=load,
            )
        )
        report = document(
            results,
            args,
            started=started,
            load_start=load_start,
            load=load,
            finished=len(results) == len(counts),
        )
        if args.out is not None:
            args.out.write_text(report, encoding="utf-8")
    print(report)
    print(f"RSS at the end: {rss_mib():,.0f} MiB, peak {peak_rss_mib():,.0f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
