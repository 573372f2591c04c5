"""Alerts in process: the real app and SQLite store, a frozen clock, and a real webhook
receiver (an HTTP server on 127.0.0.1) that records what the server sends."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from logbeacon.event import format_timestamp
from logbeacon.server.alerts import AlertEngine
from logbeacon.server.alerts_history import HISTORY_FILE
from logbeacon.signing import verify
from tests.helpers.server import free_port
from tests.server.conftest import T0, FakeClock, Harness, HarnessFactory

WEBHOOK_SECRET = "webhook-secret-FAKE-0123456789abcdef"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 recording POSTs; `statuses` are answered in order
    (then 200). It can start late on a port chosen in advance, to play a receiver that was
    down."""

    def __init__(self, port: int | None = None, statuses: Sequence[int] = ()) -> None:
        self.port = port or free_port()
        self.received: list[Received] = []
        self._statuses = list(statuses)
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver._cond:
                    status = receiver._statuses.pop(0) if receiver._statuses else 200
                    if status == 200:
                        headers = {k.lower(): v for k, v in self.headers.items()}
                        receiver.received.append(Received(self.path, headers, body))
                        receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Block until `count` requests arrived (or fail the test)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} webhook calls, got {self.received}")
                self._cond.wait(left)
            return list(self.received)


@contextlib.contextmanager
def webhook_receiver(**kwargs: Any) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(**kwargs).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as r:
        yield r


def webhook_toml(url: str, *, fmt: str = "json", name: str = "ops", extra: str = "") -> str:
    return (
        f'[[webhook]]\nname = "{name}"\nurl = "{url}"\nformat = "{fmt}"\n'
        f'secret = "{WEBHOOK_SECRET}"\nbackoff = "50ms"\nmax_backoff = "200ms"\n{extra}\n'
    )


def error_event(clock: Callable[[], float], **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "timestamp": format_timestamp(clock()),
        "level": "error",
        "service": "api",
        "environment": "prod",
        "event": "request_failed",
        "trace_id": TRACE_ID,
        "error": {"type": "ValueError", "message": "bad input"},
    }
    event.update(fields)
    return event


@contextlib.asynccontextmanager
async def alerting(
    make_harness: HarnessFactory, tmp_path: Path, config: str | None, clock: FakeClock, **kw: Any
) -> AsyncIterator[tuple[Harness, AlertEngine, httpx.AsyncClient]]:
    """A harness whose alerts file holds `config` (None: no file, the defaults)."""
    path = None
    if config is not None:
        path = tmp_path / "alerts.toml"
        path.write_text(config, encoding="utf-8")
    async with make_harness(clock=clock, alerts=path, **kw) as harness:
        engine: AlertEngine = harness.app.state.alert_engine
        async with harness.client() as client:
            yield harness, engine, client


