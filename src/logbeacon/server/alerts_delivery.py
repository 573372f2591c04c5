"""Webhook delivery: signed POSTs, retried with exponential backoff.

Each attempt is signed afresh like ingestion (`x-log-timestamp`, `x-log-signature:
sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, `logbeacon.signing`), so a
receiver verifies alerts with the same code that verifies logs. A connection error, a
timeout, `408`, `429` and `5xx` are retried after `backoff`, doubled each time up to
`max_backoff` (with ±20 % jitter; `Retry-After` is honoured within the cap), until
`max_attempts`; another `4xx` is final. Redirects are not followed.

One `WebhookWorker` per webhook sends in order from a bounded queue, so a receiver that is
down delays only its own alerts and a long outage drops (and counts) the oldest beyond the
queue rather than growing without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import httpx

from logbeacon._version import __version__
from logbeacon.server.alerts_config import Webhook
from logbeacon.signing import sign

__all__ = ["DeliveryResult", "WebhookWorker", "deliver"]

log = logging.getLogger("logbeacon.server")

QUEUE_SIZE: Final = 1_000
_RETRY_STATUSES: Final = frozenset({408, 425, 429})
_USER_AGENT: Final = f"logbeacon/{__version__} (alerts)"

# Called after each attempt: (attempts so far, status, last error or None).
Progress = Callable[[int, str, str | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """How a delivery ended: `delivered` or `failed`, after `attempts` tries."""

    status: str
    attempts: int
    last_error: str | None = None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    return None


def _attempt_error(response: httpx.Response | None, exc: Exception | None) -> str:
    if response is not None:
        return f"HTTP {response.status_code}"
    assert exc is not None
    return type(exc).__name__


async def deliver(
    client: httpx.AsyncClient,
    webhook: Webhook,
    body: bytes,
    *,
    progress: Progress | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DeliveryResult:
    """POST `body` to the webhook until it is accepted (2xx) or the attempts run out."""
    delay = webhook.backoff
    error: str | None = None
    for attempt in range(1, webhook.max_attempts + 1):
        headers = {"content-type": "application/json", "user-agent": _USER_AGENT}
        if webhook.secret is not None:
            headers |= sign(body, webhook.secret, int(time.time()))
        response: httpx.Response | None = None
        failure: Exception | None = None
        try:
            response = await client.post(
                webhook.url, content=body, headers=headers, timeout=webhook.timeout
            )
        except httpx.HTTPError as exc:
            failure = exc
        if response is not None and 200 <= response.status_code < 300:
            if progress is not None:
                await progress(attempt, "delivered", None)
            return DeliveryResult("delivered", attempt)
        error = _attempt_error(response, failure)
        retryable = response is None or (
            response.status_code in _RETRY_STATUSES or response.status_code >= 500
        )
        if not retryable or attempt == webhook.max_attempts:
            if progress is not None:
                await progress(attempt, "failed", error)
            return DeliveryResult("failed", attempt, error)
        if progress is not None:
            await progress(attempt, "pending", error)
        wait = delay * random.uniform(0.8, 1.2)
        hinted = _retry_after(response) if response is not None else None
        if hinted is not None:
            wait = max(wait, hinted)
        await sleep(min(wait, webhook.max_backoff))
        delay = min(delay * 2, webhook.max_backoff)
    return DeliveryResult("failed", webhook.max_attempts, error)  # max_attempts >= 1


@dataclass(frozen=True, slots=True)
class _Job:
    alert_id: str
    body: bytes


class WebhookWorker:
    """Sends one webhook's alerts in order; `on_progress` records each attempt."""

    def __init__(
        self,
        webhook: Webhook,
        client: httpx.AsyncClient,
        on_progress: Callable[[str, str, int, str, str | None], Awaitable[None]],
        on_drop: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.webhook = webhook
        self._client = client
        self._on_progress = on_progress
        self._on_drop = on_drop
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"alerts-webhook-{self.webhook.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, alert_id: str, body: bytes) -> None:
        """Queue an alert; at the bound the oldest waiting one is dropped (and recorded)."""
        if self._queue.qsize() >= QUEUE_SIZE:
            oldest = self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
            await self._on_drop(oldest.alert_id, self.webhook.name)
        self._queue.put_nowait(_Job(alert_id, body))

    async def join(self) -> None:
        """Wait until every queued alert was delivered or given up (tests, shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._send(job)
            except Exception as exc:  # a bug here must not stop later deliveries
                log.error("alert delivery to %s failed: %s", self.webhook.name, type(exc).__name__)
            finally:
                self._queue.task_done()

    async def _send(self, job: _Job) -> None:
        name = self.webhook.name

        async def progress(attempts: int, status: str, error: str | None) -> None:
            await self._on_progress(job.alert_id, name, attempts, status, error)

        result = await deliver(self._client, self.webhook, job.body, progress=progress)
        if result.status == "delivered":
            self.delivered += 1
        else:
            self.failed += 1
            log.warning(
                "alert %s to webhook %s failed after %d attempts: %s",
                job.alert_id,
                name,
                result.attempts,
                result.last_error,
            )
