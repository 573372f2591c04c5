"""CorrelationMiddleware: ids in and out, W3C trace context, route templates, one event.

Most tests drive the middleware with hand-built ASGI scopes (the exact bytes a server would
pass) or a real FastAPI/Starlette app through `httpx.ASGITransport`; the real-server checks
live in test_fastapi_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from logbeacon.context import get_context, parse_traceparent
from logbeacon.exceptions import ConfigError
from logbeacon.integrations.asgi import CorrelationMiddleware
from logbeacon.sdk import get_logger

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
App = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID_TP = f"00-{TRACE}-{PARENT}-01"
T = "12345678901234567890123456789012"
P = "1234567890123456"
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")

app_log = get_logger("tests.app")


# --------------------------------------------------------------------------- helpers


def make_scope(
    path: str = "/",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    method: str = "GET",
    kind: str = "http",
) -> Scope:
    """A scope shaped like the one uvicorn passes for a plain request."""
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: App, scope: Scope) -> list[Message]:
    """Run one request through `app` and return every message it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def recording_app(seen: list[dict[str, Any]]) -> App:
    """A raw ASGI app that records the bound context and answers 200 `ok`."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(dict(get_context()))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def response_headers(sent: list[Message]) -> list[tuple[str, str]]:
    """Headers of the `http.response.start` message, decoded."""
    start = next(m for m in sent if m["type"] == "http.response.start")
    return [(bytes(k).decode(), bytes(v).decode()) for k, v in start["headers"]]


def header(sent: list[Message], name: str) -> str:
    """The single value of response header `name`."""
    values = [v for k, v in response_headers(sent) if k == name]
    assert 1 == len(values), values
    return values[0]


def events_named(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The captured events called `name`."""
    return [e for e in logs if e["event"] == name]


async def trace_of(headers: list[tuple[bytes, bytes]], **options: Any) -> tuple[str, list[Message]]:
    """The trace id bound for a request with `headers`, and what the middleware sent."""
    seen: list[dict[str, Any]] = []
    sent = await call(
        CorrelationMiddleware(recording_app(seen), **options), make_scope("/", headers)
    )
    return seen[0]["trace_id"], sent


# --------------------------------------------------------------------------- request ids


@pytest.mark.parametrize(
    "value",
    ["abc-123", "req.42:part_7", "A" * 128, "0"],
)
async def test_valid_request_id_is_kept(value: str, logs: list[dict[str, Any]]) -> None:
    """An x-request-id of 1-128 characters of [A-Za-z0-9._:-] is bound, echoed and logged."""
    seen: list[dict[str, Any]] = []
    app = CorrelationMiddleware(recording_app(seen))
    sent = await call(app, make_scope("/", [(b"x-request-id", value.encode())]))
    assert value == seen[0]["request_id"]
    assert value == header(sent, "x-request-id")
    assert value == events_named(logs, "http_request")[0]["request_id"]


@pytest.mark.parametrize(
    "value",
    [
        b"A" * 129,
        b"x" * 200,
        b"abc\r\nx-admin: 1",
        b"abc\ndef",
        b"has space",
        b"",
        b"semi;colon",
        "caf\u00e9".encode("latin-1"),
        b"x" * 9000,
    ],
    ids=["129", "200", "crlf", "lf", "space", "empty", "semicolon", "latin1", "9000"],
)
async def test_invalid_request_id_is_replaced(value: bytes) -> None:
    """An x-request-id that is too long, empty or carries other characters is replaced."""
    seen: list[dict[str, Any]] = []
    sent = await call(
        CorrelationMiddleware(recording_app(seen)), make_scope("/", [(b"x-request-id", value)])
    )
    generated = seen[0]["request_id"]
    assert HEX32.fullmatch(generated) is not None
    assert generated == header(sent, "x-request-id")


async def test_missing_request_id_is_generated_fresh_per_request() -> None:
    """Without x-request-id every request gets its own new id."""
    seen: list[dict[str, Any]] = []
    app = CorrelationMiddleware(recording_app(seen))
    await call(app, make_scope())
    await call(app, make_scope())
    assert 2 == len({s["request_id"] for s in seen})


