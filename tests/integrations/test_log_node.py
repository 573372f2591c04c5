"""@log_node: node events around plain sync/async node functions, context restored."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any, TypedDict

import orjson
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from logbeacon import context
from logbeacon.integrations.langgraph import log_node
from logbeacon.sdk import configure, get_logger, reset
from logbeacon.testing import capture_logs

LOGGER = "logbeacon.integrations.langgraph"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every event emitted during the test (SDK configured quietly at info, reset afterwards)."""
    configure(service="app", level="info", format="json", stream=io.StringIO())
    with capture_logs() as events:
        yield events
    reset()


def node_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decorator's own events."""
    return [e for e in events if e.get("logger") == LOGGER]


def test_sync_node_logs_start_and_complete(logs: list[dict[str, Any]]) -> None:
    """A decorated sync function logs node_start and node_complete and returns its result."""

    @log_node("developer")
    def developer(state: dict[str, Any]) -> dict[str, Any]:
        return {"fit_score": 85, "notes": ["a", "b"]}

    assert {"fit_score": 85, "notes": ["a", "b"]} == developer({"company": "Acme", "n": 3})
    events = node_events(logs)
    assert [
        ("node_start", "developer", "running", "langgraph"),
        ("node_complete", "developer", "success", "langgraph"),
    ] == [(e["event"], e["node"], e["status"], e["service"]) for e in events]
    assert {
        "type": "dict",
        "size": 2,
        "fields": {"company": "str(len=4)", "n": "int"},
    } == events[0]["input_summary"]
    assert {
        "type": "dict",
        "size": 2,
        "fields": {"fit_score": "int", "notes": "list(len=2, items=str)"},
    } == events[1]["output_summary"]
    assert isinstance(events[1]["duration_ms"], float)
    assert "duration_ms" not in events[0]


async def test_async_node_logs_start_and_complete(logs: list[dict[str, Any]]) -> None:
    """A decorated coroutine function stays a coroutine function and logs the same events."""

    @log_node("architect")
    async def architect(state: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"plan": "ok"}

    assert asyncio.iscoroutinefunction(architect)
    assert {"plan": "ok"} == await architect({"spec": "x"})
    assert [("node_start", "running"), ("node_complete", "success")] == [
        (e["event"], e["status"]) for e in node_events(logs)
    ]


def test_bare_decorator_uses_the_function_name(logs: list[dict[str, Any]]) -> None:
    """@log_node without arguments names the node after the function."""

    @log_node
    def zavhoz(state: dict[str, Any]) -> dict[str, Any]:
        return {}

    zavhoz({})
    assert ["zavhoz", "zavhoz"] == [e["node"] for e in node_events(logs)]
    assert "zavhoz" == zavhoz.__name__


def test_raising_node_logs_node_failed_and_reraises_unchanged(
    logs: list[dict[str, Any]],
) -> None:
    """An exception is logged as node_failed with the error and re-raised as the same object."""
    error = TimeoutError("upstream timed out after 30s")

    @log_node("devops")
    def devops(state: dict[str, Any]) -> dict[str, Any]:
        raise error

    with pytest.raises(TimeoutError) as raised:
        devops({})
    assert error is raised.value
    failed = node_events(logs)[-1]
    assert ("node_failed", "error", "error", "devops") == (
        failed["event"],
        failed["level"],
        failed["status"],
        failed["node"],
    )
    assert ("TimeoutError", "upstream timed out after 30s") == (
        failed["error"]["type"],
        failed["error"]["message"],
    )
    assert failed["error"]["stack"]
    assert isinstance(failed["duration_ms"], float)


