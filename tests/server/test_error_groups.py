"""`GET /v1/errors` through the real app: the DESIGN.md §8 shape, counts, filters, order."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from logbeacon.event import format_timestamp
from logbeacon.integrations.errors import analyze_error
from tests.server.conftest import Harness

GROUP_KEYS = {
    "fingerprint",
    "type",
    "message",
    "category",
    "suggestions",
    "count",
    "first_seen",
    "last_seen",
    "services",
    "sample_event",
    "sample_trace_ids",
}
TIMEOUT = {"type": "TimeoutError", "message": "upstream timed out after 30s"}
BROWSER = {"type": "TypeError", "message": "Cannot read properties of undefined (reading 'id')"}


def error_event(
    seconds_ago: float, error: dict[str, Any], *, service: str, trace: int, **fields: Any
) -> dict[str, Any]:
    return {
        "event": "request_failed",
        "level": "error",
        "timestamp": format_timestamp(time.time() - seconds_ago),
        "service": service,
        "environment": "prod",
        "trace_id": f"{trace:032x}",
        "error": dict(error),
        **fields,
    }


@pytest.fixture
async def mixed(harness: Harness, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Eight timeouts from api and worker (seven traces) and two browser errors from web, the
    latter without any analysis fields (as browsers send them)."""
    events = [
        error_event(600 - i, TIMEOUT, service="api" if i < 6 else "worker", trace=i % 7 + 1)
        for i in range(8)
    ]
    events += [
        error_event(300, BROWSER, service="web", trace=20, environment="staging"),
        error_event(30, BROWSER, service="web", trace=21, environment="staging"),
        {"event": "page_view", "level": "info", "service": "web"},
    ]
    response = await client.post("/v1/logs", json=events)
    assert (200, 11) == (response.status_code, response.json()["accepted"])
    return events


async def test_groups_have_the_contract_shape_and_values(
    harness: Harness, client: httpx.AsyncClient, mixed: list[dict[str, Any]]
) -> None:
    """Groups carry exactly the DESIGN fields, newest last_seen first, with counts, services,
    filled-in analysis for browser errors, five recent traces and the latest sample event."""
    response = await client.get("/v1/errors", headers=harness.read_headers)
    browser, timeout = response.json()["groups"]
    browser_analysis = analyze_error(BROWSER)
    assert (
        [GROUP_KEYS, GROUP_KEYS],
        (browser_analysis.fingerprint, browser_analysis.category, 2, ["web"], "TypeError"),
        (8, ["api", "worker"], "timeout", 5, "worker", mixed[7]["trace_id"]),
    ) == (
        [set(browser), set(timeout)],
        (browser["fingerprint"], browser["category"], browser["count"], browser["services"],
         browser["type"]),
        (timeout["count"], timeout["services"], timeout["category"],
         len(timeout["sample_trace_ids"]), timeout["sample_event"]["service"],
         timeout["sample_trace_ids"][0]),
    )  # fmt: skip


async def test_group_filters(
    harness: Harness, client: httpx.AsyncClient, mixed: list[dict[str, Any]]
) -> None:
    """service and environment restrict groups and their counts; since keeps recent groups;
    limit caps the list."""

    async def groups(**params: Any) -> list[tuple[str, int]]:
        response = await client.get("/v1/errors", params=params, headers=harness.read_headers)
        assert 200 == response.status_code
        return [(g["type"], g["count"]) for g in response.json()["groups"]]

    assert (
        [("TimeoutError", 2)],
        [("TypeError", 2)],
        [("TypeError", 2)],
        [("TypeError", 2)],
        [],
    ) == (
        await groups(service="worker"),
        await groups(environment="staging"),
        await groups(since="2m"),
        await groups(limit=1),
        await groups(service="api", environment="staging"),
    )


@pytest.mark.parametrize(
    ("params", "status"),
    [({"limit": "201"}, 422), ({"since": "soon"}, 422), ({"fingerprint": "x"}, 400)],
)
async def test_invalid_group_parameters_are_refused(
    harness: Harness, client: httpx.AsyncClient, params: dict[str, str], status: int
) -> None:
    """Out-of-range limit and unparseable since are 422; unknown parameters 400."""
    response = await client.get("/v1/errors", params=params, headers=harness.read_headers)
    assert status == response.status_code


async def test_errors_need_a_read_token(client: httpx.AsyncClient) -> None:
    """GET /v1/errors without a read token is 401 with WWW-Authenticate."""
    response = await client.get("/v1/errors")
    assert (401, "Bearer") == (
        response.status_code,
        response.headers.get("www-authenticate", "").split(" ")[0],
    )


async def test_the_same_bug_with_different_ids_is_one_group(
    harness: Harness, client: httpx.AsyncClient
) -> None:
    """Errors whose messages differ only in ids, numbers and addresses (as browsers send them,
    without a fingerprint) fall into one group; another message is another group."""
    messages = [
        "order 17 not found for user 3f2b9c1e-8d4a-4c1e-9a57-0b6b1f3f5e21",
        "order 20931 not found for user 0190a7b2-7c3e-7000-8000-000000000001",
        "order 5 not found for user 6f1c0a52-8d43-4c1e-9a57-0b6b1f3f5e21",
    ]
    events = [
        error_event(60 - i, {"type": "LookupError", "message": m}, service="api", trace=i + 1)
        for i, m in enumerate(messages)
    ]
    events.append(
        error_event(5, {"type": "LookupError", "message": "cart is empty"}, service="api", trace=9)
    )
    response = await client.post("/v1/logs", json=events)
    assert (200, 4) == (response.status_code, response.json()["accepted"])
    groups = (await client.get("/v1/errors", headers=harness.read_headers)).json()["groups"]
    assert [("cart is empty", 1), (messages[2], 3)] == [(g["message"], g["count"]) for g in groups]