async def test_two_different_request_ids_are_replaced() -> None:
    """Two conflicting x-request-id headers are ambiguous, so a new id is used."""
    seen: list[dict[str, Any]] = []
    headers = [(b"x-request-id", b"first"), (b"x-request-id", b"second")]
    await call(CorrelationMiddleware(recording_app(seen)), make_scope("/", headers))
    assert seen[0]["request_id"] not in ("first", "second")


async def test_custom_request_id_header_is_read_and_written() -> None:
    """`request_id_header` names the header read from the request and set on the response."""
    seen: list[dict[str, Any]] = []
    app = CorrelationMiddleware(recording_app(seen), request_id_header="X-Correlation-ID")
    sent = await call(app, make_scope("/", [(b"x-correlation-id", b"corr-1")]))
    assert "corr-1" == seen[0]["request_id"]
    assert "corr-1" == header(sent, "x-correlation-id")
    assert [] == [v for k, v in response_headers(sent) if k == "x-request-id"]


@pytest.mark.parametrize("name", ["", "x request id", "x-id\r\n"])
def test_invalid_request_id_header_name_is_a_config_error(name: str) -> None:
    """A request id header name that is not an HTTP token is refused at construction."""
    with pytest.raises(ConfigError):
        CorrelationMiddleware(recording_app([]), request_id_header=name)


def test_skip_paths_as_a_single_string_is_a_config_error() -> None:
    """`skip_paths="/health"` would skip single characters; it is refused with a hint."""
    with pytest.raises(ConfigError, match="list of paths"):
        CorrelationMiddleware(recording_app([]), skip_paths="/health")


# --------------------------------------------------------------------------- trace context


async def test_trc01_valid_traceparent_continues_the_trace(logs: list[dict[str, Any]]) -> None:
    """TRC-01: the caller's trace id is kept, our span is new, and both are logged."""
    trace_id, sent = await trace_of([(b"traceparent", VALID_TP.encode())])
    assert TRACE == trace_id
    outbound = parse_traceparent(header(sent, "traceparent"))
    assert outbound is not None
    assert TRACE == outbound.trace_id
    assert PARENT != outbound.span_id
    assert header(sent, "traceparent").startswith("00-")
    assert outbound.sampled
    event = events_named(logs, "http_request")[0]
    assert (TRACE, outbound.span_id) == (event["trace_id"], event["span_id"])
    assert TRACE == header(sent, "x-trace-id")


@pytest.mark.parametrize("name", [b"traceparent", b"TraceParent", b"TRACEPARENT", b"TrAcEpArEnT"])
async def test_trc02_header_name_is_case_insensitive(name: bytes) -> None:
    """TRC-02: traceparent is found whatever the case of its name."""
    trace_id, _ = await trace_of([(name, VALID_TP.encode())])
    assert TRACE == trace_id


@pytest.mark.parametrize("name", [b"trace-parent", b"trace.parent"])
async def test_trc02_misspelled_header_is_ignored(name: bytes) -> None:
    """TRC-02: look-alike header names are not traceparent, so a new trace starts."""
    trace_id, _ = await trace_of([(name, VALID_TP.encode())])
    assert TRACE != trace_id


RESTART_VECTORS = {
    "trc03-version-ff": f"ff-{T}-{P}-01",
    "trc04-version-.0": f".0-{T}-{P}-01",
    "trc04-version-0.": f"0.-{T}-{P}-01",
    "trc04-version-000": f"000-{T}-{P}-01",
    "trc04-version-0000": f"0000-{T}-{P}-01",
    "trc04-version-0": f"0-{T}-{P}-01",
    "trc05-zero-trace": f"00-{'0' * 32}-{P}-01",
    "trc05-zero-parent": f"00-{T}-{'0' * 16}-01",
    "trc06-trace-dot": f"00-{T[:-1]}.-{P}-01",
    "trc06-trace-31": f"00-{T[:-1]}-{P}-01",
    "trc06-trace-33": f"00-{T}0-{P}-01",
    "trc06-parent-dot": f"00-{T}-{P[:-1]}.-01",
    "trc06-parent-15": f"00-{T}-{P[:-1]}-01",
    "trc06-parent-17": f"00-{T}-{P}0-01",
    "trc07-uppercase": f"00-{TRACE.upper()}-{PARENT.upper()}-01",
    "trc08-flags-.0": f"00-{T}-{P}-.0",
    "trc08-flags-0.": f"00-{T}-{P}-0.",
    "trc08-flags-001": f"00-{T}-{P}-001",
    "trc08-flags-1": f"00-{T}-{P}-1",
    "trc09-trailing-dot": f"00-{T}-{P}-01.",
    "trc09-v00-extra-fields": f"00-{T}-{P}-01-what-the-future-will-be-like",
    "trc09-future-dot": f"cc-{T}-{P}-01.what-the-future-will-be-like",
    "trc09-future-short": f"cc-{T}-{P}",
    "trc17-8kb": f"00-{T}-{P}-01" + "-" + "a" * 8192,
    "garbage": "not a traceparent",
}


