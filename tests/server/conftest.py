"""Fixtures for in-process server tests: the real app and a real SQLite store in `tmp_path`,
driven through `httpx.ASGITransport` with the lifespan running."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from logbeacon.server import Settings, create_app
from logbeacon.server.state import ServerState
from logbeacon.store.base import Store

INGEST_KEY = "ingest-key-FAKE-0123456789abcdef"
OTHER_INGEST_KEY = "ingest-key-FAKE-other-9876543210"
READ_TOKEN = "read-token-FAKE-0123456789abcdef"
ADMIN_TOKEN = "admin-token-FAKE-0123456789abcdef"
HMAC_SECRET = "logbeacon-test-secret-FAKE-0123456789abcdef"
HMAC_ROTATED = "logbeacon-test-secret-FAKE-rotated-9876543210"
DIAG_SECRET = "diag-secret-FAKE-0123456789abcdef-0123456789abcdef-0123456789abcdef"
BROWSER_KEY = "browser-key-FAKE-public"
ORIGIN = "https://app.example.com"
# Frozen clocks start at the real "now" (whole seconds): the store purges by real time.
T0 = float(int(time.time()))

LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.7", 50000)


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """One app with its lifespan running, and a way to make clients for it."""

    app: FastAPI
    state: ServerState

    def client(self, client: tuple[str, int] = LOOPBACK, **kwargs: Any) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=client)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver", **kwargs)

    @property
    def read_headers(self) -> dict[str, str]:
        token = self.state.auth.read_tokens[0]
        return {"Authorization": f"Bearer {token}"}

    async def all_events(self) -> list[dict[str, Any]]:
        """Every stored event, oldest first (through the store, not the API)."""
        from logbeacon.store.base import Query

        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await self.state.store.query(Query(limit=1000, cursor=cursor))
            events.extend(page.events)
            if page.next_cursor is None:
                return events[::-1]
            cursor = page.next_cursor


HarnessFactory = Callable[..., contextlib.AbstractAsyncContextManager[Harness]]


@pytest.fixture
def make_harness(tmp_path: Path) -> HarnessFactory:
    """Build an app from Settings keyword arguments (data dir in tmp_path) and run it."""

    @contextlib.asynccontextmanager
    async def factory(
        *,
        store: Store | None = None,
        clock: Callable[[], float] | None = None,
        **settings: Any,
    ) -> AsyncIterator[Harness]:
        settings.setdefault("data_dir", tmp_path / "data")
        app = create_app(Settings(**settings), store=store, clock=clock)
        async with app.router.lifespan_context(app):
            yield Harness(app, app.state.logbeacon)

    return factory


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> AsyncIterator[Harness]:
    """Default settings: open loopback ingestion, a generated read token."""
    async with make_harness() as h:
        yield h


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """A loopback client of the default app."""
    async with harness.client() as c:
        yield c
