"""The public test helpers: capture_logs, freeze, reset, the logbeacon_capture fixture."""

from __future__ import annotations

import io
import logging
from typing import Any

from logbeacon.sdk import configure, get_logger, is_configured
from logbeacon.testing import capture_logs, freeze, reset


def test_capture_logs_collects_processed_events() -> None:
    """capture_logs() yields every emitted event after processing and redaction."""
    configure(stream=io.StringIO(), format="json", service="svc")
    with capture_logs() as logs:
        get_logger("m").info("node_start", node="n", password="p")
        get_logger().debug("filtered")
    get_logger().info("outside")
    assert ["node_start"] == [e["event"] for e in logs]
    event = logs[0]
    assert ("svc", "info", "m", "[REDACTED]", ["password"]) == (
        event["service"],
        event["level"],
        event["logger"],
        event["password"],
        event["_redacted"],
    )


def test_capture_logs_before_configure_and_stdlib(capsys: Any) -> None:
    """Capturing works without configure() (auto-configuration) and includes stdlib records."""
    assert not is_configured()
    with capture_logs() as logs:
        get_logger().info("auto")
        logging.getLogger("tests.cap").warning("bridged")
    assert ["auto", "log"] == [e["event"] for e in logs]
    capsys.readouterr()


def test_nested_captures_and_reconfigure_inside() -> None:
    """Nested captures each see events; a reconfigure inside the block keeps capturing."""
    configure(stream=io.StringIO(), format="json")
    with capture_logs() as outer:
        get_logger().info("a")
        with capture_logs() as inner:
            configure(stream=io.StringIO(), format="json", service="other")
            get_logger().info("b")
    assert (["a", "b"], ["b"]) == ([e["event"] for e in outer], [e["event"] for e in inner])
    assert "other" == inner[0]["service"]


def test_freeze_makes_output_deterministic() -> None:
    """freeze() fixes the timestamp and numbers event ids; the real sources come back after."""
    configure(stream=io.StringIO(), format="json")
    with capture_logs() as logs:
        with freeze(timestamp="2026-02-03T04:05:06.000000Z"):
            get_logger().info("one")
            get_logger().info("two")
        get_logger().info("three")
    assert [
        ("2026-02-03T04:05:06.000000Z", "evt-000001"),
        ("2026-02-03T04:05:06.000000Z", "evt-000002"),
    ] == [(e["timestamp"], e["event_id"]) for e in logs[:2]]
    assert logs[2]["timestamp"] != "2026-02-03T04:05:06.000000Z"
    assert logs[2]["event_id"] != "evt-000003"


def test_reset_is_exported() -> None:
    """logbeacon.testing.reset returns the SDK to the unconfigured state."""
    configure(stream=io.StringIO(), format="json")
    reset()
    assert not is_configured()


def test_pytest_fixture(logbeacon_capture: list[dict[str, Any]]) -> None:
    """The logbeacon_capture fixture yields the captured events of the test."""
    configure(stream=io.StringIO(), format="json")
    get_logger().warning("seen")
    assert ["seen"] == [e["event"] for e in logbeacon_capture]
