"""The example application behind `logbeacon demo` (and `examples/`), shipped in the package.

- `logbeacon.demo.agent` — a support-chat back end: FastAPI + a LangGraph agent, instrumented
  with `instrument_app` and `LangGraphCallbackHandler`; words in a message steer it into the
  failures worth troubleshooting (a slow node, a timeout, an LLM rate limit, a bad request).
- `logbeacon.demo.pipeline` — a batch job as a logbeacon pipeline, with a skipped and a failed
  layer (`python -m logbeacon.demo.pipeline`).
- `logbeacon.demo.traffic` — the traffic generator `logbeacon demo` runs against them,
  including browser events posted exactly as the browser client posts them.

It lives in the package rather than only in `examples/` so that `logbeacon demo` works from
an installed wheel. It needs the `server` and `langgraph` extras.
"""

from __future__ import annotations

__all__: list[str] = []
