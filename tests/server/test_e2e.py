"""A real `logbeacon serve` subprocess: round trips over HTTP, the stdout mirror, what the
server prints, and a SIGKILL in the middle of ingestion."""

from __future__ import annotations

import gzip
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import websockets.exceptions
import websockets.sync.client

from logbeacon.server.signing import sign
from tests.helpers.server import running_server, start_server
from tests.server.conftest import ADMIN_TOKEN, DIAG_SECRET, HMAC_SECRET, READ_TOKEN

pytestmark = pytest.mark.e2e


def event(name: str, **fields: object) -> dict[str, object]:
    return {"event": name, "level": "error", "service": "api", **fields}


def test_round_trip_of_every_body_shape(tmp_path: Path) -> None:
    """One event, a list, a wrapper, a text/plain beacon and a gzip body all come back."""
    with running_server(tmp_path) as server, httpx.Client(base_url=server.url) as client:
        json_headers = {"content-type": "application/json"}
        responses = [
            client.post("/v1/logs", json=event("single")),
            client.post("/v1/logs", json=[event("list1"), event("list2")]),
            client.post("/v1/logs", json={"events": [event("wrapped")]}),
            client.post(
                "/v1/logs",
                content=orjson.dumps([event("beacon", service="web")]),
                headers={"content-type": "text/plain;charset=UTF-8"},
            ),
            client.post(
                "/v1/logs",
                content=gzip.compress(orjson.dumps([event("gzipped")])),
                headers={**json_headers, "content-encoding": "gzip"},
            ),
        ]
        page = client.get("/v1/logs", headers=server.read_headers).json()
    assert [200] * 5 == [r.status_code for r in responses]
    assert {"single", "list1", "list2", "wrapped", "beacon", "gzipped"} == {
        e["event"] for e in page["events"]
    }


def test_stdout_mirror_is_json_lines(tmp_path: Path) -> None:
    """With --stdout each accepted event is one JSON line on stdout, banner on stderr."""
    server = start_server(tmp_path, args=["--stdout"], separate_stdout=True)
    try:
        message = "bob\r\n2024-05-01T00:00:00Z INFO admin login ok"
        httpx.post(f"{server.url}/v1/logs", json=[event("a", message=message), event("b")])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and server.stdout().count("\n") < 2:
            time.sleep(0.05)
    finally:
        server.stop()
    lines = server.stdout().splitlines()
    assert ["a", "b"] == [orjson.loads(line)["event"] for line in lines]
    assert message == orjson.loads(lines[0])["message"]
    assert "logbeacon serving on" in server.log_path.read_text()


def test_server_output_never_contains_credentials(tmp_path: Path) -> None:
    """Tokens, signatures and diagnostic JWTs never appear in the server's output (INJ-11)."""
    env = {
        "LOGBEACON_READ_TOKENS": READ_TOKEN,
        "LOGBEACON_HMAC_SECRETS": HMAC_SECRET,
        "LOGBEACON_ADMIN_TOKEN": ADMIN_TOKEN,
        "LOG_DIAGNOSTIC_SECRET": DIAG_SECRET,
        "ENVIRONMENT": "prod",
    }
    with running_server(tmp_path, env=env) as server, httpx.Client(base_url=server.url) as client:
        minted = client.post(
            "/v1/diagnostics",
            json={"session_id": "s1"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).json()["token"]
        body = orjson.dumps([event("signed", level="debug", session_id="s1")])
        headers = sign(body, HMAC_SECRET)
        client.post(
            "/v1/logs",
            content=body,
            headers={**headers, "content-type": "application/json", "x-logbeacon-diag": minted},
        )
        client.post("/v1/logs", content=body, headers=headers)  # a replay, refused
        client.get("/v1/logs", params={"token": READ_TOKEN})
        client.get("/v1/logs", params={"token": "wrong-token-FAKE-0123456789"})
        client.get("/metrics", headers={"Authorization": "Bearer nope-FAKE-000000000"})
        # uvicorn logs WebSocket handshakes with their path: the query must not reach the log.
        ws_url = server.url.replace("http://", "ws://") + "/v1/ws"
        with websockets.sync.client.connect(f"{ws_url}?token={READ_TOKEN}") as ws:
            ws.send('{"type": "ping"}')
            ws.recv(timeout=10)
        with pytest.raises(websockets.exceptions.InvalidStatus):
            websockets.sync.client.connect(f"{ws_url}?token=wrong-token-FAKE-ws")
        stored = client.get("/v1/logs", headers=server.read_headers).json()["events"]
    output = server.output()
    signature = headers["x-log-signature"]
    for secret in (READ_TOKEN, ADMIN_TOKEN, HMAC_SECRET, minted, signature[7:], "wrong-token"):
        assert secret not in output
    assert ["signed"] == [e["event"] for e in stored]


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Every event acknowledged before a SIGKILL is stored exactly once after restart (DUR-03)."""
    args = ["--rate", "1000000", "--burst", "100000"]
    data_dir = tmp_path / "data"
    server = start_server(tmp_path, args=args, data_dir=data_dir, name="first")
    acked: list[str] = []
    stop = threading.Event()
    errors: list[str] = []

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while not stop.is_set():
                batch = [event("load", event_id=uuid.uuid4().hex) for _ in range(20)]
                try:
                    response = client.post("/v1/logs", json=batch)
                except httpx.HTTPError:
                    continue  # the kill: no answer means not acknowledged
                if response.status_code == 200:
                    acked.extend(str(e["event_id"]) for e in batch)
                else:
                    errors.append(str(response.status_code))

    writers = [threading.Thread(target=client_loop) for _ in range(2)]
    for thread in writers:
        thread.start()
    try:
        time.sleep(1.5)
        server.kill()
    finally:
        stop.set()
        for thread in writers:
            thread.join(timeout=10)
    assert len(acked) > 100, server.output()
    assert [] == errors

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
                if not cursor:
                    break
    finally:
        restarted.stop()
    assert len(ids) == len(set(ids))
    assert set() == set(acked) - set(ids)
