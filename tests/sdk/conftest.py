"""SDK test fixtures: each test starts unconfigured, with no hooks and nothing bound."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from logbeacon.context import clear
from logbeacon.sdk import hooks, reset

# Also published through the `pytest11` entry point; imported here so these tests do not
# depend on the package's entry points being installed.
from logbeacon.testing import logbeacon_capture  # noqa: F401


@pytest.fixture(autouse=True)
def _reset_sdk() -> Iterator[None]:
    """Start unconfigured with no hooks and nothing bound; restore process-wide hooks after.

    Hooks registered at import (the error analysis `import logbeacon` wires in) must survive
    for the tests that run after these.
    """
    saved = (hooks._enrichers, hooks._providers)
    reset()
    hooks.clear_hooks()
    clear()
    yield
    reset()
    clear()
    hooks._enrichers, hooks._providers = saved


@pytest.fixture
def out() -> io.StringIO:
    """A text stream to pass as `configure(stream=...)`."""
    return io.StringIO()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Parse every JSON line written to `stream`."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]
