"""Live tail and analysis over `WS /v1/ws` against a real `logbeacon serve` (DESIGN.md §8)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from logbeacon.server.auth import READ_COOKIE
from tests.helpers.server import RunningServer, running_server

pytestmark = pytest.mark.e2e

WS_ENV = {
    "LOGBEACON_TAIL_MAX_SUBSCRIBERS": "3",
    "LOGBEACON_TAIL_QUEUE": "20",
    "LOGBEACON_RATE": "1000000",
    "LOGBEACON_BURST": "100000",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("ws"), env=WS_ENV) as running:
        yield running


def _url(server: RunningServer, **query: str) -> str:
    suffix = f"?{urlencode(query)}" if query else ""
    return f"ws://127.0.0.1:{server.port}/v1/ws{suffix}"


@contextlib.asynccontextmanager
async def socket(
    server: RunningServer, headers: dict[str, str] | None = None, **query: str
) -> AsyncIterator[ClientConnection]:
    """A connection authenticated with the bearer header unless told otherwise."""
    chosen = server.read_headers if headers is None else headers
    async with connect(
        _url(server, **query), additional_headers=chosen, proxy=None, open_timeout=10
    ) as ws:
        yield ws


async def receive(ws: ClientConnection, seconds: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        message = await ws.recv()
    assert isinstance(message, str)  # JSON always comes as text frames
    value = orjson.loads(message)
    assert isinstance(value, dict)
    return value


async def request(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(orjson.dumps(message).decode())
    return await receive(ws)


async def post(server: RunningServer, events: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/v1/logs", json=events)
    assert 200 == response.status_code, response.text


def _tag() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, {}),
        ({}, {"token": "not-a-token"}),
        ({"Authorization": "Bearer not-a-token"}, {}),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, {}),
        ("cookie-from-another-site", {}),
    ],
)
async def test_missing_or_invalid_credentials_are_refused_before_the_handshake(
    server: RunningServer, headers: dict[str, str] | str, query: dict[str, str]
) -> None:
    """No valid read token (or the cookie sent by another site's page) → HTTP 403, no socket."""
    if headers == "cookie-from-another-site":
        headers = {
            "Cookie": f"{READ_COOKIE}={server.read_token}",
            "Origin": "https://evil.example",
        }
    assert isinstance(headers, dict)
    with pytest.raises(InvalidStatus) as refused:
        async with socket(server, headers, **query):
            pass
    assert 403 == refused.value.response.status_code


async def test_query_token_header_and_same_origin_cookie_are_accepted(
    server: RunningServer,
) -> None:
    """`?token=`, `Authorization: Bearer` and the dashboard cookie from its own origin work."""
    cookie = {
        "Cookie": f"{READ_COOKIE}={server.read_token}",
        "Origin": f"http://127.0.0.1:{server.port}",
    }
    replies = []
    for headers, query in [({}, {"token": server.read_token}), (None, {}), (cookie, {})]:
        async with socket(server, headers, **query) as ws:
            replies.append(await request(ws, {"type": "ping"}))
    assert [{"type": "pong"}] * 3 == replies


# --------------------------------------------------------------------------- live tail


async def test_subscribe_pushes_matching_events_and_a_new_subscribe_replaces_the_filter(
    server: RunningServer,
) -> None:
    """Only events matching the current filter are pushed; subscribing again replaces it."""
    first, second = _tag(), _tag()
    async with socket(server) as ws:
        assert {"type": "subscribed"} == await request(
            ws, {"type": "subscribe", "service": first, "level": "warn"}
        )
        await post(
            server,
            [
                {"service": first, "event": "quiet", "level": "info"},
                {"service": second, "event": "other", "level": "error"},
                {"service": first, "event": "loud", "level": "error"},
            ],
        )
        pushed = await receive(ws)
        assert {"type": "subscribed"} == await request(ws, {"type": "subscribe", "service": second})
        await post(
            server,
            [
                {"service": first, "event": "old_filter", "level": "error"},
                {"service": second, "event": "new_filter", "level": "debug"},
            ],
        )
        replaced = await receive(ws)
        after = await request(ws, {"type": "ping"})  # nothing else was queued before the pong
    assert ("log", "loud", first) == (
        pushed["type"],
        pushed["event"]["event"],
        pushed["event"]["service"],
    )
    assert ("log", "new_filter") == (replaced["type"], replaced["event"]["event"])
    assert {"type": "pong"} == after


async def test_unsubscribe_stops_the_pushes(server: RunningServer) -> None:
    """After `unsubscribe`, matching events are no longer pushed and the socket stays usable."""
    service = _tag()
    async with socket(server) as ws:
        await request(ws, {"type": "subscribe", "service": service})
        assert {"type": "unsubscribed"} == await request(ws, {"type": "unsubscribe"})
        await post(server, [{"service": service, "event": "unseen"}])
        assert {"type": "pong"} == await request(ws, {"type": "ping"})


async def test_hostile_event_text_arrives_intact_as_json(server: RunningServer) -> None:
    """CR/LF, escapes and U+2028 in a value are JSON-encoded, never a second message."""
    service = _tag()
    hostile = 'ok\r\n{"type":"log"}\x1b[31m\u2028end'
    async with socket(server) as ws:
        await request(ws, {"type": "subscribe", "service": service})
        await post(server, [{"service": service, "event": "x", "message": hostile}])
        pushed = await receive(ws)
        after = await request(ws, {"type": "ping"})
    assert (hostile, {"type": "pong"}) == (pushed["event"]["message"], after)


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1, 2]",
        "{}",
        '{"type": 3}',
        '{"type": "shout"}',
        '{"type": "subscribe", "level": "loud"}',
        '{"type": "subscribe", "levle": "warn"}',
        '{"type": "subscribe", "level": 40}',
        '{"type": "subscribe", "cursor": "abc"}',
        '{"type": "subscribe", "trace_id": "xyz"}',
        '{"type": "analysis_request", "time_range": "1h"}',
        '{"type": "analysis_request", "request_id": "r", "time_range": "soon"}',
        '{"type": "analysis_request", "request_id": "r", "time_range": -5}',
        '{"type": "analysis_request", "request_id": "r", "level": "loud"}',
        '{"type": "analysis_request", "request_id": "r", "colour": "red"}',
        b'{"type": "ping"}',
        "x" * 70_000,
    ],
)
async def test_malformed_messages_get_an_error_and_the_socket_stays_open(
    server: RunningServer, message: str | bytes
) -> None:
    """Each bad message is answered with `{"type": "error", "message": …}`; ping still works."""
    async with socket(server) as ws:
        await ws.send(message)
        error = await receive(ws)
        pong = await request(ws, {"type": "ping"})
    assert ("error", True) == (error["type"], isinstance(error.get("message"), str))
    assert {"type": "pong"} == pong


