"""An instrumented FastAPI app behind a real uvicorn server on a free 127.0.0.1 port.

What only a real server shows: headers on the wire, streaming and SSE delivered chunk by
chunk through the middleware, ids under real concurrency, and the 500 body a client sees.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from logbeacon.context import get_context
from logbeacon.integrations.fastapi import instrument_app
from logbeacon.sdk import get_logger

app_log = get_logger("tests.e2e")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


class Gates:
    """Thread-safe signals between the test (client) and the app (server thread)."""

    def __init__(self) -> None:
        self.stream = threading.Event()
        self.sse = threading.Event()
        self.timed_out: list[str] = []

    async def wait(self, name: str) -> None:
        """Block an endpoint until the client has seen its first chunk (or 5 s passed)."""
        gate: threading.Event = getattr(self, name)
        if not await run_in_threadpool(gate.wait, 5.0):
            self.timed_out.append(name)


def build_app(gates: Gates) -> FastAPI:
    """The app under test: plain, failing, streaming, SSE and background endpoints."""
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, Any]:
        await asyncio.sleep(0.001 * (user_id % 3))
        app_log.info("user_loaded", n=user_id)
        return dict(get_context())

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("database on fire")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            await gates.wait("stream")
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/events", response_class=EventSourceResponse)
    async def events() -> AsyncIterator[dict[str, int]]:
        yield {"n": 1}
        await gates.wait("sse")
        yield {"n": 2}

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(app_log.info, "background_done")
        return {}

    return instrument_app(app, service="api")


@pytest.fixture
def gates() -> Gates:
    """Fresh gates for one test."""
    return Gates()


@pytest.fixture
def base_url(gates: Gates) -> Iterator[str]:
    """Serve the app with uvicorn in a thread on a free loopback port; stop it afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(gates), log_config=None, lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive()


