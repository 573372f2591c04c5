"""instrument_app: one call wires correlation, error annotations and metrics into an app."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from prometheus_client import REGISTRY
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from logbeacon.integrations.asgi import CorrelationMiddleware
from logbeacon.integrations.fastapi import instrument_app


class Signup(BaseModel):
    """A request body whose validation can fail."""

    email: str
    password: str
    age: int


def make_app() -> FastAPI:
    """A FastAPI app with an OK route, an HTTPException, validation and a crash."""
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, int]:
        if user_id == 0:
            raise HTTPException(status_code=404, detail="no such user")
        return {"user_id": user_id}

    @app.post("/signup")
    async def signup(body: Signup) -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/crash")
    async def crash() -> None:
        raise KeyError("missing")

    return app


async def get(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send one request to `app` in-process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, path, **kwargs)


def only(logs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The single captured event called `name`."""
    found = [e for e in logs if e["event"] == name]
    assert 1 == len(found), [e["event"] for e in logs]
    return found[0]


def middleware_count(app: Starlette) -> int:
    """How many CorrelationMiddleware layers the app will build."""
    return sum(1 for m in app.user_middleware if m.cls is CorrelationMiddleware)


async def test_instrument_app_correlates_and_logs(logs: list[dict[str, Any]]) -> None:
    """An instrumented FastAPI app answers with correlation headers and logs one event."""
    app = instrument_app(make_app(), service="api")
    response = await get(app, "GET", "/users/7", headers={"x-request-id": "req-7"})
    assert (200, "req-7") == (response.status_code, response.headers["x-request-id"])
    event = only(logs, "http_request")
    assert ("api", "req-7", "/users/{user_id}") == (
        event["service"],
        event["request_id"],
        event["route"],
    )
    assert response.headers["x-trace-id"] == event["trace_id"]


async def test_instrument_app_twice_wraps_once(logs: list[dict[str, Any]]) -> None:
    """A second instrument_app call adds no middleware and no second handler wrapper."""
    from fastapi.exception_handlers import http_exception_handler

    app = make_app()
    instrument_app(app)
    handler = app.exception_handlers[StarletteHTTPException]
    instrument_app(app, service="other")
    assert 1 == middleware_count(app)
    assert handler is app.exception_handlers[StarletteHTTPException]
    assert http_exception_handler is handler.__logbeacon_wrapped__  # type: ignore[attr-defined]
    response = await get(app, "GET", "/users/0")
    assert 404 == response.status_code
    assert "test" == only(logs, "http_request")["service"]


async def test_http_exception_keeps_its_response_and_logs_the_detail(
    logs: list[dict[str, Any]],
) -> None:
    """FastAPI's HTTPException answer is unchanged; the event says why (warn, with detail)."""
    app = instrument_app(make_app())
    response = await get(app, "GET", "/users/0")
    assert (404, {"detail": "no such user"}) == (response.status_code, response.json())
    event = only(logs, "http_request")
    assert ("warn", "no such user", 404) == (
        event["level"],
        event["detail"],
        event["http"]["status"],
    )
    assert response.headers["x-request-id"] == event["request_id"]


async def test_validation_error_logs_locations_never_submitted_values(
    logs: list[dict[str, Any]],
) -> None:
    """A 422 logs where and why validation failed, without the values the client sent."""
    app = instrument_app(make_app())
    body = {"email": "person@example.org", "password": "hunter2-very-secret", "age": "old"}
    response = await get(app, "POST", "/signup", json=body)
    assert 422 == response.status_code
    assert "int_parsing" == response.json()["detail"][0]["type"]
    event = only(logs, "http_request")
    assert [{"loc": ["body", "age"], "type": "int_parsing"}] == [
        {"loc": e["loc"], "type": e["type"]} for e in event["validation_errors"]
    ]
    text = json.dumps(event)
    assert "hunter2" not in text
    assert "person@example.org" not in text
    assert '"old"' not in text