async def post(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/logs", json=events)
    assert 200 == response.status_code, response.text
    assert len(events) == response.json()["accepted"]


async def flush(engine: AlertEngine, clock: FakeClock, advance: float = 0.0) -> None:
    """Evaluate what is queued, let `advance` seconds pass, run the timers, finish sends."""
    await engine.settle()
    clock.advance(advance)
    await engine.tick()
    await engine.deliveries_done()


async def history(client: httpx.AsyncClient, harness: Harness) -> list[dict[str, Any]]:
    response = await client.get("/v1/alerts", headers=harness.read_headers)
    assert 200 == response.status_code, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


NEW_ERRORS = """
[[rule]]
name = "new-errors"
type = "new_error_group"
environments = ["prod"]
group_wait = "10s"
"""


async def test_new_error_group_fires_once_signed_and_redacted(
    make_harness: HarnessFactory, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """A new fingerprint fires one signed alert with a redacted summary, however often it
    recurs, and a dev-environment error does not fire the prod rule."""
    clock = FakeClock()
    config = webhook_toml(receiver.url) + NEW_ERRORS
    async with alerting(make_harness, tmp_path, config, clock) as (harness, engine, client):
        secret_message = "login failed password=hunter2 for alice@example.com"
        bad = error_event(clock, error={"type": "PaymentError", "message": secret_message})
        await post(client, [bad, bad | {}, error_event(clock, environment="dev")])
        await flush(engine, clock)
        assert [] == receiver.received  # still inside the group wait
        await flush(engine, clock, advance=11)
        await post(
            client, [error_event(clock, error={"type": "PaymentError", "message": secret_message})]
        )
        await flush(engine, clock, advance=3600)
        (call,) = receiver.wait_for(1)
        assert 1 == len(receiver.received)
        body = call.body
        assert verify(
            body, call.headers["x-log-timestamp"], call.headers["x-log-signature"], WEBHOOK_SECRET
        )
        assert b"hunter2" not in body
        assert b"alice@example.com" not in body
        assert WEBHOOK_SECRET.encode() not in body
        payload = call.json()
        assert ("new-errors", "new_error_group", 1) == (
            payload["rule"],
            payload["type"],
            payload["count"],
        )
        assert ("api", "prod") == (payload["service"], payload["environment"])
        assert "new" == payload["details"]["kind"]
        assert "PaymentError" == payload["details"]["error_type"]
        assert f"http://127.0.0.1:8765/#/trace/{TRACE_ID}" == payload["link"]
        assert payload["title"].startswith("New error in api (prod): PaymentError: login failed")
        (stored,) = await history(client, harness)
        assert [("ops", "delivered", 1)] == [
            (d["webhook"], d["status"], d["attempts"]) for d in stored["deliveries"]
        ]


async def test_slack_payload_has_text_and_dashboard_link(
    make_harness: HarnessFactory, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """A Slack-format webhook gets a `text` message with a mrkdwn link to the trace."""
    clock = FakeClock()
    config = webhook_toml(receiver.url, fmt="slack") + NEW_ERRORS.replace("10s", "0s")
    config = 'dashboard_url = "https://logs.example.com/"\n' + config
    async with alerting(make_harness, tmp_path, config, clock) as (_, engine, client):
        await post(client, [error_event(clock, error={"type": "KeyError", "message": "a<b"})])
        await flush(engine, clock)
        (call,) = receiver.wait_for(1)
        payload = call.json()
        assert ["text"] == list(payload)
        text = payload["text"]
        assert "New error in api (prod): KeyError: a&lt;b" in text
        assert f"<https://logs.example.com/#/trace/{TRACE_ID}|Open in logbeacon>" in text


ERROR_RATE = """
[[rule]]
name = "storm"
type = "error_rate"
threshold = 10
window = "1m"
group_wait = "30s"
cooldown = "10m"
"""


async def test_storm_of_errors_is_one_message_with_the_count(
    make_harness: HarnessFactory, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """1,000 errors over the error-rate threshold send one alert saying 1000; errors during
    the cooldown are sent as one more alert with their count when it ends."""
    clock = FakeClock()
    config = webhook_toml(receiver.url) + ERROR_RATE
    async with alerting(make_harness, tmp_path, config, clock, burst=1000, rate=10_000.0) as (
        _,
        engine,
        client,
    ):
        for _ in range(2):
            await post(client, [error_event(clock) for _ in range(500)])
        await flush(engine, clock, advance=31)
        await flush(engine, clock, advance=60)
        (call,) = receiver.wait_for(1)
        payload = call.json()
        assert ("storm", "error_rate", 1000) == (payload["rule"], payload["type"], payload["count"])
        assert 1 == len(receiver.received)

        await post(client, [error_event(clock) for _ in range(25)])
        await flush(engine, clock, advance=60)
        assert 1 == len(receiver.received)  # cooling down
        await flush(engine, clock, advance=600)
        calls = receiver.wait_for(2)
        assert 25 == calls[1].json()["count"]
        assert "errors" in calls[1].json()["text"]


RUNS = """
[[rule]]
name = "runs"
type = "run_failed"
names = ["research", "nightly"]
group_wait = "0s"
cooldown = "0s"
"""


async def test_run_failed_fires_once_per_failed_named_run(
    make_harness: HarnessFactory, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """A failed LangGraph run and a failed pipeline of a named job fire once each; successes,
    cancelled runs, other names and a second failure event of the same run do not."""
    clock = FakeClock()
    config = webhook_toml(receiver.url) + RUNS
    stamp = format_timestamp(clock())
    base = {"timestamp": stamp, "service": "agents", "environment": "prod"}
    failed_graph = base | {
        "event": "graph_failed",
        "level": "error",
        "graph": "research",
        "run_id": "run-1",
        "status": "error",
        "error": {"type": "TimeoutError", "message": "llm timed out"},
    }
    events = [
        failed_graph,
        failed_graph | {"event_id": "again-1"},
        base | {"event": "graph_failed", "level": "warn", "graph": "research", "run_id": "run-2"},
        base | {"event": "graph_complete", "level": "info", "graph": "research", "run_id": "r3"},
        base | {"event": "graph_failed", "level": "error", "graph": "other", "run_id": "run-4"},
        base
        | {
            "event": "pipeline_complete",
            "level": "error",
            "job_id": "nightly",
            "status": "error",
        },
        base | {"event": "pipeline_complete", "level": "info", "job_id": "x", "status": "success"},
    ]
    async with alerting(make_harness, tmp_path, config, clock) as (_, engine, client):
        await post(client, events)
        await flush(engine, clock)
        calls = receiver.wait_for(2)
        await flush(engine, clock, advance=60)
        assert 2 == len(receiver.received)
        first, second = (call.json() for call in calls)
        assert ("run_failed", 1, "http://127.0.0.1:8765/#/runs/run-1") == (
            first["type"],
            first["count"],
            first["link"],
        )
        assert (
            "Run failed in agents (prod): graph research (run run-1): TimeoutError"
            in first["title"]
        )
        assert ("pipeline", "nightly") == (
            second["details"]["run_kind"],
            second["details"]["job_id"],
        )


NO_EVENTS = """
[[rule]]
name = "heartbeat"
type = "no_events"
services = ["worker"]
after = "5m"
group_wait = "0s"
cooldown = "0s"
"""


async def test_no_events_fires_once_per_silence(
    make_harness: HarnessFactory, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """A watched service silent for `after` fires once, not on every tick, and again only
    after it was heard from and went silent anew."""
    clock = FakeClock()
    config = webhook_toml(receiver.url) + NO_EVENTS
    heartbeat = {"level": "info", "service": "worker", "event": "beat"}
    async with alerting(make_harness, tmp_path, config, clock) as (_, engine, client):
        await post(client, [heartbeat | {"timestamp": format_timestamp(clock())}])
        await flush(engine, clock, advance=240)
        assert [] == receiver.received
        await flush(engine, clock, advance=61)
        await flush(engine, clock, advance=600)
        (call,) = receiver.wait_for(1)
        assert 1 == len(receiver.received)
        payload = call.json()
        assert ("no_events", "worker") == (payload["type"], payload["service"])
        assert payload["title"].startswith("No events from worker in the last 5m")
        await post(client, [heartbeat | {"timestamp": format_timestamp(clock())}])
        await flush(engine, clock, advance=301)
        assert 2 == len(receiver.wait_for(2))


async def test_new_error_state_survives_a_restart(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """After a restart a known fingerprint is not new again, a new one is; with alerts.db
    gone the store's error groups still say which fingerprints are known."""
    clock = FakeClock()
    config = NEW_ERRORS.replace("10s", "0s")
    async with alerting(make_harness, tmp_path, config, clock) as (harness, engine, client):
        await post(client, [error_event(clock)])
        await flush(engine, clock)
        assert 1 == len(await history(client, harness))
    async with alerting(make_harness, tmp_path, config, clock) as (harness, engine, client):
        await post(client, [error_event(clock), error_event(clock, error={"type": "KeyError"})])
        await flush(engine, clock)
        titles = [alert["title"] for alert in await history(client, harness)]
        assert 2 == len(titles)
        assert "KeyError" in titles[0]
    (tmp_path / "data" / HISTORY_FILE).unlink()
    async with alerting(make_harness, tmp_path, config, clock) as (harness, engine, client):
        await post(client, [error_event(clock)])
        await flush(engine, clock)
        assert [] == await history(client, harness)


async def test_regression_after_quiet_period_fires_again(
    make_harness: HarnessFactory, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """A fingerprint last seen longer ago than `regression_after` fires again as a
    regression, across a restart; one seen within the period does not."""
    clock = FakeClock()
    config = webhook_toml(receiver.url) + NEW_ERRORS.replace("10s", "0s")
    config += 'regression_after = "7d"\ncooldown = "0s"\n'
    old = format_timestamp(T0 - 8 * 86_400)
    recent = format_timestamp(T0 - 3 * 86_400)
    async with alerting(make_harness, tmp_path, config, clock) as (_, engine, client):
        await post(client, [error_event(clock, timestamp=old)])
        await post(client, [error_event(clock, timestamp=old, error={"type": "KeyError"})])
        await post(client, [error_event(clock, timestamp=recent, error={"type": "KeyError"})])
        await flush(engine, clock)
        assert 2 == len(receiver.wait_for(2))  # two new groups
    async with alerting(make_harness, tmp_path, config, clock) as (_, engine, client):
        await post(client, [error_event(clock), error_event(clock, error={"type": "KeyError"})])
        await flush(engine, clock)
        calls = receiver.wait_for(3)
        await flush(engine, clock, advance=60)
        assert 3 == len(receiver.received)
        payload = calls[2].json()
        assert ("regression", "ValueError") == (
            payload["details"]["kind"],
            payload["details"]["error_type"],
        )
        assert payload["title"].startswith("Regression in api (prod) after 8.0 days quiet")


async def test_receiver_errors_are_retried_until_delivered(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """Two 503 answers are retried with backoff; the third attempt delivers, and the history
    records three attempts."""
    clock = FakeClock()
    with webhook_receiver(statuses=[503, 503]) as receiver:
        config = webhook_toml(receiver.url) + NEW_ERRORS.replace("10s", "0s")
        async with alerting(make_harness, tmp_path, config, clock) as (harness, engine, client):
            await post(client, [error_event(clock)])
            await flush(engine, clock)
            assert 1 == len(receiver.wait_for(1))
            (alert,) = await history(client, harness)
            assert [("delivered", 3, None)] == [
                (d["status"], d["attempts"], d["last_error"]) for d in alert["deliveries"]
            ]


async def test_client_error_is_not_retried(make_harness: HarnessFactory, tmp_path: Path) -> None:
    """A 404 from the receiver is final: one attempt, recorded as failed with the status."""
    clock = FakeClock()
    with webhook_receiver(statuses=[404]) as receiver:
        config = webhook_toml(receiver.url) + NEW_ERRORS.replace("10s", "0s")
        async with alerting(make_harness, tmp_path, config, clock) as (harness, engine, client):
            await post(client, [error_event(clock)])
            await flush(engine, clock)
            (alert,) = await history(client, harness)
            assert [("failed", 1, "HTTP 404")] == [
                (d["status"], d["attempts"], d["last_error"]) for d in alert["deliveries"]
            ]


async def test_defaults_alert_on_prod_errors_and_failed_runs_without_a_file(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """Without an alerts file, new error groups and failed runs in prod and staging are
    recorded in the history; dev errors are not."""
    clock = FakeClock()
    async with alerting(make_harness, tmp_path, None, clock) as (harness, engine, client):
        failed_run = {
            "timestamp": format_timestamp(clock()),
            "level": "error",
            "service": "agents",
            "environment": "staging",
            "event": "graph_failed",
            "run_id": "r-1",
            "graph": "g",
        }
        await post(client, [error_event(clock), error_event(clock, environment="dev"), failed_run])
        await flush(engine, clock, advance=11)
        response = await client.get("/v1/alerts", headers=harness.read_headers)
        document = response.json()
        rules = sorted((a["rule"], a["service"]) for a in document["alerts"])
        expected = [
            ("failed-runs", "agents"),
            ("new-error-groups", "agents"),
            ("new-error-groups", "api"),
        ]
        assert expected == rules
        assert ["new-error-groups", "failed-runs"] == [r["name"] for r in document["rules"]]
        assert ("defaults", []) == (document["source"], document["webhooks"])
        assert [] == document["alerts"][0]["deliveries"]


async def test_alerts_api_needs_a_read_token_and_hides_webhook_secrets(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """`GET /v1/alerts` is 401 without a read token and never shows a webhook URL or secret."""
    clock = FakeClock()
    url = "https://hooks.example.com/services/T000/B000/XXXXSECRETPATH"
    config = webhook_toml(url) + NEW_ERRORS
    async with alerting(make_harness, tmp_path, config, clock) as (harness, _, client):
        assert 401 == (await client.get("/v1/alerts")).status_code
        response = await client.get("/v1/alerts", params={"limit": 5}, headers=harness.read_headers)
        assert 200 == response.status_code
        assert "XXXXSECRETPATH" not in response.text
        assert WEBHOOK_SECRET not in response.text
        assert [{"name": "ops", "format": "json", "signed": True}] == response.json()["webhooks"]
        bad = await client.get("/v1/alerts", params={"limit": 0}, headers=harness.read_headers)
        assert 422 == bad.status_code


async def test_full_queue_drops_and_counts_without_touching_ingestion(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """Beyond `queue_size` waiting events a batch is dropped and counted; ingestion answers
    200 as usual and the counter shows in /v1/alerts and /metrics."""
    clock = FakeClock()
    config = "queue_size = 100\n" + NEW_ERRORS
    async with alerting(make_harness, tmp_path, config, clock) as (harness, engine, client):
        engine.enqueue([{"level": "info"}] * 101)
        await post(client, [error_event(clock)])
        await flush(engine, clock)
        document = (await client.get("/v1/alerts", headers=harness.read_headers)).json()
        assert (101, 1) == (
            document["stats"]["dropped_events"],
            document["stats"]["evaluated_events"],
        )
        metrics = await client.get("/metrics", headers=harness.read_headers)
        assert "logbeacon_alerts_dropped_events_total 101.0" in metrics.text


def test_error_rate_window_slides_and_rearms() -> None:
    """Errors that left the window do not count; the rule fires when the rate in the window
    reaches the threshold, weighing the errors in it, and re-arms once it falls back."""
    from logbeacon.server.alerts_config import Rule
    from logbeacon.server.alerts_rules import ErrorRateRule, Sighting

    rule = ErrorRateRule(Rule(name="r", type="error_rate", threshold=10, window=60))
    event = {"level": "error", "service": "api", "environment": "prod"}

    def feed(count: int, now: float) -> list[int]:
        found = []
        for _ in range(count):
            sighting = Sighting({"fingerprint": "f", "type": None, "message": None}, now, now)
            found.extend(o.weight for o in rule.observe(event, now, sighting))
        return found

    assert [] == feed(9, T0)
    assert [] == feed(9, T0 + 61)
    assert [10, 1] == feed(2, T0 + 62)
    assert [] == rule.tick(T0 + 200)
    assert [10] == feed(10, T0 + 201)
