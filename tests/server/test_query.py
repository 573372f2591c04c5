"""GET /v1/logs and GET /v1/traces/{id} in-process: filters, paging under load, traces."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from logbeacon.event import format_timestamp
from logbeacon.server.app import ServerApp
from tests.server.conftest import FakeClock, Harness, HarnessFactory

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
async def fast(make_harness: HarnessFactory) -> Any:
    """An app whose rate limit does not get in the way of bulk loading."""
    async with make_harness(burst=1000, rate=1_000_000.0) as harness:
        yield harness


async def load(harness: Harness, events: list[dict[str, Any]]) -> None:
    async with harness.client() as client:
        for start in range(0, len(events), 1000):
            response = await client.post("/v1/logs", json=events[start : start + 1000])
            assert 200 == response.status_code
            assert [] == response.json()["rejected"]


def at(seconds_ago: float, clock: FakeClock) -> str:
    return format_timestamp(clock.now - seconds_ago)


SAMPLE = [
    {
        "event": "http_request",
        "level": "info",
        "service": "api",
        "environment": "prod",
        "request_id": "r1",
        "session_id": "s1",
        "trace_id": TRACE,
        "message": "GET /a",
    },
    {
        "event": "node_start",
        "level": "debug",
        "service": "langgraph",
        "run_id": "run1",
        "node": "developer",
        "job_id": "j1",
    },
    {
        "event": "window_error",
        "level": "error",
        "service": "web",
        "session_id": "s2",
        "correlation_id": "c1",
        "message": "TypeError: boom while rendering",
    },
    {
        "event": "layer_error",
        "level": "critical",
        "service": "scheduler",
        "job_id": "j2",
        "environment": "staging",
        "error": {"type": "TimeoutError", "message": "upstream timeout"},
    },
]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"http_request", "node_start", "window_error", "layer_error"}),
        ({"level": "error"}, {"window_error", "layer_error"}),
        ({"level": "warning"}, {"window_error", "layer_error"}),
        ({"service": "web"}, {"window_error"}),
        ({"environment": "prod"}, {"http_request"}),
        ({"event": "node_start"}, {"node_start"}),
        ({"trace_id": TRACE}, {"http_request"}),
        ({"request_id": "r1"}, {"http_request"}),
        ({"session_id": "s2"}, {"window_error"}),
        ({"run_id": "run1"}, {"node_start"}),
        ({"job_id": "j2"}, {"layer_error"}),
        ({"correlation_id": "c1"}, {"window_error"}),
        ({"node": "developer"}, {"node_start"}),
        ({"service": "api", "level": "error"}, set()),
        ({"since": "1h"}, {"http_request", "node_start", "window_error", "layer_error"}),
        ({"until": "1h"}, set()),
    ],
)
async def test_every_filter(fast: Harness, params: dict[str, str], expected: set[str]) -> None:
    """Each filter of DESIGN.md §4 selects exactly the matching events."""
    await load(fast, SAMPLE)
    async with fast.client() as client:
        response = await client.get("/v1/logs", params=params, headers=fast.read_headers)
    assert 200 == response.status_code
    assert expected == {e["event"] for e in response.json()["events"]}


async def test_time_window_filters(make_harness: HarnessFactory) -> None:
    """since is inclusive and until exclusive, on the event's own timestamp."""
    clock = FakeClock()
    events = [{"event": f"e{i}", "timestamp": at(i * 600, clock)} for i in range(6)]
    async with make_harness(clock=clock) as harness:
        await load(harness, events)
        async with harness.client() as client:
            response = await client.get(
                "/v1/logs",
                params={"since": "40m", "until": at(600, clock)},
                headers=harness.read_headers,
            )
    assert ["e2", "e3", "e4"] == [e["event"] for e in response.json()["events"]]


async def test_full_text_search_within_a_second(fast: Harness) -> None:
    """q finds words in message and error text within one second of the ack."""
    await load(fast, SAMPLE)
    found: set[str] = set()
    async with fast.client() as client:
        for _ in range(20):
            response = await client.get(
                "/v1/logs", params={"q": "timeout"}, headers=fast.read_headers
            )
            found = {e["event"] for e in response.json()["events"]}
            if found:
                break
            await asyncio.sleep(0.05)
    assert {"layer_error"} == found


