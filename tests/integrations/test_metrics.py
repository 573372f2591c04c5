"""Prometheus metrics fed by events: samples, bounded labels, exposition, no side effects."""

from __future__ import annotations

from typing import Any

import httpx
import psutil
import pytest
from prometheus_client import CollectorRegistry

from logbeacon.exceptions import ConfigError
from logbeacon.integrations.metrics import OTHER, MetricsCollector, make_metrics_app
from logbeacon.sdk import get_logger


def http_event(
    method: str = "GET", route: str = "/users/{user_id}", status: Any = 200, ms: Any = 12.5
) -> dict[str, Any]:
    """An http_request event as CorrelationMiddleware emits it."""
    return {
        "event": "http_request",
        "level": "info",
        "http": {"method": method, "route": route, "status": status, "duration_ms": ms},
        "route": route,
        "duration_ms": ms,
    }


@pytest.fixture
def registry() -> CollectorRegistry:
    """A private registry, so tests never see each other's samples."""
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """The current value of one sample."""
    return registry.get_sample_value(name, labels)


def test_http_requests_are_counted_and_timed(registry: CollectorRegistry) -> None:
    """http_request events feed the request counter and the duration histogram."""
    collector = MetricsCollector(registry)
    collector.observe(http_event(ms=12.5))
    collector.observe(http_event(ms=250.0))
    collector.observe(http_event(status=404, ms=1.0))
    labels = {"method": "GET", "route": "/users/{user_id}"}
    assert 2.0 == value(registry, "http_requests_total", status="200", **labels)
    assert 1.0 == value(registry, "http_requests_total", status="404", **labels)
    assert 3.0 == value(registry, "http_request_duration_seconds_count", **labels)
    assert 0.2635 == pytest.approx(value(registry, "http_request_duration_seconds_sum", **labels))
    assert 2.0 == value(registry, "http_request_duration_seconds_bucket", le="0.025", **labels)


def test_node_events_feed_executions_and_durations(registry: CollectorRegistry) -> None:
    """node_complete/node_failed count executions by status and observe their duration."""
    collector = MetricsCollector(registry)
    collector.observe({"event": "node_start", "node": "planner"})
    collector.observe({"event": "node_complete", "node": "planner", "duration_ms": 1500})
    collector.observe({"event": "node_complete", "node": "planner", "duration_ms": 500})
    collector.observe({"event": "node_failed", "node": "writer", "duration_ms": 40_000})
    assert 2.0 == value(registry, "agent_node_executions_total", node="planner", status="success")
    assert 1.0 == value(registry, "agent_node_executions_total", node="writer", status="error")
    assert None is value(registry, "agent_node_executions_total", node="planner", status="error")
    assert 2.0 == value(registry, "agent_node_duration_seconds_sum", node="planner")
    assert 1.0 == value(registry, "agent_node_duration_seconds_bucket", node="writer", le="60.0")
    assert 0.0 == value(registry, "agent_node_duration_seconds_bucket", node="writer", le="30.0")


