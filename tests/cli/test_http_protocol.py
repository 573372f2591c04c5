"""`logbeacon serve` writes each response with one socket write (`cli/_http_protocol.py`).

The transport is exercised on a real event loop over a recording transport (the real
socket path is every `logbeacon serve` test, WebSocket and SSE included), and a real server
answers pipelined requests in order.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import orjson
import pytest

from logbeacon.cli._http_protocol import CoalescingTransport
from tests.helpers.server import clean_environment, running_server


class RecordingTransport:
    """The parts of `asyncio.Transport` that `CoalescingTransport` uses, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


def _wrap() -> tuple[CoalescingTransport, RecordingTransport]:
    raw = RecordingTransport()
    return CoalescingTransport(raw, asyncio.get_running_loop()), raw  # type: ignore[arg-type]


async def test_writes_of_one_loop_pass_go_out_as_one_write() -> None:
    wrapped, raw = _wrap()
    wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
    wrapped.write(b"")
    wrapped.writelines([b"{", b"}"])
    assert raw.calls == []  # nothing sent yet: the pass is not over
    assert wrapped.get_write_buffer_size() == 7 + 21
    await asyncio.sleep(0)
    assert raw.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\n{}")]
    wrapped.write(b"next")
    await asyncio.sleep(0)
    assert raw.calls[1:] == [("write", b"next")]


async def test_a_mutable_buffer_is_copied_when_written() -> None:
    wrapped, raw = _wrap()
    data = bytearray(b"abc")
    wrapped.write(data)
    data[:] = b"xyz"
    await asyncio.sleep(0)
    assert raw.calls == [("write", b"abc")]


async def test_close_and_eof_send_what_was_written_first() -> None:
    wrapped, raw = _wrap()
    wrapped.write(b"last words")
    wrapped.write_eof()
    wrapped.close()
    await asyncio.sleep(0)
    assert raw.calls == [("write", b"last words"), ("write_eof", None), ("close", None)]


async def test_abort_drops_what_was_not_sent() -> None:
    wrapped, raw = _wrap()
    wrapped.write(b"never")
    wrapped.abort()
    await asyncio.sleep(0)
    assert raw.calls == [("abort", None)]


async def test_nothing_is_written_to_a_closing_transport() -> None:
    wrapped, raw = _wrap()
    wrapped.write(b"late")
    raw.closing = True
    await asyncio.sleep(0)
    assert raw.calls == []


async def test_everything_else_is_the_wrapped_transports() -> None:
    wrapped, _ = _wrap()
    assert wrapped.get_extra_info("peername") == ("127.0.0.1", 5)
    assert not wrapped.is_closing()


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length off `sock`; the rest stays in `buffer`."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        rest += chunk
    buffer[:] = rest[length:]
    return int(head[9:12]), rest[:length]


def test_serve_answers_pipelined_requests_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_environment(monkeypatch)
    with running_server(tmp_path) as server:
        requests = b""
        for index in range(3):
            body = orjson.dumps([{"event": f"pipelined_{index}"}] * (index + 1))
            requests += (
                b"POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        requests += b"GET /v1/logs/health HTTP/1.1\r\nhost: x\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(requests)  # all four in one segment
            buffer = bytearray()
            answers = [_read_response(sock, buffer) for _ in range(4)]
        assert [status for status, _ in answers] == [200, 200, 200, 200]
        assert [orjson.loads(body)["accepted"] for _, body in answers[:3]] == [1, 2, 3]
        assert orjson.loads(answers[3][1])["ok"] is True
