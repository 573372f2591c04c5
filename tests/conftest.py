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


@pytest.fixture(autouse=True)
def _sqlite_writer_thread_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps built in the test process keep the SQLite writer in a thread.

    Starting a writer process costs about half a second per app, which would double the
    suite's time. The writer process is covered where it runs for real: the store contract
    suite (`sqlite-process`), tests/store/test_sqlite_writer_process.py, and every real
    `logbeacon serve` the tests start (those run on this machine's cores, so it is on).
    """
    monkeypatch.setattr("logbeacon.server.settings.usable_cores", lambda: 1)
