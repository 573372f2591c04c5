"""LangGraphCallbackHandler against real compiled LangGraph graphs and LangChain fake models."""

from __future__ import annotations

import io
import operator
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict

import orjson
import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt

from logbeacon import context
from logbeacon.integrations.langgraph import LangGraphCallbackHandler
from logbeacon.sdk import configure, internal_errors, reset
from logbeacon.testing import capture_logs

LOGGER = "logbeacon.integrations.langgraph"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
# Fields every event has whose values are not deterministic.
VOLATILE = ("timestamp", "event_id", "duration_ms", "run_id")


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every event emitted during the test (SDK configured quietly at info, reset afterwards)."""
    configure(service="app", level="info", format="json", stream=io.StringIO())
    with capture_logs() as events:
        yield events
    reset()


def lg(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The handler's events; fails if LangChain reported an error inside a callback."""
    callback_errors = [e for e in events if e.get("logger") == "langchain_core.callbacks.manager"]
    assert [] == callback_errors
    return [e for e in events if e.get("logger") == LOGGER]


def shape(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    """(event, node, status) per handler event: the sequence the tests pin."""
    return [(e["event"], e.get("node"), e.get("status")) for e in lg(events)]


def stable(event: dict[str, Any]) -> dict[str, Any]:
    """An event without the fields that differ between runs."""
    return {k: v for k, v in event.items() if k not in VOLATILE}


def config(handler: LangGraphCallbackHandler, thread_id: str = "t1", **extra: Any) -> Any:
    """An invocation config carrying the handler and a thread id."""
    return {"callbacks": [handler], "configurable": {"thread_id": thread_id}, **extra}


# --------------------------------------------------------------------------- graphs


class Counter(TypedDict):
    items: Annotated[list[str], operator.add]
    count: int


def add_a(state: Counter) -> dict[str, Any]:
    return {"items": ["a"], "count": state["count"] + 1}


def add_b(state: Counter) -> dict[str, Any]:
    return {"items": ["b"], "count": state["count"] + 1}


async def add_a_async(state: Counter) -> dict[str, Any]:
    return {"items": ["a"], "count": state["count"] + 1}


async def add_b_async(state: Counter) -> dict[str, Any]:
    return {"items": ["b"], "count": state["count"] + 1}


def linear(first: Any = add_a, second: Any = add_b) -> CompiledStateGraph[Any, Any, Any, Any]:
    """START → a → b → END."""
    builder = StateGraph(Counter)
    builder.add_node("a", first)
    builder.add_node("b", second)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    return builder.compile()


LINEAR_SHAPE = [
    ("graph_start", None, "running"),
    ("node_start", "a", "running"),
    ("node_complete", "a", "success"),
    ("node_start", "b", "running"),
    ("node_complete", "b", "success"),
    ("graph_complete", None, "success"),
]


class Messages(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class NamedFakeModel(FakeMessagesListChatModel):
    """A fake chat model with a model name (what real providers report) and bind_tools."""

    model: str = "fake-gpt-1"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@tool
def broken_lookup(city: str) -> str:
    """A tool that always fails."""
    raise RuntimeError(f"lookup service down for {city}")


def tool_agent(responses: list[BaseMessage], tools: list[Any]) -> Any:
    """agent ⇄ tools with `tools_condition` as the router: the classic tool-calling loop."""
    model = NamedFakeModel(responses=responses).bind_tools(tools)

    def agent(state: Messages) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(Messages)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools, handle_tool_errors=True))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


def weather_call(tool_name: str = "get_weather") -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": tool_name, "args": {"city": "Paris"}, "id": "call-1"}],
        usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
    )


FINAL_ANSWER = AIMessage(
    content="It is sunny in Paris.",
    usage_metadata={"input_tokens": 20, "output_tokens": 7, "total_tokens": 27},
)


# --------------------------------------------------------------------------- basic runs


def test_sync_invoke_logs_graph_and_node_events_in_order(logs: list[dict[str, Any]]) -> None:
    """A sync invoke logs graph_start, node_start/complete per node in order, graph_complete."""
    run_id = uuid.uuid4()
    handler = LangGraphCallbackHandler()
    result = linear().invoke({"items": [], "count": 0}, config=config(handler, run_id=run_id))
    assert {"items": ["a", "b"], "count": 2} == result
    events = lg(logs)
    assert LINEAR_SHAPE == shape(logs)
    assert {str(run_id)} == {e["run_id"] for e in events}
    assert {"t1"} == {e["thread_id"] for e in events}
    assert {"langgraph"} == {e["service"] for e in events}
    assert {"info"} == {e["level"] for e in events}
    assert [1, 1, 2, 2] == [e["step"] for e in events if e["event"].startswith("node_")]
    ends = [e for e in events if e["event"].endswith("_complete")]
    assert [True] * 3 == [isinstance(e["duration_ms"], float) for e in ends]
    assert [] == [e for e in events if e["event"].endswith("_start") and "duration_ms" in e]
    assert 0 == handler.tracked_runs()


