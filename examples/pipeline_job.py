"""A batch job as a logbeacon pipeline: layers that succeed, one that is skipped, one that fails.

Run it:   .venv/bin/python examples/pipeline_job.py            (ends "partial")
          .venv/bin/python examples/pipeline_job.py --crash    (ends "error", exit code 1)
Watch it: .venv/bin/logbeacon run -- .venv/bin/python examples/pipeline_job.py
Each line it prints is one JSON event; `logbeacon run` turns them into live layer progress.
The job itself is `logbeacon.demo.pipeline` (what `logbeacon demo` runs).
"""

from __future__ import annotations

from logbeacon.demo.pipeline import main

if __name__ == "__main__":
    main()
