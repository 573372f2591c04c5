"""Does a slow server slow the application down? `log.info()` latency with and without shipping.

The app thread logs through the SDK (`logbeacon.configure(ship_to=...)`, JSON to /dev/null)
at a steady rate and times every call. Four cases, interleaved round by round so each sees
the same machine load:

* ``off``: no shipping (the baseline);
* ``fast``: a loopback server that answers every batch at once;
* ``slow``: the same server answering each batch only after ``--delay`` seconds (default 2);
* ``down``: nothing listens on the port (connection refused, retried with backoff).

The servers are tiny threaded HTTP servers on 127.0.0.1, each in its own process, that read
the request and answer ``200 {"accepted": n}``; nothing leaves the machine. Work is bounded:
``--rounds`` × ``--events`` calls per case at ``--rate`` calls/s (defaults 3 × 6,000 at
2,000/s: about 40 s in all). The table gives the median over rounds of each statistic; the
target is a p99 with shipping to a slow server within 3× of the baseline's p99.

Run from the repository root:

    .venv/bin/python bench/shipping.py [--events 6000] [--rounds 3] [--rate 2000] [--delay 2]

It prints a Markdown table and writes bench/results/shipping.md (``--out`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import logbeacon  # noqa: E402 - after the path tweak, so a checkout runs without install
from logbeacon.sdk import reset  # noqa: E402

CASES = ("off", "fast", "slow", "down")
TARGET_RATIO = 3.0


class BatchServer:
    """Answers `POST /v1/logs` with 200 and the batch's event count after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        owner = self
        self.delay = delay
        self.batches = 0
        self.events = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the shipper expects

            def do_POST(self) -> None:
                import gzip

                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                count = len(json.loads(body).get("events", []))
                time.sleep(owner.delay)
                with owner._lock:
                    owner.batches += 1
                    owner.events += count
                reply = json.dumps({"accepted": count, "duplicates": 0, "rejected": []}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def refused_url() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Round:
    """One case's calls in one round."""

    case: str
    latencies_us: list[float]
    delivered: int = 0
    dropped: int = 0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_us)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Report:
    rounds: dict[str, list[Round]] = field(default_factory=lambda: {c: [] for c in CASES})

    def median(self, case: str, stat: str) -> float:
        values = []
        for r in self.rounds[case]:
            if stat == "max":
                values.append(max(r.latencies_us))
            elif stat == "mean":
                values.append(statistics.fmean(r.latencies_us))
            else:
                values.append(r.pct(float(stat)))
        return statistics.median(values)


def log_calls(events: int, rate: float) -> list[float]:
    """`events` calls of `log.info` paced at `rate`/s; each call's wall time in µs."""
    log = logbeacon.get_logger("bench.shipping")
    out = [0.0] * events
    clock = time.perf_counter_ns
    started = time.perf_counter()
    for i in range(events):
        t0 = clock()
        log.info("checkout_step", step=i, cart_id="c-42", duration_ms=12.5, status="success")
        out[i] = (clock() - t0) / 1000
        if i % 10 == 9:
            ahead = started + (i + 1) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    return out


def run_case(case: str, url: str | None, events: int, rate: float) -> Round:
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below, after reset()
    try:
        if url is None:
            logbeacon.configure(service="bench", format="json", stream=devnull)
        else:
            logbeacon.configure(service="bench", format="json", stream=devnull, ship_to=url)
        gc.collect()
        latencies = log_calls(events, rate)
        shipper = next(
            (s for s in _pipeline_sinks() if type(s).__name__ == "Shipper"),
            None,
        )
        result = Round(case, latencies)
        if shipper is not None:
            shipper.flush(0.5 if case in ("slow", "down") else 10.0)
            stats = shipper.stats()
            result.delivered = stats.delivered
            result.dropped = sum(stats.dropped.values())
            shipper.close(0.1)
        return result
    finally:
        reset()
        devnull.close()


def _pipeline_sinks() -> Sequence[Any]:
    from logbeacon.sdk import config

    pipeline = config._state.pipeline
    return list(getattr(pipeline, "sinks", ())) if pipeline is not None else []


