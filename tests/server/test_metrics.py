"""The ingest meter: plain counters exported as the same Prometheus families."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from logbeacon.server.metrics import DURATION_BUCKETS, ServerMetrics


def samples(metrics: ServerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_are_exported_with_their_labels() -> None:
    metrics = ServerMetrics()
    meter = metrics.ingest
    meter.request(200, 0.001)
    meter.request(200, 0.002)
    meter.request(429, 0.0001)
    meter.rejected_request("rate_limited")
    meter.discarded_event("too_old")
    meter.discarded_event("too_old")
    meter.accepted += 5
    meter.duplicates += 1
    got = samples(metrics)
    assert 2 == got[("logbeacon_ingest_requests_total", (("status", "200"),))]
    assert 1 == got[("logbeacon_ingest_requests_total", (("status", "429"),))]
    assert 1 == got[("logbeacon_rejected_requests_total", (("reason", "rate_limited"),))]
    assert 2 == got[("logbeacon_discarded_events_total", (("reason", "too_old"),))]
    assert 5 == got[("logbeacon_accepted_events_total", ())]
    assert 1 == got[("logbeacon_duplicate_events_total", ())]


def test_unlabelled_counters_exist_before_any_request() -> None:
    got = samples(ServerMetrics())
    assert 0 == got[("logbeacon_accepted_events_total", ())]
    assert 0 == got[("logbeacon_duplicate_events_total", ())]
    assert 0 == got[("logbeacon_ingest_duration_seconds_count", ())]


def test_duration_histogram_buckets_are_cumulative_and_inclusive() -> None:
    """`le` is "less than or equal": a request of exactly 5 ms counts in the 0.005 bucket."""
    metrics = ServerMetrics()
    for seconds in (0.005, 0.0051, 0.3, 99.0):
        metrics.ingest.request(200, seconds)
    got = samples(metrics)

    def bucket(le: str) -> float:
        return got[("logbeacon_ingest_duration_seconds_bucket", (("le", le),))]

    assert 1 == bucket("0.005")
    assert 2 == bucket("0.01")
    assert 3 == bucket("0.5")
    assert 3 == bucket("10.0")
    assert 4 == bucket("+Inf")
    assert 4 == got[("logbeacon_ingest_duration_seconds_count", ())]
    assert abs(got[("logbeacon_ingest_duration_seconds_sum", ())] - 99.3101) < 1e-9
    assert len(DURATION_BUCKETS) + 1 == sum(
        1 for name, _ in got if name == "logbeacon_ingest_duration_seconds_bucket"
    )
