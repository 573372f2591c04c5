"""The demo's example chat page and the dashboard's Alerts view in real Chromium: a browser
error on the page reaches the demo's server, and an alert that fired is listed in `#/alerts`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import expect

from logbeacon.event import format_timestamp
from tests.helpers.server import free_port, running_server
from tests.server.test_alerts import WEBHOOK_SECRET, WebhookReceiver

if TYPE_CHECKING:
    from tests.browser.conftest import Tab

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(90)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
WAIT_MS = 15_000


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A `logbeacon demo` subprocess on free loopback ports: (server URL, app URL, read token)."""
    port = free_port()
    data_dir = tmp_path / "demo-data"
    output = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if k != "LOGBEACON_RAISE_INTERNAL"}
    env["PYTHONUNBUFFERED"] = "1"
    script = Path(sys.executable).with_name("logbeacon")
    command = [str(script), "demo", "--port", str(port), "--data-dir", str(data_dir)]
    with output.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 30
        app_url = None
        while app_url is None:
            assert proc.poll() is None, output.read_text(errors="replace")
            assert time.monotonic() < deadline, output.read_text(errors="replace")
            match = re.search(r"example app: (http://127\.0\.0\.1:\d+)/", output.read_text())
            app_url = match.group(1) if match else None
            time.sleep(0.05)
        token = (data_dir / "read_token").read_text().strip()
        yield f"http://127.0.0.1:{port}", app_url, token
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(20)


def test_demo_page_error_reaches_the_server(tab: Tab, demo: tuple[str, str, str]) -> None:
    """Sending an empty chat message on the demo page throws in the page; the browser client
    delivers it as a `web` window_error (and the chat_failed log) of that page's session."""
    server_url, app_url, token = demo
    page = tab.page
    page.goto(f"{app_url}/")
    session = page.text_content("#session")
    assert "web-" == (session or "")[:4]
    page.fill("#message", "")
    page.click("#chat button")
    deadline = time.monotonic() + 20
    events: list[dict[str, Any]] = []
    while {"window_error", "chat_failed"} - {e["event"] for e in events}:
        assert time.monotonic() < deadline, events
        time.sleep(0.2)
        response = httpx.get(
            f"{server_url}/v1/logs",
            params={"service": "web", "session_id": session, "limit": 100},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert 200 == response.status_code, response.text
        events = response.json()["events"]
    assert {("web", session)} == {(e["service"], e["session_id"]) for e in events}
    assert [] == tab.page_errors[1:]  # the one uncaught error is the one the page makes


ALERTS = """
[[webhook]]
name = "ops"
url = "{url}"
secret = "{secret}"

[[rule]]
name = "new-errors"
type = "new_error_group"
environments = ["prod"]
group_wait = "0s"
"""


def test_alerts_view_lists_a_fired_alert(tab: Tab, tmp_path: Path) -> None:
    """After a new error group fired and was delivered, `#/alerts` shows it with its rule and
    delivery status, without console errors; the view is saved as build/screenshots/alerts.png."""
    receiver = WebhookReceiver().start()
    config = tmp_path / "alerts.toml"
    config.write_text(ALERTS.format(url=receiver.url, secret=WEBHOOK_SECRET), encoding="utf-8")
    try:
        with running_server(tmp_path, args=["--alerts", str(config)]) as server:
            error = {"type": "ValueError", "message": "card number rejected"}
            event = {"service": "api", "environment": "prod", "level": "error",
                     "event": "payment_failed", "error": error,
                     "timestamp": format_timestamp(time.time())}  # fmt: skip
            response = httpx.post(f"{server.url}/v1/logs", json=[event], timeout=10)
            assert 200 == response.status_code, response.text
            receiver.wait_for(1)
            page = tab.page
            page.set_viewport_size({"width": 1280, "height": 800})
            page.goto(f"{server.url}/?token={server.read_token}")
            expect(page).to_have_url(re.compile(r"/#/tail$"), timeout=WAIT_MS)
            page.goto(f"{server.url}/#/alerts")
            card = page.locator("ol.error-groups > li[data-rule='new-errors']")
            expect(card).to_have_count(1, timeout=WAIT_MS)
            expect(card.locator(".chip.status")).to_have_text("ops: delivered", timeout=WAIT_MS)
            expect(card).to_contain_text("new error group")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / "alerts.png").write_bytes(page.screenshot(full_page=False))
    finally:
        receiver.stop()
    assert ([], []) == (tab.console_errors(ignore=lambda _: False), tab.page_errors)
