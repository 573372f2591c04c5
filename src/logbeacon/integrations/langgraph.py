"""LangGraph / LangChain integration: node, tool and LLM events from LangChain's callbacks.

Use it by passing the handler in the invocation's config::

    from logbeacon.integrations.langgraph import LangGraphCallbackHandler

    handler = LangGraphCallbackHandler()
    graph.invoke(state, config={"callbacks": [handler], "configurable": {"thread_id": "t1"}})

There is no LangGraph-specific callback API: LangGraph runs every node as a LangChain run and
puts `langgraph_node`, `langgraph_step` … into the run's metadata. What this module adds is the
judgement other tracers get wrong:

* **Parentage** comes only from LangChain's `run_id`/`parent_run_id` (a bounded map from run
  to its root invocation and enclosing node), never from ambient context, so concurrent
  invocations in one event loop or thread pool each stay one tree.
* **Node runs** are told apart from the plumbing around them by LangGraph's own marks: a node
  execution is the chain run that LangGraph starts with the non-inherited tag `graph:step:N`
  and names after `metadata["langgraph_node"]`. Everything else — `RunnableSequence`,
  `ChannelWrite…`, routers of conditional edges, `__start__`, hidden-tagged tasks, the inner
  run of a subgraph — is hidden unless `show_internal=True`.
* **State is summarised** (keys, types, sizes), never copied; raw content only on request,
  redacted and size-limited.

Why a synchronous handler with `run_inline = True`: for async runs LangChain would otherwise
hop every callback of a sync handler onto a thread-pool executor (a copied context, extra
latency, callbacks of concurrent runs interleaving across threads). Inline, each callback runs
on the event loop in the invoking task's own context, in the order LangChain issues them. The
work done here is small (a dict lookup and an in-memory log call; shipping is the SDK's
background batcher), so it does not stall the loop. Sync graphs that run nodes in parallel call
the handler from several threads, hence the lock around the run map.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast, overload
from uuid import UUID

from logbeacon.exceptions import IntegrationMissing

try:
    from langchain_core.callbacks import BaseCallbackHandler
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise IntegrationMissing("langchain-core", "langgraph") from exc

from logbeacon import context
from logbeacon.integrations._summary import bounded_content, summarize
from logbeacon.redact import default_redactor
from logbeacon.sdk import get_logger
from logbeacon.sdk._guard import report

__all__ = ["LangGraphCallbackHandler", "log_node"]

_BubbleUp: type[BaseException] | None
_Interrupt: type[BaseException] | None
try:  # LangGraph is optional here: the handler also serves plain LangChain runnables.
    from langgraph.errors import GraphBubbleUp as _BubbleUp
    from langgraph.errors import GraphInterrupt as _Interrupt
except ImportError:  # pragma: no cover - exercised only without langgraph installed
    _BubbleUp = _Interrupt = None


_LOGGER_NAME: Final = "logbeacon.integrations.langgraph"
_STEP_TAG: Final = "graph:step:"
_HIDDEN_TAG: Final = "langsmith:hidden"
_INTERNAL_NODES: Final = frozenset({"__start__", "__end__"})
_CONTENT_CHARS: Final = 4000
_CANCELLED: Final = (asyncio.CancelledError, GeneratorExit)
_MODEL_KEYS: Final = ("model", "model_name", "model_id", "deployment_name")
# Fields this integration sets itself: an ambient value of the same name never overrides them.
_OWN_FIELDS: Final = frozenset(
    {
        "service",
        "run_id",
        "thread_id",
        "node",
        "step",
        "graph",
        "parent_node",
        "status",
        "duration_ms",
        "tool",
        "model",
    }
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True, frozen=True)
class _Root:
    """What every event of one top-level invocation shares."""

    run_id: str
    thread_id: str | None
    ambient: Mapping[str, Any]


@dataclass(slots=True)
class _Run:
    """One LangChain run we have seen start and not yet seen end."""

    kind: str  # graph | node | chain | llm | tool | retriever
    name: str
    root: _Root
    node: str | None  # the node this run is (kind "node") or runs inside
    step: int | None
    started: float
    visible: bool  # an event was emitted at start, so its end is logged too
    extra: dict[str, Any] = field(default_factory=dict)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def _step(metadata: Mapping[str, Any]) -> int | None:
    value = metadata.get("langgraph_step")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class LangGraphCallbackHandler(BaseCallbackHandler):
    """Turns a LangGraph/LangChain invocation into `graph_*`, `node_*`, `tool_*`, `llm_*` events.

    One handler may serve any number of sequential or concurrent invocations; all per-run state
    lives in a bounded map keyed by LangChain run id.
    """

    raise_error = False  # a logging failure must never fail the graph
    run_inline = True  # see the module docstring

    def __init__(
        self,
        *,
        service: str = "langgraph",
        log_inputs: bool = False,
        log_outputs: bool = False,
        show_internal: bool = False,
        max_summary_items: int = 20,
        max_content_chars: int = _CONTENT_CHARS,
        max_tracked_runs: int = 10_000,
    ) -> None:
        if max_summary_items < 1 or max_content_chars < 1 or max_tracked_runs < 1:
            raise ValueError(
                "max_summary_items, max_content_chars and max_tracked_runs must be positive"
            )
        super().__init__()
        self.service = service
        self.log_inputs = log_inputs
        self.log_outputs = log_outputs
        self.show_internal = show_internal
        self.max_summary_items = max_summary_items
        self.max_content_chars = max_content_chars
        self.max_tracked_runs = max_tracked_runs
        self.evicted_runs = 0
        self._runs: OrderedDict[UUID, _Run] = OrderedDict()
        self._lock = threading.Lock()
        self._log = get_logger(_LOGGER_NAME)

    # ------------------------------------------------------------------ which callbacks

    # `ignore_agent` stays False: LangChain gates the tool callbacks on it too.

    @property
    def ignore_retry(self) -> bool:
        """Retries show up as the failed and the next attempt's events."""
        return True

    @property
    def ignore_custom_event(self) -> bool:
        """Custom events belong to the application, which can log them itself."""
        return True

    # ------------------------------------------------------------------ run map

    def _track(self, run_id: UUID, run: _Run) -> None:
        with self._lock:
            self._runs[run_id] = run
            while len(self._runs) > self.max_tracked_runs:
                # Ends that never arrive (a stream abandoned mid-way) must not grow memory.
                self._runs.popitem(last=False)
                self.evicted_runs += 1

    def _parent(self, parent_run_id: UUID | None) -> _Run | None:
        if parent_run_id is None:
            return None
        with self._lock:
            return self._runs.get(parent_run_id)

    def _finish(self, run_id: UUID) -> _Run | None:
        with self._lock:
            run = self._runs.pop(run_id, None)
            if run is not None and run.root.run_id == str(run_id):
                # The invocation is over: runs whose end never came (a stream closed early)
                # are dropped now rather than waiting for eviction.
                stale = [key for key, other in self._runs.items() if other.root is run.root]
                for key in stale:
                    del self._runs[key]
            return run

    def tracked_runs(self) -> int:
        """How many runs are open right now (started, not yet ended)."""
        with self._lock:
            return len(self._runs)

    def _new_root(self, run_id: UUID, metadata: Mapping[str, Any]) -> _Root:
        # The ambient context (request_id, trace_id … bound by the caller) is captured once,
        # here, so callbacks that run elsewhere still carry it; it never decides parentage.
        ambient = {k: v for k, v in context.get_context().items() if k not in _OWN_FIELDS}
        thread_id = metadata.get("thread_id")
        return _Root(
            run_id=str(run_id),
            thread_id=str(thread_id) if thread_id is not None and thread_id != "" else None,
            ambient=ambient,
        )

    def _start(
        self,
        kind: str,
        name: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any],
    ) -> tuple[_Run, _Run | None]:
        """Record a run and return it with its parent (None when it is a root)."""
        parent = self._parent(parent_run_id)
        if parent is None:
            root = self._new_root(run_id, metadata)
            run = _Run(kind, name, root, None, _step(metadata), time.perf_counter(), False)
        else:
            step = parent.step if parent.node is not None else _step(metadata)
            run = _Run(kind, name, parent.root, parent.node, step, time.perf_counter(), False)
        self._track(run_id, run)
        return run, parent

    # ------------------------------------------------------------------ emission

    def _emit(
        self,
        event: str,
        run: _Run,
        fields: dict[str, Any],
        exc: BaseException | None = None,
        level: str = "error",
    ) -> None:
        root = run.root
        payload: dict[str, Any] = dict(root.ambient)
        payload["service"] = self.service
        payload["run_id"] = root.run_id
        if root.thread_id is not None:
            payload["thread_id"] = root.thread_id
        payload.update((k, v) for k, v in fields.items() if v is not None)
        if exc is None:
            self._log.info(event, **payload)
        elif level == "warn":
            self._log.warning(event, exc_info=exc, **payload)
        else:
            self._log.error(event, exc_info=exc, **payload)

    def _failed(self, prefix: str, run: _Run, fields: dict[str, Any], error: BaseException) -> None:
        """`<prefix>_failed` for a failure; control flow and cancellation are told apart."""
        if (reason := _control_flow(error)) is not None:
            self._emit(f"{prefix}_complete", run, fields | _control_fields(reason))
        elif isinstance(error, _CANCELLED):
            # Aborted, not broken: a consumer closed the stream or a task was cancelled
            # (timeout, client gone). The run did not finish, so the status is "error", but
            # at warn level: alerting on error events should not fire for a closed stream.
            fields |= {"status": "error", "reason": "cancelled"}
            self._emit(f"{prefix}_failed", run, fields, exc=error, level="warn")
        else:
            self._emit(f"{prefix}_failed", run, fields | {"status": "error"}, exc=error)

    def _io(self, kind: str, value: object, raw: bool) -> dict[str, Any]:
        return _io_fields(kind, value, raw, self.max_summary_items, self.max_content_chars)

    # ------------------------------------------------------------------ chains (graph, nodes)

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A graph, a node, or plumbing inside a node started."""
        try:
            self._chain_start(
                serialized=serialized,
                inputs=inputs,
                run_id=run_id,
                parent_run_id=parent_run_id,
                tags=tags,
                metadata=metadata,
                kwargs=kwargs,
            )
        except Exception as exc:
            report("langgraph.on_chain_start", exc)

    def _chain_start(
        self,
        *,
        serialized: dict[str, Any] | None,
        inputs: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        meta = metadata or {}
        tags = tags or []
        name = _run_name(serialized, kwargs, "chain")
        run, parent = self._start("chain", name, run_id, parent_run_id, meta)
        if parent is None:
            run.kind = "graph"
            run.visible = True
            fields = {"graph": name, "status": "running"} | self._io(
                "input", inputs, self.log_inputs
            )
            self._emit("graph_start", run, fields)
            return
        if _is_node_run(name, tags, meta) and not (name in _INTERNAL_NODES or _HIDDEN_TAG in tags):
            run.kind = "node"
            run.extra["parent_node"] = parent.node
            run.extra["graph"] = parent.name
            run.node = name
            run.step = _step(meta)
            run.visible = True
            fields = {
                "node": name,
                "step": run.step,
                "graph": parent.name,
                "parent_node": parent.node,
                "status": "running",
            }
            self._emit("node_start", run, fields | self._io("input", inputs, self.log_inputs))
            return
        if self.show_internal:
            run.visible = True
            fields = {"name": name, "node": run.node, "step": run.step, "status": "running"}
            self._emit("chain_start", run, fields)

    def on_chain_end(
        self,
        outputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A graph, node or inner chain returned."""
        try:
            run = self._finish(run_id)
            if run is not None and run.visible:
                self._chain_done(run, outputs, None)
        except Exception as exc:
            report("langgraph.on_chain_end", exc)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A graph, node or inner chain raised (or was interrupted)."""
        try:
            run = self._finish(run_id)
            if run is not None and run.visible:
                self._chain_done(run, None, error)
        except Exception as exc:
            report("langgraph.on_chain_error", exc)

    def _chain_done(self, run: _Run, outputs: Any, error: BaseException | None) -> None:
        fields: dict[str, Any] = {"duration_ms": _ms(run.started)}
        if run.kind == "graph":
            prefix = "graph"
            fields["graph"] = run.name
        elif run.kind == "node":
            prefix = "node"
            fields.update(
                node=run.name,
                step=run.step,
                graph=run.extra["graph"],
                parent_node=run.extra["parent_node"],
            )
        else:
            prefix = "chain"
            fields.update(name=run.name, node=run.node, step=run.step)
        if error is None:
            fields["status"] = "success"
            if prefix != "chain":
                fields |= self._io("output", outputs, self.log_outputs)
            self._emit(f"{prefix}_complete", run, fields)
        else:
            self._failed(prefix, run, fields, error)

    # ------------------------------------------------------------------ LLMs

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model call started."""
        try:
            prompt = messages[0] if len(messages) == 1 else messages
            self._llm_start(
                serialized=serialized,
                prompt=prompt,
                run_id=run_id,
                parent_run_id=parent_run_id,
                metadata=metadata,
                kwargs=kwargs,
            )
        except Exception as exc:
            report("langgraph.on_chat_model_start", exc)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A text-completion model call started."""
        try:
            prompt = prompts[0] if len(prompts) == 1 else prompts
            self._llm_start(
                serialized=serialized,
                prompt=prompt,
                run_id=run_id,
                parent_run_id=parent_run_id,
                metadata=metadata,
                kwargs=kwargs,
            )
        except Exception as exc:
            report("langgraph.on_llm_start", exc)

    def _llm_start(
        self,
        *,
        serialized: dict[str, Any] | None,
        prompt: object,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        meta = metadata or {}
        model = _model_name(serialized, meta, kwargs)
        run, _ = self._start("llm", model, run_id, parent_run_id, meta)
        run.node = run.node or _text(meta.get("langgraph_node"))
        run.visible = True
        fields = {"model": model, "node": run.node, "step": run.step, "status": "running"}
        self._emit("llm_start", run, fields | self._io("input", prompt, self.log_inputs))

    def on_llm_end(
        self,
        response: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A model call returned; its token usage is logged with it."""
        try:
            run = self._finish(run_id)
            if run is None:
                return
            fields: dict[str, Any] = {
                "model": run.name,
                "node": run.node,
                "step": run.step,
                "duration_ms": _ms(run.started),
                "status": "success",
                "usage": _usage(response),
            }
            messages = _generated_messages(response)
            calls = [
                call["name"]
                for message in messages
                for call in getattr(message, "tool_calls", None) or []
                if isinstance(call, Mapping) and isinstance(call.get("name"), str)
            ]
            if calls:
                fields["tool_calls"] = calls[: self.max_summary_items]
            output: object = messages[0] if len(messages) == 1 else messages
            fields |= self._io("output", output, self.log_outputs)
            self._emit("llm_complete", run, fields)
        except Exception as exc:
            report("langgraph.on_llm_end", exc)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A model call raised (provider error, timeout, rate limit …)."""
        try:
            run = self._finish(run_id)
            if run is None:
                return
            fields = {
                "model": run.name,
                "node": run.node,
                "step": run.step,
                "duration_ms": _ms(run.started),
            }
            self._failed("llm", run, fields, error)
        except Exception as exc:
            report("langgraph.on_llm_error", exc)

    # ------------------------------------------------------------------ tools

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool call started."""
        try:
            meta = metadata or {}
            name = _run_name(serialized, kwargs, "tool")
            run, _ = self._start("tool", name, run_id, parent_run_id, meta)
            run.node = run.node or _text(meta.get("langgraph_node"))
            run.visible = True
            call_id = _text(kwargs.get("tool_call_id"))
            run.extra["tool_call_id"] = call_id
            fields = {
                "tool": name,
                "node": run.node,
                "step": run.step,
                "tool_call_id": call_id,
                "status": "running",
            }
            arguments: object = inputs if inputs is not None else input_str
            self._emit("tool_start", run, fields | self._io("input", arguments, self.log_inputs))
        except Exception as exc:
            report("langgraph.on_tool_start", exc)

    def on_tool_end(
        self,
        output: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool returned."""
        try:
            run = self._finish(run_id)
            if run is None:
                return
            fields = self._tool_fields(run) | {"status": "success"}
            self._emit("tool_complete", run, fields | self._io("output", output, self.log_outputs))
        except Exception as exc:
            report("langgraph.on_tool_end", exc)

    def on_tool_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """A tool raised (even if the node then turns the error into a message)."""
        try:
            run = self._finish(run_id)
            if run is None:
                return
            self._failed("tool", run, self._tool_fields(run), error)
        except Exception as exc:
            report("langgraph.on_tool_error", exc)

    @staticmethod
    def _tool_fields(run: _Run) -> dict[str, Any]:
        return {
            "tool": run.name,
            "node": run.node,
            "step": run.step,
            "tool_call_id": run.extra.get("tool_call_id"),
            "duration_ms": _ms(run.started),
        }

    # ------------------------------------------------------------------ retrievers

    def on_retriever_start(
        self,
        serialized: dict[str, Any],
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Tracked only, so runs started inside a retriever keep their invocation's run_id."""
        try:
            self._start("retriever", "retriever", run_id, parent_run_id, metadata or {})
        except Exception as exc:
            report("langgraph.on_retriever_start", exc)

    def on_retriever_end(
        self, documents: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Forget the retriever run."""
        self._finish(run_id)

    def on_retriever_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Forget the retriever run; the node it ran in reports the failure."""
        self._finish(run_id)


# ---------------------------------------------------------------------- helpers


def _control_flow(error: BaseException) -> str | None:
    """`interrupt`/`command` for LangGraph's control-flow exceptions, None for real failures.

    An interrupt pauses a node (it runs again on resume); a `Command` to the parent graph
    hands control over. Neither is an error of the node or of the run.
    """
    if _Interrupt is not None and isinstance(error, _Interrupt):
        return "interrupt"
    if _BubbleUp is not None and isinstance(error, _BubbleUp):
        return "command"
    return None


def _control_fields(reason: str) -> dict[str, Any]:
    return {"status": "skipped" if reason == "interrupt" else "success", "reason": reason}


def _is_node_run(name: str, tags: Sequence[str], metadata: Mapping[str, Any]) -> bool:
    """Whether a chain run is one node execution (a Pregel task), not plumbing inside one.

    LangGraph starts each task's run with the *non-inherited* tag `graph:step:N` and the run
    name set to the node name, which is also `metadata["langgraph_node"]`. Inner runnables
    inherit the metadata but neither the tag nor (normally) the name.
    """
    return metadata.get("langgraph_node") == name and any(t.startswith(_STEP_TAG) for t in tags)


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    name = _text(kwargs.get("name"))
    if name is None and serialized:
        name = _text(serialized.get("name"))
        if name is None:
            ident = serialized.get("id")
            if isinstance(ident, list) and ident:
                name = _text(ident[-1])
    return (name or default)[:200]


def _model_name(
    serialized: Mapping[str, Any] | None, metadata: Mapping[str, Any], kwargs: Mapping[str, Any]
) -> str:
    """The model's name as precisely as the provider tells it, else the model class."""
    name = _text(metadata.get("ls_model_name"))
    if name:
        return name
    params = kwargs.get("invocation_params")
    init = serialized.get("kwargs") if serialized else None
    for source in (params, init):
        if isinstance(source, Mapping):
            for key in _MODEL_KEYS:
                if found := _text(source.get(key)):
                    return found[:200]
    return _run_name(serialized, kwargs, "llm")


def _generated_messages(response: Any) -> list[Any]:
    messages: list[Any] = []
    for batch in getattr(response, "generations", None) or []:
        for generation in batch:
            message = getattr(generation, "message", None)
            messages.append(message if message is not None else getattr(generation, "text", None))
    return messages


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _usage(response: Any) -> dict[str, int] | None:
    """Token usage as {input_tokens, output_tokens, total_tokens}, whatever the provider's dialect.

    Providers report it in `llm_output["token_usage"]` (OpenAI style, `prompt_tokens` …) or on
    each message's `usage_metadata` (LangChain's standard, `input_tokens` …).
    """
    llm_output = getattr(response, "llm_output", None)
    if isinstance(llm_output, Mapping):
        raw = llm_output.get("token_usage") or llm_output.get("usage")
        if isinstance(raw, Mapping):
            found = _usage_from(raw)
            if found is not None:
                return found
    totals: dict[str, int] | None = None
    for message in _generated_messages(response):
        raw = getattr(message, "usage_metadata", None)
        if isinstance(raw, Mapping) and (found := _usage_from(raw)) is not None:
            totals = found if totals is None else {k: totals[k] + found[k] for k in totals}
    return totals


def _usage_from(raw: Mapping[str, Any]) -> dict[str, int] | None:
    prompt = _int(raw.get("input_tokens", raw.get("prompt_tokens")))
    completion = _int(raw.get("output_tokens", raw.get("completion_tokens")))
    total = _int(raw.get("total_tokens"))
    if prompt is None and completion is None and total is None:
        return None
    prompt, completion = prompt or 0, completion or 0
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": total if total is not None else prompt + completion,
    }


# ---------------------------------------------------------------------- @log_node


class _NodeLogger:
    """The events of one decorated node function; shared by the sync and async wrappers."""

    __slots__ = ("log", "log_inputs", "log_outputs", "max_items", "name", "service")

    def __init__(
        self, name: str, service: str, log_inputs: bool, log_outputs: bool, max_items: int
    ) -> None:
        self.name = name
        self.service = service
        self.log_inputs = log_inputs
        self.log_outputs = log_outputs
        self.max_items = max_items
        self.log = get_logger(_LOGGER_NAME)

    def bindings(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Fields bound while the node runs, so its events and its own log lines carry them:
        the node name and, when LangGraph passed a `config` (or the state has a `thread_id`),
        the thread and step."""
        fields: dict[str, Any] = {"node": self.name}
        try:
            config = kwargs.get("config")
            configurable = config.get("configurable") if isinstance(config, Mapping) else None
            thread_id = configurable.get("thread_id") if isinstance(configurable, Mapping) else None
            state = args[0] if args else kwargs.get("state")
            if thread_id is None and isinstance(state, Mapping):
                thread_id = state.get("thread_id")
            if isinstance(thread_id, str | int) and thread_id != "":
                fields["thread_id"] = str(thread_id)
            step = _config_step(config)
            if step is not None:
                fields["step"] = step
        except Exception as exc:
            report("langgraph.log_node", exc)
        return fields

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            state = args[0] if args else kwargs.get("state")
            fields = _io_fields("input", state, self.log_inputs, self.max_items, _CONTENT_CHARS)
            self.log.info("node_start", service=self.service, status="running", **fields)
        except Exception as exc:
            report("langgraph.log_node", exc)

    def complete(self, started: float, result: object) -> None:
        try:
            fields = _io_fields("output", result, self.log_outputs, self.max_items, _CONTENT_CHARS)
            self.log.info(
                "node_complete",
                service=self.service,
                status="success",
                duration_ms=_ms(started),
                **fields,
            )
        except Exception as exc:
            report("langgraph.log_node", exc)

    def failed(self, started: float, error: BaseException) -> None:
        try:
            if (reason := _control_flow(error)) is not None:
                self.log.info(
                    "node_complete",
                    service=self.service,
                    duration_ms=_ms(started),
                    **_control_fields(reason),
                )
                return
            if isinstance(error, _CANCELLED):
                self.log.warning(
                    "node_failed",
                    service=self.service,
                    status="error",
                    reason="cancelled",
                    duration_ms=_ms(started),
                    exc_info=error,
                )
                return
            self.log.error(
                "node_failed",
                service=self.service,
                status="error",
                duration_ms=_ms(started),
                exc_info=error,
            )
        except Exception as exc:
            report("langgraph.log_node", exc)


def _io_fields(
    kind: str, value: object, raw: bool, max_items: int, max_chars: int
) -> dict[str, Any]:
    """`<kind>_summary` always, `<kind>` (redacted, bounded raw content) only when asked.

    User objects can fail to describe themselves (a `__len__` that raises); that is a fact of
    the data, not a bug to surface, so the summary says "unavailable" and the event still goes.
    """
    try:
        fields: dict[str, Any] = {f"{kind}_summary": summarize(value, max_items)}
    except Exception:
        fields = {f"{kind}_summary": {"type": type(value).__name__[:64], "unavailable": True}}
    if raw:
        try:
            redactor = default_redactor()
            data = bounded_content(
                value,
                max_items=max_items,
                max_chars=max_chars,
                prepare_string=redactor.redact_text,
            )
            # Strings were scrubbed before cutting; this pass adds the key rules (password=…).
            fields[kind] = redactor.redact(data)
        except Exception:
            fields[kind] = "[unavailable]"
    return fields


def _config_step(config: object) -> int | None:
    metadata = config.get("metadata") if isinstance(config, Mapping) else None
    return _step(metadata) if isinstance(metadata, Mapping) else None


def _decorate(func: F, events: _NodeLogger) -> F:
    if inspect.iscoroutinefunction(func):
        async_func = cast(Callable[..., Awaitable[Any]], func)

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with context.bound(**events.bindings(args, kwargs)):
                events.start(args, kwargs)
                started = time.perf_counter()
                try:
                    result = await async_func(*args, **kwargs)
                except BaseException as error:
                    events.failed(started, error)
                    raise
                events.complete(started, result)
                return result

        return cast(F, async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with context.bound(**events.bindings(args, kwargs)):
            events.start(args, kwargs)
            started = time.perf_counter()
            try:
                result = func(*args, **kwargs)
            except BaseException as error:
                events.failed(started, error)
                raise
            events.complete(started, result)
            return result

    return cast(F, wrapper)


@overload
def log_node(name: F, /) -> F: ...


@overload
def log_node(
    name: str | None = None,
    /,
    *,
    service: str = "langgraph",
    log_inputs: bool = False,
    log_outputs: bool = False,
    max_summary_items: int = 20,
) -> Callable[[F], F]: ...


def log_node(
    name: str | Callable[..., Any] | None = None,
    /,
    *,
    service: str = "langgraph",
    log_inputs: bool = False,
    log_outputs: bool = False,
    max_summary_items: int = 20,
) -> Any:
    """Log `node_start`/`node_complete`/`node_failed` around a plain sync or async node function.

    Use as ``@log_node("developer")`` or bare ``@log_node`` (the function's name is the node's).
    While the function runs, `node` (and `thread_id`, when the node receives a LangGraph
    `config` or its state has one) is bound in the logging context, so the node's own log
    lines carry it; afterwards the caller's context is restored exactly — never cleared.
    Exceptions are logged and re-raised unchanged.

    Use either this or `LangGraphCallbackHandler` for a given node, not both: each logs its
    own `node_start`/`node_complete`.
    """
    if callable(name):
        func = name
        return _decorate(func, _NodeLogger(func.__name__, service, False, False, 20))
    if name is not None and not isinstance(name, str):
        raise TypeError("log_node takes a node name (str) or decorates a function directly")

    def decorator(func: F) -> F:
        node = name or str(getattr(func, "__name__", "node"))
        events = _NodeLogger(node, service, log_inputs, log_outputs, max_summary_items)
        return _decorate(func, events)

    return decorator
