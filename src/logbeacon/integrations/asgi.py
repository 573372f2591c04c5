"""Request correlation for any ASGI application: ids in, ids bound, ids out, one log line.

`CorrelationMiddleware` is pure ASGI rather than Starlette's `BaseHTTPMiddleware`, which
buffers streaming responses and runs the endpoint in another task (so context variables set
in the endpoint do not reach the middleware, and background work loses the request's ids).
Here the application runs in the middleware's own task: everything the request starts —
`BackgroundTasks`, `asyncio.create_task`, thread-pool calls — copies a context that already
holds the request's ids, and `bound(...)` restores the caller's context afterwards.

Only `send` is wrapped, to read the status and add headers; bodies pass through untouched,
chunk by chunk, so streaming responses and Server-Sent Events keep streaming.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from logbeacon.context import (
    TraceParent,
    bound,
    is_valid_request_id,
    new_request_id,
    new_span_id,
    parse_traceparent,
)
from logbeacon.event import encode
from logbeacon.exceptions import ConfigError
from logbeacon.integrations import otel
from logbeacon.integrations._http import (
    UNMATCHED_ROUTE,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    header_values,
    route_template,
)
from logbeacon.sdk import get_logger
from logbeacon.sdk._guard import report

__all__ = ["SCOPE_KEY", "CorrelationMiddleware", "RequestInfo"]

SCOPE_KEY: Final = "logbeacon.request"
"""Scope key holding the request's `RequestInfo`; exception handlers annotate it."""

_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TRACEPARENT: Final = b"traceparent"
_TRACE_ID_HEADER: Final = b"x-trace-id"
_MAX_METHOD: Final = 32

_log = get_logger("logbeacon.integrations.asgi")


@dataclass(slots=True)
class RequestInfo:
    """What the middleware knows about one request; lives in the scope under `SCOPE_KEY`.

    Exception handlers registered by `instrument_app` fill `detail` and `validation_errors`
    so the `http_request` line says why a 4xx happened.
    """

    request_id: str
    trace_id: str
    span_id: str
    sampled: bool
    incoming_trace_id: str | None = None
    status: int | None = None
    response_started: bool = False
    response_complete: bool = False
    logged: bool = False
    exception_logged: bool = False
    detail: str | None = None
    validation_errors: list[dict[str, Any]] | None = None


