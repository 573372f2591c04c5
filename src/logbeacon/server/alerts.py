"""Alerts: rules evaluated as events are committed, delivered to webhooks (docs/alerts.md).

Off the request path by construction. The accepted-events listener only appends the batch to
a bounded queue (at `queue_size` waiting events a batch is dropped and counted, never
waited for); one background task evaluates the rules (`alerts_rules`), groups occurrences
under each rule's group wait and cooldown (`alerts_notify`), records alerts in `alerts.db`
(`alerts_history`, in a worker thread) and hands them to one delivery worker per webhook
(`alerts_delivery`). The same task wakes every `tick_seconds` for what only time triggers
(`no_events`, the end of a cooldown). A failure anywhere here is logged and counted; it
never reaches ingestion.

`GET /v1/alerts` (read token) lists the history with each delivery's status, the rules in
force and the engine's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client import Counter

from logbeacon.event import LEVEL_NUMBERS, parse_timestamp
from logbeacon.exceptions import LogbeaconError
from logbeacon.server._read_params import collect_params, int_param, openapi_param, text_param
from logbeacon.server.alerts_config import AlertsConfig, default_config, load_config
from logbeacon.server.alerts_delivery import WebhookWorker
from logbeacon.server.alerts_history import HISTORY_FILE, AlertHistory
from logbeacon.server.alerts_notify import Throttle, alert_document, payload_body
from logbeacon.server.alerts_rules import (
    FingerprintMemory,
    Occurrence,
    RuleEvaluator,
    Sighting,
    build_evaluator,
    error_facts,
    event_time,
)
from logbeacon.server.auth import ReadGrant, require_read
from logbeacon.server.errors import ApiResponse, error_responses
from logbeacon.server.settings import Settings
from logbeacon.server.state import ServerState
from logbeacon.store.base import ErrorGroupQuery

__all__ = ["AlertEngine", "get_engine", "install_alerts", "load_alerts_config", "router"]

log = logging.getLogger("logbeacon.server")

Event = dict[str, Any]

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
MAX_FINGERPRINTS: Final = 100_000
SEED_GROUPS: Final = 1_000  # error groups read from the store at start (the store's page cap)
_ERROR: Final = LEVEL_NUMBERS["error"]
_YIELD_EVERY: Final = 256
_DRAIN_BATCHES: Final = 256  # queued batches evaluated in one pass at most


def load_alerts_config(settings: Settings) -> AlertsConfig:
    """The alerts file of `--alerts`/`LOGBEACON_ALERTS`, or the defaults (ConfigError if bad)."""
    if settings.alerts is None:
        return default_config()
    return load_config(settings.alerts)


def _base_url(settings: Settings) -> str:
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


class AlertEngine:
    """The evaluation queue, rule state, throttle, history and delivery workers of one app."""

    def __init__(self, config: AlertsConfig, state: ServerState) -> None:
        self.config = config
        self.state = state
        self.base_url = config.dashboard_url or _base_url(state.settings)
        self.tick_seconds = 1.0
        registry = state.metrics.registry
        self._dropped_metric = Counter(
            "logbeacon_alerts_dropped_events",
            "Committed events not evaluated for alerts because the alert queue was full",
            registry=registry,
        )
        self._fired_metric = Counter(
            "logbeacon_alerts_fired", "Alerts fired, by rule", ["rule"], registry=registry
        )
        self._delivery_metric = Counter(
            "logbeacon_alert_deliveries",
            "Alert deliveries that ended, by webhook and outcome",
            ["webhook", "status"],
            registry=registry,
        )
        self._errors_metric = Counter(
            "logbeacon_alerts_errors", "Failures inside alert evaluation", registry=registry
        )
        self.dropped_events = 0
        self.evaluated_events = 0
        self.fired = 0
        self._queued_events = 0
        self._queue: asyncio.Queue[Sequence[Event]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._history: AlertHistory | None = None
        self._client: httpx.AsyncClient | None = None
        self._workers: dict[str, WebhookWorker] = {}
        self._memory = FingerprintMemory(MAX_FINGERPRINTS)
        self._evaluators: list[RuleEvaluator] = []
        self._throttle = Throttle()

    # ------------------------------------------------------------------ listener

    def enqueue(self, events: Sequence[Event]) -> None:
        """The accepted-events listener: O(1), never blocks, drops and counts when full."""
        queue = self._queue
        if queue is None or not events:
            return
        if self._queued_events + len(events) > self.config.queue_size:
            self.dropped_events += len(events)
            self._dropped_metric.inc(len(events))
            return
        self._queued_events += len(events)
        queue.put_nowait(events)

    # ------------------------------------------------------------------ lifecycle

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Open the history, restore fingerprints, start evaluation and delivery; stop all."""
        data_dir = self.state.settings.data_dir
        self._history = await asyncio.to_thread(
            AlertHistory,
            Path(data_dir) / HISTORY_FILE,
            history_size=self.config.history_size,
            max_fingerprints=MAX_FINGERPRINTS,
        )
        try:
            now = self.state.clock()
            self._memory = FingerprintMemory(MAX_FINGERPRINTS)
            self._throttle = Throttle()
            self._evaluators = [build_evaluator(rule, now) for rule in self.config.rules]
            await self._restore()
            self._queue = asyncio.Queue()
            self._queued_events = 0
            self._lock = asyncio.Lock()
            if self.config.webhooks:
                self._client = httpx.AsyncClient(follow_redirects=False)
                for webhook in self.config.webhooks:
                    worker = WebhookWorker(webhook, self._client, self._progress, self._drop)
                    self._workers[webhook.name] = worker
                    worker.start()
            self._task = asyncio.create_task(self._run(), name="alerts-evaluator")
            yield
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        self._queue = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for worker in self._workers.values():
            await worker.stop()
        self._workers = {}
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._history is not None:
            history, self._history = self._history, None
            with contextlib.suppress(Exception):
                await asyncio.to_thread(history.save_fingerprints, self._memory.dirty)
            await asyncio.to_thread(history.close)

    async def _restore(self) -> None:
        """Fingerprints from the history file, then the store's error groups (so a data dir
        that predates alerting does not see every known error as new)."""
        history = self._history
        assert history is not None
        for key, first, last in await asyncio.to_thread(history.fingerprints):
            self._memory.load(key, first, last)
        environments: set[str | None] = set()
        for rule in self.config.rules:
            if rule.type == "new_error_group":
                environments.update(rule.environments or (None,))
        for environment in sorted(environments, key=lambda e: e or ""):
            try:
                groups = await self.state.store.error_groups(
                    ErrorGroupQuery(environment=environment, limit=SEED_GROUPS)
                )
            except Exception as exc:  # a store that cannot answer now: the file still counts
                log.warning("alerts: cannot read error groups at start: %s", type(exc).__name__)
                return
            for group in groups:
                env = environment
                if env is None and isinstance(group.sample_event, dict):
                    sample_env = group.sample_event.get("environment")
                    env = sample_env if isinstance(sample_env, str) else None
                first_seen, last_seen = _epoch(group.first_seen), _epoch(group.last_seen)
                if first_seen is not None and last_seen is not None:
                    key = FingerprintMemory.key(env, group.fingerprint)
                    self._memory.load(key, first_seen, last_seen)

    # ------------------------------------------------------------------ evaluation

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        last_tick = time.monotonic()
        while True:
            batches: list[Sequence[Event]] = []
            if queue.empty():
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
                # cancellation that arrives as the queue hands over an item.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.tick_seconds):
                        batches.append(await queue.get())
            # Whatever else is waiting is evaluated in the same pass: one lock and one flush
            # for many small (single-event) batches instead of one each.
            while not queue.empty() and len(batches) < _DRAIN_BATCHES:
                batches.append(queue.get_nowait())
            if batches:
                try:
                    events = batches[0] if len(batches) == 1 else list(chain(*batches))
                    await self._guard(self._process, events)
                finally:
                    for batch in batches:
                        self._queued_events -= len(batch)
                        queue.task_done()
            if time.monotonic() - last_tick >= self.tick_seconds:
                last_tick = time.monotonic()
                await self._guard(self._tick)

    async def _guard(self, step: Callable[..., Awaitable[None]], *args: Any) -> None:
        try:
            await step(*args)
        except Exception as exc:  # evaluation bugs are logged and counted, never raised
            self._errors_metric.inc()
            log.error("alert evaluation failed: %s: %s", type(exc).__name__, exc)

    async def _process(self, batch: Sequence[Event]) -> None:
        assert self._lock is not None
        async with self._lock:
            now = self.state.clock()
            found: list[Occurrence] = []
            for index, event in enumerate(batch):
                if index and not index % _YIELD_EVERY:
                    await asyncio.sleep(0)  # let requests run between slices of a big batch
                error = None
                level = event.get("level")
                if isinstance(level, str) and LEVEL_NUMBERS.get(level, 0) >= _ERROR:
                    facts = error_facts(event)
                    at = event_time(event, now)
                    environment = event.get("environment")
                    key = FingerprintMemory.key(
                        environment if isinstance(environment, str) else None,
                        facts["fingerprint"],
                    )
                    error = Sighting(facts, at, self._memory.observe(key, at))
                for evaluator in self._evaluators:
                    found.extend(evaluator.observe(event, now, error))
            self.evaluated_events += len(batch)
            for occurrence in found:
                self._throttle.add(occurrence)
            await self._flush(now)

    async def _save_fingerprints(self) -> None:
        """Write what the memory learned since the last save, once per tick.

        Not per batch: nearly every busy batch holds an error, and a write per batch would
        cost the server more than evaluating the rules. A crash loses at most one tick of
        last-seen times; whether a fingerprint is new still follows from the store's error
        groups, which commit with the events.
        """
        dirty, self._memory.dirty = self._memory.dirty, {}
        if dirty and self._history is not None:
            await asyncio.to_thread(self._history.save_fingerprints, dirty)

    async def _tick(self) -> None:
        assert self._lock is not None
        async with self._lock:
            await self._save_fingerprints()
            now = self.state.clock()
            for evaluator in self._evaluators:
                for occurrence in evaluator.tick(now):
                    self._throttle.add(occurrence)
            await self._flush(now)

    async def _flush(self, now: float) -> None:
        history = self._history
        for pending in self._throttle.due(now):
            document = alert_document(
                pending, now=now, base_url=self.base_url, redactor=self.state.redactor
            )
            targets = [name for name in pending.first.rule.webhooks if name in self._workers]
            if history is not None:
                await asyncio.to_thread(history.add_alert, document, targets)
            self.fired += 1
            self._fired_metric.labels(pending.first.rule.name).inc()
            log.info("alert fired: rule %s, %d occurrence(s)", document["rule"], pending.count)
            for name in targets:
                worker = self._workers[name]
                await worker.submit(document["id"], payload_body(document, worker.webhook.format))

    async def _progress(
        self, alert_id: str, webhook: str, attempts: int, status: str, error: str | None
    ) -> None:
        if status != "pending":
            self._delivery_metric.labels(webhook, status).inc()
        history = self._history
        if history is not None:
            await asyncio.to_thread(
                history.update_delivery,
                alert_id,
                webhook,
                status=status,
                attempts=attempts,
                last_error=error,
                at=self.state.clock(),
            )

    async def _drop(self, alert_id: str, webhook: str) -> None:
        await self._progress(alert_id, webhook, 0, "dropped", "delivery queue full")

    # ------------------------------------------------------------------ for tests and the API

    async def settle(self) -> None:
        """Wait until every queued batch was evaluated."""
        if self._queue is not None:
            await self._queue.join()

    async def tick(self) -> None:
        """Run the timers now (no_events, group waits, cooldowns) with the app's clock."""
        await self._tick()

    async def deliveries_done(self) -> None:
        """Wait until every queued delivery was delivered or given up."""
        for worker in tuple(self._workers.values()):
            await worker.join()

    async def history(self, *, limit: int, rule: str | None = None) -> list[dict[str, Any]]:
        if self._history is None:
            return []
        return await asyncio.to_thread(self._history.alerts, limit=limit, rule=rule)

    def stats(self) -> dict[str, int]:
        return {
            "queued_events": self._queued_events,
            "dropped_events": self.dropped_events,
            "evaluated_events": self.evaluated_events,
            "fired": self.fired,
            "delivered": sum(w.delivered for w in self._workers.values()),
            "failed": sum(w.failed for w in self._workers.values()),
            "throttle_dropped": self._throttle.dropped,
        }


