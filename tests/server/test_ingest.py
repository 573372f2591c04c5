"""POST /v1/logs in-process: body shapes, enrichment, per-event validation, limits, 429, 503."""

from __future__ import annotations

import asyncio
import gzip
import io
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from logbeacon.event import format_timestamp
from logbeacon.store.sqlite import SqliteStore
from tests.server.conftest import LOOPBACK, REMOTE, FakeClock, Harness, HarnessFactory

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def ev(event: str = "thing_happened", **fields: Any) -> dict[str, Any]:
    return {"event": event, "level": "error", "service": "api", **fields}


async def test_single_event_is_stored(harness: Harness) -> None:
    """One event object as the body is stored and acknowledged."""
    async with harness.client() as client:
        response = await client.post("/v1/logs", json=ev(message="boom"))
    assert 200 == response.status_code
    assert {"accepted": 1, "duplicates": 0, "rejected": []} == response.json()
    stored = await harness.all_events()
    assert ["boom"] == [e["message"] for e in stored]


async def test_list_body_is_stored_in_order(harness: Harness) -> None:
    """A JSON list of events is stored as one batch."""
    async with harness.client() as client:
        response = await client.post("/v1/logs", json=[ev("a"), ev("b"), ev("c")])
    assert 3 == response.json()["accepted"]
    assert {"a", "b", "c"} == {e["event"] for e in await harness.all_events()}


async def test_events_wrapper_body_is_stored(harness: Harness) -> None:
    """`{"events": [...]}` is unwrapped."""
    async with harness.client() as client:
        response = await client.post("/v1/logs", json={"events": [ev("a"), ev("b")]})
    assert 2 == response.json()["accepted"]


async def test_text_plain_beacon_body_is_parsed_as_json(harness: Harness) -> None:
    """A sendBeacon body (text/plain;charset=UTF-8) is parsed as JSON."""
    body = orjson.dumps({"events": [ev("window_error", service="web")]})
    async with harness.client() as client:
        response = await client.post(
            "/v1/logs", content=body, headers={"content-type": "text/plain;charset=UTF-8"}
        )
    assert 200 == response.status_code
    assert ["web"] == [e["service"] for e in await harness.all_events()]


