"""`GET /v1/stream`: the live tail over Server-Sent Events, with the filters of `GET /v1/logs`.

Each event is one message: `id:` (an opaque position), `event: log` and the event as compact
JSON on one `data:` line. JSON escapes CR and LF, so no value can end a field or a message
early and forge frames (RELIABILITY.md INJ-08).

Order of work on a connection, so that nothing committed meanwhile is lost or repeated:
subscribe to the live source first, then read what the client missed from the store
(`Last-Event-ID`), or an initial backlog (`?since=`), then deliver live events, skipping
those the store read already returned. A `: ping` comment keeps idle streams open through
proxies. A client that cannot keep up is cut off with a final `event: notice` rather than
buffered without limit; its reconnect with `Last-Event-ID` reads the rest from the store.
When the server shuts down (`end_streams`), every stream ends at once with a final
`event: notice` (`server_shutdown`) instead of holding the shutdown up until it times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from logbeacon.event import encode, format_timestamp
from logbeacon.server._live import (
    EventMatcher,
    LiveItem,
    LiveSource,
    Position,
    Subscription,
    TailHub,
    TailSettings,
    TooManySubscribers,
    decode_position,
    encode_position,
    load_backlog,
    sse_frame,
)
from logbeacon.server.auth import ReadGrant, require_read
from logbeacon.server.errors import ApiError, retry_after_header
from logbeacon.server.filters import FilterError, parse_filters
from logbeacon.server.state import ServerState, get_state
from logbeacon.store.base import Query, Store

__all__ = [
    "EventStream",
    "end_streams",
    "get_hub",
    "install_tail",
    "router",
    "too_many_subscribers",
]

log = logging.getLogger("logbeacon.server")

RETRY_MILLISECONDS: Final = 2000  # EventSource's reconnect delay, sent as `retry:`
FINAL_SEND_TIMEOUT: Final = 2.0  # how long a cut-off client gets to take the final notice
REPLAY_STALL_SECONDS: Final = 30.0  # a catch-up write that waits longer means a stuck client
CATCH_UP_ROUNDS: Final = 5  # store reads before going live; more means the client is too slow
SUBSCRIBER_RETRY_AFTER: Final = 5.0
# Events the store read returned that the live source may still deliver: only those that
# arrived shortly before the subscription (older ones were published before it existed).
_DEDUPE_WINDOW: Final = 300.0
_BATCH_FRAMES: Final = 256
_NOT_STREAM_PARAMS: Final = ("cursor", "limit")

router = APIRouter(tags=["stream"])


def install_tail(app: FastAPI, state: ServerState, settings: TailSettings | None = None) -> TailHub:
    """Create the app's live-tail hub and subscribe it to committed events."""
    hub = TailHub(settings or TailSettings.from_env())
    app.state.tail_hub = hub
    app.state.tail_shutdown = asyncio.Event()
    state.add_listener(hub.publish)
    return hub


def end_streams(app: FastAPI) -> None:
    """End every open stream now (the server is shutting down; clients resume elsewhere)."""
    shutdown = getattr(app.state, "tail_shutdown", None)
    if isinstance(shutdown, asyncio.Event):
        shutdown.set()


def get_hub(connection: HTTPConnection) -> TailHub:
    """The live-tail hub of the app serving this request or WebSocket."""
    hub = getattr(connection.app.state, "tail_hub", None)
    if not isinstance(hub, TailHub):
        raise RuntimeError("the live tail is not installed; create_app calls install_tail")
    return hub


def too_many_subscribers() -> ApiError:
    retry = retry_after_header(SUBSCRIBER_RETRY_AFTER)
    return ApiError(
        503,
        "too_many_subscribers",
        f"every live-tail slot is taken; retry in {retry} s",
        headers={"Retry-After": retry},
        retry_after=int(retry),
    )


