"""Test helpers for code that logs with logbeacon (public API, STYLE.md 13).

``capture_logs()`` collects every event exactly as it is emitted — after every processor,
redaction included — so a test asserts on what would really leave the process::

    from logbeacon.testing import capture_logs

    def test_node_logs():
        with capture_logs() as logs:
            run_node()
        assert ["node_start", "node_complete"] == [e["event"] for e in logs]

With pytest, the `logbeacon_capture` fixture does the same (the plugin is registered through
the ``pytest11`` entry point ``logbeacon = "logbeacon.testing"``). `freeze()` makes
timestamps and event ids deterministic. `reset()` returns the SDK to its unconfigured state.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from logbeacon.sdk import config as _config
from logbeacon.sdk.config import reset
from logbeacon.sdk.sinks import CaptureSink, attach

__all__ = ["capture_logs", "freeze", "reset"]


@contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Collect every event emitted inside the block (from any logger or stdlib record).

    The configured sinks keep receiving events too; the level filter still applies (configure
    ``level="debug"`` to capture debug events). Nested captures each get every event, and a
    reconfigure inside the block does not stop the capture.
    """
    events: list[dict[str, Any]] = []
    detach = attach(CaptureSink(events))
    try:
        yield events
    finally:
        detach()


@contextmanager
def freeze(
    timestamp: str = "2026-01-01T00:00:00.000000Z", event_id_seq: bool = True
) -> Iterator[None]:
    """Make every event carry `timestamp` and, with `event_id_seq`, ids ``evt-000001``, ….

    For golden-output tests; the real clock and ids come back after the block.
    """
    counter = itertools.count(1)

    def clock() -> str:
        return timestamp

    def ids() -> str:
        return f"evt-{next(counter):06d}"

    previous = _config._set_test_sources(clock, ids if event_id_seq else None)
    try:
        yield
    finally:
        _config._set_test_sources(*previous)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:

    @pytest.fixture
    def logbeacon_capture() -> Iterator[list[dict[str, Any]]]:
        """Events emitted during the test, after processing and redaction."""
        with capture_logs() as events:
            yield events
        reset()

    __all__ += ["logbeacon_capture"]