def test_llm_usage_feeds_token_counters(registry: CollectorRegistry) -> None:
    """llm_complete usage adds input/output tokens per model; total only when alone."""
    collector = MetricsCollector(registry)
    usage = {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    collector.observe({"event": "llm_complete", "model": "gpt-x", "usage": usage})
    collector.observe({"event": "llm_complete", "model": "gpt-x", "usage": usage})
    collector.observe({"event": "llm_complete", "model": "tiny", "usage": {"total_tokens": 9}})
    collector.observe({"event": "llm_complete", "model": "tiny", "usage": None})
    assert 240.0 == value(registry, "llm_tokens_total", model="gpt-x", type="input")
    assert 60.0 == value(registry, "llm_tokens_total", model="gpt-x", type="output")
    assert None is value(registry, "llm_tokens_total", model="gpt-x", type="total")
    assert 9.0 == value(registry, "llm_tokens_total", model="tiny", type="total")


@pytest.mark.parametrize(
    "event",
    [
        {"event": "http_request", "http": "GET /"},
        {"event": "http_request"},
        {"event": "llm_complete", "model": "m", "usage": {"input_tokens": "many"}},
        {
            "event": "llm_complete",
            "model": "m",
            "usage": {"input_tokens": -5, "output_tokens": True},
        },
        {"event": "something_else", "http": {"method": "GET"}},
    ],
)
def test_events_that_measure_nothing_leave_no_samples(
    event: dict[str, Any], registry: CollectorRegistry
) -> None:
    """Malformed or unrelated events are ignored rather than recorded as garbage."""
    MetricsCollector(registry).observe(event)
    samples = [s for m in registry.collect() for s in m.samples]
    assert [] == samples


def test_unknown_methods_statuses_and_bad_durations_are_bounded(
    registry: CollectorRegistry,
) -> None:
    """Odd methods and statuses become "other"; an invalid duration is not observed."""
    collector = MetricsCollector(registry)
    collector.observe(http_event(method="BREW", status=999, ms=float("nan")))
    collector.observe(http_event(method="get", status="200", ms=-3))
    assert 1.0 == value(
        registry, "http_requests_total", method=OTHER, route="/users/{user_id}", status=OTHER
    )
    assert 1.0 == value(
        registry, "http_requests_total", method="GET", route="/users/{user_id}", status=OTHER
    )
    assert None is value(
        registry, "http_request_duration_seconds_count", method=OTHER, route="/users/{user_id}"
    )


def test_label_values_beyond_the_cap_collapse_to_other(registry: CollectorRegistry) -> None:
    """After max_label_values distinct routes, new ones count under "other"; known ones stay."""
    collector = MetricsCollector(registry, max_label_values=3)
    for i in range(10):
        collector.observe(http_event(route=f"/r{i}"))
    collector.observe(http_event(route="/r1"))
    routes = {
        s.labels["route"]
        for m in registry.collect()
        for s in m.samples
        if s.name == "http_requests_total"
    }
    assert {"/r0", "/r1", "/r2", OTHER} == routes
    assert 7.0 == value(registry, "http_requests_total", method="GET", route=OTHER, status="200")
    assert 2.0 == value(registry, "http_requests_total", method="GET", route="/r1", status="200")


def test_second_collector_on_one_registry_is_a_config_error(registry: CollectorRegistry) -> None:
    """Two collectors cannot share a registry; the error says what to do and nothing leaks."""
    MetricsCollector(registry)
    with pytest.raises(ConfigError, match="reuse that collector"):
        MetricsCollector(registry)
    assert 5 == len(list(registry.collect()))


def test_zero_cap_is_a_config_error(registry: CollectorRegistry) -> None:
    """max_label_values below 1 is refused."""
    with pytest.raises(ConfigError, match="max_label_values"):
        MetricsCollector(registry, max_label_values=0)


def test_install_feeds_the_collector_from_the_sdk(registry: CollectorRegistry) -> None:
    """install() makes every emitted event reach the collector; uninstall() stops it."""
    collector = MetricsCollector(registry).install()
    collector.install()
    log = get_logger("tests.metrics")
    log.info("node_complete", node="fetch", duration_ms=20)
    collector.uninstall()
    log.info("node_complete", node="fetch", duration_ms=20)
    assert 1.0 == value(registry, "agent_node_executions_total", node="fetch", status="success")
    assert not collector.installed


def test_creating_collectors_and_apps_opens_no_socket(registry: CollectorRegistry) -> None:
    """No server is started as a side effect (the defect of seed plan 001)."""
    process = psutil.Process()
    before = {c.laddr for c in process.net_connections(kind="inet")}
    MetricsCollector(registry)
    make_metrics_app(registry)
    after = {c.laddr for c in process.net_connections(kind="inet")}
    assert before == after


async def scrape(registry: CollectorRegistry, method: str = "GET", **kwargs: Any) -> httpx.Response:
    """Request the exposition app in-process."""
    transport = httpx.ASGITransport(app=make_metrics_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, "/", **kwargs)


async def test_exposition_app_serves_the_samples(registry: CollectorRegistry) -> None:
    """GET returns the Prometheus text format with the recorded samples."""
    collector = MetricsCollector(registry)
    collector.observe(http_event())
    collector.observe({"event": "llm_complete", "model": "m1", "usage": {"input_tokens": 5}})
    response = await scrape(registry)
    assert 200 == response.status_code
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = response.text.splitlines()
    assert 'http_requests_total{method="GET",route="/users/{user_id}",status="200"} 1.0' in lines
    assert 'llm_tokens_total{model="m1",type="input"} 5.0' in lines


async def test_exposition_negotiates_openmetrics(registry: CollectorRegistry) -> None:
    """An OpenMetrics Accept header gets the OpenMetrics format, ending in # EOF."""
    MetricsCollector(registry).observe(http_event())
    response = await scrape(registry, headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert "# EOF" == response.text.splitlines()[-1]


async def test_exposition_head_and_other_methods(registry: CollectorRegistry) -> None:
    """HEAD answers headers only; other methods get 405 with Allow."""
    head = await scrape(registry, "HEAD")
    post = await scrape(registry, "POST")
    assert (200, b"") == (head.status_code, head.content)
    assert (405, "GET, HEAD") == (post.status_code, post.headers["allow"])


async def test_exposition_app_answers_lifespan(registry: CollectorRegistry) -> None:
    """Served alone, the app completes the lifespan protocol instead of failing it."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await make_metrics_app(registry)({"type": "lifespan"}, receive, send)
    assert [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ] == sent