@contextlib.contextmanager
def server_process(delay: float) -> Iterator[str]:
    """A `BatchServer` in its own process (so it does not compete for the app's GIL)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the batch server did not start: {url!r}")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def serve(delay: float) -> None:
    """`--serve DELAY`: run one batch server until terminated, its URL on stdout."""
    server = BatchServer(delay)
    print(server.url, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.close()


@contextlib.contextmanager
def servers(delay: float) -> Iterator[dict[str, str | None]]:
    with server_process(0.0) as fast, server_process(delay) as slow:
        yield {"off": None, "fast": fast, "slow": slow, "down": refused_url()}


def measure(events: int, rounds: int, rate: float, delay: float) -> Report:
    report = Report()
    with servers(delay) as urls:
        for number in range(rounds):
            for case in CASES:
                result = run_case(case, urls[case], events, rate)
                report.rounds[case].append(result)
                print(
                    f"round {number + 1}/{rounds} {case:>4}: p50 {result.pct(0.5):7.1f} µs  "
                    f"p99 {result.pct(0.99):7.1f} µs  max {max(result.latencies_us):9.1f} µs  "
                    f"delivered {result.delivered}  dropped {result.dropped}",
                    file=sys.stderr,
                )
    return report


def table(report: Report, args: argparse.Namespace) -> list[str]:
    base = report.median("off", "0.99")
    lines = [
        "| case | p50 µs | p99 µs | p99.9 µs | max µs | p99 ÷ off "
        "| delivered / dropped at the round's end (median) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    labels = {
        "off": "no shipping (baseline)",
        "fast": "shipping, server answers at once",
        "slow": f"shipping, server answers after {args.delay:g} s",
        "down": "shipping, nothing listening (refused)",
    }
    for case in CASES:
        p99 = report.median(case, "0.99")
        delivered = statistics.median(r.delivered for r in report.rounds[case])
        dropped = statistics.median(r.dropped for r in report.rounds[case])
        lines.append(
            f"| {labels[case]} | {report.median(case, '0.5'):.1f} | {p99:.1f} | "
            f"{report.median(case, '0.999'):.1f} | {report.median(case, 'max'):,.0f} | "
            f"{p99 / base:.2f}× | "
            + ("–" if case == "off" else f"{delivered:,.0f} / {dropped:,.0f}")
            + " |"
        )
    ratio = report.median("slow", "0.99") / base
    verdict = "**pass**" if ratio <= TARGET_RATIO else "**FAIL**"
    lines += [
        "",
        "| target | measured | result |",
        "|---|---:|---|",
        f"| p99 of `log.info()` with a {args.delay:g} s server ≤ {TARGET_RATIO:g}× "
        f"the no-shipping p99 | {ratio:.2f}× | {verdict} |",
    ]
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=6000, help="calls per case per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2000.0, help="calls per second")
    parser.add_argument("--delay", type=float, default=2.0, help="slow server delay, seconds")
    parser.add_argument("--out", default=str(HERE / "results" / "shipping.md"))
    args = parser.parse_args(argv)
    if not (1 <= args.events <= 100_000 and 1 <= args.rounds <= 10 and args.rate > 0):
        parser.error("--events 1..100000, --rounds 1..10, --rate > 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--serve"]:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        serve(float(arguments[1]))
        return
    args = parse_args(argv)
    load = os.getloadavg()
    started = time.monotonic()
    report = measure(args.events, args.rounds, args.rate, args.delay)
    body = table(report, args)
    command = "python bench/shipping.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = io.StringIO()
    print("# SDK call latency while shipping to a slow server", file=doc)
    print(file=doc)
    print(f"- command: `{command}`", file=doc)
    print(
        f"- date: {now}; total run time {time.monotonic() - started:.0f} s; "
        f"{args.rounds} rounds × {args.events:,} `log.info()` calls per case at "
        f"{args.rate:,.0f} calls/s, cases interleaved per round; medians over rounds",
        file=doc,
    )
    print(
        f"- machine: {os.cpu_count()} cores, load average at start "
        f"{load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (shared, other work running); "
        f"Python {platform.python_version()}",
        file=doc,
    )
    print(
        "- time is wall time of each call in the app thread (`perf_counter_ns`), so it "
        "includes any wait for the GIL or a lock held by the shipper thread; JSON goes to "
        "/dev/null; each server is a loopback process of its own",
        file=doc,
    )
    print(file=doc)
    for line in body:
        print(line, file=doc)
    text = doc.getvalue()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"results written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
