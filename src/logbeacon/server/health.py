"""`GET /v1/logs/health` (no token, no data: is the server up and can it reach its store?) and
`GET /metrics` (the server's own Prometheus metrics, read token required)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from logbeacon._version import __version__
from logbeacon.server.auth import ReadGrant, require_read
from logbeacon.server.errors import ApiResponse, error_responses
from logbeacon.server.state import get_state

__all__ = ["router"]

log = logging.getLogger("logbeacon.server")

_STORE_CHECK_SECONDS: Final = 2.0

_HEALTH_SCHEMA: Final = {
    "type": "object",
    "required": ["status", "ok", "store", "version"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "ok": {"type": "boolean"},
        "store": {"type": "string"},
        "version": {"type": "string"},
    },
}

router = APIRouter(tags=["health"])


@router.get(
    "/v1/logs/health",
    summary="Liveness and store status (no token needed, reveals no data)",
    responses={
        200: {
            "description": "Up, and the store answers",
            "content": {"application/json": {"schema": _HEALTH_SCHEMA}},
        },
        503: {
            "description": "Up, but the store does not answer",
            "content": {"application/json": {"schema": _HEALTH_SCHEMA}},
        },
    },
)
async def health(request: Request) -> ApiResponse:
    state = get_state(request)
    try:
        stats = await asyncio.wait_for(state.store.stats(), _STORE_CHECK_SECONDS)
    except Exception as exc:  # any failure means "not healthy", never a 500
        log.warning("health check: store did not answer: %s", type(exc).__name__)
        kind = type(state.store).__name__
        body = {"status": "unavailable", "ok": False, "store": kind, "version": __version__}
        return ApiResponse(body, status_code=503, headers={"Retry-After": "5"})
    return ApiResponse({"status": "ok", "ok": True, "store": stats.kind, "version": __version__})


@router.get(
    "/metrics",
    summary="Prometheus metrics of the server itself",
    responses={
        200: {"description": "Prometheus text format", "content": {"text/plain": {}}},
        **error_responses(401, 403),
    },
)
async def metrics(request: Request, grant: Annotated[ReadGrant, Depends(require_read)]) -> Response:
    state = get_state(request)
    state.metrics.ratelimit_keys.set(len(state.limiter))
    body = generate_latest(state.metrics.registry)
    return grant.apply(Response(body, media_type=CONTENT_TYPE_LATEST))
