"""A support-chat back end: FastAPI + a LangGraph agent, instrumented with logbeacon.

Every request gets a request id and a trace id (an incoming W3C `traceparent` is honoured, so
a browser that sends one shares its trace with the API); every agent node and model call logs
an event carrying them, so "the chat hung" becomes one timeline you can search for.

Words in the message steer the agent into trouble on purpose: "slow" makes the research node
slow, "timeout" makes it time out, "rate limit" makes the model call fail as a provider
would, and an empty message fails validation. The model is an offline fake with real token
usage, so nothing here needs a network or an API key.

`create_app()` builds the app; with `browser=BrowserPage(...)` it also serves, at `/`, a chat
page that loads the browser client from a logbeacon server (what `logbeacon demo` runs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, TypedDict

import orjson
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import BaseModel

import logbeacon
from logbeacon.integrations.fastapi import instrument_app
from logbeacon.integrations.langgraph import LangGraphCallbackHandler

__all__ = [
    "SLOW_SECONDS",
    "BrowserPage",
    "ChatRequest",
    "ProviderRateLimitError",
    "SupportModel",
    "build_graph",
    "create_app",
]

log = logbeacon.get_logger("logbeacon.demo.agent")

#: How long the research node takes when asked to be slow (a visible outlier in p95).
SLOW_SECONDS = 0.4


class ProviderRateLimitError(Exception):
    """What an LLM provider's SDK raises when you send too much: the demo's stand-in."""


class SupportModel(FakeMessagesListChatModel):
    """An offline chat model that answers like a real provider, token usage included."""

    model: str = "support-model-1"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if any("rate limit" in str(m.content).lower() for m in messages):
            raise ProviderRateLimitError("429 Too Many Requests: rate limit exceeded for model")
        return super()._generate(messages, stop, run_manager, **kwargs)


def _model() -> SupportModel:
    return SupportModel(
        responses=[
            AIMessage(
                content="Here is what I found for you.",
                usage_metadata={"input_tokens": 42, "output_tokens": 9, "total_tokens": 51},
            )
        ]
    )


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    findings: list[str]


def understand(state: ChatState) -> dict[str, Any]:
    """Reject empty questions early: a validation error with a clear category."""
    question = str(state["messages"][-1].content).strip()
    if not question:
        raise ValueError("empty question: the user sent no text")
    log.info("question_received", chars=len(question))
    return {}


@logbeacon.timed("search_knowledge_base", threshold_ms=SLOW_SECONDS * 1000 / 2)
def search_knowledge_base(question: str) -> list[str]:
    """The lookup worth timing: `performance_alert` when it is slow."""
    if "timeout" in question:
        raise TimeoutError("knowledge base did not answer within 2.0 seconds")
    if "slow" in question:
        time.sleep(SLOW_SECONDS)
    return [f"article about {question[:40]}"]


def research(state: ChatState) -> dict[str, Any]:
    """Look things up; slow or timing out when the question asks for it."""
    question = str(state["messages"][-1].content).lower()
    return {"findings": search_knowledge_base(question)}


def build_graph(model: SupportModel | None = None) -> Any:
    """understand → research → respond: small, but every kind of failure has a home."""
    chat_model = model or _model()

    def respond(state: ChatState) -> dict[str, Any]:
        """Ask the model for the answer (where rate limits happen)."""
        return {"messages": [chat_model.invoke(state["messages"])]}

    builder = StateGraph(ChatState)
    builder.add_node("understand", understand)
    builder.add_node("research", research)
    builder.add_node("respond", respond)
    builder.add_edge(START, "understand")
    builder.add_edge("understand", "research")
    builder.add_edge("research", "respond")
    builder.add_edge("respond", END)
    return builder.compile()


class ChatRequest(BaseModel):
    session_id: str
    message: str


@dataclass(frozen=True, slots=True)
class BrowserPage:
    """Where the chat page's browser client sends its events.

    `key` is the server's public browser key, valid only from the origins the server allows:
    the page's own origin must be one of them.
    """

    endpoint: str
    key: str = ""
    release: str = "demo"
    environment: str = "dev"


def _page(browser: BrowserPage) -> str:
    template = resources.files("logbeacon.demo").joinpath("page.html").read_text("utf-8")
    config = orjson.dumps(
        {
            "endpoint": browser.endpoint,
            "key": browser.key,
            "release": browser.release,
            "environment": browser.environment,
        }
    ).decode()
    # `<` escaped: the JSON sits inside a <script> element.
    return template.replace("__LOGBEACON_PAGE_CONFIG__", config.replace("<", "\\u003c")).replace(
        "__LOGBEACON_ENDPOINT__", browser.endpoint
    )


def create_app(*, browser: BrowserPage | None = None, metrics: bool = True) -> FastAPI:
    """The instrumented support-chat app (service `api`; graph events are `langgraph`)."""
    graph = build_graph()
    handler = LangGraphCallbackHandler()
    app = FastAPI(title="logbeacon example: support chat")
    instrument_app(app, service="api", metrics=metrics)

    @app.post("/chat")
    async def chat(body: ChatRequest) -> dict[str, Any]:
        """Run the agent for one message; the session id joins browser, API and agent events."""
        with logbeacon.bound(session_id=body.session_id):
            result = await graph.ainvoke(
                {"messages": [HumanMessage(content=body.message)], "findings": []},
                config={"callbacks": [handler], "configurable": {"thread_id": body.session_id}},
            )
        return {"answer": result["messages"][-1].content, "session_id": body.session_id}

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, Any]:
        """A plain endpoint: its events carry the route template `/users/{user_id}`."""
        return {"user_id": user_id, "plan": "team"}

    if browser is not None:
        page = _page(browser)

        @app.get("/", response_class=HTMLResponse, include_in_schema=False)
        async def index() -> HTMLResponse:
            """The chat page, with the browser client reporting to the logbeacon server."""
            return HTMLResponse(page)

    return app
