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
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from fastapi import APIRouter, Depends, Request
from starlette.requests import ClientDisconnect, cookie_parser
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from logbeacon.context import is_valid_request_id, parse_traceparent
from logbeacon.event import encode
from logbeacon.server import payload
from logbeacon.server._head import RequestHead
from logbeacon.server._prepare import PrepareContext, prepare_events
from logbeacon.server.auth import (
    DIAG_COOKIE,
    DIAG_HEADER,
    browser_key_query,
    ingest_bearer,
    ingest_signature,
    rate_key_for_host,
)
from logbeacon.server.diagnostics import DiagnosticTokenError
from logbeacon.server.errors import (
    ApiError,
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
    status, body, headers = await respond(get_state(request), request.scope, request.receive)
    response = Response(body, status_code=status)
    response.raw_headers = headers
    return response


Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]


async def respond(state: ServerState, scope: Scope, receive: Receive) -> Answer:
    """The whole answer to one ingest request, errors included, with its metrics."""
    started = time.perf_counter()
    try:
        answer = await _ingest(state, RequestHead.from_scope(scope), receive)
    except Exception as exc:
        if isinstance(exc, ApiError):
            state.metrics.ingest.rejected_request(exc.error)
        response = error_response(exc)
        answer = (response.status_code, bytes(response.body), response.raw_headers)
    state.metrics.ingest.request(answer[0], time.perf_counter() - started)
    return answer


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /v1/logs` as a bare ASGI app, for the server's fast path (`ServerApp`)."""
    status, body, headers = await respond(scope["app"].state.logbeacon, scope, receive)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives (what `Request.stream` does, without the object)."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
        elif kind == "http.disconnect":
            raise ClientDisconnect


async def _ingest(state: ServerState, head: RequestHead, receive: Receive) -> Answer:
    settings = state.settings
    headers = head.headers
    gzip = payload.check_headers(headers.get("content-type"), headers.get("content-encoding"))
    payload.check_content_length(headers.get("content-length"), settings.max_body_bytes)

    identity = state.auth.ingest_headers(head)
    raw = await payload.read_body(_body(receive), settings.max_body_bytes)
    if identity.signed:
        identity = state.auth.verify_signature(head, raw, identity)
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
        keys = [rate_key_for_host(head.host)]
        if identity.rate_key is not None:
            keys.append(identity.rate_key)
        _raise_if_limited(state, keys, count)

    accepted, rejected = prepare_events(events, _context(state, headers), state.redactor)
    stored: list[Event] = []
    duplicates = 0
    if accepted:
        result = await state.store.append(accepted)
        stored = [event for event, new in zip(accepted, result.stored, strict=True) if new]
        duplicates = result.duplicates
    meter = state.metrics.ingest
    meter.accepted += len(stored)
    meter.duplicates += duplicates
    for _, reason in rejected:
        meter.discarded_event(reason)
    if stored:
        if settings.stdout:
            _mirror_to_stdout(stored)
        await state.notify(stored)
    body = encode(
        {
            "accepted": len(stored),
            "duplicates": duplicates,
            "rejected": [{"index": index, "reason": reason} for index, reason in rejected],
        }
    )
    return 200, body, [(b"content-length", str(len(body)).encode()), _JSON]


_JSON: Final = (b"content-type", b"application/json")


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


def _diagnostic_session(state: ServerState, headers: dict[str, str]) -> str | None:
    token = headers.get(DIAG_HEADER)
    if not token:
        cookie = headers.get("cookie")
        token = cookie_parser(cookie).get(DIAG_COOKIE) if cookie else None
    if not token:
        return None
    try:
        return state.diagnostics.verify(token)
    except DiagnosticTokenError as exc:
        state.metrics.diag_token_invalid.labels(exc.reason).inc()
        return None


def _context(state: ServerState, headers: dict[str, str]) -> PrepareContext:
    """What this request contributes to preparing its events (`_prepare.py`)."""
    policy = state.policy
    request_id = headers.get("x-request-id")
    if request_id is not None and not is_valid_request_id(request_id):
        request_id = None
    trace_id = None
    traceparent = headers.get("traceparent")
    if traceparent is not None:
        parent = parse_traceparent(traceparent)
        trace_id = parent.trace_id if parent is not None else None
    settings = state.settings
    return PrepareContext(
        now=state.clock(),
        retention_days=settings.retention_days,
        limits=settings.limits,
        policy=policy,
        diagnostic_session=_diagnostic_session(state, headers) if policy.enabled else None,
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