@pytest.mark.parametrize("value", RESTART_VECTORS.values(), ids=RESTART_VECTORS.keys())
async def test_invalid_traceparent_starts_a_new_trace(value: str) -> None:
    """TRC-03..09, 17: an invalid traceparent is ignored — new trace, request still served."""
    trace_id, sent = await trace_of([(b"traceparent", value.encode())])
    assert HEX32.fullmatch(trace_id) is not None
    assert T != trace_id
    assert TRACE != trace_id
    assert 200 == sent[0]["status"]
    assert trace_id == header(sent, "x-trace-id")


ACCEPT_VECTORS = {
    "trc09-future-version": (f"cc-{T}-{P}-01-what-the-future-will-be-like", T, "01"),
    "trc10-leading-space": (f" {VALID_TP}", TRACE, "01"),
    "trc10-leading-tab": (f"\t{VALID_TP}", TRACE, "01"),
    "trc10-trailing-space": (f"{VALID_TP} ", TRACE, "01"),
    "trc10-both": (f"\t {VALID_TP} \t", TRACE, "01"),
    "trc12-flags-09": (f"00-{T}-{P}-09", T, "01"),
    "not-sampled": (f"00-{T}-{P}-00", T, "00"),
}


@pytest.mark.parametrize(
    ("value", "trace_id", "flags"), ACCEPT_VECTORS.values(), ids=ACCEPT_VECTORS.keys()
)
async def test_acceptable_traceparent_is_continued(value: str, trace_id: str, flags: str) -> None:
    """TRC-09, 10, 12: accepted forms keep the trace; we answer version 00, reserved bits zero."""
    bound_trace, sent = await trace_of([(b"traceparent", value.encode())])
    assert trace_id == bound_trace
    outbound = header(sent, "traceparent")
    assert re.fullmatch(rf"00-{trace_id}-[0-9a-f]{{16}}-{flags}", outbound) is not None


async def test_trc11_two_different_traceparents_restart() -> None:
    """TRC-11: two traceparent headers with different values start a new trace."""
    headers = [(b"traceparent", VALID_TP.encode()), (b"traceparent", f"00-{T}-{P}-01".encode())]
    trace_id, _ = await trace_of(headers)
    assert trace_id not in (TRACE, T)


async def test_repeated_identical_traceparent_is_accepted() -> None:
    """The same traceparent sent twice is not ambiguous, so the trace continues."""
    headers = [(b"traceparent", VALID_TP.encode()), (b"traceparent", VALID_TP.encode())]
    trace_id, _ = await trace_of(headers)
    assert TRACE == trace_id


@pytest.mark.parametrize("tracestate", [b"FOO=1", b"foo=1,foo=2", b"@foo=1,bar=2", b"x" * 9000])
async def test_trc13_invalid_tracestate_does_not_affect_traceparent(tracestate: bytes) -> None:
    """TRC-13: a bad tracestate never invalidates a good traceparent (tracestate is not used)."""
    trace_id, sent = await trace_of(
        [(b"traceparent", VALID_TP.encode()), (b"tracestate", tracestate)]
    )
    assert TRACE == trace_id
    assert [] == [v for k, v in response_headers(sent) if k == "tracestate"]


async def test_trc16_untrusted_edge_restarts_and_records_the_callers_trace(
    logs: list[dict[str, Any]],
) -> None:
    """TRC-16: with trust_incoming_trace=False a new trace starts; the caller's id is kept aside."""
    trace_id, _ = await trace_of([(b"traceparent", VALID_TP.encode())], trust_incoming_trace=False)
    assert TRACE != trace_id
    event = events_named(logs, "http_request")[0]
    assert (trace_id, TRACE) == (event["trace_id"], event["incoming_trace_id"])


