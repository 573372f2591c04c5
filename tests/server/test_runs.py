"""`GET /v1/runs` and `GET /v1/runs/{run_id}` through the real app, fed by a real LangGraph
graph's events, by pipeline events, and end to end through a `logbeacon serve` subprocess."""

from __future__ import annotations

import io
import operator
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import httpx
import pytest
from langgraph.graph import END, START, StateGraph

from logbeacon.event import format_timestamp
from logbeacon.integrations.langgraph import LangGraphCallbackHandler
from logbeacon.sdk import configure, reset
from logbeacon.testing import capture_logs
from tests.helpers.server import running_server
from tests.server.conftest import Harness

RUN_KEYS = {"run_id", "kind", "status", "service", "started_at", "duration_ms", "steps"}
STEP_KEYS = {"name", "kind", "index", "status", "started_at", "duration_ms", "error"}
SUMMARY_KEYS = {
    "run_id",
    "kind",
    "status",
    "service",
    "started_at",
    "duration_ms",
    "step_count",
    "error_count",
    "name",
}


class State(TypedDict):
    items: Annotated[list[str], operator.add]
    fail: bool


def plan(state: State) -> dict[str, Any]:
    return {"items": ["plan"]}


def act(state: State) -> dict[str, Any]:
    if state["fail"]:
        raise ValueError("tool rejected order 17")
    return {"items": ["act"]}


@pytest.fixture
def sdk() -> Iterator[None]:
    """The SDK configured quietly (JSON into a buffer) for the test, reset afterwards."""
    configure(service="app", level="info", format="json", stream=io.StringIO())
    yield
    reset()


def langgraph_events(*, fail: bool) -> tuple[str, list[dict[str, Any]]]:
    """Invoke a real two-node graph with the callback handler; its run id and events."""
    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("act", act)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "act")
    builder.add_edge("act", END)
    graph = builder.compile(name="agent")
    run_id = uuid.uuid4()
    config: Any = {"callbacks": [LangGraphCallbackHandler()], "run_id": run_id}
    with capture_logs() as logs:
        if fail:
            with pytest.raises(ValueError, match="order 17"):
                graph.invoke({"items": [], "fail": True}, config=config)
        else:
            graph.invoke({"items": [], "fail": False}, config=config)
    return str(run_id), [e for e in logs if e.get("logger") == "logbeacon.integrations.langgraph"]


def pipeline_events(job: str, *, start: float) -> list[dict[str, Any]]:
    """A pipeline job with a failed layer that went on to complete (hand-built, SDK vocabulary)."""

    def at(offset: float) -> str:
        return format_timestamp(start + offset)

    common = {"job_id": job, "run_id": job, "pipeline": "enrich", "service": "worker"}
    error = {"type": "KeyError", "message": "'fit_score'"}
    return [
        {"event": "pipeline_start", "timestamp": at(0), "status": "running", **common},
        {"event": "layer_start", "timestamp": at(0.1), "layer": 1, "layer_name": "fetch",
         **common},
        {"event": "layer_error", "timestamp": at(0.4), "layer": 1, "layer_name": "fetch",
         "level": "error", "duration_ms": 300, "error": error, **common},
        {"event": "layer_skip", "timestamp": at(0.5), "layer": 2, "layer_name": "publish",
         "status": "skipped", **common},
        {"event": "pipeline_complete", "timestamp": at(0.6), "level": "warn", "status": "partial",
         "duration_ms": 600, **common},
    ]  # fmt: skip


async def ingest(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/logs", json=events)
    assert (200, []) == (response.status_code, response.json()["rejected"])


async def test_real_langgraph_run_is_listed_with_its_nodes(
    harness: Harness, client: httpx.AsyncClient, sdk: None
) -> None:
    """A real graph invocation shows up as a successful graph run whose steps are its nodes."""
    run_id, events = langgraph_events(fail=False)
    await ingest(client, events)
    listed = (await client.get("/v1/runs", headers=harness.read_headers)).json()["runs"]
    detail = (await client.get(f"/v1/runs/{run_id}", headers=harness.read_headers)).json()
    assert (
        [(run_id, "graph", "success", "langgraph", "agent", 2, 0)],
        SUMMARY_KEYS,
        RUN_KEYS,
        [STEP_KEYS, STEP_KEYS],
        [("plan", "node", 1, "success", None), ("act", "node", 2, "success", None)],
    ) == (
        [
            (r["run_id"], r["kind"], r["status"], r["service"], r["name"], r["step_count"],
             r["error_count"])
            for r in listed
        ],
        set(listed[0]),
        set(detail),
        [set(step) for step in detail["steps"]],
        [(s["name"], s["kind"], s["index"], s["status"], s["error"]) for s in detail["steps"]],
    )  # fmt: skip


async def test_real_failing_graph_run_is_error_with_the_failed_node(
    harness: Harness, client: httpx.AsyncClient, sdk: None
) -> None:
    """A node that raises makes its step error (type, message, category) and the run error."""
    run_id, events = langgraph_events(fail=True)
    await ingest(client, events)
    detail = (await client.get(f"/v1/runs/{run_id}", headers=harness.read_headers)).json()
    failed = detail["steps"][1]
    assert ("error", "act", "error", "ValueError", "tool rejected order 17", "validation") == (
        detail["status"],
        failed["name"],
        failed["status"],
        failed["error"]["type"],
        failed["error"]["message"],
        failed["error"]["category"],
    )


async def test_pipeline_run_and_filters(harness: Harness, client: httpx.AsyncClient) -> None:
    """A pipeline job is a partial pipeline run; status, service, since and limit filter runs."""
    now = time.time()
    await ingest(client, pipeline_events("job-old", start=now - 7200))
    await ingest(client, pipeline_events("job-new", start=now - 60))
    headers = harness.read_headers

    async def ids(**params: Any) -> list[str]:
        response = await client.get("/v1/runs", params=params, headers=headers)
        assert 200 == response.status_code
        return [run["run_id"] for run in response.json()["runs"]]

    detail = (await client.get("/v1/runs/job-new", headers=headers)).json()
    assert (
        ["job-new", "job-old"],
        ["job-new"],
        ["job-new", "job-old"],
        [],
        ["job-new"],
        ("pipeline", "partial", [("fetch", 1, "error"), ("publish", 2, "skipped")]),
    ) == (
        await ids(),
        await ids(since="1h"),
        await ids(status="partial", service="worker"),
        await ids(status="running"),
        await ids(limit=1),
        (detail["kind"], detail["status"],
         [(s["name"], s["index"], s["status"]) for s in detail["steps"]]),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"status": "done"}, 422, "invalid_parameter"),
        ({"limit": "0"}, 422, "invalid_parameter"),
        ({"since": "yesterday"}, 422, "invalid_parameter"),
        ({"state": "error"}, 400, "unknown_parameter"),
    ],
)
async def test_invalid_run_filters_are_refused(
    harness: Harness, client: httpx.AsyncClient, params: dict[str, str], status: int, code: str
) -> None:
    """A bad filter value is a 422 naming the parameter; an unknown parameter is a 400."""
    response = await client.get("/v1/runs", params=params, headers=harness.read_headers)
    assert (status, code) == (response.status_code, response.json()["error"])


