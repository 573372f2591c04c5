"""Turn an ingest request body into a list of raw events, refusing anything unsafe early.

Order matters (RELIABILITY.md SIG-12, RL-07..09, RL-12, INJ-05/14/15): the size limit is
checked on `Content-Length` before reading, then while streaming; gzip is inflated in bounded
steps, so a decompression bomb never allocates more than the limit; JSON is parsed by orjson
(strict RFC 8259: no NaN/Infinity, invalid UTF-8 and lone surrogates refused, nesting capped
without recursion errors) and checked for duplicate keys, so a second `level` cannot slip past
the policy. Every failure is an `ApiError` with a stable code and no echo of the input.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import AsyncIterator
from typing import Any, Final

import orjson

from logbeacon.server.errors import ApiError

__all__ = [
    "MAX_BODY_DEPTH",
    "decode_content",
    "parse_document",
    "read_body",
    "split_events",
]

# Deeper bodies are refused outright (400); inside an event, values deeper than the event
# limit (16 levels) are replaced by a marker and listed in `_truncated`.
MAX_BODY_DEPTH: Final = 64

_JSON_TYPES: Final = frozenset({"application/json", "text/plain"})
_GZIP: Final = frozenset({"gzip", "x-gzip"})
_IDENTITY: Final = frozenset({"", "identity"})
_INFLATE_STEP: Final = 64 * 1024
# A key followed by white space before its colon (legal JSON, never written by our clients).
_SPACED_COLON: Final = re.compile(rb'"[ \t\n\r]+:')


def too_large(limit: int, what: str = "body") -> ApiError:
    return ApiError(
        413,
        "body_too_large",
        f"the {what} is larger than the limit of {limit} bytes (max_body_bytes); "
        "send smaller batches",
        limit=limit,
    )


def check_headers(content_type: str | None, content_encoding: str | None) -> bool:
    """Validate the media type and encoding; return True for gzip."""
    if content_type:
        media, _, params = content_type.partition(";")
        if media.strip().lower() not in _JSON_TYPES:
            raise ApiError(
                415,
                "unsupported_media_type",
                "send JSON as application/json or text/plain (browser beacons)",
            )
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
                "utf-8",
                "utf8",
            ):
                raise ApiError(415, "unsupported_charset", "bodies must be UTF-8")
    encoding = (content_encoding or "").strip().lower()
    if encoding in _IDENTITY:
        return False
    if encoding in _GZIP:
        return True
    raise ApiError(
        415, "unsupported_encoding", "Content-Encoding must be gzip or identity (or absent)"
    )


def check_content_length(value: str | None, limit: int) -> None:
    """Refuse a declared oversize body before reading a byte of it."""
    if value is None:
        return
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise ApiError(400, "invalid_content_length", "Content-Length must be a number")
    if int(text) > limit:
        raise too_large(limit)


async def read_body(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Collect the streamed body, stopping as soon as it passes `limit` bytes."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


def decode_content(body: bytes, *, gzip: bool, limit: int) -> bytes:
    """Inflate a gzip body in bounded steps; the inflated size is held to `limit` too."""
    if not gzip:
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = body
    try:
        while pending:
            out += inflater.decompress(pending, _INFLATE_STEP)
            if len(out) > limit:
                raise too_large(limit, "decompressed body")
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        # Output may still sit in the inflater's window after all input was consumed.
        while not inflater.eof:
            chunk = inflater.decompress(b"", _INFLATE_STEP)
            if not chunk:
                break
            out += chunk
            if len(out) > limit:
                raise too_large(limit, "decompressed body")
    except zlib.error:
        raise ApiError(400, "invalid_gzip", "the body is not valid gzip") from None
    if not inflater.eof or inflater.unused_data:
        raise ApiError(400, "invalid_gzip", "the gzip body is truncated or has trailing data")
    return bytes(out)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKeyError
    return obj


class _DuplicateKeyError(Exception):
    pass


def _shape(doc: Any, limit: int) -> tuple[bool, int]:
    """Whether `doc` nests deeper than `limit`, and how many object keys it holds in all.

    Breadth-first, one level at a time: no recursion, and scalars are skipped cheaply.
    """
    level: list[Any] = [doc]
    depth = 1
    keys = 0
    while level:
        if depth > limit:
            return True, keys
        below: list[Any] = []
        push = below.append
        for container in level:
            if type(container) is dict:
                keys += len(container)
                children: Any = container.values()
            else:
                children = container
            for child in children:
                kind = type(child)
                if kind is dict or kind is list:
                    push(child)
        level = below
        depth += 1
    return False, keys


def _may_repeat_keys(data: bytes, keys: int) -> bool:
    """False only when `data` (valid JSON holding `keys` distinct keys) has no repeated key.

    Outside strings, `":` in valid JSON is exactly the end of a key; inside strings it only
    adds to the count. So when no key is followed by white space before its colon, the count
    of `":` is the number of keys written plus strings that contain it, and equals the
    number of distinct keys parsed only if nothing was repeated. Anything else (a repeat, a
    string holding `":`, a spaced colon) sends the body to the exact second parse.
    """
    return data.count(b'":') != keys or _SPACED_COLON.search(data) is not None


def parse_document(data: bytes) -> Any:
    """Parse one JSON document strictly (see the module docstring)."""
    if not data.strip():
        raise ApiError(400, "empty_body", "the body is empty; send a JSON event or a list")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "depth" in reason or "recursion" in reason:
            raise _too_deep() from None
        if "UTF-8" in reason or "surrogate" in reason:
            raise ApiError(
                400, "invalid_encoding", "the body must be valid UTF-8 (no lone surrogates)"
            ) from None
        raise ApiError(
            400,
            "invalid_json",
            "the body is not valid JSON (RFC 8259: no NaN/Infinity, no trailing commas)",
        ) from None
    if isinstance(doc, dict | list):
        too_deep, keys = _shape(doc, MAX_BODY_DEPTH)
        if too_deep:
            raise _too_deep()
        if not _may_repeat_keys(data, keys):
            return doc
        # orjson keeps the last of duplicate keys; a second pass finds them. Numbers are not
        # converted here (orjson's values are the ones kept), which also keeps it cheap.
        try:
            json.loads(
                data,
                object_pairs_hook=_reject_duplicates,
                parse_int=_ignore_number,
                parse_float=_ignore_number,
            )
        except _DuplicateKeyError:
            raise ApiError(
                400,
                "duplicate_keys",
                "an object has the same key twice; each key may appear once",
            ) from None
    return doc


def _ignore_number(_: str) -> int:
    return 0


def _too_deep() -> ApiError:
    return ApiError(
        400,
        "too_deep",
        f"the body is nested deeper than {MAX_BODY_DEPTH} levels",
        limit=MAX_BODY_DEPTH,
    )


def split_events(doc: Any) -> list[Any]:
    """One event, a list, or `{"events": [...]}` → the list of raw events."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        events = doc.get("events")
        if isinstance(events, list) and "event" not in doc and "message" not in doc:
            return events
        return [doc]
    raise ApiError(
        400,
        "invalid_body",
        'the body must be an event object, a list of events, or {"events": [...]}',
    )
