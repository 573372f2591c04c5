"""The examples under examples/ run, and produce the timeline the docs promise."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import orjson
import pytest

from logbeacon.context import clear
from logbeacon.sdk import configure, reset
from logbeacon.testing import capture_logs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # typing.get_type_hints resolves the state's annotations here
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """SDK writing into a buffer, every emitted event captured."""
    reset()
    clear()
    configure(service="api", level="debug", format="json", stream=io.StringIO())
    with capture_logs() as events:
        yield events
    reset()


async def _chat(app: Any, message: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://example") as client:
        return await client.post("/chat", json={"session_id": "s-demo", "message": message})


async def test_agent_app_joins_request_and_nodes(logs: list[dict[str, Any]]) -> None:
    """A chat request logs http_request and node events that share request and session ids."""
    app = _load("agent_app").app
    response = await _chat(app, "what is the weather in Paris?")
    assert 200 == response.status_code
    request_id = response.headers["x-request-id"]
    nodes = [e for e in logs if e["event"] == "node_complete"]
    assert ["understand", "research", "respond"] == [e["node"] for e in nodes]
    assert {request_id} == {e["request_id"] for e in nodes}
    assert {"s-demo"} == {e["session_id"] for e in nodes}
    (request,) = [e for e in logs if e["event"] == "http_request"]
    assert "/chat" == request["route"]
    (llm,) = [e for e in logs if e["event"] == "llm_complete"]
    assert 51 == llm["usage"]["total_tokens"]


@pytest.mark.parametrize(
    ("message", "node", "category"),
    [("please timeout", "research", "timeout"), ("hit the rate limit", "respond", "rate_limit")],
)
async def test_agent_app_failures_are_categorised(
    logs: list[dict[str, Any]], message: str, node: str, category: str
) -> None:
    """The example's failure paths end in a 500 and a node_failed event with a category."""
    app = _load("agent_app").app
    response = await _chat(app, message)
    assert 500 == response.status_code
    assert response.headers["x-request-id"] == response.json()["request_id"]
    (failed,) = [e for e in logs if e["event"] == "node_failed"]
    assert node == failed["node"]
    assert category == failed["error"]["category"]


def test_pipeline_job_prints_a_partial_pipeline() -> None:
    """The pipeline example prints JSON events ending in pipeline_complete with status partial."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "pipeline_job.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    events = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    assert "pipeline_complete" == events[-1]["event"]
    assert "partial" == events[-1]["status"]
    statuses = {e["layer_name"]: e["status"] for e in events if e["event"].startswith("layer_")}
    assert {"skipped", "error", "success"} == set(statuses.values())


def test_pipeline_job_crash_exits_nonzero() -> None:
    """With --crash the failing layer propagates: status error and a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "pipeline_job.py"), "--crash"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 1 == proc.returncode
    assert '"status":"error"' in proc.stdout.splitlines()[-1]