async def test_unknown_run_is_404(harness: Harness, client: httpx.AsyncClient) -> None:
    """An id no run has is 404 run_not_found."""
    response = await client.get("/v1/runs/nope", headers=harness.read_headers)
    assert (404, "run_not_found") == (response.status_code, response.json()["error"])


async def test_runs_need_a_read_token(client: httpx.AsyncClient) -> None:
    """Both run endpoints answer 401 without a read token."""
    statuses = [(await client.get(path)).status_code for path in ("/v1/runs", "/v1/runs/x")]
    assert [401, 401] == statuses


@pytest.mark.e2e
def test_derived_endpoints_on_a_real_server(tmp_path: Path) -> None:
    """Through `logbeacon serve`: runs, error groups and analysis reflect ingested events."""
    now = time.time()
    events = pipeline_events("job-e2e", start=now - 30)
    with running_server(tmp_path) as server, httpx.Client(base_url=server.url) as client:
        assert 200 == client.post("/v1/logs", json=events).status_code
        headers = server.read_headers
        run = client.get("/v1/runs/job-e2e", headers=headers).json()
        groups = client.get("/v1/errors", headers=headers).json()["groups"]
        analysis = client.get("/v1/analysis", params={"since": "10m"}, headers=headers).json()
        unauthorised = client.get("/v1/analysis").status_code
    assert (
        ("partial", 2),
        [("KeyError", 1, ["worker"])],
        (5, 1),
        ("KeyError", "fetch"),
        401,
    ) == (
        (run["status"], len(run["steps"])),
        [(g["type"], g["count"], g["services"]) for g in groups],
        (analysis["totals"]["events"], analysis["totals"]["errors"]),
        (analysis["top_errors"][0]["type"], analysis["slowest_steps"][0]["name"]),
        unauthorised,
    )


async def test_run_status_moves_with_each_event(
    harness: Harness, client: httpx.AsyncClient, sdk: None
) -> None:
    """Fed one event at a time, a real graph whose second node fails goes running → error
    with its steps following, and a pipeline with a skipped layer goes running → success."""
    headers = harness.read_headers

    async def replay(run_id: str, events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        seen: list[tuple[Any, ...]] = []
        for event in events:
            await ingest(client, [event])
            response = await client.get(f"/v1/runs/{run_id}", headers=headers)
            if response.status_code == 404:
                continue  # an event that does not make a run yet
            detail = response.json()
            state = (detail["status"], *(f"{s['name']}:{s['status']}" for s in detail["steps"]))
            if not seen or seen[-1] != state:
                seen.append(state)
        return seen

    run_id, events = langgraph_events(fail=True)
    graph = await replay(run_id, events)
    now = time.time()

    def at(offset: float) -> str:
        return format_timestamp(now - 10 + offset)

    job = {"job_id": "job-skip", "run_id": "job-skip", "service": "worker"}
    pipeline = await replay(
        "job-skip",
        [
            {"event": "pipeline_start", "timestamp": at(0), **job},
            {"event": "layer_start", "timestamp": at(1), "layer": 1, "layer_name": "fetch", **job},
            {"event": "layer_complete", "timestamp": at(2), "layer": 1, "layer_name": "fetch",
             "status": "success", "duration_ms": 1000, **job},
            {"event": "layer_skip", "timestamp": at(3), "layer": 2, "layer_name": "people",
             "status": "skipped", **job},
            {"event": "pipeline_complete", "timestamp": at(4), "status": "success", **job},
        ],
    )  # fmt: skip
    assert [
        ("running",),
        ("running", "plan:running"),
        ("running", "plan:success"),
        ("running", "plan:success", "act:running"),
        ("running", "plan:success", "act:error"),
        ("error", "plan:success", "act:error"),
    ] == graph
    assert [
        ("running",),
        ("running", "fetch:running"),
        ("running", "fetch:success"),
        ("running", "fetch:success", "people:skipped"),
        ("success", "fetch:success", "people:skipped"),
    ] == pipeline
