"""Prometheus metrics of the server itself, in a registry owned by one app.

A per-app `CollectorRegistry` (not the global one) lets tests build many apps in one process
and keeps the server's numbers apart from a host application's. Every discard is counted
once, with its reason, so an operator can see what is being refused and why (RELIABILITY.md
LIM-13).

The numbers every ingest request updates live in `IngestMeter`: plain integers the event loop
adds to, turned into metric families when `/metrics` is scraped. `prometheus_client`'s
`Counter`/`Histogram` take a lock and look up the label's child on every update, which was a
visible share of a single-event POST; the exposition is the same.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["IngestMeter", "ServerMetrics"]

# prometheus_client's default histogram buckets (seconds).
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
)  # fmt: skip


class IngestMeter(Collector):
    """Counters of the ingest path, updated on the event loop, exported at scrape time.

    Updates are plain `+=` on the loop's thread; a scrape on another thread may see one
    request's counters half-applied, never corrupted ones (the GIL keeps each update whole).
    """

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}  # by HTTP status
        self.accepted = 0
        self.duplicates = 0
        self.discarded: dict[str, int] = {}  # events, by reason
        self.rejected: dict[str, int] = {}  # whole requests, by reason
        self._buckets = [0] * (len(DURATION_BUCKETS) + 1)  # the last one is +Inf
        self._seconds = 0.0

    def request(self, status: int, seconds: float) -> None:
        """One answered ingest request and how long it took."""
        key = str(status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self._buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self._seconds += seconds

    def rejected_request(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def discarded_event(self, reason: str) -> None:
        self.discarded[reason] = self.discarded.get(reason, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "logbeacon_ingest_requests", "Ingest requests by HTTP status", labels=["status"]
        )
        for status, count in sorted(self.requests.items()):
            requests.add_metric([status], count)
        yield requests
        yield CounterMetricFamily(
            "logbeacon_accepted_events", "Events committed to the store", value=self.accepted
        )
        yield CounterMetricFamily(
            "logbeacon_duplicate_events",
            "Events whose event_id was already stored (not stored again)",
            value=self.duplicates,
        )
        for name, doc, counts in (
            ("logbeacon_discarded_events", "Events rejected one by one, by reason", self.discarded),
            (
                "logbeacon_rejected_requests",
                "Ingest requests refused as a whole, by reason",
                self.rejected,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["reason"])
            for reason, count in sorted(counts.items()):
                family.add_metric([reason], count)
            yield family
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*DURATION_BUCKETS, float("inf")), self._buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "logbeacon_ingest_duration_seconds",
            "Time to handle an ingest request, including the commit",
            buckets=buckets,
            sum_value=self._seconds,
        )


class ServerMetrics:
    """The counters the ingest, auth and query paths update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingest = IngestMeter()
        r.register(self.ingest)
        self.diag_token_invalid = Counter(
            "logbeacon_diag_token_invalid",
            "Diagnostic tokens that did not verify, by reason",
            ["reason"],
            registry=r,
        )
        self.listener_errors = Counter(
            "logbeacon_listener_errors", "Accepted-event listeners that raised", registry=r
        )
        self.ratelimit_keys = Gauge(
            "logbeacon_ratelimit_keys", "Client states held by the rate limiter", registry=r
        )