async def test_newest_first_with_limit_and_cursor(make_harness: HarnessFactory) -> None:
    """Results come newest first, `limit` at a time, with a cursor to the next page."""
    clock = FakeClock()
    events = [{"event": f"e{i}", "timestamp": at(100 - i, clock)} for i in range(5)]
    async with make_harness(clock=clock) as harness:
        await load(harness, events)
        async with harness.client() as client:
            first = (
                await client.get("/v1/logs", params={"limit": 3}, headers=harness.read_headers)
            ).json()
            second = (
                await client.get(
                    "/v1/logs",
                    params={"limit": 3, "cursor": first["next_cursor"]},
                    headers=harness.read_headers,
                )
            ).json()
    assert ["e4", "e3", "e2"] == [e["event"] for e in first["events"]]
    assert ["e1", "e0"] == [e["event"] for e in second["events"]]
    assert second["next_cursor"] is None


async def test_paging_5000_events_while_ingesting(fast: Harness) -> None:
    """Paging through 5 000 events while another client ingests never skips or repeats one."""
    await load(fast, [{"event": "old", "seq": i} for i in range(5000)])
    stop = asyncio.Event()

    async def writer() -> int:
        written = 0
        async with fast.client(client=("127.0.0.2", 1)) as client:
            while not stop.is_set():
                response = await client.post("/v1/logs", json=[{"event": "new"}] * 50)
                written += response.json()["accepted"]
                await asyncio.sleep(0)
        return written

    task = asyncio.create_task(writer())
    seen: list[int] = []
    cursor = None
    async with fast.client() as client:
        while True:
            params: dict[str, Any] = {"limit": 700, "event": "old"}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/v1/logs", params=params, headers=fast.read_headers)).json()
            seen.extend(e["seq"] for e in page["events"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            await asyncio.sleep(0.01)
    stop.set()
    written = await task
    assert written > 0
    assert len(seen) == len(set(seen))
    assert set(range(5000)) == set(seen)


async def test_invalid_cursor_is_422(client: Any, harness: Harness) -> None:
    """A forged or foreign cursor is a 422 naming the parameter."""
    response = await client.get(
        "/v1/logs", params={"cursor": "not-a-cursor"}, headers=harness.read_headers
    )
    assert (422, "invalid_cursor") == (response.status_code, response.json()["error"])


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"levle": "error"}, 400, "unknown_parameter"),
        ({"level; DROP TABLE logs": "1"}, 400, "unknown_parameter"),
        ({"level": "verbose"}, 422, "invalid_parameter"),
        ({"limit": "5000"}, 422, "invalid_parameter"),
        ({"since": "last tuesday"}, 422, "invalid_parameter"),
        ({"trace_id": "' OR 1=1 --"}, 422, "invalid_parameter"),
    ],
)
async def test_bad_query_parameters(
    harness: Harness, client: Any, params: dict[str, str], status: int, error: str
) -> None:
    """Unknown parameters are 400 and invalid values 422, with a message (INJ-10)."""
    response = await client.get("/v1/logs", params=params, headers=harness.read_headers)
    assert (status, error) == (response.status_code, response.json()["error"])
    assert response.json()["message"]


async def test_injection_values_change_nothing(fast: Harness) -> None:
    """SQL-looking values are bound parameters: they match nothing and drop nothing (INJ-10)."""
    await load(fast, SAMPLE)
    async with fast.client() as client:
        attacks = [{"q": "' OR 1=1 --"}, {"service": "1) UNION ALL SELECT * FROM events --"}]
        matched = [
            (await client.get("/v1/logs", params=p, headers=fast.read_headers)).json()["events"]
            for p in attacks
        ]
        everything = (await client.get("/v1/logs", headers=fast.read_headers)).json()["events"]
    assert [[], []] == matched
    assert 4 == len(everything)


async def test_html_is_stored_verbatim_and_served_as_json(fast: Harness) -> None:
    """HTML in events is returned as JSON data with nosniff, never as markup (INJ-09)."""
    payload = "<script>alert(1)</script><img src=x onerror=alert(1)>"
    await load(fast, [{"event": "x", "message": payload}])
    async with fast.client() as client:
        response = await client.get("/v1/logs", headers=fast.read_headers)
    assert payload == response.json()["events"][0]["message"]
    assert response.headers["content-type"].startswith("application/json")
    assert "nosniff" == response.headers["x-content-type-options"]


async def test_responses_are_strict_json(fast: Harness) -> None:
    """Query output parses with a strict RFC 8259 parser (no NaN/Infinity) (INJ-15)."""
    await load(fast, [{"event": "x", "ratio": 1e308, "nested": {"v": -0.0}}])
    async with fast.client() as client:
        response = await client.get("/v1/logs", headers=fast.read_headers)

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    events = json.loads(response.text, parse_constant=refuse)["events"]
    assert 1e308 == events[0]["ratio"]


# --------------------------------------------------------------------------- traces


