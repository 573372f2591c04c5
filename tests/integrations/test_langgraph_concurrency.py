"""Concurrent invocations through one shared LangGraphCallbackHandler never mix their trees."""

from __future__ import annotations

import asyncio
import io
import operator
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from logbeacon import context
from logbeacon.integrations.langgraph import LangGraphCallbackHandler
from logbeacon.sdk import configure, reset
from logbeacon.testing import capture_logs

LOGGER = "logbeacon.integrations.langgraph"
RUNS = 20
NODES = ("fetch", "think", "answer")
EXPECTED = [
    ("graph_start", None),
    ("node_start", "fetch"),
    ("node_complete", "fetch"),
    ("node_start", "think"),
    ("node_complete", "think"),
    ("node_start", "answer"),
    ("node_complete", "answer"),
    ("graph_complete", None),
]


class Work(TypedDict):
    index: int
    trail: Annotated[list[str], operator.add]


def async_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """fetch → think → answer; every node yields to the loop for a run-dependent time, and
    `think` is sync so it runs on an executor thread."""

    def make(name: str) -> Any:
        async def node(state: Work) -> dict[str, Any]:
            await asyncio.sleep(0.001 * ((state["index"] * 7 + len(name)) % 5))
            return {"trail": [name]}

        return node

    def think(state: Work) -> dict[str, Any]:
        return {"trail": ["think"]}

    builder = StateGraph(Work)
    builder.add_node("fetch", make("fetch"))
    builder.add_node("think", think)
    builder.add_node("answer", make("answer"))
    builder.add_edge(START, "fetch")
    builder.add_edge("fetch", "think")
    builder.add_edge("think", "answer")
    builder.add_edge("answer", END)
    return builder.compile()


def sync_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The same shape with sync nodes, for invocations from several threads."""
    builder = StateGraph(Work)
    for name in NODES:
        builder.add_node(name, lambda state, name=name: {"trail": [name]})
    builder.add_edge(START, "fetch")
    builder.add_edge("fetch", "think")
    builder.add_edge("think", "answer")
    builder.add_edge("answer", END)
    return builder.compile()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every event emitted during the test (SDK configured quietly at info, reset afterwards)."""
    configure(service="app", level="info", format="json", stream=io.StringIO())
    with capture_logs() as events:
        yield events
    reset()


def by_run(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The handler's events grouped by run_id, in emission order."""
    assert [] == [e for e in events if e.get("logger") == "langchain_core.callbacks.manager"]
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event.get("logger") == LOGGER:
            runs[event["run_id"]].append(event)
    return runs


def assert_runs_are_separate(events: list[dict[str, Any]]) -> None:
    """Each run: one thread and request id of its own, its own nodes in order."""
    runs = by_run(events)
    assert RUNS == len(runs)
    threads = set()
    for run_events in runs.values():
        assert EXPECTED == [(e["event"], e.get("node")) for e in run_events]
        thread_ids = {e["thread_id"] for e in run_events}
        assert 1 == len(thread_ids)
        thread_id = thread_ids.pop()
        threads.add(thread_id)
        index = thread_id.removeprefix("thread-")
        assert {f"req-{index}"} == {e["request_id"] for e in run_events}
    assert {f"thread-{i}" for i in range(RUNS)} == threads


async def test_concurrent_ainvokes_stay_separate_trees(logs: list[dict[str, Any]]) -> None:
    """20 concurrent ainvokes on one handler: each run_id's events carry only its own
    thread_id and request_id, and its nodes in order — although the runs interleave."""
    graph = async_graph()
    handler = LangGraphCallbackHandler()

    async def one(index: int) -> dict[str, Any]:
        with context.bound(request_id=f"req-{index}"):
            return await graph.ainvoke(
                {"index": index, "trail": []},
                config={"callbacks": [handler], "configurable": {"thread_id": f"thread-{index}"}},
            )

    results = await asyncio.gather(*(one(i) for i in range(RUNS)))
    assert [["fetch", "think", "answer"]] * RUNS == [r["trail"] for r in results]
    assert_runs_are_separate(logs)
    handler_events = [e for e in logs if e.get("logger") == LOGGER]
    assert 1 < len({e["run_id"] for e in handler_events[:RUNS]})  # the runs did interleave
    assert 0 == handler.tracked_runs()


def test_concurrent_sync_invokes_from_threads_stay_separate(logs: list[dict[str, Any]]) -> None:
    """20 sync invokes from 8 threads on one handler keep one tree per run as well."""
    graph = sync_graph()
    handler = LangGraphCallbackHandler()

    def one(index: int) -> dict[str, Any]:
        with context.bound(request_id=f"req-{index}"):
            return graph.invoke(
                {"index": index, "trail": []},
                config={"callbacks": [handler], "configurable": {"thread_id": f"thread-{index}"}},
            )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(RUNS)))
    assert [["fetch", "think", "answer"]] * RUNS == [r["trail"] for r in results]
    assert_runs_are_separate(logs)
    assert 0 == handler.tracked_runs()
