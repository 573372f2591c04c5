"""Every error logbeacon raises on purpose.

The hierarchy, so callers can catch as broadly or narrowly as they like::

    LogbeaconError
    ├── ConfigError (also ValueError)      bad configure()/settings input
    ├── EventError (also ValueError)       one event failed validation; `.reason` is a code
    ├── StoreError                         the store could not do what was asked
    │   └── StoreUnavailable               transient: disk full, locked; retry later
    └── IntegrationMissing (also ImportError)  an optional extra is not installed

Builtins are mixed in where the meaning fits, so `except ValueError` in user code keeps
working around our calls.
"""

from __future__ import annotations


class LogbeaconError(Exception):
    """Base of every error logbeacon raises deliberately."""


class ConfigError(LogbeaconError, ValueError):
    """A setting was invalid; the message names the setting and what it accepts."""


class EventError(LogbeaconError, ValueError):
    """One event was rejected.

    `reason` is a short stable snake_case code (it is what the server reports per event in
    `rejected[].reason`); the message is for humans.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message or reason)


class StoreError(LogbeaconError):
    """The store failed in a way that retrying will not fix."""


class StoreUnavailable(StoreError):
    """The store could not commit right now (locked, disk full); the caller should retry later.

    The server maps it to `503` with `Retry-After`, never to a 2xx.
    """

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class IntegrationMissing(LogbeaconError, ImportError):
    """An optional dependency is missing; the message says which extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'logbeacon[{extra}]'"
        )
