"""The shipper against a real `logbeacon serve`: delivered once, across outages, restarts,
forks and crashes (RELIABILITY.md §3)."""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from logbeacon.event import encode, new_event_id
from logbeacon.sdk.shipper import Shipper
from tests.helpers.server import RunningServer, free_port, running_server, start_server

pytestmark = pytest.mark.e2e

INGEST_KEY = "shipper-test-ingest-key-0123456789"
HMAC_SECRET = "shipper-test-hmac-secret-0123456789"
FAST = ["--rate", "100000", "--burst", "1000"]


# --------------------------------------------------------------------------- helpers


class Relay:
    """A TCP relay on a fixed loopback port: the address the shipper knows, whatever server
    (if any) is behind it. Not listening = connection refused; `retarget` = a new server."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.target: int | None = None
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def listen(self, target: int) -> None:
        self.target = target
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def retarget(self, target: int) -> None:
        """Point new connections at `target` and cut the old ones (the old server is gone)."""
        self.target = target
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target or 0), timeout=2)
            except OSError:
                client.close()  # the server behind us is down: the connection just ends
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.retarget(0)


def fetch(server: RunningServer, service: str) -> list[dict[str, Any]]:
    """Every stored event of `service`, following cursors."""
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"service": service, "limit": 1000}
    while True:
        response = httpx.get(
            f"{server.url}/v1/logs", params=params, headers=server.read_headers, timeout=10
        )
        assert 200 == response.status_code, response.text
        page = response.json()
        events.extend(page["events"])
        if not page.get("next_cursor"):
            return events
        params["cursor"] = page["next_cursor"]


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def emit(shipper: Shipper, service: str, count: int, **fields: Any) -> list[str]:
    ids = []
    for i in range(count):
        event = {"event": "shipped", "level": "error", "service": service, "seq": i, **fields}
        event["event_id"] = new_event_id()
        ids.append(event["event_id"])
        shipper.emit(event, encode(event) + b"\n")
    return ids


def stored_ids(server: RunningServer, service: str) -> list[str]:
    return [e["event_id"] for e in fetch(server, service)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module: ingest key and HMAC secret, a 100-event batch limit."""
    env = {"LOGBEACON_INGEST_KEYS": INGEST_KEY, "LOGBEACON_HMAC_SECRETS": HMAC_SECRET}
    path = tmp_path_factory.mktemp("shipper-server")
    with running_server(path, env=env, args=[*FAST, "--max-batch", "100"]) as running:
        yield running


@pytest.fixture
def shippers() -> Iterator[Callable[..., Shipper]]:
    made: list[Shipper] = []

    def make(url: str, **kwargs: Any) -> Shipper:
        kwargs.setdefault("ingest_key", INGEST_KEY)
        kwargs.setdefault("flush_interval", 0.1)
        kwargs.setdefault("backoff_base", 0.1)
        kwargs.setdefault("backoff_cap", 1.0)
        shipper = Shipper(url, **kwargs)
        made.append(shipper)
        return shipper

    yield make
    for shipper in made:
        shipper.close(1.0)


@pytest.fixture
def relay() -> Iterator[Relay]:
    made = Relay()
    yield made
    made.close()


def service_name() -> str:
    return f"svc-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- delivery


def test_events_are_stored_exactly_once(server: RunningServer, shippers: Any) -> None:
    """Emitted events reach the store once each, with their ids and fields intact."""
    service = service_name()
    shipper = shippers(server.url, batch_size=100)
    ids = emit(shipper, service, 250)
    assert shipper.flush(15)
    stored = fetch(server, service)
    assert sorted(ids) == sorted(e["event_id"] for e in stored)
    assert list(range(250)) == sorted(e["seq"] for e in stored)
    assert (250, 0) == (shipper.stats().delivered, shipper.stats().duplicates)


def test_hmac_signed_shipping(server: RunningServer, shippers: Any) -> None:
    """Signed with the server's secret (no key) is accepted; a wrong secret is refused."""
    service = service_name()
    signed = shippers(server.url, ingest_key=None, hmac_secret=HMAC_SECRET)
    ids = emit(signed, service, 20)
    assert signed.flush(15)
    assert sorted(ids) == sorted(stored_ids(server, service))
    forged = shippers(server.url, ingest_key=None, hmac_secret="not-the-secret-0123456789")
    emit(forged, service, 5)
    assert forged.flush(15)
    assert {"unauthorized": 5} == forged.stats().dropped
    assert 20 == len(stored_ids(server, service))


def test_413_from_the_server_splits_the_batch(server: RunningServer, shippers: Any) -> None:
    """RL-16: a batch over the server's 100-event limit is split until it fits; none lost."""
    service = service_name()
    shipper = shippers(server.url, batch_size=500, flush_interval=5.0)
    ids = emit(shipper, service, 300)
    assert shipper.flush(20)
    assert sorted(ids) == sorted(stored_ids(server, service))
    stats = shipper.stats()
    assert (300, {}) == (stats.delivered, stats.dropped)
    assert stats.requests > 1


def test_oversized_single_event_is_dropped_alone(server: RunningServer, shippers: Any) -> None:
    """RL-16: one event bigger than the body limit is dropped as too_large; its batch-mates
    are stored."""
    service = service_name()
    shipper = shippers(server.url, flush_interval=5.0)
    small = emit(shipper, service, 3)
    emit(shipper, service, 1, blob=secrets.token_hex(1_500_000))
    assert shipper.flush(30)
    assert sorted(small) == sorted(stored_ids(server, service))
    assert {"too_large": 1} == shipper.stats().dropped