async def test_a_bad_analysis_request_error_names_its_request_id(server: RunningServer) -> None:
    """An error about an analysis request carries its request_id so the client can match it."""
    async with socket(server) as ws:
        error = await request(
            ws, {"type": "analysis_request", "request_id": "q-7", "time_range": "soon"}
        )
    assert ("error", "q-7") == (error["type"], error["request_id"])


# --------------------------------------------------------------------------- analysis


async def test_analysis_request_answers_like_the_analysis_api(server: RunningServer) -> None:
    """`analysis_request` → `analysis_response` with the same request_id and the same content
    as `GET /v1/analysis` for that window and filters."""
    service = _tag()
    await post(
        server,
        [
            {"service": service, "event": "ok", "level": "info"},
            {
                "service": service,
                "event": "boom",
                "level": "error",
                "error": {"type": "TimeoutError", "message": "upstream timed out"},
            },
        ],
    )
    async with socket(server) as ws:
        response = await request(
            ws,
            {
                "type": "analysis_request",
                "request_id": "req-1",
                "time_range": "15m",
                "service": service,
            },
        )
        numeric = await request(
            ws, {"type": "analysis_request", "request_id": 42, "time_range": 900}
        )
    async with httpx.AsyncClient(base_url=server.url, headers=server.read_headers) as client:
        api = (await client.get("/v1/analysis", params={"since": "15m", "service": service})).json()
    assert ("analysis_response", "req-1") == (response.pop("type"), response.pop("request_id"))
    assert api.keys() == response.keys()
    for part in ("filters", "totals", "by_level", "by_service"):
        assert api[part] == response[part], part
    assert {"events": 2, "errors": 1, "error_rate": 0.5} == response["totals"]
    assert ("analysis_response", 42) == (numeric["type"], numeric["request_id"])


# --------------------------------------------------------------------------- limits


async def test_connections_beyond_the_limit_are_closed_and_slots_come_back(
    server: RunningServer,
) -> None:
    """Past the subscriber limit a socket is closed with 1013; closed sockets free their slot."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):
            ws = await stack.enter_async_context(socket(server))
            assert {"type": "pong"} == await request(ws, {"type": "ping"})
        async with socket(server) as extra:
            with pytest.raises(ConnectionClosed) as closed:
                await receive(extra)
    assert closed.value.rcvd is not None
    assert 1013 == closed.value.rcvd.code
    for _ in range(100):  # the server notices the closes asynchronously
        try:
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(3):
                    ws = await stack.enter_async_context(socket(server))
                    await request(ws, {"type": "ping"})
        except ConnectionClosed:
            await asyncio.sleep(0.05)
            continue
        break
    else:
        pytest.fail("slots were not freed after the sockets closed")


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_closed_while_others_are_served(
    server: RunningServer,
) -> None:
    """A socket whose reader stalls is closed (bounded outbox); a reading one gets everything."""
    service = _tag()
    blob = {f"field{i}": "x" * 8000 for i in range(7)}  # ~56 KB per event
    total = 0
    async with (
        connect(
            _url(server, token=server.read_token),
            proxy=None,
            max_queue=1,
            ping_interval=None,
            compression=None,  # deflate would shrink the test's repetitive events 1000-fold
        ) as stalled,
        socket(server) as reader,
    ):
        for ws in (stalled, reader):
            assert {"type": "subscribed"} == await request(
                ws, {"type": "subscribe", "service": service}
            )
        for _ in range(30):
            await post(server, [{"service": service, "event": "big", **blob} for _ in range(10)])
            total += 10
            for _ in range(10):  # this reader keeps up
                assert "log" == (await receive(reader))["type"]
        kinds = await _drain(stalled)
    assert 0 < kinds.count("log") < total


async def _drain(ws: ClientConnection) -> list[str]:
    """Types of every message left on a socket, until it is closed (bounded wait)."""
    kinds = []
    async with asyncio.timeout(20):
        while True:
            try:
                message = await ws.recv()
            except ConnectionClosed:
                return kinds
            kinds.append(orjson.loads(message)["type"])
