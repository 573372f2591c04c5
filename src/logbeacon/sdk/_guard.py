"""The never-raise guard: logging must not break the application that logs.

Every place where SDK code runs on behalf of a caller (a log call, a stdlib record, a sink
write, a hook) catches `Exception` and hands it to `report`. In production `report` counts the
error and writes a short note to the `logbeacon.internal` logger the first time each kind of
failure happens (never again, so a broken disk cannot flood stderr). Under our own test suite
(`LOGBEACON_RAISE_INTERNAL=1`) it re-raises instead, so bugs surface as test failures rather
than as silently missing events.

`BaseException`s that are not `Exception`s (`KeyboardInterrupt`, `SystemExit`) are never
swallowed: they belong to the application.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter
from typing import Final

__all__ = ["INTERNAL_LOGGER_NAME", "internal_errors", "raise_internal", "report", "reset_counts"]

INTERNAL_LOGGER_NAME: Final = "logbeacon.internal"
_RAISE_ENV: Final = "LOGBEACON_RAISE_INTERNAL"

_internal = logging.getLogger(INTERNAL_LOGGER_NAME)
_lock = threading.Lock()
_counts: Counter[str] = Counter()


def raise_internal() -> bool:
    """Whether internal errors re-raise (test suites) instead of being counted (production).

    Read from the environment on every error, not cached, so a test can switch modes with
    `monkeypatch.setenv` alone; errors are rare enough that the lookup costs nothing.
    """
    return os.environ.get(_RAISE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def report(where: str, exc: Exception) -> None:
    """Count an internal failure at `where`, or re-raise it under the test suite.

    Call it only from an `except Exception` block: it re-raises the active exception.
    """
    if raise_internal():
        raise exc
    key = f"{where}:{type(exc).__name__}"
    with _lock:
        _counts[key] += 1
        first = _counts[key] == 1
    if first:
        # Only the type and where: the message of a failure inside logging may carry the very
        # values redaction exists to keep out of output. Reporting must not fail the caller.
        with contextlib.suppress(Exception):
            _internal.warning(
                "logbeacon internal error in %s: %s (further ones are only counted; see "
                "logbeacon.sdk.internal_errors())",
                where,
                type(exc).__name__,
            )


def internal_errors() -> dict[str, int]:
    """How many internal errors were swallowed, by `where:ExceptionType`."""
    with _lock:
        return dict(_counts)


def reset_counts() -> None:
    """Forget the counts (tests, and `reset()`)."""
    with _lock:
        _counts.clear()
