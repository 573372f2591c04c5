"""Prometheus metrics of the server itself, in a registry owned by one app.

A per-app `CollectorRegistry` (not the global one) lets tests build many apps in one process
and keeps the server's numbers apart from a host application's. Every discard is counted
once, with its reason, so an operator can see what is being refused and why (RELIABILITY.md
LIM-13).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServerMetrics"]


class ServerMetrics:
    """The counters the ingest, auth and query paths update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingest_requests = Counter(
            "logbeacon_ingest_requests",
            "Ingest requests by HTTP status",
            ["status"],
            registry=r,
        )
        self.accepted_events = Counter(
            "logbeacon_accepted_events", "Events committed to the store", registry=r
        )
        self.duplicate_events = Counter(
            "logbeacon_duplicate_events",
            "Events whose event_id was already stored (not stored again)",
            registry=r,
        )
        self.discarded_events = Counter(
            "logbeacon_discarded_events",
            "Events rejected one by one, by reason",
            ["reason"],
            registry=r,
        )
        self.rejected_requests = Counter(
            "logbeacon_rejected_requests",
            "Ingest requests refused as a whole, by reason",
            ["reason"],
            registry=r,
        )
        self.diag_token_invalid = Counter(
            "logbeacon_diag_token_invalid",
            "Diagnostic tokens that did not verify, by reason",
            ["reason"],
            registry=r,
        )
        self.listener_errors = Counter(
            "logbeacon_listener_errors", "Accepted-event listeners that raised", registry=r
        )
        self.ingest_seconds = Histogram(
            "logbeacon_ingest_duration_seconds",
            "Time to handle an ingest request, including the commit",
            registry=r,
        )
        self.ratelimit_keys = Gauge(
            "logbeacon_ratelimit_keys", "Client states held by the rate limiter", registry=r
        )