def test_node_events_carry_exactly_the_documented_fields(logs: list[dict[str, Any]]) -> None:
    """node_start and node_complete carry node, step, graph, status and state summaries."""
    linear().invoke({"items": [], "count": 0}, config=config(LangGraphCallbackHandler()))
    events = lg(logs)
    base = {
        "level": "info",
        "service": "langgraph",
        "logger": LOGGER,
        "environment": "dev",
        "thread_id": "t1",
        "graph": "LangGraph",
    }
    assert {
        **base,
        "event": "node_start",
        "node": "a",
        "step": 1,
        "status": "running",
        "input_summary": {
            "type": "dict",
            "size": 2,
            "fields": {"items": "list(len=0)", "count": "int"},
        },
    } == stable(events[1])
    assert {
        **base,
        "event": "node_complete",
        "node": "a",
        "step": 1,
        "status": "success",
        "output_summary": {
            "type": "dict",
            "size": 2,
            "fields": {"items": "list(len=1, items=str)", "count": "int"},
        },
    } == stable(events[2])
    assert {
        **base,
        "event": "graph_complete",
        "status": "success",
        "output_summary": {
            "type": "dict",
            "size": 2,
            "fields": {"items": "list(len=2, items=str)", "count": "int"},
        },
    } == stable(events[-1])


async def test_async_invoke_logs_the_same_sequence(logs: list[dict[str, Any]]) -> None:
    """An async graph invoked with ainvoke logs the same events as the sync one."""
    graph = linear(add_a_async, add_b_async)
    result = await graph.ainvoke(
        {"items": [], "count": 0}, config=config(LangGraphCallbackHandler())
    )
    assert {"items": ["a", "b"], "count": 2} == result
    assert LINEAR_SHAPE == shape(logs)
    assert 1 == len({e["run_id"] for e in lg(logs)})


def test_stream_logs_the_same_sequence(logs: list[dict[str, Any]]) -> None:
    """graph.stream logs the same events as invoke, one run_id for the whole stream."""
    chunks = list(
        linear().stream({"items": [], "count": 0}, config=config(LangGraphCallbackHandler()))
    )
    assert [{"a": {"items": ["a"], "count": 1}}, {"b": {"items": ["b"], "count": 2}}] == chunks
    assert LINEAR_SHAPE == shape(logs)
    assert 1 == len({e["run_id"] for e in lg(logs)})


async def test_astream_logs_the_same_sequence(logs: list[dict[str, Any]]) -> None:
    """graph.astream with a sync and an async node logs the same events as invoke."""
    graph = linear(add_a, add_b_async)
    handler = LangGraphCallbackHandler()
    chunks = [c async for c in graph.astream({"items": [], "count": 0}, config=config(handler))]
    assert 2 == len(chunks)
    assert LINEAR_SHAPE == shape(logs)
    assert 1 == len({e["run_id"] for e in lg(logs)})


async def test_astream_closed_early_logs_a_cancelled_run(logs: list[dict[str, Any]]) -> None:
    """A stream the consumer closes early ends as graph_failed (warn, reason cancelled)."""
    handler = LangGraphCallbackHandler()
    stream = linear().astream({"items": [], "count": 0}, config=config(handler))
    async for _chunk in stream:
        break
    await stream.aclose()
    events = lg(logs)
    assert [
        ("graph_start", None, "running"),
        ("node_start", "a", "running"),
        ("node_complete", "a", "success"),
        ("graph_failed", None, "error"),
    ] == shape(logs)
    assert ("warn", "cancelled", "GeneratorExit") == (
        events[-1]["level"],
        events[-1]["reason"],
        events[-1]["error"]["type"],
    )
    assert 0 == handler.tracked_runs()


# --------------------------------------------------------------------------- failures


