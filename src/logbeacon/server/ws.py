"""`WS /v1/ws`: the live tail and analysis requests over one WebSocket (DESIGN.md §8).

Authentication happens before the handshake is accepted (a read token as `?token=`,
`Authorization: Bearer`, or the dashboard cookie from this server's own origin); otherwise
the server closes with 1008, which the client sees as HTTP 403.

Client messages are JSON objects with a `type`:

- `{"type": "subscribe", ...filters}` starts or replaces the live filter (the filters of
  `GET /v1/logs`, same validation) → `{"type": "subscribed"}`, then
  `{"type": "log", "event": {...}}` per matching event;
- `{"type": "unsubscribe"}` → `{"type": "unsubscribed"}`;
- `{"type": "analysis_request", "request_id", "time_range", "service", "level"}` →
  `{"type": "analysis_response", "request_id", ...}` with the body of `GET /v1/analysis`;
- `{"type": "ping"}` → `{"type": "pong"}`.

A malformed message gets `{"type": "error", "message": ...}` and the connection stays open.
Everything the server sends goes through one bounded outbox; a client that does not read
is sent a final `{"type": "notice", "reason": "slow_consumer", "dropped": n}` and closed
with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any, Final

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from logbeacon.event import decode, encode, normalize_level
from logbeacon.exceptions import EventError
from logbeacon.server._live import EventMatcher, LiveItem, Subscription, TooManySubscribers
from logbeacon.server.analysis import compute_analysis
from logbeacon.server.auth import READ_COOKIE, constant_time_in
from logbeacon.server.filters import FilterError, parse_duration, parse_filters
from logbeacon.server.state import ServerState, get_state
from logbeacon.server.stream import FINAL_SEND_TIMEOUT, get_hub

__all__ = ["MAX_CLIENT_MESSAGE_BYTES", "router"]

log = logging.getLogger("logbeacon.server")

MAX_CLIENT_MESSAGE_BYTES: Final = 64 * 1024
MAX_ANALYSES_IN_FLIGHT: Final = 2
MAX_TIME_RANGE_SECONDS: Final = 366 * 86_400
CLOSE_POLICY: Final = 1008
CLOSE_TRY_AGAIN_LATER: Final = 1013
_MAX_CREDENTIAL: Final = 512
_MAX_REQUEST_ID: Final = 128
_MAX_SERVICE: Final = 256
_ANALYSIS_KEYS: Final = frozenset({"type", "request_id", "time_range", "service", "level"})
_NOT_FILTERS: Final = ("cursor", "limit", "token")

router = APIRouter()


class ClientMessageError(ValueError):
    """A client message the server cannot act on; its text is sent back as the error."""

    def __init__(self, message: str, request_id: object = None) -> None:
        super().__init__(message)
        self.request_id = request_id


def _reply(kind: str, **fields: Any) -> bytes:
    return encode({"type": kind, **fields})


def _same_origin(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    """Is a browser's handshake from this server's own pages (or an allowed origin)?

    The cookie is sent by the browser whatever page opens the socket, so a cookie alone
    must not let another site read the tail (cross-site WebSocket hijacking).
    """
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    host = websocket.headers.get("host", "")
    return origin == f"{scheme}://{host}" or origin in allowed


def authorized(websocket: WebSocket, state: ServerState) -> bool:
    """A valid read token as `Authorization: Bearer`, `?token=`, or the same-origin cookie."""
    header = websocket.headers.get("authorization")
    from_cookie = False
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        token: str | None = value.strip()
    else:
        token = websocket.query_params.get("token")
        if token is None:
            token = websocket.cookies.get(READ_COOKIE)
            from_cookie = token is not None
    if not token or len(token) > _MAX_CREDENTIAL:
        return False
    if not constant_time_in(token, state.auth.read_tokens):
        return False
    return not from_cookie or _same_origin(websocket, state.settings.allowed_origins)


@router.websocket("/v1/ws")
async def websocket_tail(websocket: WebSocket) -> None:
    """Live tail and analysis over a WebSocket (see the module docstring for the messages)."""
    state = get_state(websocket)
    if not authorized(websocket, state):
        await websocket.close(code=CLOSE_POLICY)
        return
    hub = get_hub(websocket)
    try:
        subscription = hub.subscribe(None)
    except TooManySubscribers:
        await websocket.accept()
        await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="too many live-tail subscribers")
        return
    try:
        await websocket.accept()
        await _Session(websocket, state, subscription).run()
    finally:
        hub.unsubscribe(subscription)


class _Session:
    """One accepted connection: a reader of client messages, a writer draining the outbox."""

    def __init__(self, websocket: WebSocket, state: ServerState, outbox: Subscription) -> None:
        self.websocket = websocket
        self.state = state
        self.outbox = outbox
        self.analyses: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        reader = asyncio.ensure_future(self._read())
        writer = asyncio.ensure_future(self._write())
        overflow = asyncio.ensure_future(self.outbox.overflowed.wait())
        tasks = (reader, writer, overflow)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pending = (*tasks, *self.analyses)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if overflow.done() and not overflow.cancelled():
            await self._cut_off()
            return
        for task in (reader, writer):
            if task.done() and not task.cancelled():
                error = task.exception()
                if error is not None and not isinstance(error, WebSocketDisconnect | OSError):
                    log.error("live tail websocket failed: %s", type(error).__name__)

    async def _cut_off(self) -> None:
        dropped = self.outbox.dropped + len(self.outbox)
        notice = _reply("notice", reason="slow_consumer", dropped=dropped).decode()
        with contextlib.suppress(TimeoutError, WebSocketDisconnect, OSError, RuntimeError):
            async with asyncio.timeout(FINAL_SEND_TIMEOUT):
                await self.websocket.send_text(notice)
                await self.websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="slow consumer")

    async def _write(self) -> None:
        websocket = self.websocket
        while True:
            for item in await self.outbox.next_batch(None):
                if isinstance(item, LiveItem):
                    await websocket.send_text(
                        (b'{"type":"log","event":' + item.data + b"}").decode("utf-8")
                    )
                else:
                    await websocket.send_text(item.decode("utf-8"))

    async def _read(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            try:
                if text is None:
                    raise ClientMessageError("send each message as a JSON text frame")
                self._handle(text)
            except ClientMessageError as exc:
                fields: dict[str, Any] = {"message": str(exc)}
                if exc.request_id is not None:
                    fields["request_id"] = exc.request_id
                self.outbox.put(_reply("error", **fields))

    def _handle(self, text: str) -> None:
        if len(text) > MAX_CLIENT_MESSAGE_BYTES or len(text.encode()) > MAX_CLIENT_MESSAGE_BYTES:
            raise ClientMessageError(
                f"message too large: at most {MAX_CLIENT_MESSAGE_BYTES} bytes per message"
            )
        try:
            message = decode(text)
        except ValueError:
            raise ClientMessageError("malformed JSON; send one JSON object per message") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise ClientMessageError('a message is a JSON object with a "type" string')
        kind = message["type"]
        if kind == "subscribe":
            self._subscribe(message)
        elif kind == "unsubscribe":
            self.outbox.set_matcher(None)
            self.outbox.put(_reply("unsubscribed"))
        elif kind == "ping":
            self.outbox.put(_reply("pong"))
        elif kind == "analysis_request":
            self._start_analysis(message)
        else:
            raise ClientMessageError(
                "unknown message type; use subscribe, unsubscribe, analysis_request or ping"
            )

    def _subscribe(self, message: dict[str, Any]) -> None:
        pairs: list[tuple[str, str]] = []
        for name, value in message.items():
            if name == "type":
                continue
            if name in _NOT_FILTERS:
                raise ClientMessageError(f"{name} is not a live-tail filter")
            if not isinstance(value, str):
                raise ClientMessageError('filter values are strings, e.g. {"level": "warn"}')
            pairs.append((name, value))
        try:
            query = parse_filters(pairs, now=self.state.clock())
        except FilterError as exc:
            raise ClientMessageError(str(exc)) from None
        self.outbox.set_matcher(EventMatcher(query))
        self.outbox.put(_reply("subscribed"))

    def _start_analysis(self, message: dict[str, Any]) -> None:
        request_id = message.get("request_id")
        if not (
            (isinstance(request_id, str) and 0 < len(request_id) <= _MAX_REQUEST_ID)
            or (isinstance(request_id, int) and not isinstance(request_id, bool))
        ):
            raise ClientMessageError(
                f"analysis_request needs a request_id: a string of 1-{_MAX_REQUEST_ID} "
                "characters or an integer"
            )
        unknown = set(message) - _ANALYSIS_KEYS
        if unknown:
            raise ClientMessageError(
                "analysis_request takes request_id, time_range, service and level", request_id
            )
        seconds = _time_range(message.get("time_range", 3600), request_id)
        service = message.get("service")
        if service is not None and not (
            isinstance(service, str) and 0 < len(service) <= _MAX_SERVICE
        ):
            raise ClientMessageError(
                f"service: a string of 1-{_MAX_SERVICE} characters", request_id
            )
        level = _level(message.get("level"), request_id)
        if len(self.analyses) >= MAX_ANALYSES_IN_FLIGHT:
            raise ClientMessageError(
                f"at most {MAX_ANALYSES_IN_FLIGHT} analyses run at once per connection; wait "
                "for a response",
                request_id,
            )
        since = self.state.clock() - seconds
        task = asyncio.ensure_future(self._analyse(request_id, since, service, level))
        self.analyses.add(task)
        task.add_done_callback(self.analyses.discard)

    async def _analyse(
        self, request_id: str | int, since: float, service: str | None, level: str | None
    ) -> None:
        try:
            result = await compute_analysis(
                self.state.store,
                since=since,
                until=self.state.clock(),
                service=service,
                level=level,
            )
        except Exception as exc:  # reported to the client as an error, the socket stays open
            log.error("websocket analysis failed: %s", type(exc).__name__)
            self.outbox.put(
                _reply(
                    "error",
                    request_id=request_id,
                    message="the analysis failed; see the server log",
                )
            )
            return
        body = {k: v for k, v in result.items() if k not in ("type", "request_id")}
        self.outbox.put(_reply("analysis_response", request_id=request_id, **body))


def _level(value: object, request_id: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        with contextlib.suppress(EventError):
            return normalize_level(value)
    raise ClientMessageError("level: use debug, info, warn, error or critical", request_id)


def _time_range(value: object, request_id: object) -> float:
    """Seconds back from now: a number, or a duration such as "15m", "1h", "7d"."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            seconds = None
    if seconds is None or not math.isfinite(seconds) or not 0 < seconds <= MAX_TIME_RANGE_SECONDS:
        raise ClientMessageError(
            "time_range: seconds (a number) or a duration such as 15m, 1h, 7d, at most 366 days",
            request_id,
        )
    return seconds
