"""The logbeacon SDK: structured JSON logging on structlog, configured in one call.

`logbeacon/__init__.py` re-exports the everyday names; this package is the full surface for
integrations and tools (hooks, sinks, internal-error counts).
"""

from __future__ import annotations

from logbeacon.redact import Redaction
from logbeacon.sdk._guard import internal_errors
from logbeacon.sdk.config import (
    BoundLogger,
    Settings,
    configure,
    current_settings,
    flush,
    get_logger,
    is_configured,
    reset,
)
from logbeacon.sdk.hooks import add_context_provider, add_error_enricher
from logbeacon.sdk.sinks import Sink, attach

__all__ = [
    "BoundLogger",
    "Redaction",
    "Settings",
    "Sink",
    "add_context_provider",
    "add_error_enricher",
    "attach",
    "configure",
    "current_settings",
    "flush",
    "get_logger",
    "internal_errors",
    "is_configured",
    "reset",
]
