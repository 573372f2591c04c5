"""Nanoseconds per log event: logbeacon against bare structlog, stdlib, python-json-logger, loguru.

Every logger renders the same 8-field event to JSON into a real file in a temporary directory
(flushed per event, as each library does by default for its sink). logbeacon runs with two ids
bound in the context and redaction on (it cannot be turned off). Also measured: a call
filtered out by level, for logbeacon and structlog.

Time is the benchmark thread's CPU time (user + system, so each write syscall counts), which
keeps other processes on a shared machine out of the numbers. Each measurement is repeated
(``--repeat``, default 7) and the median reported, as a Markdown table with ratios to bare
structlog+orjson. Run:

    .venv/bin/python bench/sdk_overhead.py [--events 20000] [--repeat 7]
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


def measure_all(
    cases: list[tuple[str, Setup]], directory: Path, events: int, repeat: int
) -> list[tuple[str, float]]:
    """Median CPU ns per call for each case, the cases interleaved round by round.

    Interleaving means a burst of load from elsewhere hits every case alike instead of
    whichever happened to be running.
    """
    calls = [(name, *setup(directory)) for name, setup in cases]
    try:
        for _, call, _ in calls:
            for _ in range(min(events, 2000)):  # warm caches (timestamps, redactor, keys)
                call()
        samples: dict[str, list[float]] = {name: [] for name, _, _ in calls}
        for _ in range(repeat):
            for name, call, _ in calls:
                samples[name].append(_time_per_call(call, events))
        return [(name, statistics.median(samples[name])) for name, _, _ in calls]
    finally:
        for _, _, close in calls:
            close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="calls per repetition")
    parser.add_argument("--repeat", type=int, default=7, help="repetitions (median reported)")
    args = parser.parse_args()
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        emitted = measure_all(CASES, directory, args.events, args.repeat)
        filtered = measure_all(FILTERED, directory, args.events * 10, args.repeat)
        sizes = {p.name: p.stat().st_size for p in directory.iterdir()}

    base = emitted[0][1]
    filtered_base = filtered[0][1]
    print(
        f"Python {sys.version.split()[0]}, structlog {structlog.__version__}, "
        f"{args.events} events x {args.repeat} runs, median CPU ns/event\n"
    )
    print("| logger | ns/event | × bare structlog |")
    print("|---|---:|---:|")
    for name, ns in emitted:
        print(f"| {name} | {ns:,.0f} | {ns / base:.2f} |")
    for name, ns in filtered:
        print(f"| {name} | {ns:,.0f} | {ns / filtered_base:.2f} (vs structlog filtered) |")
    if any(size == 0 for name, size in sizes.items() if "filtered" not in name):
        print("\nwarning: a logger wrote nothing; check its setup", file=sys.stderr)


if __name__ == "__main__":
    main()
