"""A slow server does not slow `log.info()` down in the app thread (the numbers are measured
by bench/shipping.py; this only catches a shipper that waits for the network)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import logbeacon
from logbeacon.sdk import reset

DELAY_S = 2.0
CALLS = 2_000


class SlowServer:
    """Answers every batch with 200 after `DELAY_S` seconds, on 127.0.0.1."""

    def __init__(self) -> None:
        self.batches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                time.sleep(DELAY_S)
                owner.batches += 1
                reply = json.dumps({"accepted": 0, "duplicates": 0, "rejected": []}).encode()
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
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    server = SlowServer()
    yield server
    server.close()


def timed_calls() -> list[float]:
    """Seconds taken by each of `CALLS` paced `log.info` calls (about 1 s in all)."""
    log = logbeacon.get_logger("latency")
    out = []
    for i in range(CALLS):
        started = time.perf_counter()
        log.info("checkout_step", step=i, status="success", duration_ms=12.5)
        out.append(time.perf_counter() - started)
        if i % 10 == 9:
            time.sleep(0.005)
    return sorted(out)


@pytest.mark.slow
def test_log_calls_do_not_wait_for_a_slow_server(slow_server: SlowServer) -> None:
    """With every batch answered after 2 s, no call waits for it and the p99 stays close to
    the no-shipping p99 (loosely: within 10×, or 5 ms on a busy machine)."""
    logbeacon.configure(service="latency", format="json", stream=io.StringIO())
    baseline = timed_calls()
    reset()
    logbeacon.configure(
        service="latency", format="json", stream=io.StringIO(), ship_to=slow_server.url
    )
    try:
        shipping = timed_calls()
        assert not logbeacon.flush(0.1)  # a batch is still waiting for its slow answer
    finally:
        reset()
    p99 = int(CALLS * 0.99)
    assert shipping[-1] < DELAY_S / 2, f"a call took {shipping[-1]:.3f} s"
    assert shipping[p99] < max(10 * baseline[p99], 0.005), (shipping[p99], baseline[p99])
