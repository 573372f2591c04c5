"""The per-app state every router reads: one object on `app.state.logbeacon`.

Keeping it in one typed object (instead of loose attributes) makes the extension points
explicit: later routers (stream, runs, errors, dashboard) get the store, settings and auth
from here, and the live tail subscribes to accepted events through `listeners`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from logbeacon.redact import Redactor
    from logbeacon.server.auth import Authenticator
    from logbeacon.server.diagnostics import DiagnosticTokens
    from logbeacon.server.metrics import ServerMetrics
    from logbeacon.server.policy import LevelPolicy
    from logbeacon.server.ratelimit import TokenBucketLimiter
    from logbeacon.server.settings import Settings
    from logbeacon.store.base import Store

__all__ = ["AcceptedListener", "ServerState", "get_state"]

log = logging.getLogger("logbeacon.server")

Event = dict[str, Any]
# Called with the events of one request right after they were committed (new events only).
AcceptedListener = Callable[[Sequence[Event]], Awaitable[None] | None]


@dataclass(slots=True)
class ServerState:
    settings: Settings
    store: Store
    auth: Authenticator
    limiter: TokenBucketLimiter
    diagnostics: DiagnosticTokens
    policy: LevelPolicy
    redactor: Redactor
    metrics: ServerMetrics
    clock: Callable[[], float]
    generated_read_token: str | None = None
    listeners: list[AcceptedListener] = field(default_factory=list)

    def add_listener(self, listener: AcceptedListener) -> Callable[[], None]:
        """Subscribe to accepted events; returns a function that unsubscribes."""
        self.listeners.append(listener)

        def remove() -> None:
            if listener in self.listeners:
                self.listeners.remove(listener)

        return remove

    async def notify(self, events: Sequence[Event]) -> None:
        """Hand committed events to every listener; a failing listener never fails ingestion."""
        for listener in tuple(self.listeners):
            try:
                result = listener(events)
                if isawaitable(result):
                    await result
            except Exception as exc:  # a listener bug must not turn an ack into an error
                self.metrics.listener_errors.inc()
                log.error("accepted-events listener failed: %s", type(exc).__name__)


def get_state(connection: HTTPConnection) -> ServerState:
    """The state of the app serving this request or WebSocket."""
    state: ServerState = connection.app.state.logbeacon
    return state
