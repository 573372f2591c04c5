"""A support-chat back end: FastAPI + a LangGraph agent, instrumented with logbeacon.

The app itself lives in the package (`logbeacon.demo.agent`), so that `logbeacon demo` runs it
from an installed wheel too; read that module for the graph, the endpoints and the failures
it produces on purpose.

Run it:   .venv/bin/uvicorn --app-dir examples agent_app:app --port 8000
Try it:   curl -s localhost:8000/chat -H 'content-type: application/json' \
              -d '{"session_id": "s-1", "message": "what is the weather in Paris?"}'
Words in the message steer the agent into trouble on purpose: "slow" makes the research node
slow, "timeout" makes it time out, "rate limit" makes the model call fail as a provider would.
"""

from __future__ import annotations

import logbeacon
from logbeacon.demo.agent import create_app

app = create_app()

if __name__ == "__main__":
    import uvicorn

    logbeacon.configure(service="api")
    uvicorn.run(app, host="127.0.0.1", port=8000, log_config=None)
