"""The stdlib logging bridge: records flow through the same pipeline with bound context."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from logbeacon.context import bound
from logbeacon.sdk import configure, get_logger
from logbeacon.sdk._guard import INTERNAL_LOGGER_NAME
from logbeacon.sdk.stdlib import StdlibBridge
from tests.sdk.conftest import lines


@pytest.fixture
def lib_logger() -> Iterator[logging.Logger]:
    """A library logger at DEBUG so its records reach the root handlers."""
    logger = logging.getLogger("tests.lib")
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.setLevel(logging.NOTSET)


def test_stdlib_record_becomes_event_with_bound_context(
    out: io.StringIO, lib_logger: logging.Logger
) -> None:
    """A stdlib record is emitted as event=log with message, logger, level and bound ids."""
    configure(stream=out, format="json", service="api")
    with bound(request_id="r-1", trace_id="a" * 32):
        lib_logger.warning("GET %s -> %d", "/items", 503)
    [event] = lines(out)
    assert ["timestamp", "level", "service", "event", "message"] == list(event)[:5]
    expected = {
        "level": "warn",
        "service": "api",
        "event": "log",
        "message": "GET /items -> 503",
        "logger": "tests.lib",
        "request_id": "r-1",
        "trace_id": "a" * 32,
    }
    assert expected == {k: event[k] for k in expected}
    assert "event_id" in event


def test_stdlib_and_structlog_share_format(out: io.StringIO, lib_logger: logging.Logger) -> None:
    """Both kinds of events carry the same canonical keys in the same order."""
    configure(stream=out, format="json")
    get_logger("tests.lib").info("native")
    lib_logger.info("bridged")
    native, bridged = lines(out)
    assert list(native)[:4] == list(bridged)[:4]
    assert {"logger", "environment", "event_id"} <= set(native) & set(bridged)


def test_stdlib_levels_and_filtering(out: io.StringIO, lib_logger: logging.Logger) -> None:
    """Record levels map to canonical names; below the configured level nothing is emitted."""
    configure(stream=out, format="json", level="info")
    lib_logger.debug("hidden")
    lib_logger.info("i")
    lib_logger.error("e")
    lib_logger.critical("c")
    lib_logger.log(45, "between")
    assert [("info", "i"), ("error", "e"), ("critical", "c"), ("error", "between")] == [
        (e["level"], e["message"]) for e in lines(out)
    ]


def test_stdlib_exception_becomes_error(out: io.StringIO, lib_logger: logging.Logger) -> None:
    """logger.exception() gives the same error object as the SDK, without locals."""
    configure(stream=out, format="json")

    def explode() -> None:
        password = "local-secret-value"  # noqa: F841
        raise ConnectionError("refused")

    try:
        explode()
    except ConnectionError:
        lib_logger.exception("call failed")
    [event] = lines(out)
    assert ("ConnectionError", "refused") == (event["error"]["type"], event["error"]["message"])
    assert "in explode" in event["error"]["stack"][-1]
    assert "local-secret-value" not in out.getvalue()


def test_stdlib_extra_fields_and_redaction(out: io.StringIO, lib_logger: logging.Logger) -> None:
    """extra={...} fields are kept, cannot overwrite level/event, and are redacted."""
    configure(stream=out, format="json")
    lib_logger.warning(
        "login for bob@example.com",
        extra={"node": "n1", "token": "abc123secret", "event": "forged", "level": "critical"},
    )
    [event] = lines(out)
    assert ("n1", "[REDACTED]", "log", "warn") == (
        event["node"],
        event["token"],
        event["event"],
        event["level"],
    )
    assert "bob@example.com" not in event["message"]


def test_internal_logger_is_not_captured(out: io.StringIO) -> None:
    """Records of logbeacon.internal never enter the pipeline."""
    configure(stream=out, format="json")
    logging.getLogger(INTERNAL_LOGGER_NAME).error("internal trouble")
    logging.getLogger(INTERNAL_LOGGER_NAME + ".sub").error("more")
    assert "" == out.getvalue()


def test_internal_errors_do_not_recurse(
    monkeypatch: pytest.MonkeyPatch, out: io.StringIO, lib_logger: logging.Logger
) -> None:
    """A sink failure reported on logbeacon.internal does not come back as an event."""
    from logbeacon.sdk import internal_errors
    from logbeacon.sdk.sinks import attach

    class Failing:
        name = "failing"

        def emit(self, event: dict[str, object], line: bytes) -> None:
            raise RuntimeError("x")

        def flush(self, timeout: float) -> bool:
            return True

        def close(self) -> None:
            return None

    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "0")
    configure(stream=out, format="json")
    detach = attach(Failing())
    try:
        lib_logger.warning("one")
    finally:
        detach()
    assert ["one"] == [e["message"] for e in lines(out)]
    assert {"sink.failing:RuntimeError": 1} == internal_errors()


def test_capture_stdlib_false_installs_no_handler(
    out: io.StringIO, lib_logger: logging.Logger
) -> None:
    """capture_stdlib=False leaves the root logger alone."""
    configure(stream=out, format="json", capture_stdlib=False)
    lib_logger.warning("not bridged")
    assert ("", []) == (
        out.getvalue(),
        [h for h in logging.getLogger().handlers if isinstance(h, StdlibBridge)],
    )


def test_root_level_is_not_changed(out: io.StringIO) -> None:
    """configure() does not lower the root logger's level."""
    root = logging.getLogger()
    before = root.level
    configure(stream=out, format="json", level="debug")
    assert before == root.level


def test_reentrant_record_is_dropped(out: io.StringIO, lib_logger: logging.Logger) -> None:
    """A record logged while the bridge is emitting (a sink that logs) is dropped."""
    from logbeacon.sdk.sinks import attach

    class Chatty:
        name = "chatty"

        def emit(self, event: dict[str, object], line: bytes) -> None:
            logging.getLogger("tests.lib").warning("from inside a sink")

        def flush(self, timeout: float) -> bool:
            return True

        def close(self) -> None:
            return None

    configure(stream=out, format="json")
    detach = attach(Chatty())
    try:
        lib_logger.warning("outer")
    finally:
        detach()
    assert ["outer"] == [e["message"] for e in lines(out)]
