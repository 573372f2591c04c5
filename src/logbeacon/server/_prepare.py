"""Step 6 of ingestion, one event at a time: normalise, retention, level policy, redact, enrich.

This is the CPU-heavy part of `POST /v1/logs` and depends on nothing but its arguments:
`PrepareContext` carries what the request decided (clock, retention, diagnostic session,
correlation ids), so the step can be tested, and measured, without a request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from logbeacon.event import DEFAULT_LIMITS, Limits, format_timestamp, normalize_event
from logbeacon.exceptions import EventError
from logbeacon.redact import Redactor
from logbeacon.server.policy import LEVEL_NOT_ALLOWED, LevelPolicy

__all__ = ["FUTURE_SKEW_SECONDS", "PrepareContext", "prepare_events"]

log = logging.getLogger("logbeacon.server")

Event = dict[str, Any]
Prepared = tuple[list[Event], list[tuple[int, str]]]

# Timestamps further ahead than this are replaced by the server's time (LIM-10).
FUTURE_SKEW_SECONDS: Final = 600.0
# Markers only the server writes; a client's copy would be a forgery (INJ-07).
_SERVER_MARKERS: Final = ("_redacted", "client_timestamp", "clock_skew")


_NO_POLICY: Final = LevelPolicy(enabled=False)


@dataclass(frozen=True, slots=True)
class PrepareContext:
    """What one request contributes to preparing its events."""

    now: float
    retention_days: int
    limits: Limits = DEFAULT_LIMITS
    policy: LevelPolicy = _NO_POLICY
    diagnostic_session: str | None = None
    request_id: str | None = None
    trace_id: str | None = None


def prepare_events(events: Sequence[Any], context: PrepareContext, redactor: Redactor) -> Prepared:
    """Validate, filter, redact and enrich each event; collect per-event rejections.

    A bad event is reported as `(index, reason)` and never sinks its siblings.
    """
    now = context.now
    policy = context.policy
    diag_session = context.diagnostic_session
    request_id, trace_id = context.request_id, context.trace_id
    received_at = format_timestamp(now)
    # Fixed-width timestamps compare as strings in time order.
    oldest = format_timestamp(max(0.0, now - context.retention_days * 86_400))
    latest = format_timestamp(now + FUTURE_SKEW_SECONDS)
    limits = context.limits
    # `normalize_event` returns a new dict that nobody else holds: no copy to redact it.
    redact = redactor.event_redactor()
    accepted: list[Event] = []
    rejected: list[tuple[int, str]] = []
    for index, item in enumerate(events):
        raw = item
        if isinstance(raw, dict) and any(marker in raw for marker in _SERVER_MARKERS):
            raw = {k: v for k, v in raw.items() if k not in _SERVER_MARKERS}
        try:
            event = normalize_event(raw, limits=limits, now=now)
        except EventError as exc:
            rejected.append((index, exc.reason))
            continue
        if event["timestamp"] < oldest:
            rejected.append((index, "too_old"))  # retention would purge it right away
            continue
        if not policy.allows(event, diag_session):
            rejected.append((index, LEVEL_NOT_ALLOWED))
            continue
        try:
            event = redact(event)
        except Exception as exc:  # never store what could not be scrubbed
            log.error("redaction failed: %s", type(exc).__name__)
            rejected.append((index, "redaction_failed"))
            continue
        event["received_at"] = received_at
        if event["timestamp"] > latest:
            # A client clock far ahead (common in browsers): keep its value, order by ours.
            event["client_timestamp"] = event["timestamp"]
            event["timestamp"] = received_at
            event["clock_skew"] = True
        if request_id is not None and "request_id" not in event:
            event["request_id"] = request_id
        if trace_id is not None and "trace_id" not in event:
            event["trace_id"] = trace_id
        accepted.append(event)
    return accepted, rejected
