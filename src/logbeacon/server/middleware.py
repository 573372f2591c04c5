"""Pure-ASGI middleware of the server (STYLE.md 8): security headers and CORS.

CORS is answered for the configured origins only, on every response including errors, with
`Retry-After` exposed, so the browser client can read a 429/503 and back off instead of seeing
a network error (RELIABILITY.md RL-19). Other origins get no CORS headers at all.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logbeacon.event import encode

__all__ = ["CorsMiddleware", "SecurityHeadersMiddleware"]

_ALLOW_METHODS: Final = "GET, POST, OPTIONS"
_EXPOSE: Final = "Retry-After"
_MAX_AGE: Final = "600"


class SecurityHeadersMiddleware:
    """`nosniff` everywhere, no referrer (URLs may carry `?token=`), no caching of API data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith("/v1/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if api:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CorsMiddleware:
    """CORS for an exact list of origins; preflights answered here, errors included."""

    def __init__(
        self, app: ASGIApp, *, allowed_origins: Collection[str], allow_headers: Collection[str]
    ) -> None:
        self.app = app
        self.allowed = frozenset(allowed_origins)
        self.allow_headers = ", ".join(sorted({h.lower() for h in allow_headers}))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.allowed:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = origin in self.allowed
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, allowed, send)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = origin
                response_headers["Access-Control-Allow-Credentials"] = "true"
                response_headers["Access-Control-Expose-Headers"] = _EXPOSE
                response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, origin: str, allowed: bool, send: Send) -> None:
        if not allowed:
            body = encode(
                {"error": "origin_not_allowed", "message": "this origin may not call this API"}
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"vary", b"Origin"),
            ]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", _ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", self.allow_headers.encode()),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", _EXPOSE.encode()),
            (b"access-control-max-age", _MAX_AGE.encode()),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
