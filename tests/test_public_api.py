"""The public surface: what `import logbeacon` offers, and what it costs to import."""

from __future__ import annotations

import subprocess
import sys

import logbeacon


def test_exported_names_are_pinned() -> None:
    """`logbeacon.__all__` is exactly the documented public API, sorted (STYLE.md 1)."""
    assert [
        "ConfigError",
        "EventError",
        "IntegrationMissing",
        "LogbeaconError",
        "Redaction",
        "StoreError",
        "StoreUnavailable",
        "__version__",
        "bind",
        "bound",
        "configure",
        "flush",
        "get_context",
        "get_logger",
        "pipeline",
        "timed",
        "unbind",
    ] == logbeacon.__all__
    assert sorted(logbeacon.__all__) == logbeacon.__all__
    for name in logbeacon.__all__:
        assert hasattr(logbeacon, name), name


def test_import_stays_light() -> None:
    """Importing logbeacon loads no web framework, CLI, HTTP client or agent library."""
    code = (
        "import sys, logbeacon\n"
        "heavy = ('fastapi', 'starlette', 'typer', 'httpx', 'uvicorn', 'langgraph',\n"
        "         'langchain_core', 'prometheus_client', 'jwt', 'pydantic', 'opentelemetry')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert "[]" == out


def test_error_analysis_is_wired_into_every_error_event() -> None:
    """Importing logbeacon registers error analysis: error events get category and fingerprint."""
    import io

    from logbeacon.sdk import reset
    from logbeacon.testing import capture_logs

    reset()
    logbeacon.configure(stream=io.StringIO(), format="json")
    try:
        with capture_logs() as events:
            try:
                raise TimeoutError("upstream did not answer in 5s")
            except TimeoutError:
                logbeacon.get_logger("t").exception("call_failed")
    finally:
        reset()
    (event,) = events
    assert "timeout" == event["error"]["category"]
    assert 16 == len(event["error"]["fingerprint"])
    assert event["error"]["suggestions"]