async def test_trace_across_services_in_time_order(make_harness: HarnessFactory) -> None:
    """A trace's events come oldest first with services, start, duration and error count."""
    clock = FakeClock()
    events = [
        {"event": "node_complete", "service": "langgraph", "timestamp": at(1.0, clock)},
        {"event": "window_error", "level": "error", "service": "web", "timestamp": at(0.2, clock)},
        {"event": "http_request", "service": "api", "timestamp": at(2.5, clock)},
        {"event": "node_start", "service": "langgraph", "timestamp": at(2.0, clock)},
        {"event": "unrelated", "service": "api", "trace_id": "b" * 32},
    ]
    for event in events[:4]:
        event["trace_id"] = TRACE
    async with make_harness(clock=clock) as harness:
        await load(harness, events)
        async with harness.client() as client:
            response = await client.get(f"/v1/traces/{TRACE}", headers=harness.read_headers)
    doc = response.json()
    assert 200 == response.status_code
    assert ["http_request", "node_start", "node_complete", "window_error"] == [
        e["event"] for e in doc["events"]
    ]
    assert ["api", "langgraph", "web"] == doc["services"]
    assert (at(2.5, clock), 2300.0, 1) == (
        doc["started_at"],
        doc["duration_ms"],
        doc["error_count"],
    )
    assert (TRACE, False) == (doc["trace_id"], doc["truncated"])


async def test_trace_id_is_case_insensitive(fast: Harness) -> None:
    """An upper-case trace id finds the (lower-case) stored trace."""
    await load(fast, [{"event": "x", "trace_id": TRACE}])
    async with fast.client() as client:
        response = await client.get(f"/v1/traces/{TRACE.upper()}", headers=fast.read_headers)
    assert 200 == response.status_code


async def test_unknown_trace_is_404_and_malformed_is_422(harness: Harness, client: Any) -> None:
    """An unknown trace id is 404; one that is not 32 hex characters is 422."""
    unknown = await client.get(f"/v1/traces/{'c' * 32}", headers=harness.read_headers)
    malformed = await client.get("/v1/traces/not-a-trace", headers=harness.read_headers)
    assert (404, "trace_not_found") == (unknown.status_code, unknown.json()["error"])
    assert 422 == malformed.status_code
    assert "trace_id" in malformed.json()["message"]


async def test_router_answers_traces_like_the_fast_path(make_harness: HarnessFactory) -> None:
    """Trace lookups are answered before the router (`ServerApp`); behind a proxy prefix the
    router's route answers. Both give the same statuses, bodies and headers: found, unknown,
    no token, a credential that may not read, and `?token=` setting the read cookie."""
    token = "read-token-FAKE-0123456789"
    ingest_key = "ingest-key-FAKE-0123456789"
    async with make_harness(read_tokens=(token,), ingest_keys=(ingest_key,)) as harness:
        async with harness.client() as client:
            await client.post(
                "/v1/logs",
                json=[{"event": "x", "trace_id": TRACE}],
                headers={"authorization": f"Bearer {ingest_key}"},
            )
        app = harness.app
        assert isinstance(app, ServerApp)
        inner = app._trace_stack  # built by the first request
        assert inner is not None
        fast_calls = 0

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            nonlocal fast_calls
            fast_calls += 1
            await inner(scope, receive, send)

        app._trace_stack = counting
        answers: dict[str, list[tuple[int, Any, str | None, str | None]]] = {}
        for prefix, root_path in (("", ""), ("/proxy", "/proxy")):
            transport = httpx.ASGITransport(
                app=harness.app, client=("127.0.0.1", 1), root_path=root_path
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                calls = [
                    client.get(f"{prefix}/v1/traces/{TRACE.upper()}", headers=bearer(token)),
                    client.get(f"{prefix}/v1/traces/{'c' * 32}", headers=bearer(token)),
                    client.get(f"{prefix}/v1/traces/{TRACE}"),
                    client.get(f"{prefix}/v1/traces/{TRACE}", headers=bearer(ingest_key)),
                    client.get(f"{prefix}/v1/traces/{TRACE}", params={"token": token}),
                ]
                responses = [await call for call in calls]
            answers[prefix] = [
                (
                    r.status_code,
                    r.json(),
                    r.headers.get("www-authenticate"),
                    r.headers.get("set-cookie"),
                )
                for r in responses
            ]
            assert all("nosniff" == r.headers["x-content-type-options"] for r in responses)
    assert 5 == fast_calls  # the five calls without a prefix, none behind it
    fast, routed = answers[""], answers["/proxy"]
    assert [200, 404, 401, 403, 200] == [status for status, *_ in fast]
    assert TRACE == fast[0][1]["trace_id"]
    assert fast[4][3] is not None
    assert "HttpOnly" in fast[4][3]
    assert fast == routed


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