async def test_app_set_correlation_headers_are_replaced() -> None:
    """Headers the app set under our names are replaced, never duplicated."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        headers = [(b"x-request-id", b"app"), (b"X-Trace-Id", b"app"), (b"x-other", b"1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    sent = await call(CorrelationMiddleware(app), make_scope("/", [(b"x-request-id", b"mine")]))
    names = [k.lower() for k, _ in response_headers(sent)]
    assert 1 == names.count("x-request-id") == names.count("x-trace-id")
    assert "mine" == header(sent, "x-request-id")
    assert "1" == header(sent, "x-other")


# --------------------------------------------------------------------------- context


async def test_context_is_restored_after_the_request() -> None:
    """The ids are bound only while the request runs; the caller's own fields survive."""
    from logbeacon.context import bound

    seen: list[dict[str, Any]] = []
    with bound(session_id="outer"):
        await call(CorrelationMiddleware(recording_app(seen)), make_scope())
        assert {"session_id": "outer"} == dict(get_context())
    assert "outer" == seen[0]["session_id"]
    assert {"request_id", "trace_id", "span_id", "session_id"} == set(seen[0])


async def test_trc19_concurrent_requests_never_share_ids(logs: list[dict[str, Any]]) -> None:
    """TRC-19: 200 concurrent requests each log only their own trace id; nothing leaks after."""
    app = FastAPI()

    @app.get("/work/{n}")
    async def work(n: int) -> dict[str, Any]:
        for _ in range(n % 4):
            await asyncio.sleep(0)
        app_log.info("inside", n=n)
        await asyncio.sleep(0.001 * (n % 3))
        return dict(get_context())

    app.add_middleware(CorrelationMiddleware)
    traces = [f"{i + 1:032x}" for i in range(200)]

    async def one(client: httpx.AsyncClient, i: int) -> httpx.Response:
        tp = f"00-{traces[i]}-{P}-01"
        return await client.get(f"/work/{i}", headers={"traceparent": tp})

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        responses = await asyncio.gather(*(one(client, i) for i in range(200)))

    assert traces == [r.json()["trace_id"] for r in responses]
    assert traces == [r.headers["x-trace-id"] for r in responses]
    inside = sorted(events_named(logs, "inside"), key=lambda e: e["n"])
    assert traces == [e["trace_id"] for e in inside]
    by_request = {r.headers["x-request-id"]: r.json()["trace_id"] for r in responses}
    assert 200 == len(by_request)
    assert by_request == {e["request_id"]: e["trace_id"] for e in inside}
    assert {} == dict(get_context())


async def test_work_started_by_the_request_carries_its_ids(logs: list[dict[str, Any]]) -> None:
    """BackgroundTasks, asyncio tasks and thread-pool calls log with the request's ids."""
    app = FastAPI()
    release = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def later() -> None:
        await release.wait()
        app_log.info("task_after_response")

    def in_thread() -> None:
        app_log.info("threadpool_call")

    def background() -> None:
        app_log.info("background_task")

    @app.get("/start")
    async def start(background_tasks: BackgroundTasks) -> dict[str, str]:
        tasks.append(asyncio.create_task(later()))
        await run_in_threadpool(in_thread)
        background_tasks.add_task(background)
        return {}

    @app.get("/sync")
    def sync_endpoint() -> dict[str, str]:
        app_log.info("sync_endpoint")
        return {}

    app.add_middleware(CorrelationMiddleware)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = await client.get("/start", headers={"traceparent": VALID_TP})
        second = await client.get("/sync")
    release.set()
    await asyncio.wait_for(tasks[0], 5)

    expected = (first.headers["x-request-id"], TRACE)
    for name in ("threadpool_call", "background_task", "task_after_response"):
        event = events_named(logs, name)[0]
        assert expected == (event["request_id"], event["trace_id"]), name
    sync_event = events_named(logs, "sync_endpoint")[0]
    assert second.headers["x-request-id"] == sync_event["request_id"]


