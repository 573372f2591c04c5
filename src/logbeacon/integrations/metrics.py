"""Prometheus metrics derived from logbeacon events.

The events already say everything a dashboard counts — `http_request` carries method, route
template, status and duration; `node_complete`/`node_failed` carry node and duration;
`llm_complete` carries token usage — so metrics are a listener on the SDK's final events
rather than a second set of calls sprinkled through the code. Nothing is served as a side
effect of creating a collector (seed plan 001 opened a port in a constructor): exposition is
an ASGI app you mount, `make_metrics_app()`, or `instrument_app(app, metrics=True)`.

Label values are bounded so a bug or an attacker cannot grow the time-series set without
limit: routes are templates, methods outside the HTTP set, statuses outside 100-599 and any
label value beyond the per-label cap collapse to `"other"`.

`prometheus_client` is imported here and only here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from logbeacon.exceptions import ConfigError, IntegrationMissing
from logbeacon.integrations._http import Receive, Scope, Send, header_values
from logbeacon.sdk.sinks import attach, attached_sinks

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.exposition import choose_encoder
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise IntegrationMissing("prometheus_client", "metrics") from exc

__all__ = [
    "OTHER",
    "MetricsCollector",
    "default_collector",
    "make_metrics_app",
]

OTHER: Final = "other"
_DEFAULT_CAP: Final = 200
_MAX_LABEL_CHARS: Final = 128
_HTTP_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
# Agent nodes and LLM calls run for seconds to minutes, far past HTTP's default buckets.
_NODE_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_NODE_STATUS: Final = {"node_complete": "success", "node_failed": "error"}
_TOKEN_TYPES: Final = (("input_tokens", "input"), ("output_tokens", "output"))


class _LabelCap:
    """Remembers up to `cap` distinct values per label; later newcomers become `"other"`."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: object) -> str:
        if not isinstance(value, str) or not value:
            return OTHER
        value = value[:_MAX_LABEL_CHARS]
        seen = self._seen.get(label)
        if seen is not None and value in seen:
            return value
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen:
                return value
            if len(seen) >= self._cap:
                return OTHER
            seen.add(value)
            return value


class MetricsCollector:
    """Turns events into Prometheus samples in `registry` (default: the global registry).

    Call `install()` to receive every event the SDK emits, or feed `observe(event)` yourself.
    `max_label_values` bounds the distinct values kept per label (routes, nodes, models).
    Only events that are actually emitted are counted: with the SDK's level above `info`,
    successful requests are filtered out before they reach the collector.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_label_values: int = _DEFAULT_CAP,
    ) -> None:
        if max_label_values < 1:
            raise ConfigError(f"max_label_values must be at least 1, got {max_label_values}")
        self.registry: CollectorRegistry = registry if registry is not None else REGISTRY
        self._label = _LabelCap(max_label_values)
        self._sink = _CollectorSink(self)
        self._detach: Callable[[], None] | None = None
        self._install_lock = threading.Lock()
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=None,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration in seconds, by method and route template.",
            ("method", "route"),
            registry=None,
        )
        self.node_executions = Counter(
            "agent_node_executions_total",
            "Agent/graph node executions, by node and status (success, error).",
            ("node", "status"),
            registry=None,
        )
        self.node_duration = Histogram(
            "agent_node_duration_seconds",
            "Agent/graph node duration in seconds, by node.",
            ("node",),
            buckets=_NODE_BUCKETS,
            registry=None,
        )
        self.llm_tokens = Counter(
            "llm_tokens_total",
            "LLM tokens used, by model and type (input, output; total when only that is known).",
            ("model", "type"),
            registry=None,
        )
        self._register()

    def _register(self) -> None:
        registered: list[Any] = []
        try:
            for metric in (
                self.http_requests,
                self.http_duration,
                self.node_executions,
                self.node_duration,
                self.llm_tokens,
            ):
                self.registry.register(metric)
                registered.append(metric)
        except ValueError as exc:
            for metric in registered:
                self.registry.unregister(metric)
            raise ConfigError(
                "this Prometheus registry already has logbeacon's metrics; reuse that "
                "collector (logbeacon.integrations.metrics.default_collector() for the "
                "global registry) or pass registry=CollectorRegistry()"
            ) from exc

    # ------------------------------------------------------------------ listener

    def observe(self, event: Mapping[str, Any]) -> None:
        """Record what `event` measures; events that measure nothing are ignored."""
        name = event.get("event")
        if name == "http_request":
            self._observe_http(event)
        elif name in _NODE_STATUS:
            self._observe_node(event, _NODE_STATUS[name])
        elif name == "llm_complete":
            self._observe_llm(event)

    def _observe_http(self, event: Mapping[str, Any]) -> None:
        http = event.get("http")
        if not isinstance(http, Mapping):
            return
        method = str(http.get("method", "")).upper()
        method = method if method in _HTTP_METHODS else OTHER
        route = self._label("route", http.get("route", event.get("route")))
        status = http.get("status")
        status_label = (
            str(status)
            if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599
            else OTHER
        )
        self.http_requests.labels(method, route, status_label).inc()
        seconds = _seconds(http.get("duration_ms", event.get("duration_ms")))
        if seconds is not None:
            self.http_duration.labels(method, route).observe(seconds)

    def _observe_node(self, event: Mapping[str, Any], status: str) -> None:
        node = self._label("node", event.get("node"))
        self.node_executions.labels(node, status).inc()
        seconds = _seconds(event.get("duration_ms"))
        if seconds is not None:
            self.node_duration.labels(node).observe(seconds)

    def _observe_llm(self, event: Mapping[str, Any]) -> None:
        usage = event.get("usage")
        if not isinstance(usage, Mapping):
            return
        model = self._label("model", event.get("model"))
        counted = False
        for key, token_type in _TOKEN_TYPES:
            tokens = _count(usage.get(key))
            if tokens is not None:
                counted = True
                if tokens:
                    self.llm_tokens.labels(model, token_type).inc(tokens)
        if not counted:
            total = _count(usage.get("total_tokens"))
            if total:
                self.llm_tokens.labels(model, "total").inc(total)

    # ------------------------------------------------------------------ wiring

    def install(self) -> MetricsCollector:
        """Receive every event the SDK emits (idempotent); returns the collector.

        The collector is attached as a process-wide sink, so it keeps receiving events
        across `configure()`/`reset()` and whatever the configured outputs are.
        """
        with self._install_lock:
            if self._sink not in attached_sinks():
                self._detach = attach(self._sink)
        return self

    def uninstall(self) -> None:
        """Stop receiving events; samples recorded so far stay in the registry."""
        with self._install_lock:
            if self._detach is not None:
                self._detach()
                self._detach = None

    @property
    def installed(self) -> bool:
        """Whether the collector currently receives the SDK's events."""
        return self._sink in attached_sinks()


