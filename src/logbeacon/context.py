"""Correlation context: the ids that join one timeline across browser, API and agent nodes.

The context is one `ContextVar` holding an immutable mapping. Copy-on-write means a child
asyncio task or a thread started with `contextvars.copy_context()` sees the ids bound when
it started, and nothing it binds leaks back into its parent or its siblings. `bound(...)`
restores exactly what was there before — it never wipes the caller's ids, unlike
`clear_contextvars()` (the defect of seed plan 003).

Also here: strict W3C Trace Context `traceparent` parsing/formatting and id generators, so the
ASGI middleware, the LangGraph handler and the shipper agree on what a valid id is.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from logbeacon.event import is_valid_span_id, is_valid_trace_id

__all__ = [
    "TraceParent",
    "bind",
    "bound",
    "clear",
    "get_context",
    "is_valid_request_id",
    "new_request_id",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
    "unbind",
]

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("logbeacon_context", default=_EMPTY)


def get_context() -> Mapping[str, Any]:
    """The ids and fields bound in the current context (read-only view)."""
    return _context.get()


def bind(**fields: Any) -> None:
    """Bind fields to the current context (task/thread) until unbound or the context ends.

    Prefer `bound(...)` where a block has a clear end: it restores what was there before.
    """
    _context.set(MappingProxyType({**_context.get(), **fields}))


def unbind(*keys: str) -> None:
    """Remove fields from the current context; unknown keys are ignored."""
    current = _context.get()
    if any(key in current for key in keys):
        _context.set(MappingProxyType({k: v for k, v in current.items() if k not in keys}))


def clear() -> None:
    """Drop everything bound in the current context (tests and worker resets only)."""
    _context.set(_EMPTY)


@contextmanager
def bound(**fields: Any) -> Iterator[Mapping[str, Any]]:
    """Bind fields for the duration of a block, then restore the previous context exactly.

    Restores even when the block raises, and works across `await` (each asyncio task has its
    own copy of the context).
    """
    token = _context.set(MappingProxyType({**_context.get(), **fields}))
    try:
        yield _context.get()
    finally:
        try:
            _context.reset(token)
        except ValueError:
            # The block ran in another Context than it started in (a generator resumed
            # elsewhere): resetting is impossible there, so remove what we added instead.
            unbind(*fields)


# --------------------------------------------------------------------------- ids


def new_trace_id() -> str:
    """A random W3C trace id: 32 lowercase hex, never all zero."""
    while True:
        value = random.getrandbits(128)
        if value:
            return f"{value:032x}"


def new_span_id() -> str:
    """A random W3C span/parent id: 16 lowercase hex, never all zero."""
    while True:
        value = random.getrandbits(64)
        if value:
            return f"{value:016x}"


def new_request_id() -> str:
    """A request id for `x-request-id` when the caller sent none (32 hex, like a trace id)."""
    return f"{random.getrandbits(128):032x}"


_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_valid_request_id(value: object) -> bool:
    """An incoming `x-request-id` is kept only if it is 1-128 characters of [A-Za-z0-9._:-].

    Anything else could carry log-injection payloads or unbounded data into every event.
    """
    return isinstance(value, str) and _REQUEST_ID_RE.fullmatch(value) is not None


# --------------------------------------------------------------------------- traceparent

_HEX2: Final = re.compile(r"[0-9a-f]{2}")
_OWS: Final = " \t"


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A parsed W3C `traceparent`: which trace we are in and the caller's span."""

    trace_id: str
    span_id: str
    sampled: bool = True

    def format(self) -> str:
        """Render as a version-00 header; reserved flag bits are always sent as zero."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def child(self) -> TraceParent:
        """The same trace with a new span id: what we send downstream or answer with."""
        return TraceParent(self.trace_id, new_span_id(), self.sampled)

    @classmethod
    def new(cls, sampled: bool = True) -> TraceParent:
        """Start a new trace."""
        return cls(new_trace_id(), new_span_id(), sampled)


def parse_traceparent(header: str | None) -> TraceParent | None:
    """Parse a `traceparent` header strictly; None means "start a new trace".

    Follows the W3C grammar: lowercase hex only (no silent lowercasing), version `ff`
    invalid, all-zero ids invalid, version 00 must be exactly 55 characters, a higher version
    may carry more fields after a `-`. Surrounding spaces and tabs are accepted.
    """
    if header is None or len(header) > 512:
        return None
    value = header.strip(_OWS)
    if len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version = value[:2]
    if not _HEX2.fullmatch(version) or version == "ff":
        return None
    if version == "00":
        if len(value) != 55:
            return None
    elif len(value) > 55 and value[55] != "-":
        return None
    trace_id, span_id, flags = value[3:35], value[36:52], value[53:55]
    if not (is_valid_trace_id(trace_id) and is_valid_span_id(span_id)):
        return None
    if not _HEX2.fullmatch(flags):
        return None
    return TraceParent(trace_id, span_id, sampled=bool(int(flags, 16) & 0x01))