async def test_trc19_unrelated_work_after_the_response_has_no_request_ids(
    logs: list[dict[str, Any]],
) -> None:
    """TRC-19: a task started outside any request logs without trace ids after one finished."""
    release = asyncio.Event()

    async def worker() -> None:
        await release.wait()
        app_log.info("worker_tick")

    worker_task = asyncio.create_task(worker())
    seen: list[dict[str, Any]] = []
    await call(
        CorrelationMiddleware(recording_app(seen)),
        make_scope("/", [(b"traceparent", VALID_TP.encode())]),
    )
    release.set()
    await asyncio.wait_for(worker_task, 5)

    tick = events_named(logs, "worker_tick")[0]
    assert TRACE == seen[0]["trace_id"]
    assert (None, None) == (tick.get("trace_id"), tick.get("request_id"))
    assert {} == dict(get_context())


# --------------------------------------------------------------------------- scopes


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
async def test_non_http_scopes_pass_through_untouched(
    kind: str, logs: list[dict[str, Any]]
) -> None:
    """WebSocket and lifespan scopes reach the app as the same objects, with nothing bound."""
    received: list[Any] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        received.append((scope, receive, send, dict(get_context())))

    async def receive() -> Message:
        return {"type": f"{kind}.connect"}

    async def send(message: Message) -> None:
        return None

    scope = make_scope("/ws", [(b"traceparent", VALID_TP.encode())], kind=kind)
    snapshot = dict(scope)
    await CorrelationMiddleware(app)(scope, receive, send)
    assert [(scope, receive, send, {})] == received
    assert received[0][0] is scope
    assert received[0][2] is send
    assert snapshot == scope
    assert [] == logs


async def test_nested_middleware_correlates_and_logs_once(logs: list[dict[str, Any]]) -> None:
    """Two CorrelationMiddleware layers (app and sub-app instrumented) yield one event, one id."""
    seen: list[dict[str, Any]] = []
    app = CorrelationMiddleware(CorrelationMiddleware(recording_app(seen)))
    sent = await call(app, make_scope())
    assert 1 == len(events_named(logs, "http_request"))
    assert seen[0]["request_id"] == header(sent, "x-request-id")


# --------------------------------------------------------------------------- http_request


