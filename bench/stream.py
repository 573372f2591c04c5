"""Live tail latency: from `POST /v1/logs` to the event arriving on 10 SSE subscribers.

A real `logbeacon serve` subprocess on a free 127.0.0.1 port (temporary data dir, rate limit
lifted). A subscriber process opens ``--subscribers`` `GET /v1/stream?service=<tag>`
connections; when all are live, this process posts events of that service in batches at a
fixed rate (open loop: a batch is sent on schedule even while earlier ones are in flight, up
to 16 at once). Every event carries the wall-clock time its batch was sent; a subscriber
records `arrival - sent` for every event on every connection. So the latency covers the
ingest request (parse, redact, group commit to SQLite), the publish to the tail hub and the
SSE write and read.

Bounded: ``--seconds`` per rate (default 10) after a 1 s warm-up that is not measured, rates
from ``--rates`` (default 1000,5000 events/s), batches of ``--batch`` (default 100). Nothing
leaves the machine. Run from the repository root:

    .venv/bin/python bench/stream.py [--rates 1000,5000] [--seconds 10] [--subscribers 10]

It prints a Markdown table and writes bench/results/stream.md (``--out`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

HERE = Path(__file__).resolve().parent
_SENT_NS = re.compile(rb'"sent_ns":(\d+)')
TARGET_P99_MS = 100.0
MAX_IN_FLIGHT = 16
WARMUP_S = 1.0


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    token: str
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def logbeacon_serve(work: Path, subscribers: int, tail_queue: int | None) -> Iterator[Server]:
    """`logbeacon serve` on loopback; stopped by PID (SIGTERM, then SIGKILL)."""
    port = free_port()
    script = Path(sys.executable).with_name("logbeacon")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "logbeacon.cli.main"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBEACON_")}
    env["LOGBEACON_TAIL_MAX_SUBSCRIBERS"] = str(max(subscribers + 5, 50))
    if tail_queue is not None:
        env["LOGBEACON_TAIL_QUEUE"] = str(tail_queue)
    log_path = work / "server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                *command,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(work / "data"),
                "--rate",
                "1000000000",
                "--burst",
                "1000000000",
            ],
            stdout=log_file,
            stderr=log_file,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"logbeacon serve did not start:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/logs/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        token = (work / "data" / "read_token").read_text().strip()
        yield Server(url, token, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


# --------------------------------------------------------------------------- subscribers


async def _subscribe(
    client: httpx.AsyncClient, params: dict[str, str], ready: asyncio.Event, out: list[float]
) -> int:
    """Read one stream until cancelled; append each event's latency in ms to `out`."""
    notices = 0
    async with client.stream("GET", "/v1/stream", params=params) as response:
        response.raise_for_status()
        ready.set()
        buffer = b""
        async for chunk in response.aiter_raw():
            now = time.time_ns()
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                if b"event: notice" in frame:
                    notices += 1
                    continue
                # A search, not a JSON parse: the reader must not be the bottleneck.
                sent = _SENT_NS.search(frame)
                if sent is not None and b'"warm":true' not in frame:
                    out.append((now - int(sent.group(1))) / 1e6)
    return notices


