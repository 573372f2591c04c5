"""A batch job as a logbeacon pipeline: layers that succeed, one that is skipped, one that fails.

Run it:   .venv/bin/python examples/pipeline_job.py            (ends "partial")
          .venv/bin/python examples/pipeline_job.py --crash    (ends "error", exit code 1)
Watch it: .venv/bin/logbeacon run -- .venv/bin/python examples/pipeline_job.py
Each line it prints is one JSON event; `logbeacon run` turns them into live layer progress.
"""

from __future__ import annotations

import argparse
import time

import logbeacon


class EnrichmentServiceError(ConnectionError):
    """The outreach provider refused the connection (the layer that fails in this demo)."""


@logbeacon.timed("score_company", threshold_ms=50)
def score_company(name: str) -> int:
    """CPU work worth timing: performance_metrics, and performance_alert above 50 ms."""
    return sum(ord(c) for c in name * 2000) % 100


def main(job_id: str, crash: bool) -> None:
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
            logbeacon.get_logger("examples.pipeline").warning(
                "outreach_deferred", reason="provider down, will retry tomorrow"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-id", default="job-6929c9")
    parser.add_argument("--crash", action="store_true", help="let the failing layer end the job")
    args = parser.parse_args()
    logbeacon.configure(service="pipeline", format="json")
    main(args.job_id, args.crash)
    logbeacon.flush()
