"""A support-chat back end: FastAPI + a LangGraph agent, instrumented with logbeacon.

Every request gets a request id and a trace id; every agent node, tool and model call logs
an event carrying them, so "the chat hung" becomes one timeline you can search for.

Run it:   .venv/bin/uvicorn --app-dir examples agent_app:app --port 8000
Try it:   curl -s localhost:8000/chat -H 'content-type: application/json' \
              -d '{"session_id": "s-1", "message": "what is the weather in Paris?"}'
Words in the message steer the agent into trouble on purpose: "slow" makes the research node
slow, "timeout" makes it time out, "rate limit" makes the model call fail as a provider would.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, TypedDict

from fastapi import FastAPI
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import BaseModel

import logbeacon
from logbeacon.integrations.fastapi import instrument_app
from logbeacon.integrations.langgraph import LangGraphCallbackHandler

log = logbeacon.get_logger("examples.agent_app")


class ProviderRateLimitError(Exception):
    """What an LLM provider's SDK raises when you send too much: the demo's stand-in."""


class SupportModel(FakeMessagesListChatModel):
    """An offline chat model that answers like a real provider, token usage included."""

    model: str = "support-model-1"

    def _generate(self, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
        if any("rate limit" in str(m.content).lower() for m in messages):
            raise ProviderRateLimitError("429 Too Many Requests: rate limit exceeded for model")
        return super()._generate(messages, *args, **kwargs)


MODEL = SupportModel(
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


def research(state: ChatState) -> dict[str, Any]:
    """Look things up; slow or timing out when the question asks for it."""
    question = str(state["messages"][-1].content).lower()
    if "timeout" in question:
        raise TimeoutError("knowledge base did not answer within 2.0 seconds")
    if "slow" in question:
        time.sleep(0.3)
    return {"findings": [f"article about {question[:40]}"]}


def respond(state: ChatState) -> dict[str, Any]:
    """Ask the model for the answer (where rate limits happen)."""
    return {"messages": [MODEL.invoke(state["messages"])]}


def build_graph() -> Any:
    """understand → research → respond: small, but every kind of failure has a home."""
    builder = StateGraph(ChatState)
    builder.add_node("understand", understand)
    builder.add_node("research", research)
    builder.add_node("respond", respond)
    builder.add_edge(START, "understand")
    builder.add_edge("understand", "research")
    builder.add_edge("research", "respond")
    builder.add_edge("respond", END)
    return builder.compile()


GRAPH = build_graph()
HANDLER = LangGraphCallbackHandler()

app = FastAPI(title="logbeacon example: support chat")
instrument_app(app, service="api", metrics=True)


class ChatRequest(BaseModel):
    session_id: str
    message: str


@app.post("/chat")
async def chat(body: ChatRequest) -> dict[str, Any]:
    """Run the agent for one message; the session id joins browser, API and agent events."""
    with logbeacon.bound(session_id=body.session_id):
        result = await GRAPH.ainvoke(
            {"messages": [HumanMessage(content=body.message)], "findings": []},
            config={"callbacks": [HANDLER], "configurable": {"thread_id": body.session_id}},
        )
    return {"answer": result["messages"][-1].content, "session_id": body.session_id}


@app.get("/users/{user_id}")
async def get_user(user_id: int) -> dict[str, Any]:
    """A plain endpoint: its events carry the route template `/users/{user_id}`."""
    return {"user_id": user_id, "plan": "team"}


if __name__ == "__main__":
    import uvicorn

    logbeacon.configure(service="api")
    uvicorn.run(app, host="127.0.0.1", port=8000, log_config=None)
