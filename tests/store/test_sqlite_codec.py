"""The row codec: exact timestamps, id packing, and the index document purge relies on."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from logbeacon.event import format_timestamp
from logbeacon.store._sqlite_codec import (
    EncodedEvent,
    decode_event,
    decode_event_id,
    encode_event_id,
    format_micros,
    index_document,
    parse_micros,
)

from .test_sqlite_roundtrip import _odd_events

Event = dict[str, Any]


def test_canonical_timestamps_round_trip_through_micros() -> None:
    """Every fixed-width timestamp from 1970 to 2262 parses to micros and formats back."""
    rng = random.Random(5)
    for _ in range(20_000):
        text = format_timestamp(rng.uniform(0, 9.2e9))
        micros = parse_micros(text)
        assert micros is not None
        assert text == format_micros(micros)


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-01T00:00:00.000000Z",
        "2026-02-30T00:00:00.000000Z",
        "2026-01-01T24:00:00.000000Z",
        "2026-01-01T00:60:00.000000Z",
        "2026-01-01T00:00:60.000000Z",
        "2026-01-01 00:00:00.000000Z",
        "2026-01-01T00:00:00.000Z",
        "2026-01-01T00:00:00.000000+00:00",
        "２026-01-01T00:00:00.000000Z",
        "2026-01-01T00:00:00.00000１Z",
        "2026-01-01T0 :00:00.000000Z",
        "+026-01-01T00:00:00.000000Z",
        "2026-01-01T00:00:00.-00001Z",
    ],
)
def test_non_canonical_timestamps_are_not_lifted(text: str) -> None:
    """Anything that would not format back identically stays text in the body."""
    assert parse_micros(text) is None


@pytest.mark.parametrize(
    ("value", "packed"),
    [
        ("0190a8e0-7c3a-7000-8000-0123456789ab", True),
        ("0190A8E0-7C3A-7000-8000-0123456789AB", False),
        ("0190a8e0 7c3a-7000-8000-0123456789ab", False),
        ("0190a8e0-7c3a-7000-8000-0123456789a", False),
        ("req-8f3a2c", False),
    ],
)
def test_only_canonical_uuids_become_bytes(value: str, packed: bool) -> None:
    """Lowercase canonical UUIDs are stored as 16 bytes; everything else as given."""
    stored = encode_event_id(value)
    assert packed == isinstance(stored, bytes)
    assert value == decode_event_id(stored)


def test_stored_document_is_what_purge_rebuilds(make_event: Callable[..., Event]) -> None:
    """The index document written at append equals the one purge recomputes from the row;
    a contentless FTS5 index is corrupted by a delete with different text."""
    names: dict[int, str] = {}
    codes: dict[str, int] = {}

    def code(value: str | None) -> int | None:
        if value is None:
            return None
        if value not in codes:
            codes[value] = len(codes) + 1
            names[codes[value]] = value
        return codes[value]

    events = [
        *_odd_events(make_event),
        make_event(error={"type": "E", "message": "boom"}, job_id="j", correlation_id="c"),
        make_event(level="warn", node="planner", event="node_start", message=None),
    ]
    for event in events:
        encoded = EncodedEvent(event, compress=True)
        row = (
            1,
            encoded.micros,
            encoded.level,
            *[code(name) for name in encoded.names],
            # SQLite gives blobs back as bytes (they are bound as bytearray)
            *[bytes(v) if isinstance(v, bytearray) else v for v in encoded.columns],
        )
        decoded = decode_event(row, names.get)
        assert event == decoded
        assert encoded.document == index_document(decoded)


def test_blobs_are_bound_as_bytearray(make_event: Callable[..., Event]) -> None:
    """`sqlite3` binds a bytearray directly but looks for an adapter for every bytes value;
    the id and body columns are bytearrays, `eid` stays hashable bytes for de-duplication."""
    encoded = EncodedEvent(
        make_event(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", request_id="not-a-uuid"),
        compress=True,
    )
    eid, trace, _, request, _, _, _, body = encoded.columns
    assert isinstance(encoded.eid, bytes)
    assert bytearray(encoded.eid) == eid
    assert isinstance(eid, bytearray)
    assert isinstance(trace, bytearray)
    assert isinstance(body, bytearray)
    assert "not-a-uuid" == request  # text ids stay text
