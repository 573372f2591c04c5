"""Events come back exactly as appended, and an event_id is stored once (INJ-04, DUR-10)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logbeacon.exceptions import EventError
from logbeacon.store.base import Query
from logbeacon.store.sqlite import SqliteStore

Event = dict[str, Any]


def _odd_events(make_event: Callable[..., Event]) -> list[Event]:
    """Events that stress every branch of the row encoding."""
    long_stack = [f'  File "app/mod{i}.py", line {i}, in handler' for i in range(40)]
    return [
        make_event(message="a\x00b \x7f\x1b[31mred\x1b[0m \r\n forged \u2028 line"),
        make_event(message="日本語のメッセージ 🚀 café", service="サービス", node="nœud"),
        make_event(
            event="node_failed",
            level="error",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
            request_id="8f14e45f-ceea-467f-a0e6-0f3b7c9f4f7a",
            session_id="S-Upper-Case",
            run_id="RUN:42",
            job_id="6929c9",
            correlation_id="corr-1",
            error={"type": "TimeoutError", "message": "took too long", "stack": long_stack},
            nested={"a": [1, 2.5, None, True, {"b": {"c": ["x" * 500]}}]},
        ),
        make_event(event_id="custom.id:1-A", environment="prod", release="1.2.3", logger="app.x"),
        make_event(event_id="6F9619FF-8B86-D011-B42D-00C04FC964FF"),  # upper-case UUID
        make_event(trace_id="not-a-valid-trace-id-at-all"),
        make_event(http={"method": "get", "route": "/items/{id}", "status": "200"}),
        make_event(timestamp="2026-01-01T00:00:00.123Z"),
        {  # not normalised: the store must still keep every byte of it
            "timestamp": "2026-01-01T00:00:01+00:00",
            "level": "VERBOSE",
            "event": "custom",
            "event_id": "raw-1",
            "service": 7,
            "message": None,
            "span_id": "ABCDEF",
            "fit_score": 85,
        },
        make_event(message=""),
        make_event(message="m", extra={"big": "y" * 2000, "list": list(range(300))}),
    ]


async def test_every_kind_of_event_round_trips_exactly(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """get() returns each stored event equal to what was appended, NULs and unicode intact."""
    events = _odd_events(make_event)
    result = await store.append(events)
    assert [True] * len(events) == result.stored
    for event in events:
        assert event == await store.get(event["event_id"])


async def test_query_and_trace_return_the_same_dicts(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """query() and trace() decode rows exactly like get()."""
    events = _odd_events(make_event)
    await store.append(events)
    page = await store.query(Query(limit=100))
    assert sorted(events, key=lambda e: e["event_id"]) == sorted(
        page.events, key=lambda e: e["event_id"]
    )
    traced = await store.trace("4bf92f3577b34da6a3ce929d0e0e4736")
    assert [events[2]] == traced


async def test_nul_in_message_is_not_truncated(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """A message with NUL characters comes back whole (INJ-04)."""
    event = make_event(message="a\x00b\x00")
    await store.append([event])
    stored = await store.get(event["event_id"])
    assert stored is not None
    assert "a\x00b\x00" == stored["message"]


async def test_absent_fields_are_stored_as_sql_null(
    store: SqliteStore, make_event: Callable[..., Event], tmp_path: Path
) -> None:
    """The writer binds None through a registered adapter (the default lookup cost 400 ns
    per NULL); what lands in the file is still SQL NULL, and queries on it still match."""
    adapt = sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)]
    assert adapt(None) is None
    event = make_event()  # no node, logger, trace, span, session or run
    await store.append([event])
    with contextlib.closing(sqlite3.connect(tmp_path / "events.db")) as conn:
        row = conn.execute(
            "SELECT node IS NULL, lg IS NULL, trace IS NULL, span IS NULL, sess IS NULL,"
            " run IS NULL FROM events"
        ).fetchone()
    assert row == (1, 1, 1, 1, 1, 1)
    page = await store.query(Query(service="api"))
    assert [e["event_id"] for e in page.events] == [event["event_id"]]
    assert "node" not in page.events[0]


async def test_resent_batch_is_stored_once(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Appending the same batch twice stores it once and reports duplicates (DUR-10)."""
    batch = [make_event() for _ in range(5)]
    first = await store.append(batch)
    second = await store.append(batch)
    assert (5, 0) == (first.accepted, first.duplicates)
    assert (0, 5) == (second.accepted, second.duplicates)
    assert 5 == (await store.stats()).events


async def test_duplicates_inside_one_batch_keep_the_first(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """The second copy of an event_id within one batch is a duplicate; the first copy stands."""
    first = make_event(message="first")
    copy = dict(first, message="second")
    other = make_event()
    result = await store.append([first, other, copy])
    assert [True, True, False] == result.stored
    stored = await store.get(first["event_id"])
    assert stored is not None
    assert "first" == stored["message"]


async def test_duplicates_across_concurrent_batches_are_stored_once(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Two concurrent appends carrying the same event store it once between them."""
    import asyncio

    shared = make_event()
    a, b = await asyncio.gather(
        store.append([shared, make_event()]), store.append([make_event(), shared])
    )
    assert 1 == a.stored[0] + b.stored[1]
    assert 3 == (await store.stats()).events


async def test_event_without_event_id_is_rejected_with_its_batch(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """An event lacking event_id fails its own append call and stores nothing of it."""
    good = make_event()
    with pytest.raises(EventError) as caught:
        await store.append([good, {"event": "x", "timestamp": "2026-01-01T00:00:00.000000Z"}])
    assert "invalid_event_id" == caught.value.reason
    assert await store.get(good["event_id"]) is None


async def test_get_of_unknown_id_is_none(store: SqliteStore) -> None:
    """get() of an id never stored is None, not an error."""
    assert await store.get("0190a8e0-0000-7000-8000-000000000000") is None
    assert await store.get("no-such-id") is None


async def test_empty_append_stores_nothing(store: SqliteStore) -> None:
    """An empty batch is a no-op with an empty result."""
    assert [] == (await store.append([])).stored
    assert 0 == (await store.stats()).events
