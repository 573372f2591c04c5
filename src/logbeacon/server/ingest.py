"""`POST /v1/logs`: authenticate, limit, parse, validate per event, redact, commit, answer.

The order of the steps is the contract (DESIGN.md §4, RELIABILITY.md §4/§6/§8):

1. media type / encoding (415) and declared size (413) — before reading the body;
2. credentials that live in headers (401/403);
3. read the body with a byte limit (413), verify its signature over the raw bytes (401);
4. inflate gzip with the same limit (413), parse strict JSON (400);
5. batch size (413: over `max_batch`, or more than the whole burst, which could never pass),
   charge the events to the client's buckets (429 with `Retry-After`);
6. each event on its own (`_prepare.py`): normalise, refuse it if older than the retention
   window, apply the level policy, redact, enrich (a timestamp over 10 minutes ahead becomes
   the server's, the client's kept as `client_timestamp`) — a bad event is reported in
   `rejected` and never sinks its siblings;
7. commit; `200` only after `Store.append` returned (accepted means durable), `503` with
   `Retry-After` when it cannot commit;
8. hand the committed events to listeners (live tail) and to stdout when `--stdout` is on.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from logbeacon.context import is_valid_request_id, parse_traceparent
from logbeacon.event import encode
from logbeacon.server import payload
from logbeacon.server._prepare import PrepareContext, prepare_events
from logbeacon.server.auth import (
    DIAG_COOKIE,
    DIAG_HEADER,
    IngestIdentity,
    browser_key_query,
    client_host,
    ingest_bearer,
    ingest_signature,
    rate_key_for_host,
)
from logbeacon.server.diagnostics import DiagnosticTokenError
from logbeacon.server.errors import (
    ApiError,
    ApiResponse,
    error_response,
    error_responses,
    retry_after_header,
)
from logbeacon.server.state import ServerState, get_state

__all__ = ["PATH", "endpoint", "respond", "router"]

log = logging.getLogger("logbeacon.server")

Event = dict[str, Any]

# JSON lines must stay one line for every reader: escape the Unicode line breaks orjson keeps.
_LINE_BREAKS: Final = (
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
    (b"\xc2\x85", b"\\u0085"),
)

_BODY_SCHEMA: Final = {
    "oneOf": [
        {"type": "array", "items": {}, "description": "a list of events"},
        {
            "type": "object",
            "description": 'one event, or {"events": [...]}',
            "additionalProperties": True,
        },
    ]
}
_OPENAPI_EXTRA: Final = {
    "requestBody": {
        "required": True,
        # `text/plain` (browser beacons) is accepted with the same JSON; it is described in
        # the operation's text rather than as a second media type, because a plain-text
        # schema cannot say "this string is JSON".
        "content": {"application/json": {"schema": _BODY_SCHEMA}},
    },
}

PATH: Final = "/v1/logs"

router = APIRouter(tags=["ingest"])


@router.post(
    PATH,
    summary='Ingest one event, a list, or {"events": [...]}',
    responses={
        200: {
            "description": "Every event was stored, was a duplicate, or is listed in `rejected`",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["accepted", "duplicates", "rejected"],
                        "properties": {
                            "accepted": {"type": "integer", "minimum": 0},
                            "duplicates": {"type": "integer", "minimum": 0},
                            "rejected": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["index", "reason"],
                                    "properties": {
                                        "index": {"type": "integer", "minimum": 0},
                                        "reason": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                    "example": {"accepted": 2, "duplicates": 0, "rejected": []},
                }
            },
        },
        **error_responses(400, 401, 403, 413, 415, 422, 429, 503),
    },
    dependencies=[
        Depends(ingest_bearer),
        Depends(ingest_signature),
        Depends(browser_key_query),
    ],
    openapi_extra=_OPENAPI_EXTRA,
)
async def ingest(request: Request) -> Response:
    """Store events durably: `200` only after they are committed.

    The body may also be sent as `text/plain` (what `navigator.sendBeacon` uses) and with
    `Content-Encoding: gzip`. Authenticate with an ingest key (`Authorization: Bearer`), an
    HMAC signature (`x-log-timestamp` + `x-log-signature`) or the browser key (`?key=`, from
    an allowed `Origin`); without any configured, only loopback clients may ingest.
    """
    # `ServerApp` answers this path through `endpoint` before the router; the route
    # declares the operation in the OpenAPI document and serves routers mounted elsewhere.
    return await respond(get_state(request), request)


async def respond(state: ServerState, request: Request) -> Response:
    """The whole answer to one ingest request, errors included, with its metrics."""
    started = time.perf_counter()
    try:
        response: Response = await _ingest(state, request)
    except Exception as exc:
        if isinstance(exc, ApiError):
            state.metrics.rejected_requests.labels(exc.error).inc()
        response = error_response(exc)
    state.metrics.ingest_requests.labels(str(response.status_code)).inc()
    state.metrics.ingest_seconds.observe(time.perf_counter() - started)
    return response


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /v1/logs` as a bare ASGI app, for the server's fast path (`ServerApp`)."""
    request = Request(scope, receive)
    response = await respond(get_state(request), request)
    await response(scope, receive, send)


