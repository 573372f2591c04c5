"""Fixtures for the SQLite store tests: a real store file in tmp_path and event factories."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from logbeacon.event import format_timestamp, normalize_event
from logbeacon.store.sqlite import SqliteStore

Event = dict[str, Any]

# A fixed "now" keeps timestamps deterministic; tests that need real time say so.
BASE_TIME = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
def make_event() -> Callable[..., Event]:
    """Build normalised events, one millisecond apart unless a timestamp is given."""
    counter = itertools.count()

    def build(**fields: Any) -> Event:
        n = next(counter)
        raw: dict[str, Any] = {
            "event": "http_request",
            "service": "api",
            "level": "info",
            "message": f"request {n} handled",
            "timestamp": format_timestamp(BASE_TIME + n / 1000),
        }
        raw.update(fields)
        return normalize_event(raw)

    return build


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open store with retention off (tests use fixed, old timestamps)."""
    instance = SqliteStore(tmp_path / "events.db", retention_days=None)
    await instance.open()
    yield instance
    await instance.close()
