"""Suite-wide fixtures: every test starts from a clean environment and an unconfigured SDK."""

from __future__ import annotations

import os

import pytest

# Environment variables logbeacon reads (its own and the seed plans' aliases). A developer's
# shell or a CI runner that sets one must not change what a test sees.
_ENV_PREFIXES = ("LOGBEACON_",)
_ENV_ALIASES = (
    "ENVIRONMENT",
    "RELEASE",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "SERVICE_NAME",
    "TROUBLESHOOT_API_LOG_DIR",
    "LOG_INGEST_HMAC_SECRET",
    "LOG_DIAGNOSTIC_SECRET",
)


@pytest.fixture(autouse=True)
def _clean_logbeacon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove logbeacon settings from the environment and make SDK internals raise."""
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in _ENV_ALIASES:
            monkeypatch.delenv(name, raising=False)
    # Under the test suite the SDK's never-raise guard re-raises, so bugs are not swallowed.
    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "1")
