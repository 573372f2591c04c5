"""`create_app(settings)`: the server as a factory (STYLE.md 11).

It wires one router per resource, the pure-ASGI middleware, the error handlers (one module)
and the lifespan that opens and closes the store. Everything a router needs is in one
`ServerState` on `app.state.logbeacon`; tests pass their own store or clock.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from logbeacon._version import __version__
from logbeacon.redact import Redactor, default_redactor
from logbeacon.server import (
    analysis,
    assets,
    dashboard,
    diagnostics,
    error_groups,
    health,
    ingest,
    query,
    runs,
    stream,
    ws,
)
from logbeacon.server._poll import StorePoller, poll_interval
from logbeacon.server.alerts import install_alerts
from logbeacon.server.auth import DIAG_HEADER, Authenticator
from logbeacon.server.diagnostics import DiagnosticTokens
from logbeacon.server.errors import ApiResponse, install_error_handlers
from logbeacon.server.metrics import ServerMetrics
from logbeacon.server.middleware import CorsMiddleware, SecurityHeadersMiddleware
from logbeacon.server.policy import LevelPolicy
from logbeacon.server.ratelimit import TokenBucketLimiter
from logbeacon.server.settings import Settings
from logbeacon.server.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from logbeacon.server.state import ServerState
from logbeacon.store import open_store
from logbeacon.store.base import Store

__all__ = ["READ_TOKEN_FILE", "ServerApp", "create_app", "load_or_create_read_token"]

log = logging.getLogger("logbeacon.server")

READ_TOKEN_FILE: Final = "read_token"  # noqa: S105 - a file name
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{32,128}")
_CORS_HEADERS: Final = (
    "authorization",
    "content-type",
    "content-encoding",
    "traceparent",
    "x-request-id",
    DIAG_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)


def load_or_create_read_token(data_dir: Path) -> str:
    """The generated read token of this data dir, created on first start (mode 0600).

    Reusing it across restarts keeps dashboard links and the local CLI working; the file is
    readable only by the user running the server.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / READ_TOKEN_FILE
    try:
        existing = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        existing = ""
    if _TOKEN_RE.fullmatch(existing):
        with contextlib.suppress(OSError):
            path.chmod(0o600)
        return existing
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{READ_TOKEN_FILE}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{token}\n".encode("ascii"))
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    temporary.replace(path)
    return token


class ServerApp(FastAPI):
    """FastAPI with fast paths for `POST /v1/logs`, the server's hot endpoint, and for
    `GET /v1/traces/{id}` (`query.trace_endpoint`), the lookup support repeats most.

    A single-event POST (a browser beacon, an unbatched client) spent about two thirds of its
    CPU time in the framework: the error and exception middleware, matching every route,
    resolving the security dependencies that exist only for the OpenAPI document. Here that
    path goes straight to `ingest.endpoint`, wrapped in the same user middleware (CORS,
    security headers, anything added later) as every other request; the endpoint answers
    its own errors with the shared error responses (bench/README.md has the numbers).
    """

    _ingest_stack: ASGIApp | None = None
    _trace_stack: ASGIApp | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        self._ingest_stack = self._wrap(ingest.endpoint)
        self._trace_stack = self._wrap(query.trace_endpoint)
        return stack

    def _wrap(self, endpoint: ASGIApp) -> ASGIApp:
        for cls, args, kwargs in reversed(self.user_middleware):
            endpoint = cls(endpoint, *args, **kwargs)
        return endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.root_path and not scope.get("root_path"):
            method, path = scope["method"], scope["path"]
            fast = None
            if method == "POST" and path == ingest.PATH:
                fast = "_ingest_stack"
            elif method == "GET" and query.is_trace_path(path):
                fast = "_trace_stack"
            if fast is not None:
                if self.middleware_stack is None:
                    self.middleware_stack = self.build_middleware_stack()
                stack = getattr(self, fast)
                assert stack is not None
                scope["app"] = self
                await stack(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _without_fastapi_telemetry() -> dict[str, Any]:
    """FastAPI ≥ 0.16x checks for OpenTelemetry providers on every request; the server
    reports through its own /metrics and logs, so switch that off where it exists."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def _build_store(settings: Settings) -> Store:
    return open_store(
        settings.store or "sqlite:",
        data_dir=settings.data_dir,
        durability=settings.durability,
        retention_days=settings.retention_days,
        writer_process=settings.resolved_writer_process,
    )


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    clock: Callable[[], float] | None = None,
    redactor: Redactor | None = None,
) -> ServerApp:
    """Build the server app. The app owns `store` (opened and closed by its lifespan).

    `clock` (epoch seconds) replaces both the wall clock and the rate limiter's monotonic
    clock, so tests can freeze or advance time.
    """
    settings = settings or Settings()
    wall = clock or time.time
    own_store = store is None
    if store is None:
        store = _build_store(settings)
    generated = None
    read_tokens = settings.read_tokens
    if not read_tokens:
        generated = load_or_create_read_token(settings.data_dir)
        read_tokens = (generated,)
    state = ServerState(
        settings=settings,
        store=store,
        auth=Authenticator(settings, read_tokens, clock=wall),
        limiter=TokenBucketLimiter(
            settings.rate,
            settings.burst,
            max_keys=settings.rate_limit_max_keys,
            clock=clock or time.monotonic,
        ),
        diagnostics=DiagnosticTokens(settings.diagnostic_secret, clock=wall),
        policy=LevelPolicy(enabled=settings.is_prod),
        redactor=redactor or default_redactor(),
        metrics=ServerMetrics(),
        clock=wall,
        generated_read_token=generated,
    )

    started = False

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal started
        if started and own_store:
            # A closed store cannot reopen; a restarted app (test harnesses) gets a new one.
            state.store = _build_store(settings)
        started = True
        # The store runs its own background work (group commit, retention purge).
        await state.store.open()
        try:
            # Other nodes' events for the live tail (several nodes sharing one store).
            polling = poller.running() if poller is not None else contextlib.nullcontext()
            async with polling, alert_engine.running():  # rules evaluated off the request path
                yield
        finally:
            await state.store.close()

    app = ServerApp(
        **_without_fastapi_telemetry(),
        title="logbeacon",
        version=__version__,
        summary="Ingestion and query API of logbeacon serve",
        docs_url=None,  # the Swagger/ReDoc pages load scripts from a CDN
        redoc_url=None,
        default_response_class=ApiResponse,
        lifespan=lifespan,
    )
    app.state.logbeacon = state
    hub = stream.install_tail(app, state)  # live tail: committed events → subscribers
    interval = poll_interval(hub.settings.poll, store)
    poller = None
    if interval > 0:
        poller = StorePoller(
            hub,
            lambda: state.store,
            interval=interval,
            lookback=hub.settings.poll_lookback,
            clock=wall,
        )
    app.state.tail_poller = poller
    alert_engine = install_alerts(app, state)  # alert rules: committed events → bounded queue
    install_error_handlers(app)
    for module in (ingest, query, health, diagnostics, assets, dashboard, stream, ws):
        app.include_router(module.router)
    for module in (runs, error_groups, analysis):  # derived views: runs, errors, analysis
        app.include_router(module.router)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(
        CorsMiddleware, allowed_origins=settings.allowed_origins, allow_headers=_CORS_HEADERS
    )
    return app
