"""Extension points the integrations plug into, without the SDK importing them.

The import direction is `sdk` ← `integrations`, so the SDK cannot call error analysis or
OpenTelemetry directly. Instead an integration registers a function here:

- an *error enricher* ``fn(exc, error, event) -> None`` edits the `error` object of every
  event that has one (category, fingerprint, suggestions); `exc` is the exception when the
  event came from `exc_info`, else None;
- a *context provider* ``fn() -> Mapping | None`` supplies correlation fields (OpenTelemetry
  trace/span ids) for events that carry no `trace_id` yet; its fields never override fields
  the event already has.

Hooks are process-wide and survive `configure()`/`reset()`, because integrations register
them once at import or instrumentation time. Registering the same function twice is a no-op;
each `add_*` returns a function that removes the hook again. A hook that raises is reported
through the guard and the event is still emitted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

__all__ = [
    "ContextProvider",
    "ErrorEnricher",
    "add_context_provider",
    "add_error_enricher",
    "clear_hooks",
    "context_providers",
    "error_enrichers",
]

ErrorEnricher: TypeAlias = Callable[[BaseException | None, dict[str, Any], dict[str, Any]], None]
ContextProvider: TypeAlias = Callable[[], Mapping[str, Any] | None]

_lock = threading.Lock()
# Tuples replaced wholesale (copy-on-write): the hot path reads them without a lock.
_enrichers: tuple[ErrorEnricher, ...] = ()
_providers: tuple[ContextProvider, ...] = ()


def add_error_enricher(fn: ErrorEnricher) -> Callable[[], None]:
    """Call `fn(exc, error, event)` for every event with an `error` object; returns a remover."""
    global _enrichers  # noqa: PLW0603 - the registry is module state by design
    with _lock:
        if fn not in _enrichers:
            _enrichers = (*_enrichers, fn)

    def remove() -> None:
        global _enrichers  # noqa: PLW0603
        with _lock:
            _enrichers = tuple(f for f in _enrichers if f is not fn)

    return remove


def add_context_provider(fn: ContextProvider) -> Callable[[], None]:
    """Merge `fn()`'s fields into events without a `trace_id`; returns a remover."""
    global _providers  # noqa: PLW0603
    with _lock:
        if fn not in _providers:
            _providers = (*_providers, fn)

    def remove() -> None:
        global _providers  # noqa: PLW0603
        with _lock:
            _providers = tuple(f for f in _providers if f is not fn)

    return remove


def error_enrichers() -> tuple[ErrorEnricher, ...]:
    """The registered error enrichers, in registration order."""
    return _enrichers


def context_providers() -> tuple[ContextProvider, ...]:
    """The registered context providers, in registration order."""
    return _providers


def clear_hooks() -> None:
    """Remove every hook (tests that register their own)."""
    global _enrichers, _providers  # noqa: PLW0603
    with _lock:
        _enrichers = ()
        _providers = ()
