"""Health, metrics and the headers every API response carries."""

from __future__ import annotations

from pathlib import Path

from logbeacon._version import __version__
from logbeacon.exceptions import StoreUnavailable
from logbeacon.store.base import StoreStats
from logbeacon.store.sqlite import SqliteStore
from tests.server.conftest import Harness, HarnessFactory


async def test_health_needs_no_token_and_reveals_no_data(harness: Harness) -> None:
    """GET /v1/logs/health answers without a token with status, store kind and version only."""
    async with harness.client() as client:
        await client.post("/v1/logs", json={"event": "secret_event", "message": "private"})
        response = await client.get("/v1/logs/health")
    assert 200 == response.status_code
    assert {"status": "ok", "ok": True, "store": "sqlite", "version": __version__} == (
        response.json()
    )


class _BrokenStats(SqliteStore):
    async def stats(self) -> StoreStats:
        raise StoreUnavailable("disk gone", 2.0)


async def test_health_reports_an_unreachable_store(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """When the store does not answer, health is 503 with ok=false (never a 500)."""
    async with make_harness(store=_BrokenStats(tmp_path / "e.db")) as harness:
        async with harness.client() as client:
            response = await client.get("/v1/logs/health")
    assert (503, False, "unavailable") == (
        response.status_code,
        response.json()["ok"],
        response.json()["status"],
    )


async def test_metrics_are_prometheus_text_behind_the_read_token(harness: Harness) -> None:
    """GET /metrics needs the read token and serves this app's own registry."""
    async with harness.client() as client:
        await client.post("/v1/logs", json=[{"event": "a"}, {"event": "b"}])
        anonymous = await client.get("/metrics")
        response = await client.get("/metrics", headers=harness.read_headers)
    assert 401 == anonymous.status_code
    assert response.headers["content-type"].startswith("text/plain")
    assert 'logbeacon_ingest_requests_total{status="200"} 1.0' in response.text
    assert "logbeacon_accepted_events_total 2.0" in response.text
    assert "logbeacon_ratelimit_keys 1.0" in response.text


async def test_two_apps_keep_separate_metrics(make_harness: HarnessFactory) -> None:
    """Each app has its own registry: one app's traffic is not counted by another."""
    async with make_harness() as first, make_harness() as second:
        async with first.client() as a, second.client() as b:
            await a.post("/v1/logs", json={"event": "x"})
            text = (await b.get("/metrics", headers=second.read_headers)).text
    assert "logbeacon_accepted_events_total 0.0" in text


async def test_api_responses_carry_security_headers(harness: Harness) -> None:
    """Every API response is JSON with nosniff, no-referrer and no-store, errors included."""
    async with harness.client() as client:
        responses = [
            await client.get("/v1/logs", headers=harness.read_headers),
            await client.get("/v1/logs"),
            await client.post(
                "/v1/logs", content=b"{", headers={"content-type": "application/json"}
            ),
            await client.get("/v1/nothing-here"),
        ]
    for response in responses:
        assert response.headers["content-type"].startswith("application/json")
        assert "nosniff" == response.headers["x-content-type-options"]
        assert "no-referrer" == response.headers["referrer-policy"]
        assert "no-store" == response.headers["cache-control"]


async def test_unknown_route_and_method_are_json_errors(harness: Harness) -> None:
    """404 and 405 use the common error shape."""
    async with harness.client() as client:
        missing = await client.get("/v1/nothing-here")
        wrong_method = await client.delete("/v1/logs")
    assert (404, "not_found") == (missing.status_code, missing.json()["error"])
    assert (405, "method_not_allowed") == (wrong_method.status_code, wrong_method.json()["error"])
