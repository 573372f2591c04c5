"""configure(ship_to=...) delivers events to a real server through the background shipper."""

from __future__ import annotations

import io
from pathlib import Path

import httpx

import logbeacon
from logbeacon.sdk import reset
from tests.helpers.server import running_server


def test_configure_ship_to_delivers_to_a_real_server(tmp_path: Path) -> None:
    """Events logged after configure(ship_to=url) are stored once by a real server after flush."""
    with running_server(tmp_path) as server:
        try:
            logbeacon.configure(
                service="shipped", ship_to=server.url, stream=io.StringIO(), format="json"
            )
            log = logbeacon.get_logger("test")
            with logbeacon.bound(session_id="s-ship"):
                for i in range(25):
                    log.warning("shipped_event", index=i, password="hunter2")
            assert logbeacon.flush(timeout=10.0)
        finally:
            reset()
        response = httpx.get(
            f"{server.url}/v1/logs",
            params={"session_id": "s-ship", "limit": 100},
            headers={"authorization": f"Bearer {server.read_token}"},
        )
        events = response.json()["events"]
        assert list(range(25)) == sorted(e["index"] for e in events)
        assert {"shipped"} == {e["service"] for e in events}
        assert {"[REDACTED]"} == {e["password"] for e in events}
