"""`logbeacon serve --store chdb://…` as a real subprocess, side by side with a SQLite server.

The representative HTTP subset: health, ingest of every body shape with duplicates reported,
`GET /v1/logs` with filters, full text and cursor pages, `GET /v1/traces/{id}` (and its 404),
`GET /v1/runs`, `GET /v1/runs/{id}`, `GET /v1/errors`, `GET /v1/analysis`; both servers get
the same requests and must give the same answers. Then a SIGKILL: every event the chdb server
acknowledged is there after a restart.
"""

from __future__ import annotations

import gzip
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from logbeacon.event import format_timestamp
from tests.helpers.server import running_server, start_server

pytest.importorskip("chdb")

pytestmark = pytest.mark.e2e


def _events(now: float) -> list[dict[str, Any]]:
    """Explicit ids and times, so the two servers store byte-identical events."""
    out: list[dict[str, Any]] = []
    for i in range(120):
        out.append(
            {
                "event_id": f"e2e-{i:04d}",
                "timestamp": format_timestamp(now - 600 + i),
                "event": ("http_request", "db_query", "node_complete", "node_failed")[i % 4],
                "service": ("api", "langgraph", "worker")[i % 3],
                "level": ("info", "warn", "error")[i % 3],
                "message": f"call {i} {'deadline exceeded' if i % 5 == 0 else 'ok'}",
                "trace_id": f"{i // 10 + 1:032x}",
                "request_id": f"req-{i}",
                "run_id": f"run-{i % 4}",
                "node": ("plan", "act")[i % 2],
                "duration_ms": float(i % 17) * 3.5,
                **(
                    {"error": {"type": "TimeoutError", "message": f"t{i % 3}"}}
                    if i % 3 == 2
                    else {}
                ),
            }
        )
    return out


def _strip(value: Any) -> Any:
    """Drop what legitimately differs between two servers: when each received an event."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "received_at"}
    if isinstance(value, list | tuple):
        return [_strip(v) for v in value]
    return value


def _exercise(
    url: str, headers: dict[str, str], events: list[dict[str, Any]], since: str, until: str
) -> Any:
    answers: list[Any] = []
    with httpx.Client(base_url=url, timeout=30) as client:
        answers.append(client.get("/v1/logs/health").json()["ok"])
        posts = [
            client.post("/v1/logs", json=events[0]),
            client.post("/v1/logs", json=events[1:60]),
            client.post("/v1/logs", json={"events": events[60:100]}),
            client.post(
                "/v1/logs",
                content=orjson.dumps(events[100:110]),
                headers={"content-type": "text/plain;charset=UTF-8"},
            ),
            client.post(
                "/v1/logs",
                content=gzip.compress(orjson.dumps(events[110:] + events[:5])),
                headers={"content-type": "application/json", "content-encoding": "gzip"},
            ),
        ]
        answers.append([(r.status_code, r.json()) for r in posts])
        for params in (
            {"limit": 1000},
            {"service": "worker", "level": "error"},
            {"q": "deadline", "limit": 4},
            {"trace_id": f"{3:032x}"},
            {"run_id": "run-1", "node": "act", "since": since},
        ):
            pages = []
            cursor = None
            while True:
                query = {**params, **({"cursor": cursor} if cursor else {})}
                body = client.get("/v1/logs", params=query, headers=headers).json()
                pages.append(body["events"])
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            answers.append(pages)
        for path in (
            f"/v1/traces/{2:032x}",
            f"/v1/traces/{999:032x}",
            "/v1/runs",
            "/v1/runs/run-3",
            "/v1/errors",
            f"/v1/analysis?since={since}&until={until}",
        ):
            response = client.get(path, headers=headers)
            answers.append((path, response.status_code, response.json()))
    return _strip(answers)


def test_chdb_server_answers_like_the_sqlite_server(tmp_path: Path) -> None:
    """Every endpoint of the subset answers the same over chdb as over SQLite."""
    now = time.time()
    events = _events(now)
    since, until = format_timestamp(now - 3600), format_timestamp(now + 60)
    results = []
    for name, args in (("sqlite", []), ("chdb", ["--store", f"chdb://{tmp_path / 'ch'}"])):
        (tmp_path / name).mkdir()
        with running_server(tmp_path / name, args=args) as server:
            results.append(_exercise(server.url, server.read_headers, events, since, until))
            if name == "chdb":
                health = httpx.get(f"{server.url}/v1/logs/health").json()
                assert "chdb" == health["store"]
    sqlite_answers, chdb_answers = results
    assert (120, True) == (len(sqlite_answers[2][0]), len(sqlite_answers[4]) > 1)  # not vacuous
    assert sqlite_answers == chdb_answers


@pytest.mark.slow
def test_chdb_server_keeps_every_acknowledged_event_across_sigkill(tmp_path: Path) -> None:
    """Events the chdb server acknowledged before a SIGKILL are all stored after a restart."""
    args = ["--store", f"chdb://{tmp_path / 'ch'}", "--rate", "1000000", "--burst", "100000"]
    data_dir = tmp_path / "data"
    server = start_server(tmp_path, args=args, data_dir=data_dir, name="first")
    acked: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for _ in range(30):
                batch = [
                    {
                        "event": "load",
                        "level": "error",
                        "service": "api",
                        "event_id": uuid.uuid4().hex,
                    }
                    for _ in range(20)
                ]
                if client.post("/v1/logs", json=batch).status_code == 200:
                    acked.extend(str(e["event_id"]) for e in batch)
    finally:
        server.kill()
    restarted = start_server(tmp_path, args=args, data_dir=data_dir, name="second")
    try:
        ids: list[str] = []
        cursor = None
        with httpx.Client(base_url=restarted.url, headers=restarted.read_headers) as client:
            while True:
                params: dict[str, str | int] = {"limit": 1000, "event": "load"}
                if cursor:
                    params["cursor"] = cursor
                page = client.get("/v1/logs", params=params).json()
                ids.extend(e["event_id"] for e in page["events"])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
    finally:
        restarted.stop()
    assert (600, sorted(acked)) == (len(acked), sorted(ids))
