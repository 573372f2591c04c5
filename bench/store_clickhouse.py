"""Benchmark: the SQLite store against the ClickHouse store (in-process chdb), one run.

Run from the repository root::

    .venv/bin/python bench/store_clickhouse.py                  # 1,000,000 events
    .venv/bin/python bench/store_clickhouse.py --events 100000  # quicker

Both stores get the same realistic events (`bench/store.py`'s generator: services
api/web/langgraph, traces of ~10 events, LangGraph runs, 5 % errors, rare words) through the
Store protocol, the way the server feeds them: `--concurrency` tasks appending batches of
`--batch` events (one batch = one HTTP request), group-committed by each store. Ingest counts
until every append returned (committed, indexed, derived views updated). Queries are timed
after one warm-up round. Sizes on disk are measured after closing each store. Everything
happens in a temporary directory that is removed afterwards; the result is a Markdown table
on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def make_store(kind: str, root: Path) -> Store:
    if kind == "sqlite":
        return SqliteStore(root / "events.db", retention_days=None)
    return ClickHouseStore(
        parse_target(f"chdb://{root / 'chdb'}", data_dir=str(root)), retention_days=None
    )


async def ingest(store: Store, events: list[Event], batch: int, concurrency: int) -> float:
    chunks = iter([events[i : i + batch] for i in range(0, len(events), batch)])

    async def client() -> None:
        for chunk in chunks:
            await store.append(chunk)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return len(events) / (time.perf_counter() - began)


async def queries(store: Store, events: list[Event], samples: int) -> dict[str, list[float]]:
    rnd = random.Random(3)
    traces = [e["trace_id"] for e in rnd.sample(events, samples)]
    words = bench_store._rare_words(events, samples, rnd)
    runs = [
        e["run_id"]
        for e in rnd.sample([e for e in events if e["event"].startswith("node_")], samples)
    ]
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
        for i in range(samples):
            query = Query(service=bench_store.SERVICES[i % 3], level=("warn", "error")[i % 2])
            assert (
                await timed("service + level, newest 100", lambda q=query: store.query(q))
            ).events
        for _ in range(samples):
            page = await timed("newest 100, page 5", lambda: _page(store, 5))
            assert page
        for run_id in runs:
            assert await timed("run(id)", lambda r=run_id: store.run(r))
        for _ in range(max(5, samples // 10)):
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


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1000
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)] * 1000
    return f"{p50:.1f} / {p95:.1f}"


async def run(count: int, batch: int, concurrency: int, samples: int) -> str:
    began = time.perf_counter()
    events = bench_store.generate(count, seed=1)
    print(f"generated {count:,} events in {time.perf_counter() - began:.1f}s", file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="logbeacon-bench-ch-") as tmp:
        for kind in ("sqlite", "chdb"):
            root = Path(tmp) / kind
            root.mkdir()
            store = make_store(kind, root)
            await store.open()
            rate = await ingest(store, events, batch, concurrency)
            print(f"{kind}: ingest {rate:,.0f} events/s", file=sys.stderr)
            timings = await queries(store, events, samples)
            stats = await store.stats()
            await store.close()
            results[kind] = {
                "rate": rate,
                "timings": timings,
                "events": stats.events,
                "bytes": dir_bytes(root),
            }
    lines = [
        f"{count:,} events, batches of {batch}, {concurrency} concurrent appenders,"
        f" {samples} samples per query, {os.cpu_count()} CPUs",
        "",
        "| | SQLite | ClickHouse (chdb) |",
        "|---|---:|---:|",
        f"| ingest (events/s) | {results['sqlite']['rate']:,.0f}"
        f" | {results['chdb']['rate']:,.0f} |",
        f"| stored events | {results['sqlite']['events']:,} | {results['chdb']['events']:,} |",
        f"| size on disk (MiB) | {results['sqlite']['bytes'] / 2**20:,.1f}"
        f" | {results['chdb']['bytes'] / 2**20:,.1f} |",
        f"| bytes per event | {results['sqlite']['bytes'] / count:,.0f}"
        f" | {results['chdb']['bytes'] / count:,.0f} |",
    ]
    for name in results["sqlite"]["timings"]:
        lines.append(
            f"| {name}, ms p50 / p95 | {_ms(results['sqlite']['timings'][name])}"
            f" | {_ms(results['chdb']['timings'][name])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    print(asyncio.run(run(args.events, args.batch, args.concurrency, args.samples)))


if __name__ == "__main__":
    main()
