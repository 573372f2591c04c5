"""The "seed design" server of bench/ingest.py: the ingestion back end the first plan describes.

Plan 000 (`/work/shared/seeds/000_dca466dc1400b9b1.txt`, section 3) sketches a FastAPI back
end; this is that design written out so logbeacon can be measured against it:

- correlation through a `BaseHTTPMiddleware` (`x-request-id` or a generated one, the trace id
  from `traceparent`, both echoed as response headers);
- a per-IP token bucket (here with a configurable rate, so it never limits the benchmark);
- every event validated into a pydantic model (the plan's fields: `timestamp`, `level`,
  `service`, `environment`, `release` and `message` required; ids, `component`, `http`,
  `error`, `data` optional; unknown fields are dropped, as pydantic does by default), a bad
  event failing the whole request with 400;
- enrichment with the request's ids and an allow-list filter of `data`;
- one JSON line per event written through a `logging.FileHandler` (flushed per record, so an
  answered event survives a process crash), and no storage or index: nothing can be queried.

The plan's defects that do not affect throughput (an HMAC check without a secret, the policy
that rejects a whole batch) are left out; the HMAC check is off in the plan too when no
secret is configured.

    python bench/_seed_server.py --port 8801 --data-dir /tmp/seed
"""

from __future__ import annotations

import argparse
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import Body, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response

__all__ = ["build_app", "main"]

_TRACEPARENT: Final = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_DATA_ALLOW: Final = frozenset(
    {"route", "route_template", "host", "method", "status", "duration_ms", "component"}
)
_DATA_BLOCK: Final = ("authorization", "cookie", "token", "secret", "password")


class CorrelationMiddleware(BaseHTTPMiddleware):
    """Request and trace ids on `request.state` and on the response, as the plan does it."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or f"r-{uuid.uuid4().hex[:16]}"
        match = _TRACEPARENT.match(request.headers.get("traceparent", ""))
        trace_id = match.group(1) if match else f"t-{uuid.uuid4().hex[:16]}"
        request.state.request_id = request_id
        request.state.trace_id = trace_id
        response = await call_next(request)
        response.headers["x-request-id"] = request_id
        response.headers["x-trace-id"] = trace_id
        return response


class ErrorModel(BaseModel):
    type: str | None = Field(default=None, max_length=64)
    message: str | None = Field(default=None, max_length=256)
    stack: list[str] | None = None


class HttpModel(BaseModel):
    method: str | None = Field(default=None, max_length=8)
    route: str | None = Field(default=None, max_length=128)
    host: str | None = Field(default=None, max_length=128)
    status: int | None = None
    duration_ms: float | None = None


class LogEvent(BaseModel):
    timestamp: str
    level: str
    service: str
    environment: str
    release: str
    message: str
    trace_id: str | None = None
    request_id: str | None = None
    session_id: str | None = None
    component: str | None = None
    error: ErrorModel | None = None
    http: HttpModel | None = None
    data: dict[str, Any] | None = None


class _Buckets:
    """Per-IP token buckets refilled at `rate` requests/s up to `burst` (the plan's limiter)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._state: dict[str, tuple[float, float]] = {}

    def allow(self, ip: str) -> bool:
        now = time.monotonic()
        stamp, tokens = self._state.get(ip, (now, self.burst))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        allowed = tokens >= 1.0
        self._state[ip] = (now, tokens - 1.0 if allowed else tokens)
        return allowed


def _sanitize(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if not data:
        return None
    out: dict[str, Any] = {}
    for key, value in data.items():
        lowered = key.lower()
        if key not in _DATA_ALLOW or any(word in lowered for word in _DATA_BLOCK):
            continue
        out[key] = value.split("?", 1)[0][:256] if isinstance(value, str) else value
    return out or None


def build_app(log_file: Path, *, rate: float, burst: float) -> FastAPI:
    """The plan's ingestion app writing JSON lines to `log_file`."""
    logger = logging.getLogger("troubleshoot")
    logger.handlers.clear()
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    buckets = _Buckets(rate, burst)

    app = FastAPI(title="seed design ingestion")
    app.add_middleware(CorrelationMiddleware)

    @app.post("/v1/logs")
    async def ingest(request: Request, body: Annotated[Any, Body()]) -> dict[str, int]:
        ip = request.client.host if request.client else "unknown"
        if not buckets.allow(ip):
            raise HTTPException(status_code=429, detail="rate_limited")
        if isinstance(body, dict) and isinstance(body.get("events"), list):
            items = body["events"]
        elif isinstance(body, list):
            items = body
        else:
            items = [body]
        try:
            events = [LogEvent.model_validate(item) for item in items]
        except ValidationError:
            raise HTTPException(status_code=400, detail="invalid_payload") from None
        for event in events:
            event.request_id = event.request_id or request.state.request_id
            event.trace_id = event.trace_id or request.state.trace_id
            event.data = _sanitize(event.data)
            logger.info(event.model_dump_json(exclude_none=True))
        return {"accepted": len(events)}

    @app.get("/v1/logs/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="the seed plan's ingestion back end")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=1e9, help="requests/s per IP")
    parser.add_argument("--burst", type=float, default=1e9)
    args = parser.parse_args()

    import uvicorn

    args.data_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(args.data_dir / "api.log", rate=args.rate, burst=args.burst)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