def _stream_query(connection: HTTPConnection, now: float) -> Query:
    """The filters of a stream request: those of `GET /v1/logs` without paging."""
    pairs = connection.query_params.multi_items()
    for name, _ in pairs:
        if name in _NOT_STREAM_PARAMS:
            raise FilterError(
                400,
                "unknown_parameter",
                name,
                f"{name} pages GET /v1/logs; a stream has no pages (use since for a backlog)",
            )
    return parse_filters(pairs, now=now, extra_allowed=("token",))


@router.get("/v1/stream", summary="Live tail (Server-Sent Events)", include_in_schema=False)
async def stream(request: Request, grant: Annotated[ReadGrant, Depends(require_read)]) -> Response:
    """Events as they are stored, filtered like `GET /v1/logs`; resumes from `Last-Event-ID`.

    Not in the OpenAPI document: a response that never ends cannot be described or fuzzed
    there; docs/server.md ("Live tail") is its reference.
    """
    state = get_state(request)
    now = state.clock()
    query = _stream_query(request, now)
    after = None
    last_id = request.headers.get("last-event-id", "").strip()
    if last_id:
        try:
            after = decode_position(last_id)
        except ValueError as exc:
            raise ApiError(422, "invalid_last_event_id", str(exc)) from None
    return grant.apply(
        EventStream(
            hub=get_hub(request),
            store=state.store,
            query=query,
            after=after,
            clock=state.clock,
            shutdown=getattr(request.app.state, "tail_shutdown", None),
        )
    )


def _advance(watermark: Position, item: LiveItem) -> tuple[Position, bytes]:
    """The new watermark and the item's frame: its shared frame when it moves the watermark,
    else a frame at the watermark, so a resume never goes back before what was sent."""
    if item.position >= watermark:
        return item.position, item.frame
    return watermark, sse_frame(watermark, item.data)


def _notice_frame(body: dict[str, Any]) -> bytes:
    return b"event: notice\ndata: " + encode(body) + b"\n\n"


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class _CutOff(Exception):
    """The client cannot keep up (or reads nothing); end its stream with a notice."""