async def _subscribers_main(url: str, token: str, service: str, count: int, limit: float) -> None:
    """Subscriber process: prints "ready", then the latencies as JSON when told to stop."""
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(10.0, read=None)
    limits = httpx.Limits(max_connections=count + 1)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=timeout, limits=limits
    ) as client:
        readies = [asyncio.Event() for _ in range(count)]
        outs: list[list[float]] = [[] for _ in range(count)]
        tasks = [
            asyncio.create_task(_subscribe(client, {"service": service}, ready, out))
            for ready, out in zip(readies, outs, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        stop = loop.run_in_executor(None, sys.stdin.readline)  # the parent says when
        await asyncio.wait_for(stop, limit)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    notices = sum(r for r in results if isinstance(r, int))
    print(json.dumps({"latencies": outs, "notices": notices}), flush=True)


# --------------------------------------------------------------------------- the load


@dataclass
class Load:
    sent: int
    seconds: float
    ingest_ms: list[float]
    failures: int


async def _generate(
    url: str, service: str, rate: float, seconds: float, batch: int, *, warm: bool = False
) -> Load:
    """Post `rate` events/s in batches for `seconds`, open loop, up to 16 requests in flight."""
    interval = batch / rate
    batches = max(1, round(seconds / interval))
    ingest_ms: list[float] = []
    failures = 0
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    seq = 0

    async def post(client: httpx.AsyncClient, body: bytes, count: int) -> None:
        nonlocal failures
        async with gate:
            started = time.perf_counter()
            try:
                response = await client.post(
                    "/v1/logs", content=body, headers={"content-type": "application/json"}
                )
                if response.status_code != 200 or response.json()["accepted"] != count:
                    failures += 1
            except httpx.HTTPError:
                failures += 1
            ingest_ms.append((time.perf_counter() - started) * 1000)

    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        tasks = []
        started = time.perf_counter()
        for number in range(batches):
            delay = started + number * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_ns = time.time_ns()
            events = [
                {"service": service, "event": "bench_tick", "seq": seq + i, "sent_ns": sent_ns}
                for i in range(batch)
            ]
            if warm:
                for event in events:
                    event["warm"] = True
            seq += batch
            tasks.append(asyncio.create_task(post(client, orjson.dumps(events), batch)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return Load(seq, elapsed, ingest_ms, failures)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (Linux /proc): the
    server's SQLite writer process counts as the server."""
    total = 0.0
    for each in (pid, *_children(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children.extend(int(child) for child in task.read_text().split())
        except OSError:
            continue
    return children


@dataclass
class Result:
    rate: float
    load: Load
    latencies: list[list[float]]
    notices: int
    cores: tuple[float, float, float] = (0.0, 0.0, 0.0)  # server, subscribers, generator
    run: int = 1

    def all_ms(self) -> list[float]:
        return sorted(x for per in self.latencies for x in per)


def pct(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure_rate(server: Server, args: argparse.Namespace, rate: float) -> Result:
    service = f"bench-{uuid.uuid4().hex[:8]}"
    limit = WARMUP_S + args.seconds + 60
    subscribers = subprocess.Popen(
        [sys.executable, __file__, "--subscriber", server.url, server.token, service,
         str(args.subscribers), str(limit)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert subscribers.stdout is not None
        assert subscribers.stdin is not None
        if subscribers.stdout.readline().strip() != "ready":
            raise RuntimeError("the subscribers did not connect")
        # The warm-up reaches the same streams; its events are marked and not measured.
        asyncio.run(_generate(server.url, service, rate, WARMUP_S, args.batch, warm=True))
        time.sleep(0.5)
        before = (cpu_seconds(server.proc.pid), cpu_seconds(subscribers.pid), time.process_time())
        load = asyncio.run(_generate(server.url, service, rate, args.seconds, args.batch))
        after = (cpu_seconds(server.proc.pid), cpu_seconds(subscribers.pid), time.process_time())
        cores = tuple((b - a) / load.seconds for a, b in zip(before, after, strict=True))
        time.sleep(2.0)  # let the streams drain
        subscribers.stdin.write("stop\n")
        subscribers.stdin.flush()
        report = json.loads(subscribers.stdout.readline())
    finally:
        if subscribers.poll() is None:
            subscribers.terminate()
        subscribers.wait(15)
    return Result(rate, load, report["latencies"], report["notices"], cores)  # type: ignore[arg-type]


def table(results: Sequence[Result], args: argparse.Namespace) -> list[str]:
    lines = [
        "| run | events/s offered | achieved | events per subscriber (expected) | p50 ms "
        "| p90 ms | p99 ms | max ms | ingest request p50 / p99 ms | failed requests "
        "| cut-off notices | cores used: server / subscribers / generator |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in sorted(results, key=lambda r: (r.rate, r.run)):
        ms = r.all_ms()
        ingest = sorted(r.load.ingest_ms)
        counts = sorted({len(per) for per in r.latencies})
        got = (
            "–".join(f"{c:,}" for c in (counts[0], counts[-1]))
            if len(counts) > 1
            else (f"{counts[0]:,}")
        )
        lines.append(
            f"| {r.run} | {r.rate:,.0f} | {r.load.sent / r.load.seconds:,.0f} | {got} "
            f"({r.load.sent:,}) | {pct(ms, 0.5):.1f} | {pct(ms, 0.9):.1f} | {pct(ms, 0.99):.1f} | "
            f"{ms[-1] if ms else float('nan'):.1f} | {pct(ingest, 0.5):.1f} / "
            f"{pct(ingest, 0.99):.1f} | {r.load.failures} | {r.notices} | "
            + " / ".join(f"{c:.2f}" for c in r.cores)
            + " |"
        )
    lines += ["", "| target | measured | result |", "|---|---:|---|"]
    at_target = [r for r in results if r.rate == 5000]
    if at_target:
        p99s = sorted(pct(r.all_ms(), 0.99) for r in at_target)
        median = statistics.median(p99s)
        complete = all(len(per) == r.load.sent for r in at_target for per in r.latencies)
        verdict = "**pass**" if median < TARGET_P99_MS and complete else "**FAIL**"
        runs = ", ".join(f"{p:.1f}" for p in p99s)
        lines.append(
            f"| {args.subscribers} subscribers at 5,000 events/s: p99 < {TARGET_P99_MS:g} ms "
            f"(median of {len(p99s)} runs), every event delivered to every subscriber "
            f"| {median:.1f} ms (runs: {runs})"
            f"{'' if complete else ', some events missing'} | {verdict} |"
        )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,5000", help="events/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per rate")
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100, help="events per POST")
    parser.add_argument("--repeats", type=int, default=3, help="runs per rate (median)")
    parser.add_argument(
        "--tail-queue",
        type=int,
        default=None,
        help="LOGBEACON_TAIL_QUEUE for the server (default: the server's own default)",
    )
    parser.add_argument("--out", default=str(HERE / "results" / "stream.md"))
    args = parser.parse_args(argv)
    args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    if not (
        0 < args.seconds <= 60
        and 1 <= args.subscribers <= 50
        and 1 <= args.batch <= 1000
        and 1 <= args.repeats <= 9
        and all(0 < r <= 20_000 for r in args.rate_list)
    ):
        parser.error(
            "--seconds 0..60, --subscribers 1..50, --batch 1..1000, --repeats 1..9, rates 0..20000"
        )
    return args


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--subscriber"]:
        url, token, service, count, limit = arguments[1:6]
        asyncio.run(_subscribers_main(url, token, service, int(count), float(limit)))
        return
    args = parse_args(arguments)
    load_avg = os.getloadavg()
    started = time.monotonic()
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="logbeacon-bench-stream-") as tmp,
        logbeacon_serve(Path(tmp), args.subscribers, args.tail_queue) as server,
    ):
        for run in range(1, args.repeats + 1):  # rounds interleave the rates
            for rate in args.rate_list:
                result = measure_rate(server, args, rate)
                result.run = run
                ms = result.all_ms()
                print(
                    f"[{run}/{args.repeats}] {rate:,.0f} events/s: p50 {pct(ms, 0.5):.1f} ms, "
                    f"p99 {pct(ms, 0.99):.1f} ms, {len(ms):,} deliveries",
                    file=sys.stderr,
                )
                results.append(result)
    body = table(results, args)
    command = "python bench/stream.py" + "".join(f" {a}" for a in arguments)
    doc = io.StringIO()
    print("# Live tail latency: ingest → SSE delivery", file=doc)
    print(file=doc)
    print(f"- command: `{command}`", file=doc)
    print(
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; total run time "
        f"{time.monotonic() - started:.0f} s; {args.subscribers} SSE subscribers on one "
        f"`logbeacon serve` subprocess (SQLite, WAL, synchronous=NORMAL, rate limit lifted), "
        f"{args.seconds:g} s measured per rate after a {WARMUP_S:g} s warm-up, batches of "
        f"{args.batch} events, open loop with up to {MAX_IN_FLIGHT} requests in flight; "
        + (
            f"LOGBEACON_TAIL_QUEUE={args.tail_queue}"
            if args.tail_queue
            else "default tail outbox (LOGBEACON_TAIL_QUEUE unset: 10,000 events per subscriber)"
        ),
        file=doc,
    )
    print(
        f"- machine: {os.cpu_count()} cores, load average at start {load_avg[0]:.2f}, "
        f"{load_avg[1]:.2f}, {load_avg[2]:.2f} (a shared machine: other work was running); "
        f"Python {platform.python_version()}; the load generator and the subscriber process "
        "share the cores with the server",
        file=doc,
    )
    print(
        "- latency = arrival on the subscriber − the moment the event's batch was sent, "
        "over every event on every subscriber; it includes the ingest request's commit",
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