async def test_unhandled_exception_answers_json_500(logs: list[dict[str, Any]]) -> None:
    """An exception in an instrumented app becomes 500 internal_error with the request id."""
    app = instrument_app(make_app())
    response = await get(app, "GET", "/crash")
    request_id = response.headers["x-request-id"]
    assert (500, {"detail": "internal_error", "request_id": request_id}) == (
        response.status_code,
        response.json(),
    )
    error = only(logs, "unhandled_exception")
    assert ("KeyError", request_id, "/crash") == (
        error["error"]["type"],
        error["request_id"],
        error["route"],
    )
    assert 500 == only(logs, "http_request")["http"]["status"]


async def test_user_http_exception_handler_still_answers(logs: list[dict[str, Any]]) -> None:
    """A handler the app registered first keeps producing the response, sync or async."""
    app = make_app()

    def custom(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"error": exc.detail, "custom": True}, status_code=exc.status_code)

    app.add_exception_handler(StarletteHTTPException, custom)
    instrument_app(app)
    response = await get(app, "GET", "/users/0")
    assert (404, {"error": "no such user", "custom": True}) == (
        response.status_code,
        response.json(),
    )
    assert "no such user" == only(logs, "http_request")["detail"]


async def test_plain_starlette_app_is_instrumented(logs: list[dict[str, Any]]) -> None:
    """A Starlette app without FastAPI routing gets correlation and Starlette's own 4xx body."""

    async def item(request: Request) -> PlainTextResponse:
        if request.path_params["item_id"] == 0:
            raise StarletteHTTPException(status_code=410, detail="gone for good")
        return PlainTextResponse("item")

    app = instrument_app(Starlette(routes=[Route("/items/{item_id:int}", item)]))
    ok = await get(app, "GET", "/items/5")
    gone = await get(app, "GET", "/items/0")
    assert (200, "item") == (ok.status_code, ok.text)
    assert (410, "gone for good") == (gone.status_code, gone.text)
    events = [e for e in logs if e["event"] == "http_request"]
    assert ["/items/{item_id}", "/items/{item_id}"] == [e["route"] for e in events]
    assert "gone for good" == events[1]["detail"]
    assert "x-request-id" in gone.headers


async def test_instrument_after_start_is_refused_unless_already_done() -> None:
    """Instrumenting a running app fails loudly; repeating a done instrumentation is a no-op."""
    running = make_app()
    await get(running, "GET", "/users/1")
    with pytest.raises(RuntimeError, match="before the app serves"):
        instrument_app(running)

    instrumented = instrument_app(make_app())
    await get(instrumented, "GET", "/users/1")
    assert instrumented is instrument_app(instrumented)
    assert 1 == middleware_count(instrumented)


def test_instrument_app_refuses_other_asgi_apps() -> None:
    """A non-Starlette ASGI app gets a TypeError pointing at CorrelationMiddleware."""

    async def raw_app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(TypeError, match="CorrelationMiddleware"):
        instrument_app(raw_app)  # type: ignore[arg-type]


def test_missing_starlette_raises_integration_missing() -> None:
    """Without Starlette installed, importing the integration names the extra to install."""
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "try:\n"
        "    import logbeacon.integrations.fastapi\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.startswith("IntegrationMissing starlette is not installed")
    assert "logbeacon[server]" in result.stdout


async def test_metrics_route_serves_request_samples(logs: list[dict[str, Any]]) -> None:
    """metrics=True serves /metrics with samples fed by http_request events; scrapes not logged."""
    labels = {"method": "GET", "route": "/users/{user_id}", "status": "200"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    app = instrument_app(make_app(), metrics=True)
    instrument_app(app, metrics=True)
    for user_id in (1, 2, 3):
        await get(app, "GET", f"/users/{user_id}")
    scrape = await get(app, "GET", "/metrics")
    assert 200 == scrape.status_code
    assert scrape.headers["content-type"].startswith("text/plain")
    line = 'http_requests_total{method="GET",route="/users/{user_id}",status="200"}'
    sample = next(x for x in scrape.text.splitlines() if x.startswith(line))
    assert before + 3 == float(sample.rsplit(" ", 1)[1])
    assert 1 == sum(1 for r in app.routes if getattr(r, "path", None) == "/metrics")
    assert 3 == len([e for e in logs if e["event"] == "http_request"])
    assert "/metrics" not in app.openapi()["paths"]
