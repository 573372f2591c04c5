"""Micro-benchmark of the redactor's hot path (the SDK runs it on every event).

Run: ``.venv/bin/python bench/redact_bench.py``. Prints CPU microseconds per call (best of 7
repeats), with a plain dict copy of the same event as the yardstick for this machine.
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from typing import Any

from logbeacon.redact import Redactor

TYPICAL_EVENT: dict[str, Any] = {
    "event": "node_start",
    "node": "developer",
    "fit_score": 85,
    "session_id": "s-123",
    "request_id": "9f1c2b7e4d0a4c8f9e6b3a2d1c0f8e7a",
    "service": "api",
    "level": "info",
    "timestamp": "2026-05-01T12:34:56.789123Z",
}

BENIGN_PROSE = (
    "Fetched company profile for the opportunity mapper and scored the candidate list; "
    "the developer node finished the draft summary without retries and handed it to the "
    "reviewer for a final pass"
)[:200]

BENIGN_KV_LINE = (
    "GET /v1/companies/acme-corp/profile status=200 duration_ms=183.2 cache=miss "
    "region=eu-west-1 build=2026.05.01-rc.3 worker=w-07 queue_depth=12 retries=0 "
    "note: upstream responded slowly, consider raising the timeout"
)[:200]

SECRETS_LINE = (
    "login failed for bob@example.com with password=hunter2 from +44 20 7946 0958, "
    "card 4111 1111 1111 1111, Authorization: Bearer abcdef0123456789abcdef0123456789 ok"
)


def per_call_us(fn: Callable[[], object], number: int) -> float:
    """Best-of-7 CPU time of one call, in microseconds (CPU time: robust on a shared box)."""
    runs = timeit.repeat(fn, number=number, repeat=7, timer=time.process_time)
    return min(runs) / number * 1e6


def loop_copy(event: dict[str, Any]) -> dict[str, Any]:
    """The least any per-field walk in Python costs on this machine."""
    out = {}
    for key, value in event.items():
        out[key] = value
    return out


def main() -> None:
    redactor = Redactor()

    def fresh(n: int) -> dict[str, Any]:
        event = dict(TYPICAL_EVENT)
        event["request_id"] = f"{n:032x}"
        event["timestamp"] = f"2026-05-01T12:{n % 60:02d}:{n % 59:02d}.{n % 999_983:06d}Z"
        return event

    # Built up front so that building them is not timed; 7 repeats x 50 000 calls.
    fresh_events = iter([fresh(n) for n in range(7 * 50_000)])

    def uncached(text: str) -> Callable[[], object]:
        def run() -> object:
            redactor._benign.clear()
            return redactor.redact_text(text)

        return run

    rows = [
        (
            "yardstick: copy the event in a Python loop",
            per_call_us(lambda: loop_copy(TYPICAL_EVENT), 100_000),
        ),
        ("redact(typical event)", per_call_us(lambda: redactor.redact(TYPICAL_EVENT), 100_000)),
        (
            "redact_event(typical event)",
            per_call_us(lambda: redactor.redact_event(TYPICAL_EVENT), 100_000),
        ),
        (
            "redact_event(event with fresh ids/timestamp)",
            per_call_us(lambda: redactor.redact_event(next(fresh_events)), 50_000),
        ),
        ("redact_text(200-char prose), uncached", per_call_us(uncached(BENIGN_PROSE), 20_000)),
        (
            "redact_text(200-char prose), cached",
            per_call_us(lambda: redactor.redact_text(BENIGN_PROSE), 100_000),
        ),
        ("redact_text(200-char k=v line), uncached", per_call_us(uncached(BENIGN_KV_LINE), 5_000)),
        (
            "redact_text(180 chars, 4 secrets)",
            per_call_us(lambda: redactor.redact_text(SECRETS_LINE), 2_000),
        ),
    ]
    for name, us in rows:
        print(f"{name:<48} {us:8.2f} µs")


if __name__ == "__main__":
    main()
