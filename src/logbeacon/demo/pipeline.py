"""A batch job as a logbeacon pipeline: layers that succeed, one that is skipped, one that fails.

Run it:   python -m logbeacon.demo.pipeline            (ends "partial")
          python -m logbeacon.demo.pipeline --crash    (ends "error", exit code 1)
Watch it: logbeacon run -- python -m logbeacon.demo.pipeline

Each line it prints is one JSON event; `logbeacon run` turns them into live layer progress.
With `LOGBEACON_URL` (and `LOGBEACON_INGEST_KEY`) set, the SDK also ships the events to that
server, which is how `logbeacon demo` runs it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import logbeacon

__all__ = ["EnrichmentServiceError", "main", "run_job", "score_company"]


class EnrichmentServiceError(ConnectionError):
    """The outreach provider refused the connection (the layer that fails in this demo)."""


@logbeacon.timed("score_company", threshold_ms=50)
def score_company(name: str) -> int:
    """CPU work worth timing: performance_metrics, and performance_alert above 50 ms."""
    return sum(ord(c) for c in name * 2000) % 100


def run_job(job_id: str, *, crash: bool = False) -> None:
    """One enrichment job; the outreach layer always fails, `crash` lets it end the job."""
    with logbeacon.pipeline(job_id=job_id, name="lead_enrichment") as p:
        with p.layer(1, "fetch_company") as layer:
            time.sleep(0.01)
            layer.metadata["rows"] = 120
        with p.layer(2, "opportunity_mapper") as layer:
            layer.metadata["fit_score"] = score_company("acme")
        p.skip(3, "people_mapper", reason="disabled for this customer")
        try:
            with p.layer(4, "outreach"):
                raise EnrichmentServiceError("connection refused by outreach.example.com:443")
        except EnrichmentServiceError:
            if crash:
                raise
            logbeacon.get_logger("logbeacon.demo.pipeline").warning(
                "outreach_deferred", reason="provider down, will retry tomorrow"
            )


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `--job-id`, `--crash`; JSON events on stdout (service `pipeline`)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--job-id", default="job-6929c9")
    parser.add_argument("--crash", action="store_true", help="let the failing layer end the job")
    args = parser.parse_args(argv)
    logbeacon.configure(service="pipeline", format="json")
    try:
        run_job(args.job_id, crash=args.crash)
    finally:
        logbeacon.flush()


if __name__ == "__main__":
    main()
