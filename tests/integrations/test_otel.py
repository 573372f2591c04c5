"""OpenTelemetry ids in events and requests, with a real opentelemetry-sdk TracerProvider."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from logbeacon.context import bound, get_context
from logbeacon.integrations import otel
from logbeacon.integrations.asgi import CorrelationMiddleware
from logbeacon.sdk import get_logger, hooks

log = get_logger("tests.otel")
OTHER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    """A tracer from a private TracerProvider (the global one is never replaced)."""
    provider = TracerProvider()
    yield provider.get_tracer("tests")
    provider.shutdown()


@pytest.fixture(autouse=True)
def _uninstalled() -> Iterator[None]:
    """Every test starts and ends without the OpenTelemetry context provider."""
    otel.uninstall()
    yield
    otel.uninstall()


def span_ids(span: Any) -> tuple[str, str]:
    """A span's ids formatted the way logbeacon events carry them."""
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def test_no_active_span_means_no_ids() -> None:
    """Outside any span (the API's invalid default span) there are no OTel ids."""
    assert None is otel.current_ids()


def test_active_span_ids_are_formatted_as_w3c_hex(tracer: Tracer) -> None:
    """Inside a span, current_ids() gives its 32/16 lowercase-hex trace and span ids."""
    with tracer.start_as_current_span("work") as span:
        ids = otel.current_ids()
        with tracer.start_as_current_span("child") as child:
            child_ids = otel.current_ids()
    assert span_ids(span) == ids
    assert span_ids(child) == child_ids
    assert span_ids(span)[0] == span_ids(child)[0]


def test_install_adds_span_ids_to_events(tracer: Tracer, logs: list[dict[str, Any]]) -> None:
    """With install(), events logged in a span carry its ids; outside a span they carry none."""
    otel.install()
    otel.install()
    assert otel.installed()
    assert 1 == sum(1 for p in hooks.context_providers() if p is otel._provide)
    with tracer.start_as_current_span("job") as span:
        log.info("in_span")
    log.info("outside")
    otel.uninstall()
    with tracer.start_as_current_span("job2"):
        log.info("after_uninstall")
    in_span, outside, after = logs
    assert span_ids(span) == (in_span["trace_id"], in_span["span_id"])
    assert None is outside.get("trace_id")
    assert None is after.get("trace_id")
    assert not otel.installed()


def test_bound_trace_id_wins_over_the_span(tracer: Tracer, logs: list[dict[str, Any]]) -> None:
    """An event that already has a trace_id keeps it: the provider only fills gaps."""
    otel.install()
    with tracer.start_as_current_span("job"), bound(trace_id=OTHER_TRACE):
        log.info("bound_first")
    assert OTHER_TRACE == logs[0]["trace_id"]


async def run_request(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Send one request through CorrelationMiddleware; return the context the app saw."""
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(get_context()))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    scope = {"type": "http", "method": "GET", "path": "/", "root_path": "", "headers": headers}
    await CorrelationMiddleware(app)(scope, receive, send)
    return seen[0]


async def test_middleware_uses_the_active_span_without_traceparent(tracer: Tracer) -> None:
    """A request served inside an OTel server span logs under that span's ids."""
    with tracer.start_as_current_span("GET /") as span:
        context = await run_request([])
    assert span_ids(span) == (context["trace_id"], context["span_id"])


async def test_middleware_prefers_a_conflicting_traceparent(tracer: Tracer) -> None:
    """A valid traceparent from another trace wins over an unrelated active span."""
    header = f"00-{OTHER_TRACE}-00f067aa0ba902b7-01".encode()
    with tracer.start_as_current_span("unrelated") as span:
        context = await run_request([(b"traceparent", header)])
    assert OTHER_TRACE == context["trace_id"]
    assert span_ids(span)[1] != context["span_id"]


async def test_middleware_uses_the_span_when_it_continues_the_traceparent(
    tracer: Tracer,
) -> None:
    """When the OTel span continues the incoming trace, its span id is ours too."""
    with tracer.start_as_current_span("server") as span:
        trace_id, span_id = span_ids(span)
        header = f"00-{trace_id}-00f067aa0ba902b7-01".encode()
        context = await run_request([(b"traceparent", header)])
    assert (trace_id, span_id) == (context["trace_id"], context["span_id"])


def test_importing_the_web_integrations_stays_light() -> None:
    """Importing asgi/otel loads neither OpenTelemetry nor a web framework nor prometheus."""
    code = (
        "import sys, logbeacon, logbeacon.integrations.otel, logbeacon.integrations.asgi\n"
        "heavy = ('opentelemetry', 'starlette', 'fastapi', 'prometheus_client')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "[]" == result.stdout.strip()
