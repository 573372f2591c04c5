"""OpenTelemetry ids in logbeacon events, without making OpenTelemetry a dependency.

When the application runs OpenTelemetry tracing, its active span is the truth about which
trace a log line belongs to: using the same ids lets a logbeacon timeline and an OTel trace
viewer be joined. This module never imports `opentelemetry` itself — it only looks at
`sys.modules` — so `import logbeacon` stays light and an app without OTel pays nothing. If
the app imported OpenTelemetry, the API is already loaded and asking it for the current span
is cheap.

`install()` registers a context provider with the SDK: events that carry no `trace_id` (logs
outside a request handled by the correlation middleware) get the active span's ids. The
correlation middleware asks `current_ids()` directly, so requests traced by an OTel ASGI
instrumentation log under the OTel trace even without `install()`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from logbeacon.sdk import hooks

__all__ = ["current_ids", "install", "installed", "uninstall"]

_lock = threading.Lock()
_remove: Callable[[], None] | None = None


def current_ids() -> tuple[str, str] | None:
    """`(trace_id, span_id)` of the active OpenTelemetry span, or None.

    None when OpenTelemetry was never imported, when no span is active, or when the active
    span's context is invalid (the API's non-recording default). Ids are formatted as the W3C
    and logbeacon schema want them: 32 and 16 lowercase hex digits.
    """
    trace_api: Any = sys.modules.get("opentelemetry.trace")
    if trace_api is None:
        return None
    try:
        context = trace_api.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"
    except Exception:
        # A half-initialised or incompatible OpenTelemetry must never break logging: the
        # event simply keeps logbeacon's own ids.
        return None


def _provide() -> Mapping[str, str] | None:
    ids = current_ids()
    if ids is None:
        return None
    return {"trace_id": ids[0], "span_id": ids[1]}


def install() -> None:
    """Give events without a `trace_id` the active OpenTelemetry span's ids (idempotent)."""
    global _remove  # noqa: PLW0603 - one registration per process, undone by uninstall()
    with _lock:
        # The hook registry ignores a second registration of the same function.
        _remove = hooks.add_context_provider(_provide)


def uninstall() -> None:
    """Stop adding OpenTelemetry ids to events; a no-op when not installed."""
    global _remove  # noqa: PLW0603
    with _lock:
        if _remove is not None:
            _remove()
            _remove = None


def installed() -> bool:
    """Whether the OpenTelemetry context provider is registered with the SDK."""
    return _provide in hooks.context_providers()
