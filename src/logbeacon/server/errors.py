"""Every exception → HTTP response mapping of the server, in one place.

Error bodies share one shape, `{"error": "<code>", "message": "<what to do>", ...}`, and never
echo what the client sent (no values, no headers, no signatures): an error response must not
reflect secrets or HTML back (RELIABILITY.md LIM-12, SIG-14). Statuses that ask the client to
come back later carry `Retry-After` in whole seconds, never 0.
"""

from __future__ import annotations

import http
import logging
import math
from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from logbeacon.event import encode
from logbeacon.exceptions import StoreError, StoreUnavailable
from logbeacon.server.filters import FilterError

__all__ = [
    "ApiError",
    "ApiResponse",
    "ErrorBody",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "retry_after_header",
]

log = logging.getLogger("logbeacon.server")

_DESCRIPTIONS: Final = {
    400: "Malformed request: unparseable body, unknown or repeated query parameter",
    401: "Missing or invalid credentials",
    403: "Valid credentials that may not do this",
    404: "Not found",
    409: "Conflict",
    413: "Body or batch too large (non-retryable)",
    415: "Unsupported Content-Type or Content-Encoding",
    422: "A parameter or field has an invalid value",
    429: "Rate limited; retry after `Retry-After` seconds",
    503: "The store cannot commit right now; retry after `Retry-After` seconds",
}


class ApiResponse(JSONResponse):
    """JSON through orjson: strict RFC 8259 (NaN/Infinity become null), UTF-8."""

    def render(self, content: Any) -> bytes:
        return encode(content)


class ErrorBody(BaseModel):
    """The shape of every error response."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses an operation can return."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS.get(status, "Error")}
        for status in statuses
    }


def retry_after_header(seconds: float) -> str:
    """`Retry-After` in whole seconds, rounded up and at least 1."""
    if not math.isfinite(seconds):
        return "60"
    return str(max(1, math.ceil(seconds)))


class ApiError(Exception):
    """An HTTP error with a stable code; raise it anywhere in a handler."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status = status
        self.error = error
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(f"{status} {error}: {message}")

    def response(self) -> ApiResponse:
        body = {"error": self.error, "message": self.message, **self.extra}
        return ApiResponse(body, status_code=self.status, headers=self.headers)


def error_response(exc: Exception) -> ApiResponse:
    """The response for an exception a handler let through (ApiError, store failures, bugs).

    Shared by the exception handlers and by the ingest fast path, which answers outside the
    router and so outside the handlers.
    """
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", type(exc).__name__)
        retry = retry_after_header(exc.retry_after)
        return ApiError(
            503,
            "store_unavailable",
            f"the store cannot commit right now (nothing was stored); retry in {retry} s",
            headers={"Retry-After": retry},
            retry_after=int(retry),
        ).response()
    if isinstance(exc, StoreError):
        log.error("store error: %s", type(exc).__name__)
        return ApiError(500, "store_error", "the store failed; see the server log").response()
    # Type only: the exception text may quote request data.
    log.error("unhandled %s in request", type(exc).__name__)
    return ApiError(500, "internal_error", "unexpected server error").response()


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        # Only the location and pydantic's generic message: never the offending `input`.
        out.append({"loc": loc, "message": str(error.get("msg", "invalid value"))})
    return out


def _status_code_name(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _allowed_methods(request: Request) -> list[str]:
    """Every method any route serves at this path (Starlette lists only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match is not Match.NONE and route_methods:
            methods.update(route_methods)
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; called once by `create_app`."""

    async def by_type(_: Request, exc: Exception) -> Response:
        return error_response(exc)

    async def filter_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, FilterError)
        return ApiError(exc.status, exc.code, str(exc), param=exc.param).response()

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        fields = _field_errors(exc)
        summary = "; ".join(f"{'.'.join(f['loc'][1:]) or 'body'}: {f['message']}" for f in fields)
        error = ApiError(422, "invalid_request", summary or "invalid request", fields=fields)
        return error.response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _status_code_name(exc.status_code)
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return ApiError(exc.status_code, code, message, headers=headers).response()

    app.add_exception_handler(ApiError, by_type)
    app.add_exception_handler(FilterError, filter_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StoreUnavailable, by_type)
    app.add_exception_handler(StoreError, by_type)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, by_type)
