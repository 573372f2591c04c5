"""One call to instrument a FastAPI or Starlette application.

`instrument_app(app)` adds `CorrelationMiddleware` as the outermost user middleware, wraps the
app's `HTTPException` and request-validation handlers so the `http_request` line says why a
4xx happened (`detail`, `validation_errors` — locations and messages, never the submitted
values), and with `metrics=True` serves Prometheus metrics at `/metrics`. The app's own
handlers keep producing the responses; nothing is monkeypatched. Calling it twice changes
nothing the second time.

FastAPI is optional: a plain Starlette app gets the same treatment minus validation errors.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from logbeacon.exceptions import IntegrationMissing

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise IntegrationMissing("starlette", "server") from exc

from logbeacon.integrations.asgi import SCOPE_KEY, CorrelationMiddleware, RequestInfo

__all__ = ["METRICS_PATH", "instrument_app"]

METRICS_PATH: Final = "/metrics"
_MAX_DETAIL: Final = 200
_MAX_VALIDATION_ERRORS: Final = 10

Handler = Callable[[Request, Exception], Any]


def instrument_app(
    app: Starlette,
    *,
    service: str | None = None,
    metrics: bool = False,
    **middleware_kwargs: Any,
) -> Starlette:
    """Correlate, log and optionally measure every request of a FastAPI/Starlette app.

    `middleware_kwargs` are `CorrelationMiddleware`'s options (`request_id_header`,
    `trust_incoming_trace`, `log_requests`, `skip_paths`). `metrics=True` feeds the
    Prometheus metrics from events and serves them at `GET /metrics` (not logged itself).
    Call it before the app serves its first request. Returns the app.
    """
    if not isinstance(app, Starlette):
        raise TypeError(
            f"instrument_app() takes a FastAPI or Starlette app, not {type(app).__name__}; "
            "wrap any other ASGI app with CorrelationMiddleware(app)"
        )
    instrumented = any(_is_correlation(m.cls) for m in app.user_middleware)
    if app.middleware_stack is not None:
        if instrumented:
            return app
        raise RuntimeError(
            "instrument_app(app) must be called before the app serves its first request: "
            "Starlette cannot add middleware to a running app"
        )
    if not instrumented:
        skip_paths = list(middleware_kwargs.pop("skip_paths", ()))
        if metrics and METRICS_PATH not in skip_paths:
            skip_paths.append(METRICS_PATH)
        app.add_middleware(
            CorrelationMiddleware, service=service, skip_paths=skip_paths, **middleware_kwargs
        )
    _wrap_handler(app, HTTPException, _annotate_http_exception, _starlette_http_exception)
    validation_error = _validation_error_class()
    if validation_error is not None:
        _wrap_handler(app, validation_error, _annotate_validation_error, None)
    if metrics:
        _serve_metrics(app)
    return app


def _validation_error_class() -> type[Exception] | None:
    try:
        from fastapi.exceptions import RequestValidationError
    except ImportError:  # a plain Starlette app without FastAPI installed
        return None
    return RequestValidationError


def _is_correlation(middleware_class: object) -> bool:
    return middleware_class is CorrelationMiddleware


# --------------------------------------------------------------------------- handlers


def _wrap_handler(
    app: Starlette,
    exc_class: type[Exception],
    annotate: Callable[[RequestInfo, Exception], None],
    default: Handler | None,
) -> None:
    original: Handler | None = app.exception_handlers.get(exc_class, default)
    if original is None or getattr(original, "__logbeacon_wrapped__", None) is not None:
        return
    handler = original

    async def annotating_handler(request: Request, exc: Exception) -> Any:
        info = request.scope.get(SCOPE_KEY)
        if isinstance(info, RequestInfo):
            annotate(info, exc)
        if _is_async(handler):
            return await cast(Callable[[Request, Exception], Awaitable[Any]], handler)(request, exc)
        return await run_in_threadpool(handler, request, exc)

    annotating_handler.__logbeacon_wrapped__ = original  # type: ignore[attr-defined]
    app.add_exception_handler(exc_class, annotating_handler)


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


def _starlette_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own answer to an `HTTPException`, used when the app registered none."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


def _annotate_http_exception(info: RequestInfo, exc: Exception) -> None:
    detail = getattr(exc, "detail", None)
    if isinstance(detail, str) and detail:
        info.detail = detail[:_MAX_DETAIL]


def _annotate_validation_error(info: RequestInfo, exc: Exception) -> None:
    errors_fn = getattr(exc, "errors", None)
    raw = errors_fn() if callable(errors_fn) else ()
    summary: list[dict[str, Any]] = []
    for error in list(raw)[:_MAX_VALIDATION_ERRORS]:
        if not isinstance(error, dict):
            continue
        # `input` and `ctx` can hold what the client submitted (passwords, personal data):
        # only where it failed and why are kept.
        summary.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "type": str(error.get("type", "")),
                "msg": str(error.get("msg", ""))[:_MAX_DETAIL],
            }
        )
    info.validation_errors = summary


# --------------------------------------------------------------------------- metrics


def _serve_metrics(app: Starlette) -> None:
    from logbeacon.integrations import metrics as metrics_module

    metrics_module.default_collector().install()
    if any(isinstance(r, Route) and r.path == METRICS_PATH for r in app.routes):
        return
    endpoint = cast(Callable[[Request], Awaitable[Response]], metrics_module.make_metrics_app())
    app.add_route(METRICS_PATH, endpoint, methods=["GET", "HEAD"], include_in_schema=False)