def test_invalid_events_are_rejected_once_not_retried(server: RunningServer, shippers: Any) -> None:
    """DEL-04: events the server rejects one by one are counted by reason, never resent."""
    service = service_name()
    shipper = shippers(server.url, flush_interval=5.0)
    good = emit(shipper, service, 3)
    emit(shipper, service, 2, level="verbose")
    assert shipper.flush(15)
    stats = shipper.stats()
    assert ({"invalid_level": 2}, 3, 1) == (stats.rejected, stats.delivered, stats.requests)
    assert sorted(good) == sorted(stored_ids(server, service))


# --------------------------------------------------------------------------- outages


def test_server_down_at_start_then_up(server: RunningServer, shippers: Any, relay: Relay) -> None:
    """Events emitted while nothing listens are delivered once the server is reachable."""
    service = service_name()
    shipper = shippers(relay.url)
    ids = emit(shipper, service, 40)
    assert not shipper.flush(0.5)
    assert shipper.stats().requests >= 1
    relay.listen(server.port)
    assert shipper.flush(20)
    assert sorted(ids) == sorted(stored_ids(server, service))


@pytest.mark.slow
def test_server_killed_mid_stream_and_restarted(
    tmp_path: Path, shippers: Any, relay: Relay
) -> None:
    """DEL-05/DEL-15: a server SIGKILLed mid-stream and restarted on its data dir ends up with
    every emitted event exactly once, including those emitted while it was down."""
    data = tmp_path / "data"
    service = service_name()
    shipper = shippers(relay.url, ingest_key=None, flush_interval=0.05)
    ids: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            ids.extend(emit(shipper, service, 5))
            time.sleep(0.01)

    with contextlib.ExitStack() as cleanup:
        first = start_server(tmp_path, args=FAST, data_dir=data)
        cleanup.callback(first.stop)
        relay.listen(first.port)
        producer = threading.Thread(target=produce)
        producer.start()
        try:
            assert wait_for(lambda: shipper.stats().delivered >= 100, 20)
            first.kill()
            emitted_at_kill = len(ids)
            second = start_server(tmp_path, args=FAST, data_dir=data, name="restarted")
            cleanup.callback(second.stop)
            relay.retarget(second.port)
            assert wait_for(lambda: len(ids) > emitted_at_kill + 100, 10)
        finally:
            stop.set()
            producer.join()
        assert shipper.flush(30)
        stored = stored_ids(second, service)
        assert len(stored) == len(set(stored))
        assert sorted(ids) == sorted(stored)


# --------------------------------------------------------------------------- fork


def test_forked_child_ships_with_its_own_worker(server: RunningServer, shippers: Any) -> None:
    """DEL-07: after fork the child's events go out through a child-owned worker; the parent
    keeps shipping; nothing is sent twice."""
    service = service_name()
    shipper = shippers(server.url)
    parent_before = emit(shipper, service, 1, who="parent")
    assert shipper.flush(15)
    child_ids = [new_event_id() for _ in range(20)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            for event_id in child_ids:
                event = {
                    "event": "shipped",
                    "level": "error",
                    "service": service,
                    "who": "child",
                    "event_id": event_id,
                }
                shipper.emit(event, encode(event))
            stats_ok = shipper.flush(15) and shipper.stats().delivered == 20
            code = 0 if stats_ok else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child did not finish shipping within 30 s")
    assert 0 == os.waitstatus_to_exitcode(status)
    parent_after = emit(shipper, service, 5, who="parent")
    assert shipper.flush(15)
    stored = stored_ids(server, service)
    assert sorted(parent_before + child_ids + parent_after) == sorted(stored)


# --------------------------------------------------------------------------- spool


_SPOOLING_APP = textwrap.dedent(
    """
    import json, sys, time
    from logbeacon.sdk.shipper import Shipper
    from logbeacon.event import encode
    url, spool, ids_path, service = sys.argv[1:5]
    shipper = Shipper(url, spool_dir=spool, flush_interval=0.05, backoff_cap=0.2)
    for event_id in json.load(open(ids_path)):
        event = {"event": "spooled", "level": "error", "service": service, "event_id": event_id}
        shipper.emit(event, encode(event))
    ok = shipper.flush(20)
    print("spooled" if ok and shipper.stats().spooled == 200 else "failed", flush=True)
    time.sleep(600)
    """
)


def test_spooled_events_survive_sigkill(
    server: RunningServer, shippers: Any, relay: Relay, tmp_path: Path
) -> None:
    """DEL-10: events spooled while the server was down survive a SIGKILL of the app and are
    delivered once by the next process on the same spool."""
    service = service_name()
    spool = tmp_path / "spool"
    ids = [new_event_id() for _ in range(200)]
    ids_path = tmp_path / "ids.json"
    ids_path.write_bytes(encode(ids))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBEACON_")}
    app = subprocess.Popen(
        [sys.executable, "-c", _SPOOLING_APP, relay.url, str(spool), str(ids_path), service],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert app.stdout is not None
        assert b"spooled\n" == app.stdout.readline()
    finally:
        os.kill(app.pid, signal.SIGKILL)
        app.wait(10)
        if app.stdout is not None:
            app.stdout.close()
    assert list(spool.glob("*.seg"))
    relay.listen(server.port)
    shippers(relay.url, ingest_key=INGEST_KEY, spool_dir=spool)
    assert wait_for(lambda: not list(spool.glob("*.seg")), 20)
    stored = stored_ids(server, service)
    assert sorted(ids) == sorted(stored)
