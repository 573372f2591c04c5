"""Nanoseconds per log event: logbeacon against bare structlog, stdlib, python-json-logger, loguru.

Every logger renders the same 8-field event to JSON into a real file in a temporary directory
(flushed per event, as each library does by default for its sink). logbeacon runs with two ids
bound in the context and redaction on (it cannot be turned off). Also measured: a call
filtered out by level, for logbeacon and structlog.

Time is the benchmark thread's CPU time (user + system, so each write syscall counts), which
keeps time spent waiting for a core out of the numbers. The cases run interleaved in rounds
(``--repeat``, default 15, of ``--events`` calls each); the table gives each case's median
ns/event and the median of its per-round ratios to bare structlog+orjson measured in the same
round, with the interquartile range of those ratios (see `measure_all` for why paired ratios).
Run:

    .venv/bin/python bench/sdk_overhead.py [--events 10000] [--repeat 15] [--core]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

FIELDS: dict[str, Any] = {
    "node": "developer",
    "fit_score": 85,
    "duration_ms": 12.5,
    "session_id": "s-42",
    "request_id": "r-9f1c",
    "run_id": "run-7",
    "status": "success",
}

Setup = Callable[[Path], tuple[Callable[[], None], Callable[[], None]]]


def _time_per_call(call: Callable[[], None], events: int) -> float:
    # CPU time of this thread (user + system, so the write syscalls count) rather than wall
    # time: on a shared machine, time spent waiting for a core is noise, not logging cost.
    start = time.thread_time_ns()
    for _ in range(events):
        call()
    return (time.thread_time_ns() - start) / events


def setup_logbeacon(directory: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    import logbeacon.sdk as sdk
    from logbeacon.context import bind

    sdk.reset()
    handle = (directory / "logbeacon.jsonl").open("wb")
    sdk.configure(service="bench", stream=handle, format="json", capture_stdlib=False)
    bind(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", job_id="job-1")
    log = sdk.get_logger("bench")

    def call() -> None:
        log.info(
            "node_complete",
            node="developer",
            fit_score=85,
            duration_ms=12.5,
            session_id="s-42",
            request_id="r-9f1c",
            run_id="run-7",
            status="success",
        )

    def close() -> None:
        sdk.reset()
        handle.close()

    return call, close


def setup_logbeacon_filtered(directory: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    import logbeacon.sdk as sdk

    sdk.reset()
    handle = (directory / "logbeacon-filtered.jsonl").open("wb")
    sdk.configure(service="bench", stream=handle, format="json", capture_stdlib=False)
    log = sdk.get_logger("bench")

    def call() -> None:
        log.debug("node_complete", node="developer", fit_score=85)

    def close() -> None:
        sdk.reset()
        handle.close()

    return call, close


def _structlog_logger(handle: io.BufferedWriter) -> Any:
    return structlog.wrap_logger(
        structlog.BytesLogger(handle),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def setup_structlog(directory: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    handle = (directory / "structlog.jsonl").open("wb")
    log = _structlog_logger(handle)

    def call() -> None:
        log.info(
            "node_complete",
            node="developer",
            fit_score=85,
            duration_ms=12.5,
            session_id="s-42",
            request_id="r-9f1c",
            run_id="run-7",
            status="success",
        )

    return call, handle.close


def setup_structlog_filtered(directory: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    handle = (directory / "structlog-filtered.jsonl").open("wb")
    log = _structlog_logger(handle)

    def call() -> None:
        log.debug("node_complete", node="developer", fit_score=85)

    return call, handle.close


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "timestamp": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(data)


def _stdlib_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def setup_stdlib(directory: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    handler = logging.FileHandler(directory / "stdlib.jsonl")
    handler.setFormatter(_JsonFormatter())
    logger = _stdlib_logger("bench.stdlib", handler)

    def call() -> None:
        logger.info("node_complete", extra={"fields": FIELDS})

    return call, handler.close


def setup_python_json_logger(directory: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:  # older releases
        from pythonjsonlogger.jsonlogger import JsonFormatter  # type: ignore[no-redef]

    handler = logging.FileHandler(directory / "pjl.jsonl")
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = _stdlib_logger("bench.pjl", handler)

    def call() -> None:
        logger.info("node_complete", extra=FIELDS)

    return call, handler.close


def setup_loguru(directory: Path) -> tuple[Callable[[], None], Callable[[], None]]:
    from loguru import logger

    logger.remove()
    sink_id = logger.add(directory / "loguru.jsonl", serialize=True, level="INFO")

    def call() -> None:
        logger.info("node_complete", **FIELDS)

    def close() -> None:
        logger.remove(sink_id)

    return call, close


CASES: list[tuple[str, Setup]] = [
    ("bare structlog + orjson", setup_structlog),
    ("logbeacon (2 ids bound, redaction on)", setup_logbeacon),
    ("stdlib logging + json.dumps formatter", setup_stdlib),
    ("python-json-logger", setup_python_json_logger),
    ("loguru (serialize=True)", setup_loguru),
]
FILTERED: list[tuple[str, Setup]] = [
    ("structlog, filtered out", setup_structlog_filtered),
    ("logbeacon, filtered out", setup_logbeacon_filtered),
]


@dataclass
class Result:
    """One case: its CPU ns per call in every round, and its ratio to the baseline per round."""

    name: str
    ns: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)

    @property
    def median_ns(self) -> float:
        return statistics.median(self.ns)

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def ratio_range(self) -> tuple[float, float]:
        quartiles = statistics.quantiles(self.ratios, n=4)
        return quartiles[0], quartiles[2]


def measure_all(
    cases: list[tuple[str, Setup]], directory: Path, events: int, repeat: int
) -> list[Result]:
    """CPU ns per call for each case, the cases interleaved round by round.

    The first case is the baseline. Each round runs every case once, in forward order on even
    rounds and reversed on odd ones (so no case always runs right after a warm-up or a slow
    neighbour), and records each case's ratio to the baseline *of the same round*. On a
    shared machine the speed of a core drifts with what else runs on it (frequency, caches,
    the other core's load) over seconds; two cases measured back to back see nearly the same
    conditions, so their ratio cancels most of that drift, and the median of these paired
    ratios resists the odd round where a burst hit only one case. A ratio of medians would
    compare numbers taken minutes apart under different load.
    """
    calls = [(name, *setup(directory)) for name, setup in cases]
    try:
        for _, call, _ in calls:
            for _ in range(min(events, 2000)):  # warm caches (timestamps, redactor, keys)
                call()
        results = [Result(name) for name, _, _ in calls]
        for round_index in range(repeat):
            order = list(range(len(calls)))
            if round_index % 2:
                order.reverse()
            round_ns: dict[int, float] = {}
            for index in order:
                round_ns[index] = _time_per_call(calls[index][1], events)
            for index, result in enumerate(results):
                result.ns.append(round_ns[index])
                result.ratios.append(round_ns[index] / round_ns[0])
        return results
    finally:
        for _, _, close in calls:
            close()


def _row(result: Result, note: str = "") -> str:
    low, high = result.ratio_range
    return (
        f"| {result.name} | {result.median_ns:,.0f} | {result.median_ratio:.2f}{note} "
        f"| {low:.2f}–{high:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=15, help="rounds (medians reported)")
    parser.add_argument(
        "--core",
        action="store_true",
        help="only bare structlog and logbeacon (skip stdlib, python-json-logger, loguru)",
    )
    args = parser.parse_args()
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")

    cases = CASES[:2] if args.core else CASES
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        emitted = measure_all(cases, directory, args.events, args.repeat)
        filtered = measure_all(FILTERED, directory, args.events * 10, args.repeat)
        sizes = {p.name: p.stat().st_size for p in directory.iterdir()}

    print(
        f"Python {sys.version.split()[0]}, structlog {structlog.__version__}, "
        f"{args.events} events x {args.repeat} rounds; CPU ns/event is the median over "
        "rounds, the ratio the median of per-round ratios to the baseline measured in the "
        "same round (interquartile range beside it)\n"
    )
    print("| logger | ns/event | × bare structlog | ratio IQR |")
    print("|---|---:|---:|---:|")
    for result in emitted:
        print(_row(result))
    for result in filtered:
        print(_row(result, " (vs structlog filtered)"))
    if any(size == 0 for name, size in sizes.items() if "filtered" not in name):
        print("\nwarning: a logger wrote nothing; check its setup", file=sys.stderr)


if __name__ == "__main__":
    main()