class _CollectorSink:
    """Adapts a collector to the SDK's sink protocol: every finished event is observed."""

    def __init__(self, collector: MetricsCollector) -> None:
        self.name = "metrics"
        self._collector = collector

    def emit(self, event: dict[str, Any], line: bytes) -> None:
        self._collector.observe(event)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self) -> None:
        return None


def _seconds(duration_ms: object) -> float | None:
    if (
        isinstance(duration_ms, int | float)
        and not isinstance(duration_ms, bool)
        and math.isfinite(duration_ms)
        and duration_ms >= 0
    ):
        return float(duration_ms) / 1000.0
    return None


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


_default: MetricsCollector | None = None
_default_lock = threading.Lock()


def default_collector() -> MetricsCollector:
    """The process-wide collector on Prometheus' global registry (created on first use)."""
    global _default  # noqa: PLW0603 - one collector per global registry
    with _default_lock:
        if _default is None:
            _default = MetricsCollector()
        return _default


# --------------------------------------------------------------------------- exposition


class _MetricsApp:
    """ASGI app answering `GET`/`HEAD` with the registry's exposition.

    A class, not a function, so Starlette's `Route` treats it as an ASGI app. It negotiates
    OpenMetrics through `Accept` like Prometheus' own handler and answers the lifespan
    protocol so it can also be served alone (`uvicorn module:metrics_app`).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            body = b"Method Not Allowed"
            await _respond(
                send, 405, body, b"text/plain; charset=utf-8", [(b"allow", b"GET, HEAD")]
            )
            return
        accept = ",".join(header_values(scope, b"accept"))
        encoder, content_type = choose_encoder(accept)
        output = encoder(self.registry)
        await _respond(
            send,
            200,
            output,
            content_type.encode("latin-1"),
            [],
            head=method == "HEAD",
        )


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]],
    *,
    head: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode("latin-1")),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def make_metrics_app(registry: CollectorRegistry | None = None) -> _MetricsApp:
    """An ASGI app serving `registry` (default: the global registry) in Prometheus format.

    Route it (`app.add_route("/metrics", make_metrics_app())` in Starlette/FastAPI) or serve
    it alone; it starts no server and opens no port by itself.
    """
    return _MetricsApp(registry if registry is not None else REGISTRY)