async def test_raising_async_node_reraises_and_restores_context(
    logs: list[dict[str, Any]],
) -> None:
    """An async node that raises leaves the caller's context exactly as it was."""

    @log_node("product_owner")
    async def product_owner(state: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("bad story")

    with context.bound(request_id="req-7", trace_id=TRACE_ID):
        before = dict(context.get_context())
        with pytest.raises(ValueError, match="bad story"):
            await product_owner({})
        after = dict(context.get_context())
    assert before == after
    assert [("node_start", "req-7"), ("node_failed", "req-7")] == [
        (e["event"], e["request_id"]) for e in node_events(logs)
    ]


def test_node_name_is_bound_inside_and_caller_context_restored(
    logs: list[dict[str, Any]],
) -> None:
    """Logs inside the node carry `node`; afterwards the caller's ids are still bound (the
    decorator restores, it never clears) and `node` is gone."""
    app_log = get_logger("app.nodes")

    @log_node("developer")
    def developer(state: dict[str, Any]) -> dict[str, Any]:
        app_log.info("repo_cloned", files=12)
        return {}

    with context.bound(request_id="req-1", trace_id=TRACE_ID):
        developer({"thread_id": "th-5"})
        after = dict(context.get_context())
    assert {"request_id": "req-1", "trace_id": TRACE_ID} == after
    inner = next(e for e in logs if e["event"] == "repo_cloned")
    assert ("developer", "th-5", "req-1", TRACE_ID) == (
        inner["node"],
        inner["thread_id"],
        inner["request_id"],
        inner["trace_id"],
    )
    assert {} == dict(context.get_context())


def test_big_state_is_summarised(logs: list[dict[str, Any]]) -> None:
    """A 10 000-item list and a 1 MB string become sizes; the events stay under 1 KB."""

    @log_node("reader")
    def reader(state: dict[str, Any]) -> dict[str, Any]:
        return {"blob": state["blob"]}

    reader({"docs": list(range(10_000)), "blob": "z" * 1_048_576})
    events = node_events(logs)
    assert [True, True] == [len(orjson.dumps(e)) < 1024 for e in events]
    assert {"docs": "list(len=10000, items=int)", "blob": "str(len=1048576)"} == events[0][
        "input_summary"
    ]["fields"]


def test_logged_inputs_are_redacted(logs: list[dict[str, Any]]) -> None:
    """With log_inputs=True the raw state is logged with its secrets scrubbed."""

    @log_node("login", log_inputs=True)
    def login(state: dict[str, Any]) -> dict[str, Any]:
        return {}

    login({"user": "ann", "password": "s3cr3t-pass-word", "mail": "ann@example.org"})
    start = node_events(logs)[0]
    serialised = orjson.dumps(start).decode()
    assert "s3cr3t-pass-word" not in serialised
    assert "ann@example.org" not in serialised
    assert ("ann", "[REDACTED]") == (start["input"]["user"], start["input"]["password"])


def test_decorated_nodes_in_a_real_graph_get_thread_and_step(logs: list[dict[str, Any]]) -> None:
    """Inside a StateGraph a node that takes `config` still receives it, and its events carry
    the thread_id and step LangGraph passed."""

    class State(TypedDict):
        value: int

    @log_node("double")
    def double(state: State, config: RunnableConfig) -> dict[str, Any]:
        assert "thread-x" == config["configurable"]["thread_id"]
        return {"value": state["value"] * 2}

    @log_node("inc")
    async def inc(state: State) -> dict[str, Any]:
        return {"value": state["value"] + 1}

    builder = StateGraph(State)
    builder.add_node("double", double)
    builder.add_node("inc", inc)
    builder.add_edge(START, "double")
    builder.add_edge("double", "inc")
    builder.add_edge("inc", END)
    result = asyncio.run(
        builder.compile().ainvoke({"value": 5}, config={"configurable": {"thread_id": "thread-x"}})
    )
    assert {"value": 11} == result
    events = node_events(logs)
    assert [
        ("node_start", "double", "thread-x", 1),
        ("node_complete", "double", "thread-x", 1),
        ("node_start", "inc", None, None),
        ("node_complete", "inc", None, None),
    ] == [(e["event"], e["node"], e.get("thread_id"), e.get("step")) for e in events]


def test_non_string_name_is_rejected() -> None:
    """log_node(42) fails at decoration time with a message saying what it takes."""
    with pytest.raises(TypeError, match="node name"):
        log_node(42)  # type: ignore[call-overload]