class CorrelationMiddleware:
    """Correlate every HTTP request: request id, W3C trace context, one `http_request` event.

    - `x-request-id` (or `request_id_header`) is kept when it is 1-128 characters of
      `[A-Za-z0-9._:-]`, else replaced by a new id.
    - `traceparent` is parsed strictly; an invalid value, or two different values, start a
      new trace. Our span is a new span id in the caller's trace. When an OpenTelemetry span
      is active (an OTel ASGI instrumentation runs outside us) and agrees with the incoming
      trace or there is none, its ids are used so logs join the OTel trace.
      `trust_incoming_trace=False` always starts a new trace (a public edge) and records the
      caller's trace id as `incoming_trace_id` on the `http_request` event.
    - `request_id`, `trace_id`, `span_id` are bound for the request and restored after.
    - The response carries the request id header, `x-trace-id` and `traceparent` (our span).
    - One `http_request` event is logged when the response is complete: level `info` below
      400, `warn` for 4xx, `error` for 5xx. `skip_paths` (exact paths) and
      `log_requests=False` silence it; correlation still applies.
    - An unhandled exception is logged as `unhandled_exception` (level error, with the
      stack) and answered `500 {"detail": "internal_error", "request_id": ...}` if the
      response has not started; if it has, the exception is re-raised so the server aborts
      the half-sent response.

    WebSocket and lifespan scopes pass through untouched.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str | None = None,
        request_id_header: str = "x-request-id",
        trust_incoming_trace: bool = True,
        log_requests: bool = True,
        skip_paths: Iterable[str] = (),
    ) -> None:
        if not _HEADER_NAME_RE.fullmatch(request_id_header):
            raise ConfigError(
                f"request_id_header={request_id_header!r} is not a valid HTTP header name; "
                "use letters, digits and '-', e.g. 'x-request-id'"
            )
        if isinstance(skip_paths, str):
            raise ConfigError(
                "skip_paths takes a list of paths, e.g. skip_paths=['/healthz'], not one string"
            )
        self.app = app
        self.service = service
        self.request_id_header = request_id_header.lower()
        self.trust_incoming_trace = trust_incoming_trace
        self.log_requests = log_requests
        self.skip_paths = frozenset(skip_paths)
        self._rid_header = self.request_id_header.encode("latin-1")
        self._own_headers = frozenset({self._rid_header, _TRACE_ID_HEADER, _TRACEPARENT})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or SCOPE_KEY in scope:
            # Not HTTP, or an outer CorrelationMiddleware (a mounted sub-app instrumented
            # too) already handles this request: one request, one set of ids, one event.
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        entry_root_path: str = scope.get("root_path", "")
        info = self._correlate(scope)
        scope[SCOPE_KEY] = info
        exchange = _Exchange(
            self, scope, info=info, send=send, started=started, entry_root_path=entry_root_path
        )
        with bound(request_id=info.request_id, trace_id=info.trace_id, span_id=info.span_id):
            try:
                await self.app(scope, receive, exchange.send)
            except Exception:
                if not info.exception_logged:
                    info.exception_logged = True
                    _log.exception("unhandled_exception", **exchange.error_fields())
                if info.response_complete:
                    # The response is out (an app error handler answered and re-raised, or a
                    # background task failed afterwards): logged above, nothing left to send.
                    return
                if info.response_started:
                    exchange.log_request(incomplete=True)
                    raise
                await exchange.send_internal_error()
            finally:
                if not info.logged:
                    exchange.log_request(incomplete=True)

    def _correlate(self, scope: Scope) -> RequestInfo:
        request_ids = header_values(scope, self._rid_header)
        if len(set(request_ids)) == 1 and is_valid_request_id(request_ids[0]):
            request_id = request_ids[0]
        else:
            request_id = new_request_id()
        parents = header_values(scope, _TRACEPARENT)
        # Two different traceparent headers are ambiguous: the spec says restart.
        parent = parse_traceparent(parents[0]) if len(set(parents)) == 1 else None
        incoming: str | None = None
        if parent is not None and not self.trust_incoming_trace:
            incoming, parent = parent.trace_id, None
        otel_ids = otel.current_ids()
        if otel_ids is not None and (parent is None or parent.trace_id == otel_ids[0]):
            trace_id, span_id = otel_ids
            sampled = True if parent is None else parent.sampled
        elif parent is not None:
            trace_id, span_id, sampled = parent.trace_id, new_span_id(), parent.sampled
        else:
            fresh = TraceParent.new()
            trace_id, span_id, sampled = fresh.trace_id, fresh.span_id, fresh.sampled
        return RequestInfo(request_id, trace_id, span_id, sampled, incoming_trace_id=incoming)


class _Exchange:
    """Per-request state and the wrapped `send`; created inside `__call__`, never shared."""

    __slots__ = ("_entry_root_path", "_info", "_mw", "_scope", "_send", "_started")

    def __init__(
        self,
        mw: CorrelationMiddleware,
        scope: Scope,
        *,
        info: RequestInfo,
        send: Send,
        started: float,
        entry_root_path: str,
    ) -> None:
        self._mw = mw
        self._scope = scope
        self._info = info
        self._send = send
        self._started = started
        self._entry_root_path = entry_root_path

    async def send(self, message: Message) -> None:
        info = self._info
        kind = message.get("type")
        if kind == "http.response.start":
            info.response_started = True
            info.status = int(message.get("status", 200))
            message = {**message, "headers": self._headers(message.get("headers") or ())}
            await self._send(message)
            return
        await self._send(message)
        if (
            kind == "http.response.body" and not message.get("more_body", False)
        ) or kind == "http.response.pathsend":
            info.response_complete = True
            self.log_request(incomplete=False)

    def _headers(self, headers: Iterable[Any]) -> list[tuple[bytes, bytes]]:
        info = self._info
        own = self._mw._own_headers
        kept = [(bytes(k), bytes(v)) for k, v in headers if bytes(k).lower() not in own]
        parent = TraceParent(info.trace_id, info.span_id, info.sampled)
        kept.append((self._mw._rid_header, info.request_id.encode("latin-1")))
        kept.append((_TRACE_ID_HEADER, info.trace_id.encode("latin-1")))
        kept.append((_TRACEPARENT, parent.format().encode("latin-1")))
        return kept

    def _method(self) -> str:
        return str(self._scope.get("method", ""))[:_MAX_METHOD]

    def _route(self) -> str:
        try:
            return route_template(self._scope, self._entry_root_path)
        except Exception as exc:
            # A router with an unexpected shape must not turn into a failed request.
            report("asgi.route_template", exc)
            return UNMATCHED_ROUTE

    def error_fields(self) -> dict[str, Any]:
        route = self._route()
        fields: dict[str, Any] = {"http": {"method": self._method(), "route": route}}
        fields["route"] = route
        if self._mw.service is not None:
            fields["service"] = self._mw.service
        return fields

    async def send_internal_error(self) -> None:
        body = encode({"detail": "internal_error", "request_id": self._info.request_id})
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("latin-1")),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    def log_request(self, *, incomplete: bool) -> None:
        info = self._info
        if info.logged:
            return
        info.logged = True
        try:
            self._log_request(incomplete=incomplete)
        except Exception as exc:
            # Runs inside the app's `send`: a logging failure must not look like a failed
            # write to the client, nor fail the request.
            report("asgi.http_request", exc)

    def _log_request(self, *, incomplete: bool) -> None:
        info = self._info
        mw = self._mw
        if not mw.log_requests or self._skipped():
            return
        # An app that returned without answering gets a 500 from the server.
        status = info.status if info.status is not None else 500
        duration_ms = round((time.perf_counter() - self._started) * 1000.0, 3)
        route = self._route()
        fields: dict[str, Any] = {
            "http": {
                "method": self._method(),
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
            },
            "route": route,
            "duration_ms": duration_ms,
        }
        if mw.service is not None:
            fields["service"] = mw.service
        if incomplete:
            fields["response_incomplete"] = True
        if info.incoming_trace_id is not None:
            fields["incoming_trace_id"] = info.incoming_trace_id
        if info.detail is not None:
            fields["detail"] = info.detail
        if info.validation_errors is not None:
            fields["validation_errors"] = info.validation_errors
        if status >= 500:
            _log.error("http_request", **fields)
        elif status >= 400:
            _log.warning("http_request", **fields)
        else:
            _log.info("http_request", **fields)

    def _skipped(self) -> bool:
        skip = self._mw.skip_paths
        if not skip:
            return False
        path = str(self._scope.get("path", ""))
        root = self._entry_root_path
        relative = path[len(root) :] if root and path.startswith(root) else path
        return path in skip or relative in skip