def _epoch(text: str) -> float | None:
    try:
        return parse_timestamp(text)
    except LogbeaconError:
        return None


def install_alerts(app: FastAPI, state: ServerState) -> AlertEngine:
    """Load the alert configuration (ConfigError if bad), subscribe the engine to committed
    events and mount `GET /v1/alerts`; `engine.running()` belongs in the lifespan."""
    engine = AlertEngine(load_alerts_config(state.settings), state)
    app.state.alert_engine = engine
    state.add_listener(engine.enqueue)
    app.include_router(router)
    return engine


def get_engine(request: Request) -> AlertEngine:
    engine = getattr(request.app.state, "alert_engine", None)
    if not isinstance(engine, AlertEngine):
        raise RuntimeError("alerts are not installed; create_app calls install_alerts")
    return engine


# --------------------------------------------------------------------------- GET /v1/alerts

_NULLABLE_TEXT: Final = {"type": ["string", "null"]}
_ALERT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": [
        "id",
        "rule",
        "type",
        "title",
        "text",
        "service",
        "environment",
        "count",
        "first_at",
        "last_at",
        "fired_at",
        "link",
        "details",
        "deliveries",
    ],
    "properties": {
        "id": {"type": "string"},
        "rule": {"type": "string"},
        "type": {"type": "string"},
        "title": {"type": "string"},
        "text": {"type": "string"},
        "service": _NULLABLE_TEXT,
        "environment": _NULLABLE_TEXT,
        "count": {"type": "integer", "minimum": 1},
        "first_at": {"type": "string"},
        "last_at": {"type": "string"},
        "fired_at": {"type": "string"},
        "link": {"type": "string"},
        "details": {"type": "object"},
        "deliveries": {"type": "array", "items": {"type": "object"}},
    },
}
_PARAMETERS: Final = [
    openapi_param(
        "limit",
        f"most alerts to return, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    ),
    openapi_param("rule", "only alerts of this rule"),
]

router = APIRouter(tags=["alerts"])


@router.get(
    "/v1/alerts",
    summary="Alert history",
    responses={
        200: {
            "description": "Alerts, newest first, with the rules in force and engine counters",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["alerts", "rules", "webhooks", "source", "stats"],
                        "properties": {
                            "alerts": {"type": "array", "items": _ALERT_SCHEMA},
                            "rules": {"type": "array", "items": {"type": "object"}},
                            "webhooks": {"type": "array", "items": {"type": "object"}},
                            "source": {"type": "string"},
                            "stats": {"type": "object"},
                        },
                    }
                }
            },
        },
        **error_responses(400, 401, 403, 422),
    },
    openapi_extra={"parameters": _PARAMETERS},
)
async def list_alerts(
    request: Request, grant: Annotated[ReadGrant, Depends(require_read)]
) -> ApiResponse:
    """Fired alerts with their delivery status per webhook, newest first; the rules and
    webhooks in force (webhook URLs and secrets are never shown)."""
    engine = get_engine(request)
    values = collect_params(
        request.query_params.multi_items(), ("limit", "rule"), ignored=("token",)
    )
    limit = values.get("limit")
    rule = values.get("rule")
    alerts = await engine.history(
        limit=DEFAULT_LIMIT if limit is None else int_param("limit", limit, low=1, high=MAX_LIMIT),
        rule=None if rule is None else text_param("rule", rule),
    )
    for alert in alerts:
        alert.pop("fired_epoch", None)
    config = engine.config
    return grant.apply(
        ApiResponse(
            {
                "alerts": alerts,
                "rules": [rule.describe() for rule in config.rules],
                "webhooks": [webhook.describe() for webhook in config.webhooks],
                "source": "defaults" if config.source == "defaults" else Path(config.source).name,
                "stats": engine.stats(),
            }
        )
    )
