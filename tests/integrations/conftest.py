"""Fixtures shared by every integration test: a fresh SDK, untouched hooks, an empty context.

Each test starts with the SDK configured to write JSON into a throwaway buffer at level
`debug` (so nothing reaches the terminal and every event can be captured), with no fields
bound, and ends with the hooks it found: integrations may register hooks at import time, so
the registry is restored rather than cleared.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from logbeacon.context import clear
from logbeacon.sdk import configure, hooks, reset
from logbeacon.testing import capture_logs


def _snapshot_hooks() -> list[tuple[Callable[..., Any], tuple[Any, ...]]]:
    """(add function, registered hooks) for every hook kind the SDK offers."""
    kinds = [
        ("add_error_enricher", "error_enrichers"),
        ("add_context_provider", "context_providers"),
    ]
    return [
        (getattr(hooks, add), getattr(hooks, listed)())
        for add, listed in kinds
        if hasattr(hooks, add) and hasattr(hooks, listed)
    ]


@pytest.fixture(autouse=True)
def _fresh_sdk() -> Iterator[None]:
    """Configure the SDK into a buffer, clear the context, and restore the hooks afterwards."""
    saved = _snapshot_hooks()
    reset()
    clear()
    configure(service="test", level="debug", format="json", stream=io.StringIO())
    yield
    reset()
    clear()
    hooks.clear_hooks()
    for add, registered in saved:
        for fn in registered:
            add(fn)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every event emitted during the test, after processing and redaction."""
    with capture_logs() as events:
        yield events