def test_failing_node_logs_node_failed_and_graph_failed(logs: list[dict[str, Any]]) -> None:
    """A raising node gives node_failed and graph_failed with the error; the same exception
    object propagates to the caller."""
    error = ValueError("boom: quota exceeded for tenant 7")

    def explode(state: Counter) -> dict[str, Any]:
        raise error

    handler = LangGraphCallbackHandler()
    with pytest.raises(ValueError) as raised:
        linear(add_a, explode).invoke({"items": [], "count": 0}, config=config(handler))
    assert error is raised.value
    events = lg(logs)
    assert [
        ("graph_start", None, "running"),
        ("node_start", "a", "running"),
        ("node_complete", "a", "success"),
        ("node_start", "b", "running"),
        ("node_failed", "b", "error"),
        ("graph_failed", None, "error"),
    ] == shape(logs)
    for failed in events[-2:]:
        assert "error" == failed["level"]
        assert ("ValueError", "boom: quota exceeded for tenant 7") == (
            failed["error"]["type"],
            failed["error"]["message"],
        )
        assert failed["error"]["stack"]
        assert isinstance(failed["duration_ms"], float)
    assert 2 == events[-2]["step"]
    assert 0 == handler.tracked_runs()


def test_handler_errors_never_break_the_graph(
    logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception inside the handler is counted by the SDK guard; the graph still returns."""
    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "0")

    def broken_emit(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("handler bug")

    handler = LangGraphCallbackHandler()
    monkeypatch.setattr(handler, "_emit", broken_emit)
    result = linear().invoke({"items": [], "count": 0}, config=config(handler))
    assert {"items": ["a", "b"], "count": 2} == result
    counts = internal_errors()
    assert 3 == counts["langgraph.on_chain_start:RuntimeError"]
    assert 3 == counts["langgraph.on_chain_end:RuntimeError"]
    assert [] == lg(logs)


def test_unsummarisable_state_still_logs(logs: list[dict[str, Any]]) -> None:
    """A state object that cannot describe itself is summarised as unavailable."""

    class Hostile(dict[str, Any]):
        def __len__(self) -> int:
            raise RuntimeError("no len for you")

    chain = RunnableLambda(lambda state: "ok")
    assert "ok" == chain.invoke(Hostile(a=1), config={"callbacks": [LangGraphCallbackHandler()]})
    start = lg(logs)[0]
    assert {"type": "Hostile", "unavailable": True} == start["input_summary"]


# --------------------------------------------------------------------------- hidden plumbing


def branching(handler_graph_name: str = "LangGraph") -> CompiledStateGraph[Any, Any, Any, Any]:
    """START → a → (route) → b | END."""

    def route(state: Counter) -> str:
        return "b" if state["count"] > 0 else END

    builder = StateGraph(Counter)
    builder.add_node("a", add_a)
    builder.add_node("b", add_b)
    builder.add_edge(START, "a")
    builder.add_conditional_edges("a", route, ["b", END])
    builder.add_edge("b", END)
    return builder.compile()


def test_conditional_edge_router_is_hidden(logs: list[dict[str, Any]]) -> None:
    """The router of a conditional edge runs inside node a but logs nothing by default."""
    branching().invoke({"items": [], "count": 0}, config=config(LangGraphCallbackHandler()))
    assert LINEAR_SHAPE == shape(logs)
    assert [] == [e for e in lg(logs) if e.get("name") == "route"]


def test_show_internal_logs_the_router_as_a_chain_inside_its_node(
    logs: list[dict[str, Any]],
) -> None:
    """With show_internal=True the router appears as chain_start/chain_complete in node a."""
    handler = LangGraphCallbackHandler(show_internal=True)
    branching().invoke({"items": [], "count": 0}, config=config(handler))
    assert [
        ("graph_start", None, "running"),
        ("node_start", "a", "running"),
        ("chain_start", "a", "running"),
        ("chain_complete", "a", "success"),
        ("node_complete", "a", "success"),
        ("node_start", "b", "running"),
        ("node_complete", "b", "success"),
        ("graph_complete", None, "success"),
    ] == shape(logs)
    assert ["route", "route"] == [e["name"] for e in lg(logs) if e["event"].startswith("chain_")]


def test_inner_runnable_named_like_its_node_is_not_a_node(logs: list[dict[str, Any]]) -> None:
    """Only the task run tagged graph:step:N is the node: an inner runnable that carries the
    node's name (and inherits its langgraph_node metadata) is plumbing."""
    inner = RunnableLambda(lambda count: count + 1, name="a")

    def node_a(state: Counter) -> dict[str, Any]:
        return {"items": ["a"], "count": inner.invoke(state["count"])}

    linear(node_a).invoke({"items": [], "count": 0}, config=config(LangGraphCallbackHandler()))
    assert LINEAR_SHAPE == shape(logs)


def test_parallel_branches_share_the_run_and_step(logs: list[dict[str, Any]]) -> None:
    """Fan-out nodes run in parallel threads; both log step 1 under the one run_id."""
    builder = StateGraph(Counter)
    builder.add_node("a", lambda state: {"items": ["a"]})
    builder.add_node("b", lambda state: {"items": ["b"]})
    builder.add_node("join", lambda state: {"count": len(state["items"])})
    builder.add_edge(START, "a")
    builder.add_edge(START, "b")
    builder.add_edge(["a", "b"], "join")
    builder.add_edge("join", END)
    handler = LangGraphCallbackHandler()
    result = builder.compile().invoke({"items": [], "count": 0}, config=config(handler))
    assert 2 == result["count"]
    events = lg(logs)
    steps = {(e["node"], e["step"]) for e in events if e["event"] == "node_complete"}
    assert {("a", 1), ("b", 1), ("join", 2)} == steps
    assert 1 == len({e["run_id"] for e in events})
    assert ("graph_start", "graph_complete") == (events[0]["event"], events[-1]["event"])
    assert 0 == handler.tracked_runs()


def test_plain_langchain_runnable_logs_its_root_as_the_graph(logs: list[dict[str, Any]]) -> None:
    """Any LangChain runnable works: its root run logs graph_* and its model calls llm_*."""
    model = NamedFakeModel(responses=[FINAL_ANSWER])
    chain = RunnableLambda(lambda text: [HumanMessage(text)]) | model
    chain.invoke("weather?", config={"callbacks": [LangGraphCallbackHandler()]})
    events = lg(logs)
    assert [
        ("graph_start", "RunnableSequence"),
        ("llm_start", "RunnableSequence"),
        ("llm_complete", "RunnableSequence"),
        ("graph_complete", "RunnableSequence"),
    ] == [(e["event"], events[0]["graph"]) for e in events]
    assert [None] * 4 == [e.get("node") for e in events]


# --------------------------------------------------------------------------- subgraphs


def subgraph() -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(Counter)
    builder.add_node("inner", add_a)
    builder.add_edge(START, "inner")
    builder.add_edge("inner", END)
    return builder.compile(name="child")


def test_subgraph_nodes_link_to_their_parent_node(logs: list[dict[str, Any]]) -> None:
    """A compiled subgraph used as a node, and one invoked inside a node function, both log
    their nodes under the parent invocation's run_id with parent_node and graph set."""
    child = subgraph()

    def call_child(state: Counter) -> dict[str, Any]:
        return {"count": child.invoke({"items": [], "count": state["count"]})["count"]}

    builder = StateGraph(Counter)
    builder.add_node("embedded", child)
    builder.add_node("caller", call_child)
    builder.add_edge(START, "embedded")
    builder.add_edge("embedded", "caller")
    builder.add_edge("caller", END)
    run_id = uuid.uuid4()
    builder.compile(name="parent").invoke(
        {"items": [], "count": 0}, config=config(LangGraphCallbackHandler(), run_id=run_id)
    )
    events = lg(logs)
    assert [
        ("graph_start", None, None, "parent"),
        ("node_start", "embedded", None, "parent"),
        ("node_start", "inner", "embedded", "child"),
        ("node_complete", "inner", "embedded", "child"),
        ("node_complete", "embedded", None, "parent"),
        ("node_start", "caller", None, "parent"),
        ("node_start", "inner", "caller", "child"),
        ("node_complete", "inner", "caller", "child"),
        ("node_complete", "caller", None, "parent"),
        ("graph_complete", None, None, "parent"),
    ] == [(e["event"], e.get("node"), e.get("parent_node"), e["graph"]) for e in events]
    assert {str(run_id)} == {e["run_id"] for e in events}
    assert {"t1"} == {e["thread_id"] for e in events}


def test_failing_subgraph_node_fails_its_parent_node_too(logs: list[dict[str, Any]]) -> None:
    """An error inside a subgraph logs node_failed for the inner node, the enclosing node and
    graph_failed for the run — and nothing for the subgraph's own plumbing run."""

    def explode(state: Counter) -> dict[str, Any]:
        raise KeyError("missing_field")

    inner = StateGraph(Counter)
    inner.add_node("inner", explode)
    inner.add_edge(START, "inner")
    inner.add_edge("inner", END)
    builder = StateGraph(Counter)
    builder.add_node("embedded", inner.compile())
    builder.add_edge(START, "embedded")
    builder.add_edge("embedded", END)
    with pytest.raises(KeyError):
        builder.compile().invoke(
            {"items": [], "count": 0}, config=config(LangGraphCallbackHandler())
        )
    assert [
        ("graph_start", None, "running"),
        ("node_start", "embedded", "running"),
        ("node_start", "inner", "running"),
        ("node_failed", "inner", "error"),
        ("node_failed", "embedded", "error"),
        ("graph_failed", None, "error"),
    ] == shape(logs)
    assert {"KeyError"} == {e["error"]["type"] for e in lg(logs) if "error" in e}


# --------------------------------------------------------------------------- tools and LLMs


def test_tool_calling_agent_logs_llm_and_tool_events(logs: list[dict[str, Any]]) -> None:
    """The agent loop logs llm_* (model, usage, tool calls) in the agent node and tool_* in
    the tools node, all under one run_id and thread_id."""
    graph = tool_agent([weather_call(), FINAL_ANSWER], [get_weather])
    result = graph.invoke(
        {"messages": [HumanMessage("Weather in Paris?")]},
        config=config(LangGraphCallbackHandler(), thread_id="chat-9"),
    )
    assert "It is sunny in Paris." == result["messages"][-1].content
    events = lg(logs)
    assert [
        ("graph_start", None, "running"),
        ("node_start", "agent", "running"),
        ("llm_start", "agent", "running"),
        ("llm_complete", "agent", "success"),
        ("node_complete", "agent", "success"),
        ("node_start", "tools", "running"),
        ("tool_start", "tools", "running"),
        ("tool_complete", "tools", "success"),
        ("node_complete", "tools", "success"),
        ("node_start", "agent", "running"),
        ("llm_start", "agent", "running"),
        ("llm_complete", "agent", "success"),
        ("node_complete", "agent", "success"),
        ("graph_complete", None, "success"),
    ] == shape(logs)
    assert 1 == len({e["run_id"] for e in events})
    assert {"chat-9"} == {e["thread_id"] for e in events}
    llm = [e for e in events if e["event"] == "llm_complete"]
    assert [
        (
            "fake-gpt-1",
            1,
            {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            ["get_weather"],
        ),
        ("fake-gpt-1", 3, {"input_tokens": 20, "output_tokens": 7, "total_tokens": 27}, None),
    ] == [(e["model"], e["step"], e["usage"], e.get("tool_calls")) for e in llm]
    tool_events = [e for e in events if e["event"].startswith("tool_")]
    assert [("get_weather", "call-1", 2)] * 2 == [
        (e["tool"], e["tool_call_id"], e["step"]) for e in tool_events
    ]
    assert {"type": "dict", "size": 1, "fields": {"city": "str(len=5)"}} == tool_events[0][
        "input_summary"
    ]
    assert isinstance(tool_events[1]["duration_ms"], float)


def test_failing_tool_logs_tool_failed_while_the_node_recovers(
    logs: list[dict[str, Any]],
) -> None:
    """A tool that raises logs tool_failed with the error; ToolNode turns it into a message,
    so the node and the run still succeed."""
    graph = tool_agent([weather_call("broken_lookup"), FINAL_ANSWER], [broken_lookup])
    graph.invoke({"messages": [HumanMessage("?")]}, config=config(LangGraphCallbackHandler()))
    events = lg(logs)
    failed = [e for e in events if e["event"] == "tool_failed"]
    assert [
        ("broken_lookup", "tools", "error", "RuntimeError", "lookup service down for Paris")
    ] == [
        (e["tool"], e["node"], e["status"], e["error"]["type"], e["error"]["message"])
        for e in failed
    ]
    assert ("graph_complete", "success") == (events[-1]["event"], events[-1]["status"])


def test_llm_usage_from_provider_token_usage(logs: list[dict[str, Any]]) -> None:
    """Usage reported OpenAI-style in llm_output["token_usage"] is normalised."""

    class ProviderStyleModel(FakeMessagesListChatModel):
        def _generate(self, messages: Any, stop: Any = None, **kwargs: Any) -> ChatResult:
            return ChatResult(
                generations=[ChatGeneration(message=AIMessage(content="hi"))],
                llm_output={
                    "token_usage": {
                        "prompt_tokens": 7,
                        "completion_tokens": 2,
                        "total_tokens": 9,
                    }
                },
            )

    model = ProviderStyleModel(responses=[])
    model.invoke("hello", config={"callbacks": [LangGraphCallbackHandler()]})
    events = lg(logs)
    assert [("llm_start", "running"), ("llm_complete", "success")] == [
        (e["event"], e["status"]) for e in events
    ]
    assert "ProviderStyleModel" == events[1]["model"]
    assert {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9} == events[1]["usage"]


def test_failing_llm_logs_llm_failed_node_failed_and_graph_failed(
    logs: list[dict[str, Any]],
) -> None:
    """A model call that raises logs llm_failed, then the node and the run fail."""

    class RateLimited(Exception):
        pass

    class FailingModel(NamedFakeModel):
        def _generate(self, messages: Any, stop: Any = None, **kwargs: Any) -> ChatResult:
            raise RateLimited("429 Too Many Requests")

    model = FailingModel(responses=[])

    def agent(state: Messages) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(Messages)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    with pytest.raises(RateLimited):
        builder.compile().invoke(
            {"messages": [HumanMessage("?")]}, config=config(LangGraphCallbackHandler())
        )
    assert [
        ("graph_start", None, "running"),
        ("node_start", "agent", "running"),
        ("llm_start", "agent", "running"),
        ("llm_failed", "agent", "error"),
        ("node_failed", "agent", "error"),
        ("graph_failed", None, "error"),
    ] == shape(logs)
    llm_failed = lg(logs)[3]
    assert ("fake-gpt-1", "RateLimited", "429 Too Many Requests") == (
        llm_failed["model"],
        llm_failed["error"]["type"],
        llm_failed["error"]["message"],
    )


# --------------------------------------------------------------------------- interrupts


def test_interrupt_is_not_a_failure(logs: list[dict[str, Any]]) -> None:
    """A node paused by interrupt() logs node_complete with status skipped (reason interrupt);
    the resumed run logs the node again as a success."""

    class Answer(TypedDict):
        answer: str

    def ask(state: Answer) -> dict[str, Any]:
        return {"answer": interrupt("which city?")}

    builder = StateGraph(Answer)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    graph = builder.compile(checkpointer=InMemorySaver())
    handler = LangGraphCallbackHandler()
    graph.invoke({"answer": ""}, config=config(handler, thread_id="t-int"))
    graph.invoke(Command(resume="Paris"), config=config(handler, thread_id="t-int"))
    events = lg(logs)
    assert [
        ("graph_start", None, "running"),
        ("node_start", "ask", "running"),
        ("node_complete", "ask", "skipped"),
        ("graph_complete", None, "success"),
        ("graph_start", None, "running"),
        ("node_start", "ask", "running"),
        ("node_complete", "ask", "success"),
        ("graph_complete", None, "success"),
    ] == shape(logs)
    assert "interrupt" == events[2]["reason"]
    assert 2 == len({e["run_id"] for e in events})
    assert [] == [e for e in events if e["level"] != "info"]


def test_command_to_parent_graph_is_not_a_failure(logs: list[dict[str, Any]]) -> None:
    """A subgraph node handing over with Command(graph=PARENT) completes (reason command)."""

    def hand_over(state: Counter) -> Command[Any]:
        return Command(graph=Command.PARENT, goto="after", update={"count": 5})

    inner = StateGraph(Counter)
    inner.add_node("hand_over", hand_over)
    inner.add_edge(START, "hand_over")
    builder = StateGraph(Counter)
    builder.add_node("embedded", inner.compile(), destinations=("after",))
    builder.add_node("after", add_b)
    builder.add_edge(START, "embedded")
    builder.add_edge("after", END)
    result = builder.compile().invoke(
        {"items": [], "count": 0}, config=config(LangGraphCallbackHandler())
    )
    assert 6 == result["count"]
    assert [
        ("graph_start", None, "running", None),
        ("node_start", "embedded", "running", None),
        ("node_start", "hand_over", "running", None),
        ("node_complete", "hand_over", "success", "command"),
        ("node_complete", "embedded", "success", "command"),
        ("node_start", "after", "running", None),
        ("node_complete", "after", "success", None),
        ("graph_complete", None, "success", None),
    ] == [(e["event"], e.get("node"), e["status"], e.get("reason")) for e in lg(logs)]


# --------------------------------------------------------------------------- state size, content


class Big(TypedDict):
    docs: list[str]
    blob: str
    count: int


def big_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(Big)
    builder.add_node("grow", lambda state: {"docs": [*state["docs"], "new"], "count": 1})
    builder.add_edge(START, "grow")
    builder.add_edge("grow", END)
    return builder.compile()


BIG_STATE = {"docs": [f"document {i}" for i in range(10_000)], "blob": "y" * 1_048_576, "count": 0}


def test_big_state_is_summarised_into_small_events(logs: list[dict[str, Any]]) -> None:
    """A 10 000-item list and a 1 MB string become sizes in a summary; events stay < 1 KB."""
    big_graph().invoke(BIG_STATE, config=config(LangGraphCallbackHandler()))
    events = lg(logs)
    assert 4 == len(events)
    assert [True] * 4 == [len(orjson.dumps(e)) < 1024 for e in events]
    assert {
        "docs": "list(len=10000, items=str)",
        "blob": "str(len=1048576)",
        "count": "int",
    } == events[1]["input_summary"]["fields"]
    assert {"docs": "list(len=10001, items=str)", "count": "int"} == events[2]["output_summary"][
        "fields"
    ]


def test_raw_content_of_big_state_is_size_limited(logs: list[dict[str, Any]]) -> None:
    """With log_inputs/log_outputs the raw content is cut: events stay < 8 KB."""
    handler = LangGraphCallbackHandler(log_inputs=True, log_outputs=True)
    big_graph().invoke(BIG_STATE, config=config(handler))
    events = lg(logs)
    assert [True] * 4 == [len(orjson.dumps(e)) < 8192 for e in events]
    raw = events[1]["input"]
    assert ["document 0", "document 1"] == raw["docs"][:2]
    assert raw["docs"][-1].startswith("…+")
    assert raw["blob"].startswith("yyyy")
    assert raw["blob"].endswith(" chars]")


def test_many_keys_are_truncated_in_summaries(logs: list[dict[str, Any]]) -> None:
    """A state with more keys than max_summary_items lists only that many and says so."""
    chain = RunnableLambda(lambda state: None)
    state = {f"key_{i:03d}": i for i in range(500)}
    chain.invoke(state, config={"callbacks": [LangGraphCallbackHandler(max_summary_items=5)]})
    summary = lg(logs)[0]["input_summary"]
    assert (500, True, ["key_000", "key_001", "key_002", "key_003", "key_004"]) == (
        summary["size"],
        summary["truncated"],
        list(summary["fields"]),
    )


def test_secrets_in_logged_inputs_are_redacted(logs: list[dict[str, Any]]) -> None:
    """With log_inputs=True secrets in the state never reach an event; the rest does."""
    secret_key = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"

    class Secrets(TypedDict):
        query: str
        api_key: str
        account: dict[str, str]

    builder = StateGraph(Secrets)
    builder.add_node("use", lambda state: {"query": state["query"] + " done"})
    builder.add_edge(START, "use")
    builder.add_edge("use", END)
    handler = LangGraphCallbackHandler(log_inputs=True, log_outputs=True)
    state = {
        "query": f"mail bob@example.com, key {secret_key}",
        "api_key": secret_key,
        "account": {"user": "bob", "password": "hunter2-correct-horse"},
    }
    builder.compile().invoke(state, config=config(handler))
    events = lg(logs)
    serialised = orjson.dumps(events).decode()
    for secret in ("bob@example.com", secret_key, "hunter2-correct-horse"):
        assert secret not in serialised
    node_input = events[1]["input"]
    assert "[REDACTED]" == node_input["api_key"]
    assert {"user": "bob", "password": "[REDACTED]"} == node_input["account"]
    assert node_input["query"].startswith("mail [REDACTED")
    assert events[2]["output"]["query"].endswith(" done")


def test_secret_straddling_the_cut_is_redacted_before_cutting(logs: list[dict[str, Any]]) -> None:
    """A secret that crosses the 1000-character string cut is scrubbed before the cut, so not
    even its first characters survive."""
    secret = "sk-proj-" + "Zq9Xw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0Ed"
    text = "x" * 990 + " " + secret
    chain = RunnableLambda(lambda state: None)
    chain.invoke({"text": text}, config={"callbacks": [LangGraphCallbackHandler(log_inputs=True)]})
    logged = lg(logs)[0]["input"]["text"]
    assert logged.startswith("x" * 990 + " [REDACTED")
    assert secret[:9] not in orjson.dumps(lg(logs)).decode()


def test_inputs_are_not_logged_by_default(logs: list[dict[str, Any]]) -> None:
    """Without log_inputs/log_outputs events carry summaries only, never raw values."""
    linear().invoke(
        {"items": ["private note"], "count": 0}, config=config(LangGraphCallbackHandler())
    )
    serialised = orjson.dumps(lg(logs)).decode()
    assert "private note" not in serialised
    assert [] == [e for e in lg(logs) if "input" in e or "output" in e]


# --------------------------------------------------------------------------- request context


def test_sync_run_inside_a_request_carries_its_ids(logs: list[dict[str, Any]]) -> None:
    """Node events of a graph run inside a bound request carry its request_id and trace_id,
    even after a node rebinds the ambient request_id."""

    def rebinding_a(state: Counter) -> dict[str, Any]:
        context.bind(request_id="rebound-by-node")
        return add_a(state)

    with context.bound(request_id="req-123", trace_id=TRACE_ID):
        linear(rebinding_a).invoke(
            {"items": [], "count": 0}, config=config(LangGraphCallbackHandler())
        )
        outside = dict(context.get_context())
    events = lg(logs)
    assert LINEAR_SHAPE == shape(logs)
    assert [("req-123", TRACE_ID)] * 6 == [(e["request_id"], e["trace_id"]) for e in events]
    assert "req-123" == outside["request_id"]


async def test_async_run_inside_a_request_carries_its_ids(logs: list[dict[str, Any]]) -> None:
    """The same for ainvoke, with one sync node run on an executor thread."""
    with context.bound(request_id="req-async", trace_id=TRACE_ID, session_id="s-1"):
        await linear(add_a, add_b_async).ainvoke(
            {"items": [], "count": 0}, config=config(LangGraphCallbackHandler())
        )
    events = lg(logs)
    assert LINEAR_SHAPE == shape(logs)
    assert [("req-async", TRACE_ID, "s-1")] * 6 == [
        (e["request_id"], e["trace_id"], e["session_id"]) for e in events
    ]
    assert {} == dict(context.get_context())


def test_callbacks_on_a_bare_worker_thread_keep_the_request_ids(logs: list[dict[str, Any]]) -> None:
    """A model called on a plain worker thread (no copied context) still logs the request's
    ids: they are captured when the invocation starts, not read from the thread."""
    model = NamedFakeModel(responses=[FINAL_ANSWER])

    def agent(state: Messages, config: RunnableConfig) -> dict[str, Any]:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return {"messages": [pool.submit(model.invoke, state["messages"], config).result()]}

    builder = StateGraph(Messages)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    with context.bound(request_id="req-threads", trace_id=TRACE_ID):
        builder.compile().invoke(
            {"messages": [HumanMessage("?")]}, config=config(LangGraphCallbackHandler())
        )
    events = lg(logs)
    assert [
        ("graph_start", None, "running"),
        ("node_start", "agent", "running"),
        ("llm_start", "agent", "running"),
        ("llm_complete", "agent", "success"),
        ("node_complete", "agent", "success"),
        ("graph_complete", None, "success"),
    ] == shape(logs)
    assert [("req-threads", TRACE_ID)] * 6 == [
        (e.get("request_id"), e.get("trace_id")) for e in events
    ]


def test_ambient_run_id_and_node_never_override_the_graphs(logs: list[dict[str, Any]]) -> None:
    """A run_id or node bound around the invocation does not replace the graph's own."""
    run_id = uuid.uuid4()
    with context.bound(run_id="outer-job", node="outer-node"):
        linear().invoke(
            {"items": [], "count": 0}, config=config(LangGraphCallbackHandler(), run_id=run_id)
        )
    events = lg(logs)
    assert {str(run_id)} == {e["run_id"] for e in events}
    assert ["a", "a", "b", "b"] == [e["node"] for e in events if e["event"].startswith("node_")]


# --------------------------------------------------------------------------- bounded state


def test_run_map_is_bounded_when_ends_never_arrive() -> None:
    """Starts without ends evict the oldest runs instead of growing without bound."""
    handler = LangGraphCallbackHandler(max_tracked_runs=5)
    with capture_logs():
        root = uuid.uuid4()
        handler.on_chain_start({}, {}, run_id=root, name="LangGraph")
        for _ in range(20):
            handler.on_chain_start({}, {}, run_id=uuid.uuid4(), parent_run_id=root, name="x")
    reset()
    assert (5, 16) == (handler.tracked_runs(), handler.evicted_runs)


def test_constructor_rejects_non_positive_limits() -> None:
    """Limits below 1 are refused with a message naming them."""
    with pytest.raises(ValueError, match="max_summary_items"):
        LangGraphCallbackHandler(max_summary_items=0)


def test_service_name_is_configurable(logs: list[dict[str, Any]]) -> None:
    """service= sets the service of every event the handler emits."""
    linear().invoke(
        {"items": [], "count": 0}, config=config(LangGraphCallbackHandler(service="agents"))
    )
    assert {"agents"} == {e["service"] for e in lg(logs)}
