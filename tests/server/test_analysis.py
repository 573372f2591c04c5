"""`GET /v1/analysis` (JSON and Markdown) and `compute_analysis`/`render_markdown` through the
real app with a frozen clock and a realistic mix of API, agent and pipeline events."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from logbeacon.event import format_timestamp
from logbeacon.server.analysis import compute_analysis, render_markdown
from tests.server.conftest import T0, FakeClock, Harness, HarnessFactory

TIMEOUT = {"type": "TimeoutError", "message": "upstream timed out after 30s"}
INJECTION = "boom\n\n# Injected heading\n[click](http://evil.example) `tick` \x1b[31mred\u2028x"
DURATIONS = [float(d) for d in range(100, 2100, 100)]  # 20 researcher runs


def at(seconds_before_now: float) -> str:
    return format_timestamp(T0 - seconds_before_now)


def mix() -> list[dict[str, Any]]:
    """40 API requests (6 failing with a timeout, 4 slow warnings), 20 successful and 2 failed
    agent nodes in one failing graph run, and one event outside the window."""
    events: list[dict[str, Any]] = []
    for i in range(40):
        level = "error" if i < 6 else "warn" if i < 10 else "info"
        event: dict[str, Any] = {
            "event": "http_request",
            "level": level,
            "service": "api",
            "timestamp": at(3000 - i * 60),
            "trace_id": f"{i + 1:032x}",
        }
        if level == "error":
            event["error"] = dict(TIMEOUT)
        events.append(event)
    graph = {"service": "langgraph", "run_id": "run-bad", "graph": "agent"}
    events.append({"event": "graph_start", "timestamp": at(1200), **graph})
    for i, duration in enumerate(DURATIONS):
        events.append(
            {"event": "node_complete", "node": "researcher", "step": i + 1,
             "duration_ms": duration, "timestamp": at(1100 - i), **graph}
        )  # fmt: skip
    for i in range(2):
        events.append(
            {"event": "node_failed", "node": "writer", "step": 30 + i, "duration_ms": 50.0,
             "level": "error", "timestamp": at(900 - i),
             "error": {"type": "ValueError", "message": INJECTION}, **graph}
        )  # fmt: skip
    events.append(
        {"event": "graph_failed", "level": "error", "timestamp": at(890), "duration_ms": 310_000,
         "error": {"type": "ValueError", "message": INJECTION}, **graph}
    )  # fmt: skip
    events.append({"event": "http_request", "service": "api", "timestamp": at(7200)})
    return events


@pytest.fixture
async def frozen(make_harness: HarnessFactory) -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    """An app whose clock stands at T0, holding the mix."""
    async with make_harness(clock=FakeClock()) as harness, harness.client() as client:
        response = await client.post("/v1/logs", json=mix())
        assert (200, []) == (response.status_code, response.json()["rejected"])
        yield harness, client


async def analysis(frozen: tuple[Harness, httpx.AsyncClient], **params: Any) -> dict[str, Any]:
    harness, client = frozen
    response = await client.get("/v1/analysis", params=params, headers=harness.read_headers)
    assert 200 == response.status_code, response.text
    result: dict[str, Any] = response.json()
    return result


def nearest_rank(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]


async def test_counts_and_timeline_of_the_last_hour(
    frozen: tuple[Harness, httpx.AsyncClient],
) -> None:
    """Counts by level and service cover the hour (not the older event), and the timeline's
    buckets sum to the totals."""
    result = await analysis(frozen)
    timeline = result["timeline"]
    assert (
        {"events": 64, "errors": 9, "error_rate": round(9 / 64, 6)},
        {"debug": 0, "info": 51, "warn": 4, "error": 9, "critical": 0},
        [{"service": "api", "events": 40, "errors": 6},
         {"service": "langgraph", "events": 24, "errors": 3}],
        (64, 9),
        (True, True),
    ) == (
        result["totals"],
        result["by_level"],
        result["by_service"],
        (sum(b["events"] for b in timeline), sum(b["errors"] for b in timeline)),
        (result["window"]["since"] <= at(3600), result["window"]["until"] >= at(0)),
    )  # fmt: skip


async def test_top_errors_slowest_steps_and_failing_runs(
    frozen: tuple[Harness, httpx.AsyncClient],
) -> None:
    """Top errors by count with category and suggestions, nearest-rank p50/p95 per node, and
    the failing run."""
    result = await analysis(frozen)
    top = [(g["type"], g["count"], g["category"], g["services"]) for g in result["top_errors"]]
    steps = [(s["name"], s["count"], s["errors"], s["p50_ms"], s["p95_ms"])
             for s in result["slowest_steps"]]  # fmt: skip
    runs = [(r["run_id"], r["status"], r["error_count"]) for r in result["failing_runs"]]
    assert (
        [("TimeoutError", 6, "timeout", ["api"]), ("ValueError", 3, "validation", ["langgraph"])],
        True,
        [("researcher", 20, 0, nearest_rank(DURATIONS, 50), nearest_rank(DURATIONS, 95)),
         ("writer", 2, 2, 50.0, 50.0)],
        [("run-bad", "error", 2)],
        False,
    ) == (
        top,
        all(g["suggestions"] for g in result["top_errors"]),
        steps,
        runs,
        result["sampled"],
    )  # fmt: skip


async def test_service_and_level_filters(frozen: tuple[Harness, httpx.AsyncClient]) -> None:
    """service keeps one service's counts; level keeps events at or above it."""
    api = await analysis(frozen, service="api")
    errors = await analysis(frozen, level="error", since="2h")
    assert (
        ({"events": 40, "errors": 6}, ["TimeoutError"], []),
        ({"error": 9, "critical": 0}, 9),
    ) == (
        ({k: api["totals"][k] for k in ("events", "errors")},
         [g["type"] for g in api["top_errors"]], api["failing_runs"]),
        (errors["by_level"], errors["totals"]["events"]),
    )  # fmt: skip


