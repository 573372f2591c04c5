"""uvicorn's httptools protocol with one socket write per response instead of two.

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and the body with `http.response.body`: two `send()` system calls, two
TCP segments and, on loopback, two wake-ups of the client for every small answer. A
single-event `POST /v1/logs` spends about a fifth of the server's main thread in those calls
(bench/README.md). `CoalescingHttpToolsProtocol` hands uvicorn a transport that collects the
writes made during one pass of the event loop and sends them together at the end of it;
close, EOF and abort keep their order with respect to what is collected. Only `logbeacon
serve` uses it; an app embedded in another server is unaffected.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]


class CoalescingTransport:
    """A transport whose writes within one loop pass go out as one write.

    Everything but writing and closing is the wrapped transport's own (`__getattr__`), so
    flow control (`pause_reading`, the protocol's `pause_writing`) and `get_extra_info` keep
    working; `get_write_buffer_size` counts what is still collected here.
    """

    __slots__ = ("_loop", "_parts", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._parts: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        # A bytearray or memoryview could change before the flush; bytes cannot.
        self._parts.append(data if type(data) is bytes else bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Send what was collected now (also run by the loop at the end of the pass)."""
        self._scheduled = False
        parts = self._parts
        if not parts:
            return
        self._parts = []
        if self._transport.is_closing():
            return
        self._transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()  # what was written before close() goes out before the FIN
        self._transport.close()

    def abort(self) -> None:
        self._parts = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        pending = sum(len(part) for part in self._parts)
        return int(self._transport.get_write_buffer_size()) + pending

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` writing through a `CoalescingTransport` (see the module docstring).

    A WebSocket upgrade hands the same transport to the WebSocket protocol, whose frames are
    coalesced the same way.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped: Any = CoalescingTransport(transport, self.loop)
        super().connection_made(wrapped)