async def _ingest(state: ServerState, request: Request) -> ApiResponse:
    settings = state.settings
    headers = request.headers
    gzip = payload.check_headers(headers.get("content-type"), headers.get("content-encoding"))
    payload.check_content_length(headers.get("content-length"), settings.max_body_bytes)

    identity = state.auth.ingest_headers(request)
    raw = await payload.read_body(request.stream(), settings.max_body_bytes)
    if identity.signed:
        identity = state.auth.verify_signature(request, raw, identity)
    data = payload.decode_content(raw, gzip=gzip, limit=settings.max_body_bytes)
    events = payload.split_events(payload.parse_document(data))

    count = len(events)
    if count > settings.max_batch:
        raise ApiError(
            413,
            "too_many_events",
            f"a batch may hold at most {settings.max_batch} events (max_batch); split it",
            limit=settings.max_batch,
        )
    if count > settings.burst:
        raise ApiError(
            413,
            "batch_exceeds_burst",
            f"a batch larger than the rate-limit burst ({settings.burst} events) can never be "
            "accepted; split it",
            limit=settings.burst,
        )
    if count:
        _raise_if_limited(state, _bucket_keys(request, identity), count)

    accepted, rejected = prepare_events(events, _context(state, request), state.redactor)
    stored: list[Event] = []
    duplicates = 0
    if accepted:
        result = await state.store.append(accepted)
        stored = [event for event, new in zip(accepted, result.stored, strict=True) if new]
        duplicates = result.duplicates
    metrics = state.metrics
    if stored:
        metrics.accepted_events.inc(len(stored))
    if duplicates:
        metrics.duplicate_events.inc(duplicates)
    for _, reason in rejected:
        metrics.discarded_events.labels(reason).inc()
    if stored:
        if settings.stdout:
            _mirror_to_stdout(stored)
        await state.notify(stored)
    return ApiResponse(
        {
            "accepted": len(stored),
            "duplicates": duplicates,
            "rejected": [{"index": index, "reason": reason} for index, reason in rejected],
        }
    )


def _bucket_keys(request: Request, identity: IngestIdentity) -> list[str]:
    keys = [rate_key_for_host(client_host(request))]
    if identity.rate_key is not None:
        keys.append(identity.rate_key)
    return keys


def _raise_if_limited(state: ServerState, keys: Sequence[str], cost: int) -> None:
    """Charge `cost` events to every bucket, or answer 429 with the truthful wait."""
    limiter = state.limiter
    decision = limiter.acquire(keys, cost)  # `/metrics` reads the limiter's size itself
    if decision.allowed:
        return
    retry = retry_after_header(decision.retry_after)
    raise ApiError(
        429,
        "rate_limited",
        f"too many events from this client; retry in {retry} s (nothing was stored)",
        headers={"Retry-After": retry},
        retry_after=int(retry),
    )


def _diagnostic_session(state: ServerState, request: Request) -> str | None:
    token = request.headers.get(DIAG_HEADER) or request.cookies.get(DIAG_COOKIE)
    if not token:
        return None
    try:
        return state.diagnostics.verify(token)
    except DiagnosticTokenError as exc:
        state.metrics.diag_token_invalid.labels(exc.reason).inc()
        return None


def _request_correlation(request: Request) -> tuple[str | None, str | None]:
    request_id = request.headers.get("x-request-id")
    if not is_valid_request_id(request_id):
        request_id = None
    parent = parse_traceparent(request.headers.get("traceparent"))
    return request_id, parent.trace_id if parent is not None else None


def _context(state: ServerState, request: Request) -> PrepareContext:
    """What this request contributes to preparing its events (`_prepare.py`)."""
    policy = state.policy
    request_id, trace_id = _request_correlation(request)
    return PrepareContext(
        now=state.clock(),
        retention_days=state.settings.retention_days,
        limits=state.settings.limits,
        policy=policy,
        diagnostic_session=_diagnostic_session(state, request) if policy.enabled else None,
        request_id=request_id,
        trace_id=trace_id,
    )


def _mirror_to_stdout(events: Sequence[Event]) -> None:
    lines = bytearray()
    for event in events:
        line = encode(event)
        for raw, escaped in _LINE_BREAKS:
            line = line.replace(raw, escaped)
        lines += line + b"\n"
    try:
        sys.stdout.buffer.write(lines)
        sys.stdout.flush()
    except (OSError, ValueError) as exc:  # a closed stdout must not fail an acknowledged batch
        log.warning("stdout mirror failed: %s", type(exc).__name__)
