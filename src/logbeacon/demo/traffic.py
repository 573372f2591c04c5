"""The traffic `logbeacon demo` sends: realistic troubleshooting material, on a loop.

Each round is a handful of visitors of the support-chat page (`logbeacon.demo.agent`) plus one
batch job (`logbeacon.demo.pipeline`):

- two questions that succeed, one of them slow (the research node sleeps: a p95 outlier and a
  `performance_alert`);
- one that times out in the research node and one that hits the model's rate limit: `500`s
  with `node_failed`, `graph_failed` and `unhandled_exception` events;
- every third round, an empty question (a validation error in the first node);
- a plain `GET /users/{id}` and one with a bad id (`422`);
- the pipeline job as a subprocess that ships its own events (a skipped layer and a failed
  one; every fourth round the failure ends the job with status `error`).

There is no browser in `logbeacon demo` (nor in `make run`), so for every failed chat the
generator posts what the demo page (`page.html`) and the browser client would have posted:
one beacon — a `text/plain` body `{"events": [...]}` to `/v1/logs?key=<browser key>` with
the page's `Origin` — holding the client's `network_error` for the failed fetch, the page's
`chat_failed` report carrying the request's trace id, and the `window_error` its render code
then throws. Every visitor sends a W3C `traceparent` with its chat request, so the browser
event, the API request and the graph's node events share one trace across `web`, `api` and
`langgraph`. Nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

import httpx
import orjson

__all__ = ["BROWSER_USER_AGENT", "RoundResult", "Target", "Traffic"]

BROWSER_USER_AGENT: Final = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 "
    "Safari/537.36"
)
#: Seconds between rounds: brisk at first so every view has material at once, then calmer
#: so a demo left running does not fill the disk.
FIRST_INTERVAL: Final = 3.0
LATER_INTERVAL: Final = 15.0
BRISK_ROUNDS: Final = 5
PIPELINE_TIMEOUT: Final = 60.0

# (question, what the agent does with it)
_QUESTIONS: Final = (
    "what is the weather in Paris?",
    "slow: compare every plan for a team of 40",
    "find invoice 4411, the billing lookup hit a timeout earlier",
    "summarise my last 20 tickets; did we hit the rate limit yesterday?",
)
_EMPTY_QUESTION: Final = "   "
_RENDER_ERROR: Final = "Cannot read properties of undefined (reading 'trim')"


@dataclass(frozen=True, slots=True)
class Target:
    """Where the traffic goes, and the credentials each kind of client uses."""

    app_url: str  # the example app (and the page's origin)
    server_url: str  # the logbeacon server
    ingest_key: str  # for the pipeline job's shipper
    browser_key: str  # public key of the page's browser client
    release: str = "demo"
    environment: str = "dev"

    @property
    def origin(self) -> str:
        parts = urlsplit(self.app_url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(slots=True)
class RoundResult:
    """What one round did (the CLI prints the first one)."""

    number: int
    requests: int = 0
    failed: int = 0
    browser_events: int = 0
    pipelines: int = 0
    problems: list[str] = field(default_factory=list)


def _now() -> str:
    """`Date.prototype.toISOString()`: milliseconds and `Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Traffic:
    """Runs rounds of visitors and jobs against a `Target` until told to stop."""

    def __init__(
        self,
        target: Target,
        *,
        pipeline_command: Sequence[str] = (sys.executable, "-m", "logbeacon.demo.pipeline"),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self.pipeline_command = tuple(pipeline_command)
        self._environ = dict(os.environ if environ is None else environ)
        self._children: set[asyncio.subprocess.Process] = set()

    # ------------------------------------------------------------------ the loop

    async def run(
        self, stop: asyncio.Event, *, on_round: Callable[[RoundResult], None] | None = None
    ) -> None:
        """Send rounds until `stop` is set; children still running are stopped at the end."""
        number = 0
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                while not stop.is_set():
                    result = await self.round(client, number)
                    if on_round is not None:
                        on_round(result)
                    number += 1
                    interval = FIRST_INTERVAL if number < BRISK_ROUNDS else LATER_INTERVAL
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=interval)
        finally:
            await self.stop_children()

    async def round(self, client: httpx.AsyncClient, number: int) -> RoundResult:
        """One round; a failure of the demo's own plumbing is recorded, never raised."""
        result = RoundResult(number)
        questions = list(_QUESTIONS)
        if number % 3 == 2:
            questions.append(_EMPTY_QUESTION)
        jobs: list[Awaitable[None]] = [self._visit(client, q, result) for q in questions]
        jobs.append(self._users(client, number, result))
        jobs.append(self._pipeline(number, result))
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                result.problems.append(f"{type(outcome).__name__}: {outcome}")
        return result

    async def stop_children(self) -> None:
        """Terminate pipeline jobs still running (by their PID), then reap them."""
        for proc in tuple(self._children):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for proc in tuple(self._children):
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await asyncio.wait_for(proc.wait(), timeout=5.0)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._children.clear()

    # ------------------------------------------------------------------ visitors

    async def _visit(self, client: httpx.AsyncClient, question: str, result: RoundResult) -> None:
        """A page load and one chat message, with the browser's trace context."""
        session_id = f"web-{secrets.token_hex(4)}"
        trace_id = secrets.token_hex(16)
        started = time.perf_counter()
        response = await client.post(
            f"{self.target.app_url}/chat",
            json={"session_id": session_id, "message": question},
            headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        )
        duration_ms = round((time.perf_counter() - started) * 1000)
        result.requests += 1
        if response.is_success:
            return
        result.failed += 1
        await self._report_failed_chat(
            client,
            session_id=session_id,
            trace_id=trace_id,
            response=response,
            duration_ms=duration_ms,
            result=result,
        )

    async def _report_failed_chat(
        self,
        client: httpx.AsyncClient,
        *,
        session_id: str,
        trace_id: str,
        response: httpx.Response,
        duration_ms: int,
        result: RoundResult,
    ) -> None:
        """The beacon the page and its browser client send after a failed chat."""
        host = urlsplit(self.target.app_url).netloc
        status = response.status_code
        events = [
            # client.js's fetch wrapper: a non-2xx answer (no trace id: it cannot know one).
            self._browser_event(
                session_id,
                "error" if status >= 500 else "warn",
                "network_error",
                message=f"POST {host}/chat answered {status}",
                component="fetch",
                http={
                    "status": status,
                    "duration_ms": duration_ms,
                    "method": "POST",
                    "host": host,
                    "path": "/chat",
                },
            ),
            # page.html: LogBeacon.log("error", "chat_failed", {trace_id, request_id, …}).
            self._browser_event(
                session_id,
                "error",
                "chat_failed",
                message=f"the assistant could not answer (HTTP {status})",
                component="chat",
                trace_id=trace_id,
                request_id=response.headers.get("x-request-id"),
            ),
            # page.html's render() on an error body: an uncaught TypeError (window_error).
            self._browser_event(
                session_id,
                "error",
                "window_error",
                message=_RENDER_ERROR,
                component="window",
                error={
                    "type": "TypeError",
                    "message": _RENDER_ERROR,
                    "stack": [
                        f"TypeError: {_RENDER_ERROR}",
                        f"at render ({self.target.origin}/:36:68)",
                        f"at {self.target.origin}/:56:35",
                    ],
                },
            ),
        ]
        await self._beacon(client, events)
        result.browser_events += len(events)

    def _browser_event(
        self, session_id: str, level: str, event: str, **fields: object
    ) -> dict[str, object]:
        """An event shaped as client.js's `emit()` builds it."""
        return {
            "route": "/",
            **fields,
            "timestamp": _now(),
            "level": level,
            "service": "web",
            "event": event,
            "session_id": session_id,
            "release": self.target.release,
            "environment": self.target.environment,
            "event_id": str(uuid.uuid4()),
            "user_agent": BROWSER_USER_AGENT,
        }

    async def _beacon(self, client: httpx.AsyncClient, events: list[dict[str, object]]) -> None:
        """`navigator.sendBeacon(url, new Blob([body], {type: "text/plain;charset=UTF-8"}))`:
        the key in the query (beacons cannot set headers) and the page's Origin."""
        response = await client.post(
            f"{self.target.server_url}/v1/logs",
            params={"key": self.target.browser_key},
            content=orjson.dumps({"events": events}),
            headers={"content-type": "text/plain;charset=UTF-8", "origin": self.target.origin},
        )
        response.raise_for_status()

    async def _users(self, client: httpx.AsyncClient, number: int, result: RoundResult) -> None:
        """A plain endpoint, once with a good id and once with a bad one (a 422)."""
        for path in (f"/users/{1000 + number}", "/users/not-a-number"):
            response = await client.get(f"{self.target.app_url}{path}")
            result.requests += 1
            if not response.is_success:
                result.failed += 1

    # ------------------------------------------------------------------ the batch job

    async def _pipeline(self, number: int, result: RoundResult) -> None:
        """The pipeline job as its own process, shipping to the server like any script."""
        crash = number % 4 == 3
        job_id = f"lead-{number:04d}-{secrets.token_hex(3)}"
        env = {
            **self._environ,
            "LOGBEACON_URL": self.target.server_url,
            "LOGBEACON_INGEST_KEY": self.target.ingest_key,
            "LOGBEACON_RELEASE": self.target.release,
            "LOGBEACON_ENVIRONMENT": self.target.environment,
        }
        proc = await asyncio.create_subprocess_exec(
            *self.pipeline_command,
            "--job-id",
            job_id,
            *(["--crash"] if crash else []),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._children.add(proc)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout=PIPELINE_TIMEOUT)
        finally:
            if proc.returncode is not None:
                self._children.discard(proc)
        result.pipelines += 1
        if code != (1 if crash else 0):
            result.problems.append(f"pipeline job {job_id} exited with {code}")