async def test_gzip_body_is_inflated(harness: Harness) -> None:
    """A Content-Encoding: gzip body is inflated before parsing."""
    body = gzip.compress(orjson.dumps([ev("a"), ev("b")]))
    async with harness.client() as client:
        response = await client.post(
            "/v1/logs",
            content=body,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    assert {"accepted": 2, "duplicates": 0, "rejected": []} == response.json()


async def test_one_bad_event_never_sinks_the_batch(harness: Harness) -> None:
    """Invalid events are rejected one by one with their index and reason."""
    batch = [ev("ok1"), {"level": "error"}, "not an object", ev("ok2", level="dbg")]
    async with harness.client() as client:
        response = await client.post("/v1/logs", json=batch)
    assert {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [
            {"index": 1, "reason": "missing_event"},
            {"index": 2, "reason": "not_an_object"},
            {"index": 3, "reason": "invalid_level"},
        ],
    } == response.json()
    assert ["ok1"] == [e["event"] for e in await harness.all_events()]


async def test_resent_event_id_counts_as_duplicate(harness: Harness) -> None:
    """Re-sending an event_id is acknowledged as a duplicate and stored once."""
    event = ev(event_id="evt-1")
    async with harness.client() as client:
        first = await client.post("/v1/logs", json=[event])
        second = await client.post("/v1/logs", json=[event, ev(event_id="evt-2")])
    assert {"accepted": 1, "duplicates": 0, "rejected": []} == first.json()
    assert {"accepted": 1, "duplicates": 1, "rejected": []} == second.json()
    assert 2 == len(await harness.all_events())


async def test_enrichment_from_ingest_request(make_harness: HarnessFactory) -> None:
    """received_at is the server's clock; request/trace ids of the ingest request fill gaps."""
    clock = FakeClock()
    async with make_harness(clock=clock) as harness, harness.client() as client:
        headers = {
            "x-request-id": "req-42",
            "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01",
        }
        await client.post(
            "/v1/logs",
            json=[ev("plain"), ev("own", request_id="mine", trace_id="a" * 32)],
            headers=headers,
        )
        stored = {e["event"]: e for e in await harness.all_events()}
    assert format_timestamp(clock.now) == stored["plain"]["received_at"]
    assert ("req-42", TRACE) == (stored["plain"]["request_id"], stored["plain"]["trace_id"])
    assert ("mine", "a" * 32) == (stored["own"]["request_id"], stored["own"]["trace_id"])


async def test_invalid_request_id_header_is_not_copied(harness: Harness) -> None:
    """An x-request-id outside [A-Za-z0-9._:-]{1,128} never reaches events."""
    async with harness.client() as client:
        await client.post("/v1/logs", json=ev(), headers={"x-request-id": "a b<script>"})
    assert "request_id" not in (await harness.all_events())[0]


async def test_server_fields_sent_by_clients_never_survive(make_harness: HarnessFactory) -> None:
    """Client-sent received_at, client_ip, ingest_id, _redacted, _truncated are dropped (INJ-07)."""
    clock = FakeClock()
    forged = ev(
        received_at="1999-01-01T00:00:00Z",
        client_ip="10.0.0.1",
        ingest_id="forged",
        _redacted=["nothing"],
        _truncated=["nothing"],
    )
    async with make_harness(clock=clock) as harness, harness.client() as client:
        await client.post("/v1/logs", json=forged)
        stored = (await harness.all_events())[0]
    assert format_timestamp(clock.now) == stored["received_at"]
    assert set() == {"client_ip", "ingest_id", "_redacted", "_truncated"} & set(stored)


async def test_events_older_than_retention_are_rejected(make_harness: HarnessFactory) -> None:
    """An event older than the retention window is rejected too_old, not stored then purged."""
    clock = FakeClock()
    batch = [
        ev("ancient", timestamp=format_timestamp(clock.now - 15 * 86_400)),
        ev("recent", timestamp=format_timestamp(clock.now - 13 * 86_400)),
    ]
    async with make_harness(clock=clock) as harness, harness.client() as client:
        response = await client.post("/v1/logs", json=batch)
        stored = [e["event"] for e in await harness.all_events()]
    assert [{"index": 0, "reason": "too_old"}] == response.json()["rejected"]
    assert ["recent"] == stored


async def test_far_future_timestamps_are_clamped(make_harness: HarnessFactory) -> None:
    """More than 10 minutes ahead: stored at the server's time, the client's kept (LIM-10)."""
    clock = FakeClock()
    ahead_5 = format_timestamp(clock.now + 300)
    ahead_11 = format_timestamp(clock.now + 660)
    batch = [
        ev("slightly_ahead", timestamp=ahead_5),
        ev("far_ahead", timestamp=ahead_11),
        ev("forged", client_timestamp="x", clock_skew=True),
    ]
    async with make_harness(clock=clock) as harness, harness.client() as client:
        await client.post("/v1/logs", json=batch)
        stored = {e["event"]: e for e in await harness.all_events()}
    now = format_timestamp(clock.now)
    assert (ahead_5, None) == (
        stored["slightly_ahead"]["timestamp"],
        stored["slightly_ahead"].get("clock_skew"),
    )
    assert (now, ahead_11, True) == (
        stored["far_ahead"]["timestamp"],
        stored["far_ahead"]["client_timestamp"],
        stored["far_ahead"]["clock_skew"],
    )
    assert set() == {"client_timestamp", "clock_skew"} & set(stored["forged"])


async def test_server_redacts_before_storing(harness: Harness) -> None:
    """Secrets in events from clients that never ran the SDK are scrubbed before storage."""
    async with harness.client() as client:
        await client.post(
            "/v1/logs", json=ev(message="login password=hunter2", api_key="sk-FAKE-123")
        )
    stored = (await harness.all_events())[0]
    assert "hunter2" not in orjson.dumps(stored).decode()
    assert "sk-FAKE-123" not in orjson.dumps(stored).decode()
    assert "[REDACTED]" == stored["api_key"]


async def test_json_injection_in_message_keeps_level(harness: Harness) -> None:
    """A message that looks like JSON fields does not change the stored level (INJ-05)."""
    async with harness.client() as client:
        await client.post("/v1/logs", json=ev(message='x","level":"info","msg":"forged'))
    stored = (await harness.all_events())[0]
    assert ("error", 'x","level":"info","msg":"forged') == (stored["level"], stored["message"])
    assert "msg" not in stored


async def test_accepted_listeners_get_committed_events(harness: Harness) -> None:
    """Listeners on the app state receive the newly stored events after the commit."""
    seen: list[list[str]] = []

    async def listener(events: Sequence[dict[str, Any]]) -> None:
        seen.append([e["event"] for e in events])

    def broken(events: Sequence[dict[str, Any]]) -> None:
        raise RuntimeError("listener bug")

    harness.state.add_listener(broken)
    remove = harness.state.add_listener(listener)
    async with harness.client() as client:
        ok = await client.post("/v1/logs", json=[ev("a", event_id="e1"), ev("b")])
        await client.post("/v1/logs", json=[ev("a", event_id="e1")])  # duplicate only
        remove()
        await client.post("/v1/logs", json=[ev("c")])
    assert 200 == ok.status_code
    assert [["a", "b"]] == seen


async def test_stdout_mirror_writes_one_line_per_event(
    make_harness: HarnessFactory, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """--stdout writes each accepted event as one JSON line, line breaks escaped (INJ-01/02)."""
    message = "bob\r\n2024 INFO admin ok\u2028x\u0085y\x1b[31m"
    async with make_harness(stdout=True) as harness, harness.client() as client:
        await client.post("/v1/logs", json=[ev("a", message=message), ev("b")])
    lines = capsysbinary.readouterr().out.splitlines()
    assert 2 == len(lines)
    assert [message, None] == [orjson.loads(line).get("message") for line in lines]
    assert b"\xe2\x80\xa8" not in lines[0]


async def test_unsupported_content_type_is_415(client: Any) -> None:
    """Form-encoded bodies are refused with 415."""
    response = await client.post(
        "/v1/logs", content=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert (415, "unsupported_media_type") == (response.status_code, response.json()["error"])


async def test_unsupported_content_encoding_is_415(client: Any) -> None:
    """Content-Encoding other than gzip/identity is refused with 415 (RL-09)."""
    response = await client.post(
        "/v1/logs",
        content=b"{}",
        headers={"content-type": "application/json", "content-encoding": "br"},
    )
    assert (415, "unsupported_encoding") == (response.status_code, response.json()["error"])


async def test_declared_content_length_over_limit_is_413_before_reading(
    make_harness: HarnessFactory,
) -> None:
    """A Content-Length above max_body_bytes is refused without reading the body (RL-07)."""
    read = False

    async def body() -> Any:
        nonlocal read
        read = True
        yield b"{}"

    async with make_harness(max_body_bytes=2048) as harness, harness.client() as client:
        response = await client.post(
            "/v1/logs",
            content=body(),
            headers={"content-type": "application/json", "content-length": "4096"},
        )
    assert (413, 2048) == (response.status_code, response.json()["limit"])
    assert read is False


async def test_streamed_body_over_limit_is_413(make_harness: HarnessFactory) -> None:
    """A chunked body is cut off as soon as it passes the limit (RL-08)."""

    async def body() -> Any:
        for _ in range(100):
            yield b" " * 1024

    async with make_harness(max_body_bytes=4096) as harness, harness.client() as client:
        response = await client.post(
            "/v1/logs", content=body(), headers={"content-type": "application/json"}
        )
    assert (413, "body_too_large") == (response.status_code, response.json()["error"])


async def test_gzip_bomb_is_413_without_inflating_it(make_harness: HarnessFactory) -> None:
    """A small gzip body that inflates past the limit is refused while inflating (RL-09)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as gz:
        chunk = b" " * (1 << 20)
        for _ in range(64):  # 64 MiB of spaces, ~64 KiB compressed
            gz.write(chunk)
    bomb = raw.getvalue()
    async with make_harness() as harness, harness.client() as client:
        response = await client.post(
            "/v1/logs",
            content=bomb,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
    assert len(bomb) < 1 << 20
    assert (413, "body_too_large") == (response.status_code, response.json()["error"])
    assert "decompressed" in response.json()["message"]


async def test_batch_over_max_batch_is_413(make_harness: HarnessFactory) -> None:
    """More events than max_batch is a 413 naming the limit; nothing is stored."""
    async with make_harness(max_batch=10) as harness, harness.client() as client:
        response = await client.post("/v1/logs", json=[ev()] * 11)
        stored = await harness.all_events()
    assert (413, "too_many_events", 10) == (
        response.status_code,
        response.json()["error"],
        response.json()["limit"],
    )
    assert [] == stored


async def test_batch_larger_than_burst_is_413_not_429(make_harness: HarnessFactory) -> None:
    """A batch that exceeds the whole burst can never pass, so it is 413, not 429 (LIM-03)."""
    async with make_harness(burst=5) as harness, harness.client() as client:
        response = await client.post("/v1/logs", json=[ev()] * 6)
    assert (413, "batch_exceeds_burst", 5) == (
        response.status_code,
        response.json()["error"],
        response.json()["limit"],
    )


async def test_rate_limit_429_with_truthful_retry_after(make_harness: HarnessFactory) -> None:
    """An empty bucket gives 429 + Retry-After; waiting that long lets the batch in (RL-05/06)."""
    clock = FakeClock()
    async with make_harness(rate=2.0, burst=10, clock=clock) as harness:
        async with harness.client() as client:
            full = await client.post("/v1/logs", json=[ev()] * 10)
            limited = await client.post("/v1/logs", json=[ev()] * 4)
            retry_after = int(limited.headers["retry-after"])
            clock.advance(retry_after)
            after_wait = await client.post("/v1/logs", json=[ev()] * 4)
        stored = await harness.all_events()
    assert (200, 429, 200) == (full.status_code, limited.status_code, after_wait.status_code)
    assert 2 == retry_after
    assert {"error": "rate_limited", "retry_after": 2} == {
        k: limited.json()[k] for k in ("error", "retry_after")
    }
    assert 14 == len(stored)


async def test_rate_limit_is_per_client_ip(make_harness: HarnessFactory) -> None:
    """One IP saturating its bucket does not limit another IP (LIM-14)."""
    async with make_harness(burst=3, ingest_keys=("k" * 16, "j" * 16)) as harness:
        async with (
            harness.client(client=REMOTE) as first,
            harness.client(client=("198.51.100.9", 1)) as second,
        ):
            a = await first.post("/v1/logs", json=[ev()] * 3, headers=_bearer("k" * 16))
            b = await first.post("/v1/logs", json=[ev()], headers=_bearer("j" * 16))
            c = await second.post("/v1/logs", json=[ev()], headers=_bearer("j" * 16))
    assert (200, 429, 200) == (a.status_code, b.status_code, c.status_code)


async def test_rate_limit_is_per_ingest_key(make_harness: HarnessFactory) -> None:
    """One key saturating its bucket is limited from any IP."""
    async with make_harness(burst=3, ingest_keys=("k" * 16,)) as harness:
        async with (
            harness.client(client=REMOTE) as first,
            harness.client(client=("198.51.100.9", 1)) as second,
        ):
            a = await first.post("/v1/logs", json=[ev()] * 3, headers=_bearer("k" * 16))
            b = await second.post("/v1/logs", json=[ev()], headers=_bearer("k" * 16))
    assert (200, 429) == (a.status_code, b.status_code)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _failing_commit() -> None:
    raise sqlite3.OperationalError("database or disk is full")


async def test_failed_commit_is_503_and_stores_nothing(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    """When COMMIT fails the answer is 503 + Retry-After and no event is visible (DUR-02)."""
    fail = threading.Event()

    def hook() -> None:
        if fail.is_set():
            _failing_commit()

    store = SqliteStore(tmp_path / "events.db", commit_hook=hook)
    async with make_harness(store=store) as harness, harness.client() as client:
        ok = await client.post("/v1/logs", json=[ev("before")])
        fail.set()
        failed = await client.post("/v1/logs", json=[ev("during1"), ev("during2")])
        fail.clear()
        recovered = await client.post("/v1/logs", json=[ev("after")])
        stored = [e["event"] for e in await harness.all_events()]
    assert (200, 503, 200) == (ok.status_code, failed.status_code, recovered.status_code)
    assert int(failed.headers["retry-after"]) >= 1
    assert "store_unavailable" == failed.json()["error"]
    assert ["before", "after"] == stored


async def test_locked_database_is_503_not_500(make_harness: HarnessFactory, tmp_path: Path) -> None:
    """Another connection holding the write lock past busy_timeout gives 503 (DUR-06)."""
    path = tmp_path / "events.db"
    store = SqliteStore(path, busy_timeout=0.2)
    async with make_harness(store=store) as harness, harness.client() as client:
        await client.post("/v1/logs", json=[ev("before")])
        blocker = sqlite3.connect(path, timeout=0.1)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            locked = await client.post("/v1/logs", json=[ev("locked")])
        finally:
            blocker.rollback()
            blocker.close()
        await asyncio.sleep(0)
        stored = [e["event"] for e in await harness.all_events()]
    assert 503 == locked.status_code
    assert "retry-after" in locked.headers
    assert ["before"] == stored


async def test_rejections_are_counted_in_metrics(harness: Harness) -> None:
    """Every per-event rejection increments logbeacon_discarded_events_total{reason} once."""
    async with harness.client() as client:
        await client.post("/v1/logs", json=[ev(), {"level": "error"}, {"level": "error"}])
        text = (await client.get("/metrics", headers=harness.read_headers)).text
    assert 'logbeacon_discarded_events_total{reason="missing_event"} 2.0' in text
    assert "logbeacon_accepted_events_total 1.0" in text


# --------------------------------------------------------------------------- fast path


async def test_ingest_keeps_every_middleware_on_the_fast_path(
    make_harness: HarnessFactory,
) -> None:
    """POST /v1/logs skips the router, not the middleware: CORS, security headers and a
    middleware added after create_app all apply, on success and on errors."""
    async with make_harness(allowed_origins=("https://app.example.com",)) as harness:
        seen: list[str] = []

        class Tag:
            def __init__(self, app: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                seen.append(f"{scope.get('method')} {scope.get('path')}")
                await self.app(scope, receive, send)

        harness.app.add_middleware(Tag)
        harness.app.middleware_stack = None  # rebuilt on the next request, with Tag
        origin = {"Origin": "https://app.example.com"}
        async with harness.client() as client:
            ok = await client.post("/v1/logs", json=[ev()], headers=origin)
            bad = await client.post("/v1/logs", content=b"{", headers=origin)
            query = await client.get("/v1/logs", headers=harness.read_headers)
    for response in (ok, bad):
        assert "nosniff" == response.headers["x-content-type-options"]
        assert "no-store" == response.headers["cache-control"]
        assert "https://app.example.com" == response.headers["access-control-allow-origin"]
    assert (200, 400, 200) == (ok.status_code, bad.status_code, query.status_code)
    assert "invalid_json" == bad.json()["error"]
    assert ["POST /v1/logs", "POST /v1/logs", "GET /v1/logs"] == seen


async def test_ingest_is_still_described_in_openapi(client: Any) -> None:
    """The route answering through the fast path is still in the API description."""
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/logs"]["post"]
    assert {"200", "413", "429", "503"} <= set(operation["responses"])


async def test_unexpected_error_on_the_fast_path_is_a_clean_500(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug inside ingestion answers the shared 500 body, never a traceback."""

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret-value-FAKE in a bug")

    monkeypatch.setattr(harness.state.store, "append", broken)
    async with harness.client() as client:
        response = await client.post("/v1/logs", json=[ev()])
    assert 500 == response.status_code
    assert {"error": "internal_error", "message": "unexpected server error"} == response.json()
    assert "secret-value-FAKE" not in response.text


async def test_router_answers_ingest_like_the_fast_path(harness: Harness) -> None:
    """Behind a proxy prefix (`root_path`) the router's route answers: same bodies, same
    statuses and headers, errors included."""
    transport = httpx.ASGITransport(app=harness.app, client=LOOPBACK, root_path="/proxy")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        ok = await client.post("/proxy/v1/logs", json=[ev(), {"level": "info"}])
        bad = await client.post("/proxy/v1/logs", content=b"{")
        limited = await client.post(
            "/proxy/v1/logs", content=b"[]", headers={"content-type": "text/csv"}
        )
    assert 200 == ok.status_code
    assert {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [{"index": 1, "reason": "missing_event"}],
    } == ok.json()
    assert "application/json" == ok.headers["content-type"]
    assert (400, "invalid_json") == (bad.status_code, bad.json()["error"])
    assert (415, "unsupported_media_type") == (limited.status_code, limited.json()["error"])
    assert "nosniff" == ok.headers["x-content-type-options"]


async def test_first_of_repeated_credential_headers_counts(make_harness: HarnessFactory) -> None:
    """A repeated header is read as its first value, on every path (what Starlette's
    `Headers.get` answers): a valid key followed by a bogus one is accepted, and the reverse
    is refused."""
    async with make_harness(ingest_keys=("k-valid-0123456789",)) as harness:
        async with harness.client(client=REMOTE) as client:
            good_first = await client.post(
                "/v1/logs",
                json=[ev()],
                headers=[
                    ("authorization", "Bearer k-valid-0123456789"),
                    ("authorization", "Bearer nope"),
                ],
            )
            bad_first = await client.post(
                "/v1/logs",
                json=[ev()],
                headers=[
                    ("authorization", "Bearer nope"),
                    ("authorization", "Bearer k-valid-0123456789"),
                ],
            )
    assert 200 == good_first.status_code
    assert (401, "invalid_credentials") == (bad_first.status_code, bad_first.json()["error"])