def routed_app() -> FastAPI:
    """A FastAPI app with path parameters, nested routers and mounted sub-applications."""
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, int]:
        return {"user_id": user_id}

    v1 = APIRouter(prefix="/v1")
    deep = APIRouter(prefix="/deep")

    @deep.get("/items/{key}")
    async def get_item(key: str) -> dict[str, str]:
        return {"key": key}

    v1.include_router(deep)
    orgs = APIRouter(prefix="/orgs/{org_id}")

    @orgs.get("/members/{member}")
    async def get_member(org_id: str, member: str) -> dict[str, str]:
        return {}

    app.include_router(v1)
    app.include_router(orgs, prefix="/api")
    sub = FastAPI()

    @sub.get("/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {}

    app.mount("/sub", sub)

    async def tenant_page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("page")

    tenant = Starlette(routes=[Route("/pages/{page_id:int}", tenant_page)])
    app.mount("/tenants/{tenant}/site", tenant)
    app.add_middleware(CorrelationMiddleware)
    return app


ROUTES = {
    "path-param": ("/users/42", 200, "/users/{user_id}"),
    "query-dropped": ("/users/42?token=s3cr3t-value&email=a@b.c", 200, "/users/{user_id}"),
    "nested-router": ("/v1/deep/items/abc", 200, "/v1/deep/items/{key}"),
    "router-prefix-param": (
        "/api/orgs/o-77/members/m-5",
        200,
        "/api/orgs/{org_id}/members/{member}",
    ),
    "mounted-fastapi": ("/sub/things/t-9", 200, "/sub/things/{thing_id}"),
    "mount-with-param": (
        "/tenants/acme/site/pages/3",
        200,
        "/tenants/{tenant}/site/pages/{page_id}",
    ),
    "mount-unmatched": ("/sub/nothing/here", 404, "/sub/{path}"),
    "unmatched": ("/no/such/user-123", 404, "<unmatched>"),
    "validation": ("/users/not-a-number", 422, "/users/{user_id}"),
    "method-not-allowed-is-routed": ("/users/42", 405, "/users/{user_id}"),
}


@pytest.mark.parametrize(("path", "status", "route"), ROUTES.values(), ids=ROUTES.keys())
async def test_route_template_is_logged_never_the_raw_path(
    path: str, status: int, route: str, logs: list[dict[str, Any]]
) -> None:
    """`route` and `http.route` are templates; concrete ids and query strings are not logged."""
    method = "DELETE" if status == 405 else "GET"
    transport = httpx.ASGITransport(app=routed_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.request(method, path)
    assert status == response.status_code
    event = events_named(logs, "http_request")[0]
    assert (route, route) == (event["route"], event["http"]["route"])
    assert (method, status) == (event["http"]["method"], event["http"]["status"])
    volatile = {"timestamp", "event_id", "request_id", "trace_id", "span_id", "duration_ms"}
    stable = {k: v for k, v in event.items() if k not in volatile}
    stable["http"] = {k: v for k, v in event["http"].items() if k != "duration_ms"}
    text = json.dumps(stable)
    for part in re.split(r"[/?&=]", path):
        if part and part not in route.split("/"):
            assert part not in text


async def test_route_template_ignores_the_servers_root_path(logs: list[dict[str, Any]]) -> None:
    """Behind a proxy prefix (`root_path`) the template is still relative to the app."""
    transport = httpx.ASGITransport(app=routed_app(), root_path="/proxy")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/proxy/users/42")
    assert 200 == response.status_code
    assert "/users/{user_id}" == events_named(logs, "http_request")[0]["route"]


@pytest.mark.parametrize(
    ("status", "level"),
    [(200, "info"), (302, "info"), (404, "warn"), (429, "warn"), (500, "error"), (503, "error")],
)
async def test_level_follows_status(status: int, level: str, logs: list[dict[str, Any]]) -> None:
    """http_request is info below 400, warn for 4xx and error for 5xx."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await call(CorrelationMiddleware(app), make_scope("/x", method="POST"))
    event = events_named(logs, "http_request")[0]
    assert (level, status, "POST") == (
        event["level"],
        event["http"]["status"],
        event["http"]["method"],
    )
    assert isinstance(event["duration_ms"], float)
    assert event["duration_ms"] == event["http"]["duration_ms"]


async def test_one_event_with_service_and_no_bodies_or_headers(logs: list[dict[str, Any]]) -> None:
    """Exactly one http_request, stamped with `service`, carries no header or body content."""
    seen: list[dict[str, Any]] = []
    app = CorrelationMiddleware(recording_app(seen), service="api")
    headers = [(b"authorization", b"Bearer top-secret-token"), (b"cookie", b"sid=abcdef")]
    await call(app, make_scope("/", headers))
    assert ["http_request"] == [e["event"] for e in logs]
    event = logs[0]
    assert "api" == event["service"]
    assert {"method", "route", "status", "duration_ms"} == set(event["http"])
    assert "top-secret-token" not in json.dumps(event)
    assert "abcdef" not in json.dumps(event)


@pytest.mark.parametrize(
    ("options", "path", "logged"),
    [
        ({"skip_paths": ["/healthz"]}, "/healthz", False),
        ({"skip_paths": ["/healthz"]}, "/healthz/deep", True),
        ({"log_requests": False}, "/anything", False),
    ],
)
async def test_skip_paths_and_log_requests_silence_only_the_event(
    options: dict[str, Any], path: str, logged: bool, logs: list[dict[str, Any]]
) -> None:
    """Skipped paths and log_requests=False drop http_request but keep ids and headers."""
    seen: list[dict[str, Any]] = []
    sent = await call(CorrelationMiddleware(recording_app(seen), **options), make_scope(path))
    assert logged == bool(events_named(logs, "http_request"))
    assert seen[0]["request_id"] == header(sent, "x-request-id")


# --------------------------------------------------------------------------- errors


async def test_unhandled_exception_answers_500_with_the_request_id(
    logs: list[dict[str, Any]],
) -> None:
    """An exception before the response is logged with ids and answered 500 internal_error."""
    app = FastAPI()

    @app.get("/boom/{n}")
    async def boom(n: int) -> None:
        raise ValueError("kaput")

    app.add_middleware(CorrelationMiddleware, service="api")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/boom/1", headers={"traceparent": VALID_TP})

    request_id = response.headers["x-request-id"]
    assert 500 == response.status_code
    assert {"detail": "internal_error", "request_id": request_id} == response.json()
    assert TRACE == response.headers["x-trace-id"]
    error_event, request_event = logs
    assert ("unhandled_exception", "error") == (error_event["event"], error_event["level"])
    assert (request_id, TRACE, "api") == (
        error_event["request_id"],
        error_event["trace_id"],
        error_event["service"],
    )
    assert ("ValueError", "kaput") == (
        error_event["error"]["type"],
        error_event["error"]["message"],
    )
    assert "/boom/{n}" == error_event["route"]
    assert ("http_request", "error", 500) == (
        request_event["event"],
        request_event["level"],
        request_event["http"]["status"],
    )


async def test_exception_mid_stream_is_logged_and_reraised(logs: list[dict[str, Any]]) -> None:
    """After the response started, the error is logged and re-raised so the server aborts."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        await call(CorrelationMiddleware(app), make_scope("/stream"))
    error_event, request_event = logs
    assert "unhandled_exception" == error_event["event"]
    assert (200, True) == (request_event["http"]["status"], request_event["response_incomplete"])


async def test_exception_after_the_response_is_logged_not_reraised(
    logs: list[dict[str, Any]],
) -> None:
    """A failure after the response completed (background work) is logged once, not raised."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        raise RuntimeError("cleanup failed")

    sent = await call(CorrelationMiddleware(app), make_scope())
    assert 201 == sent[0]["status"]
    assert ["http_request", "unhandled_exception"] == [e["event"] for e in logs]
    assert "cleanup failed" == logs[1]["error"]["message"]


async def test_app_returning_without_a_response_is_logged_as_500(
    logs: list[dict[str, Any]],
) -> None:
    """An app that never answers is logged as a 500 (what the server sends) and incomplete."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        return None

    await call(CorrelationMiddleware(app), make_scope())
    event = events_named(logs, "http_request")[0]
    assert (500, True, "error") == (
        event["http"]["status"],
        event["response_incomplete"],
        event["level"],
    )


async def test_cancelled_request_still_logs_once(logs: list[dict[str, Any]]) -> None:
    """A request cancelled mid-stream (client gone) logs one incomplete http_request."""
    started = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        started.set()
        await asyncio.sleep(30)

    task = asyncio.create_task(call(CorrelationMiddleware(app), make_scope("/sse")))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    events = events_named(logs, "http_request")
    assert 1 == len(events)
    assert (200, True) == (events[0]["http"]["status"], events[0]["response_incomplete"])


# --------------------------------------------------------------------------- streaming


async def test_streamed_chunks_pass_through_one_by_one() -> None:
    """Each body chunk reaches the server before the app produces the next one (no buffering)."""
    first_chunk_out = asyncio.Event()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await asyncio.wait_for(first_chunk_out.wait(), 5)
        await send({"type": "http.response.body", "body": b"two", "more_body": False})

    bodies: list[bytes] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            if message["body"] == b"one":
                first_chunk_out.set()

    await CorrelationMiddleware(app)(make_scope("/stream"), receive, send)
    assert [b"one", b"two"] == bodies


async def test_starlette_mount_of_a_plain_asgi_app_logs_the_mount(
    logs: list[dict[str, Any]],
) -> None:
    """A plain ASGI app mounted in Starlette is logged as `<mount>/{path}`."""
    seen: list[dict[str, Any]] = []
    app = CorrelationMiddleware(Starlette(routes=[Mount("/files", app=recording_app(seen))]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/files/reports/2024/q1.pdf")
    assert 200 == response.status_code
    assert "/files/{path}" == events_named(logs, "http_request")[0]["route"]


async def test_internal_failure_never_breaks_the_request(
    monkeypatch: pytest.MonkeyPatch, logs: list[dict[str, Any]]
) -> None:
    """In production mode a failing route lookup is counted, and the request still succeeds."""
    from logbeacon.integrations import asgi
    from logbeacon.sdk import internal_errors

    def broken(scope: Scope, entry_root_path: str) -> str:
        raise LookupError("odd router")

    monkeypatch.delenv("LOGBEACON_RAISE_INTERNAL")
    monkeypatch.setattr(asgi, "route_template", broken)
    seen: list[dict[str, Any]] = []
    sent = await call(CorrelationMiddleware(recording_app(seen)), make_scope())
    assert 200 == sent[0]["status"]
    assert "<unmatched>" == events_named(logs, "http_request")[0]["route"]
    assert 1 == internal_errors()["asgi.route_template:LookupError"]