async def test_markdown_names_the_top_error_and_cannot_be_injected(
    frozen: tuple[Harness, httpx.AsyncClient],
) -> None:
    """format=markdown is text/markdown with the top error, its category and a suggestion;
    event text stays inside code spans and carries no control characters."""
    harness, client = frozen
    response = await client.get(
        "/v1/analysis", params={"format": "markdown"}, headers=harness.read_headers
    )
    text = response.text
    controls = [ch for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf")]
    injected = [line for line in text.splitlines() if "Injected heading" in line]
    assert (
        (200, "text/markdown; charset=utf-8"),
        True,
        [],
        [],
        True,
        True,
    ) == (
        (response.status_code, response.headers["content-type"]),
        "`TimeoutError`" in text and "`timeout`" in text and "Suggestion:" in text,
        controls,
        [line for line in text.splitlines() if line.startswith(("# Injected", "[click]"))],
        bool(injected) and all("``boom # Injected heading" in line for line in injected),
        "\u2028" not in text,
    )


def test_render_markdown_fences_backticks_and_redacts() -> None:
    """Backtick runs get a longer fence, secrets are redacted, and nothing breaks the line."""
    doc: dict[str, Any] = {
        "window": {"since": "a", "until": "b", "bucket_seconds": 60.0},
        "filters": {"service": "api``x", "level": None},
        "totals": {"events": 1, "errors": 1, "error_rate": 1.0},
        "by_level": {"error": 1},
        "by_service": [],
        "top_errors": [
            {"fingerprint": "f", "type": "`Err`", "message": "mail alice@example.com\r\n",
             "category": "unknown", "suggestions": ["retry"], "count": 1, "services": ["api"],
             "first_seen": "a", "last_seen": "b", "sample_trace_ids": []}
        ],
        "slowest_steps": [],
        "failing_runs": [],
        "timeline": [],
        "sampled": False,
    }  # fmt: skip
    text = render_markdown(doc)
    assert (True, True, False, True) == (
        "service ```api``x```" in text,
        "`` `Err` ``" in text,
        "alice@example.com" in text,
        "\r" not in text,
    )


async def test_compute_analysis_matches_the_endpoint(
    frozen: tuple[Harness, httpx.AsyncClient],
) -> None:
    """compute_analysis (the WebSocket's analysis_request) gives the endpoint's document."""
    harness, _ = frozen
    direct = await compute_analysis(harness.state.store, since=T0 - 3600, until=T0)
    assert await analysis(frozen) == direct


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"format": "xml"}, 422),
        ({"buckets": "0"}, 422),
        ({"level": "loud"}, 422),
        ({"until": "later"}, 422),
        ({"window": "1h"}, 400),
    ],
)
async def test_invalid_analysis_parameters_are_refused(
    frozen: tuple[Harness, httpx.AsyncClient], params: dict[str, str], status: int
) -> None:
    """Bad values are 422 naming the parameter; unknown parameters are 400."""
    harness, client = frozen
    response = await client.get("/v1/analysis", params=params, headers=harness.read_headers)
    assert status == response.status_code


async def test_analysis_needs_a_read_token(client: httpx.AsyncClient) -> None:
    """GET /v1/analysis without a read token is 401, in either format."""
    statuses = [
        (await client.get("/v1/analysis", params=params)).status_code
        for params in ({}, {"format": "markdown"})
    ]
    assert [401, 401] == statuses


async def test_markdown_carries_no_value_that_redaction_removes(
    frozen: tuple[Harness, httpx.AsyncClient],
) -> None:
    """Secrets in error messages, node names and sensitive fields of ingested events never
    appear in `format=markdown`, while the errors themselves are still named."""
    harness, client = frozen
    secrets_ = {
        "email": "carol.secret@example.com",
        "bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXZhbHVl",
        "openai": "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "password": "hunter2-very-secret",
        "card": "4111 1111 1111 1111",
    }
    events = [
        {
            "timestamp": at(30),
            "service": "api",
            "event": "request_failed",
            "level": "error",
            "password": secrets_["password"],
            "error": {
                "type": "AuthError",
                "message": f"login failed for {secrets_['email']} with {secrets_['bearer']}",
            },
        },
        {
            "timestamp": at(20),
            "service": "langgraph",
            "event": "node_failed",
            "level": "error",
            "run_id": "r-secret",
            "node": f"charge {secrets_['card']}",
            "duration_ms": 40,
            "error": {"type": "ProviderError", "message": f"key {secrets_['openai']} revoked"},
        },
    ]
    response = await client.post("/v1/logs", json=events)
    assert (200, []) == (response.status_code, response.json()["rejected"])
    text = (
        await client.get(
            "/v1/analysis", params={"format": "markdown"}, headers=harness.read_headers
        )
    ).text
    assert ([], True) == (
        [name for name, value in secrets_.items() if value in text or value[-12:] in text],
        "AuthError" in text and "ProviderError" in text,
    )
