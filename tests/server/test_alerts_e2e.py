"""Alerts end to end: a real `logbeacon serve --alerts` subprocess and a real webhook
receiver on 127.0.0.1 that starts only after the first alert was attempted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from logbeacon.event import format_timestamp
from logbeacon.signing import verify
from tests.helpers.server import RunningServer, free_port, running_server
from tests.server.test_alerts import WEBHOOK_SECRET, Received, WebhookReceiver

pytestmark = pytest.mark.e2e

CONFIG = """
[[webhook]]
name = "ops"
url = "{url}"
secret = "{secret}"
backoff = "200ms"
max_backoff = "500ms"
max_attempts = 60

[[rule]]
name = "new-errors"
type = "new_error_group"
environments = ["prod"]
group_wait = "0s"

[[rule]]
name = "storm"
type = "error_rate"
environments = ["staging"]
threshold = 100
window = "1m"
group_wait = "3s"
cooldown = "1h"

[[rule]]
name = "runs"
type = "run_failed"
group_wait = "0s"

[[rule]]
name = "heartbeat"
type = "no_events"
services = ["heartbeat"]
after = "2s"
group_wait = "0s"
cooldown = "1h"
"""


def _post(server: RunningServer, events: list[dict[str, Any]]) -> None:
    response = httpx.post(f"{server.url}/v1/logs", json=events, timeout=30)
    assert 200 == response.status_code, response.text
    assert len(events) == response.json()["accepted"]


def _event(**fields: Any) -> dict[str, Any]:
    return {"timestamp": format_timestamp(time.time()), "service": "api"} | fields


def _by_rule(received: list[Received], rule: str) -> list[dict[str, Any]]:
    return [call.json() for call in received if call.json()["rule"] == rule]


def _wait_rule(receiver: WebhookReceiver, rule: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _by_rule(list(receiver.received), rule)
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no alert of rule {rule}: {receiver.received}")


def test_alerts_fire_and_reach_a_receiver_that_comes_back(tmp_path: Path) -> None:
    """Against a real server: a new error group is retried until the receiver is up, then
    delivered signed; a failed run, a silent heartbeat service and a storm of 1,000 errors
    (one message with the count) each fire exactly once."""
    receiver = WebhookReceiver(port=free_port())
    alerts = tmp_path / "alerts.toml"
    alerts.write_text(CONFIG.format(url=receiver.url, secret=WEBHOOK_SECRET), encoding="utf-8")
    args = ["--alerts", str(alerts), "--rate", "10000", "--burst", "1000"]
    with running_server(tmp_path, args=args) as server:
        error = {"level": "error", "environment": "prod", "event": "request_failed"}
        _post(server, [_event(**error, error={"type": "ValueError", "message": "bad input"})])
        time.sleep(1.0)  # several attempts fail: nothing listens on the port yet
        receiver.start()
        try:
            new_error = _wait_rule(receiver, "new-errors")
            call = receiver.received[0]
            assert verify(
                call.body,
                call.headers["x-log-timestamp"],
                call.headers["x-log-signature"],
                WEBHOOK_SECRET,
            )
            assert ("new_error_group", 1) == (new_error["type"], new_error["count"])
            assert new_error["link"].startswith(f"{server.url}/#/")

            _post(server, [_event(level="info", service="heartbeat", event="beat")])
            failed = {"level": "error", "event": "graph_failed", "run_id": "run-9", "graph": "g"}
            _post(server, [_event(**failed, service="agents")])
            assert "#/runs/run-9" in _wait_rule(receiver, "runs")["link"]
            assert "heartbeat" == _wait_rule(receiver, "heartbeat")["service"]

            storm = {"level": "error", "environment": "staging", "event": "job_failed"}
            for _ in range(2):
                _post(server, [_event(**storm, message="disk full") for _ in range(500)])
            assert 1000 == _wait_rule(receiver, "storm")["count"]

            time.sleep(1.5)  # anything more would have arrived by now
            rules = sorted(call.json()["rule"] for call in receiver.received)
            assert ["heartbeat", "new-errors", "runs", "storm"] == rules

            document = httpx.get(
                f"{server.url}/v1/alerts", headers=server.read_headers, timeout=10
            ).json()
            first = next(a for a in document["alerts"] if a["rule"] == "new-errors")
            (delivery,) = first["deliveries"]
            assert "delivered" == delivery["status"]
            assert delivery["attempts"] > 1
        finally:
            receiver.stop()