class EventStream(Response):
    """A pure-ASGI streaming response owning one subscription for its whole life.

    Three tasks race: the writer, a disconnect listener and, once the stream is live, the
    overflow signal (the writer may be stuck in `send` behind a full socket, so only another
    task can stop it). Whichever ends first ends the others, and the subscription is
    released in every case (client gone, cut off, server shutdown cancelling the request).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        hub: LiveSource,
        store: Store,
        query: Query,
        after: Position | None,
        clock: Callable[[], float],
        shutdown: asyncio.Event | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.hub = hub
        self.store = store
        self.query = query
        self.after = after
        self.clock = clock
        self.shutdown = shutdown or asyncio.Event()
        self.in_flight = 0  # live events handed to `send` and not yet written
        self.live = asyncio.Event()  # the store read is over; overflow now means cut off
        self.init_headers({"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            subscription = self.hub.subscribe(EventMatcher(self.query))
        except TooManySubscribers:
            await too_many_subscribers().response()(scope, receive, send)
            return
        try:
            await self._serve(subscription, receive, send)
        finally:
            self.hub.unsubscribe(subscription)

    async def _serve(self, subscription: Subscription, receive: Receive, send: Send) -> None:
        subscribed_at = self.clock()
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def overflowed_while_live() -> None:
            await self.live.wait()
            await subscription.overflowed.wait()

        writer = asyncio.ensure_future(self._write(subscription, send, subscribed_at))
        disconnect = asyncio.ensure_future(_wait_disconnect(receive))
        overflow = asyncio.ensure_future(overflowed_while_live())
        shutdown = asyncio.ensure_future(self.shutdown.wait())
        tasks = (writer, disconnect, overflow, shutdown)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if disconnect.done() and not disconnect.cancelled():
            return
        error = writer.exception() if writer.done() and not writer.cancelled() else None
        if error is not None and not isinstance(error, _CutOff):
            # Type only: the exception text may quote stored data.
            log.error("live tail stream failed: %s", type(error).__name__)
            final = _notice_frame({"reason": "server_error"})
        elif shutdown.done() and not shutdown.cancelled() and overflow.cancelled():
            final = _notice_frame({"reason": "server_shutdown"})
        else:
            # Cut off: what was queued is not delivered on this connection either.
            dropped = subscription.dropped + len(subscription) + self.in_flight
            final = _notice_frame({"reason": "slow_consumer", "dropped": dropped})
        message: Message = {"type": "http.response.body", "body": final, "more_body": False}
        # A client that reads nothing never takes it; the server then drops the connection.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(send(message), FINAL_SEND_TIMEOUT)

    async def _write(self, subscription: Subscription, send: Send, subscribed_at: float) -> None:
        async def emit(body: bytes) -> None:
            await send({"type": "http.response.body", "body": body, "more_body": True})

        after = self.after
        watermark: Position = after if after is not None else (format_timestamp(subscribed_at), "")
        prelude = b"retry: %d\n" % RETRY_MILLISECONDS
        if after is None:
            # An id-only message sets the client's Last-Event-ID without an event, so even a
            # client that saw no event yet resumes from here.
            prelude += b"id: %s\n" % encode_position(watermark).encode()
        await emit(prelude + b"\n")

        recent: set[str] = set()
        if after is not None or self.query.since is not None:
            watermark, recent = await self._catch_up(subscription, send, after, subscribed_at)
        self.live.set()
        await self._stream_live(subscription, emit, watermark, recent)

    async def _catch_up(
        self, subscription: Subscription, send: Send, after: Position | None, subscribed_at: float
    ) -> tuple[Position, set[str]]:
        """Send what the store holds, then what arrived meanwhile, until the live outbox kept
        up with a whole round (events it had to drop are re-read from the store instead)."""

        async def emit(body: bytes) -> None:
            message: Message = {"type": "http.response.body", "body": body, "more_body": True}
            try:
                async with asyncio.timeout(REPLAY_STALL_SECONDS):  # not wait_for (see next_batch)
                    await send(message)
            except TimeoutError:
                raise _CutOff from None

        watermark: Position = after if after is not None else (format_timestamp(subscribed_at), "")
        replay_max = self.hub.settings.replay_max
        for _ in range(CATCH_UP_ROUNDS):
            backlog = await load_backlog(self.store, self.query, after=after, limit=replay_max)
            if backlog.dropped or not backlog.complete:
                body = {
                    "reason": "backlog_limit",
                    "dropped": backlog.dropped,
                    "complete": backlog.complete,
                }
                await emit(_notice_frame(body))
            cutoff = format_timestamp(subscribed_at - _DEDUPE_WINDOW)
            recent: set[str] = set()
            frames: list[bytes] = []
            for item in backlog.items:
                if item.position[0] >= cutoff:
                    recent.add(item.event_id)
                watermark, frame = _advance(watermark, item)
                frames.append(frame)
                if len(frames) >= _BATCH_FRAMES:
                    await emit(b"".join(frames))
                    frames = []
            if frames:
                await emit(b"".join(frames))
            if not subscription.overflowed.is_set():
                return watermark, recent
            # More arrived during the read than the outbox holds: read on from the store.
            subscription.reset()
            after = watermark
        raise _CutOff

    async def _stream_live(
        self,
        subscription: Subscription,
        emit: Callable[[bytes], Awaitable[None]],
        watermark: Position,
        recent: set[str],
    ) -> None:
        heartbeat = self.hub.settings.heartbeat
        while True:
            batch = await subscription.next_batch(heartbeat)
            if not batch:
                await emit(b": ping\n\n")
                continue
            frames = []
            for item in batch:
                assert isinstance(item, LiveItem)
                if recent and item.event_id in recent:
                    recent.discard(item.event_id)  # published once: never seen again
                    continue
                watermark, frame = _advance(watermark, item)
                frames.append(frame)
            if frames:
                self.in_flight = len(frames)
                await emit(b"".join(frames))
                self.in_flight = 0