def named(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """Captured events called `name`."""
    return [e for e in logs if e["event"] == name]


def wait_for(logs: list[dict[str, Any]], name: str, count: int = 1) -> list[dict[str, Any]]:
    """Events are emitted on the server thread after the response: wait briefly for them."""
    deadline = time.monotonic() + 5
    while len(named(logs, name)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return named(logs, name)


def test_headers_and_event_on_the_wire(base_url: str, logs: list[dict[str, Any]]) -> None:
    """A real response carries the ids, and the event logs the route template and status."""
    traceparent = f"00-{TRACE}-00f067aa0ba902b7-01"
    response = httpx.get(
        f"{base_url}/users/42?session=abc",
        headers={"x-request-id": "client-req-1", "traceparent": traceparent},
    )
    assert 200 == response.status_code
    assert ("client-req-1", TRACE) == (
        response.headers["x-request-id"],
        response.headers["x-trace-id"],
    )
    assert response.headers["traceparent"].startswith(f"00-{TRACE}-")
    assert response.headers["traceparent"] != traceparent
    event = wait_for(logs, "http_request")[0]
    assert ("api", "/users/{user_id}", 200, "client-req-1") == (
        event["service"],
        event["route"],
        event["http"]["status"],
        event["request_id"],
    )
    assert "session=abc" not in str(event)


@pytest.mark.parametrize(
    ("sent", "kept"), [("abc.DEF:123_-x", True), ("r" * 200, False), ("two words", False)]
)
def test_request_id_rule_on_the_wire(base_url: str, sent: str, kept: bool) -> None:
    """A valid x-request-id comes back unchanged; an over-long or odd one is replaced."""
    response = httpx.get(f"{base_url}/users/1", headers={"x-request-id": sent})
    assert kept == (sent == response.headers["x-request-id"])
    assert 1 <= len(response.headers["x-request-id"]) <= 128


def test_bad_traceparent_starts_a_new_trace(base_url: str) -> None:
    """An invalid traceparent is ignored by a real server too: new trace, 200."""
    response = httpx.get(
        f"{base_url}/users/1", headers={"traceparent": f"00-{TRACE.upper()}-00F067AA0BA902B7-01"}
    )
    assert 200 == response.status_code
    assert TRACE != response.headers["x-trace-id"]
    assert response.headers["x-trace-id"] == response.json()["trace_id"]


@pytest.mark.parametrize(
    ("path", "status", "level", "route"),
    [
        ("/nowhere/123", 404, "warn", "<unmatched>"),
        ("/users/abc", 422, "warn", "/users/{user_id}"),
        ("/crash", 500, "error", "/crash"),
    ],
)
def test_error_paths(
    base_url: str, path: str, status: int, level: str, route: str, logs: list[dict[str, Any]]
) -> None:
    """404, 422 and 500 answer as expected and log one http_request at the right level."""
    response = httpx.get(f"{base_url}{path}")
    assert status == response.status_code
    event = wait_for(logs, "http_request")[0]
    assert (level, route, status) == (event["level"], event["route"], event["http"]["status"])
    assert response.headers["x-request-id"] == event["request_id"]
    if status == 500:
        body = {"detail": "internal_error", "request_id": response.headers["x-request-id"]}
        assert body == response.json()
        error = named(logs, "unhandled_exception")[0]
        assert ("RuntimeError", event["request_id"]) == (
            error["error"]["type"],
            error["request_id"],
        )


def test_streaming_response_streams_chunk_by_chunk(
    base_url: str, gates: Gates, logs: list[dict[str, Any]]
) -> None:
    """The first chunk reaches the client while the generator is still waiting to go on."""
    with httpx.stream("GET", f"{base_url}/stream", timeout=10) as response:
        assert "x-request-id" in response.headers
        chunks = response.iter_raw()
        first = next(chunks)
        gates.stream.set()
        rest = b"".join(chunks)
    assert (b"first\n", b"second\n") == (first, rest)
    assert [] == gates.timed_out
    assert 200 == wait_for(logs, "http_request")[0]["http"]["status"]


def test_sse_endpoint_streams_events_as_they_happen(base_url: str, gates: Gates) -> None:
    """The first Server-Sent Event arrives before the endpoint produces the second."""
    with httpx.stream("GET", f"{base_url}/events", timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "x-trace-id" in response.headers
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        gates.sse.set()
        second = next(line for line in lines if line.startswith("data:"))
    assert ('data: {"n":1}', 'data: {"n":2}') == (first, second)
    assert [] == gates.timed_out


def test_background_task_logs_with_the_request_ids(
    base_url: str, logs: list[dict[str, Any]]
) -> None:
    """A BackgroundTasks job runs after the response and still logs the request's ids."""
    response = httpx.get(f"{base_url}/background")
    event = wait_for(logs, "background_done")[0]
    assert (response.headers["x-request-id"], response.headers["x-trace-id"]) == (
        event["request_id"],
        event["trace_id"],
    )


async def test_trc19_concurrent_requests_keep_their_own_ids(
    base_url: str, logs: list[dict[str, Any]]
) -> None:
    """TRC-19 over a real server: 200 concurrent requests never see each other's trace ids."""
    traces = [f"{i + 1:032x}" for i in range(200)]
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(
                client.get(f"/users/{i}", headers={"traceparent": f"00-{t}-00f067aa0ba902b7-01"})
                for i, t in enumerate(traces)
            )
        )
    assert traces == [r.json()["trace_id"] for r in responses]
    assert traces == [r.headers["x-trace-id"] for r in responses]
    loaded = sorted(wait_for(logs, "user_loaded", 200), key=lambda e: e["n"])
    assert traces == [e["trace_id"] for e in loaded]
    requests = wait_for(logs, "http_request", 200)
    by_request = {r.headers["x-request-id"]: r.headers["x-trace-id"] for r in responses}
    assert by_request == {e["request_id"]: e["trace_id"] for e in requests}
