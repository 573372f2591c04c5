"""logbeacon: troubleshooting-first observability for Python web and AI-agent applications.

This module is the whole public surface of the SDK; everything else is importable but may
change. `import logbeacon` stays light (structlog and orjson): the server, the CLI and the
framework integrations import their dependencies only when used.
"""

from __future__ import annotations

from logbeacon import _compiled

_compiled.install()  # before any hot module is imported: never run a stale compiled build

from logbeacon._version import __version__
from logbeacon.context import bind, bound, get_context, unbind
from logbeacon.exceptions import (
    ConfigError,
    EventError,
    IntegrationMissing,
    LogbeaconError,
    StoreError,
    StoreUnavailable,
)
from logbeacon.integrations import errors as _errors
from logbeacon.integrations.pipeline import pipeline
from logbeacon.integrations.timing import timed
from logbeacon.redact import Redaction
from logbeacon.sdk import configure, flush, get_logger
from logbeacon.sdk import hooks as _hooks

# Error analysis is part of every event with an error (DESIGN.md §3): category, suggestions,
# fingerprint. The SDK cannot import integrations, so the wiring happens here, once.
_hooks.add_error_enricher(_errors.enrich)

__all__ = [
    "ConfigError",
    "EventError",
    "IntegrationMissing",
    "LogbeaconError",
    "Redaction",
    "StoreError",
    "StoreUnavailable",
    "__version__",
    "bind",
    "bound",
    "configure",
    "flush",
    "get_context",
    "get_logger",
    "pipeline",
    "timed",
    "unbind",
]
