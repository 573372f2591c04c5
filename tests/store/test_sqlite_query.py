"""Every Query filter, ordering, cursors and full-text search against a real SQLite file."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from logbeacon.event import format_timestamp
from logbeacon.store.base import EXACT_FILTERS, MAX_LIMIT, Query
from logbeacon.store.sqlite import SqliteStore

from .conftest import BASE_TIME

Event = dict[str, Any]


def _ids(events: list[Event]) -> list[str]:
    return [e["event_id"] for e in events]


async def _all(store: SqliteStore, query: Query) -> list[Event]:
    """Every page of a query, in order."""
    out: list[Event] = []
    cursor = None
    while True:
        page = await store.query(replace(query, cursor=cursor))
        out.extend(page.events)
        cursor = page.next_cursor
        if cursor is None:
            return out


@pytest.fixture
async def corpus(store: SqliteStore, make_event: Callable[..., Event]) -> list[Event]:
    """A small mixed corpus, every filterable field varied, appended in shuffled batches."""
    events: list[Event] = []
    for i in range(60):
        events.append(
            make_event(
                service=("api", "web", "langgraph")[i % 3],
                environment=("prod", "staging")[i % 2],
                event=("http_request", "node_failed", "llm_complete", "window_error")[i % 4],
                level=("debug", "info", "warn", "error", "critical")[i % 5],
                trace_id=f"{i // 6 + 1:032x}",
                request_id=f"req-{i // 3}",
                session_id=f"sess-{i % 4}",
                run_id=f"run-{i % 5}",
                job_id=f"job-{i % 6}",
                correlation_id=f"corr-{i % 7}",
                node=("planner", "developer", None)[i % 3],
                message=f"message number {i} {'timeout reached' if i % 10 == 0 else 'ok'}",
            )
        )
    shuffled = events[::2] + events[1::2]
    for start in range(0, 60, 7):
        await store.append(shuffled[start : start + 7])
    return events


def _newest_first(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e["timestamp"], reverse=True)


@pytest.mark.parametrize("name", EXACT_FILTERS)
async def test_each_exact_filter_alone(store: SqliteStore, corpus: list[Event], name: str) -> None:
    """Each exact-match filter returns exactly the events carrying that value, newest first."""
    value = corpus[13].get(name) or corpus[14][name]
    expected = _newest_first([e for e in corpus if e.get(name) == value])
    assert expected  # the corpus has the value
    actual = await store.query(Query(**{name: value}, limit=MAX_LIMIT))
    assert _ids(expected) == _ids(actual.events)


@pytest.mark.parametrize("level", ["debug", "info", "warn", "error", "critical"])
async def test_level_is_a_minimum(store: SqliteStore, corpus: list[Event], level: str) -> None:
    """level=X returns events at X or more severe."""
    order = ["debug", "info", "warn", "error", "critical"]
    expected = _newest_first([e for e in corpus if order.index(e["level"]) >= order.index(level)])
    actual = await store.query(Query(level=level, limit=MAX_LIMIT))
    assert _ids(expected) == _ids(actual.events)


async def test_filters_combine_with_and(store: SqliteStore, corpus: list[Event]) -> None:
    """Several filters at once keep only events matching all of them."""
    query = Query(service="api", level="warn", session_id="sess-0", environment="prod")
    expected = _newest_first(
        [
            e
            for e in corpus
            if e["service"] == "api"
            and e["level"] in ("warn", "error", "critical")
            and e["session_id"] == "sess-0"
            and e["environment"] == "prod"
        ]
    )
    assert _ids(expected) == _ids((await store.query(query)).events)


async def test_text_search_combines_with_filters(store: SqliteStore, corpus: list[Event]) -> None:
    """q plus an id filter and a name filter keeps only events matching all three."""
    expected = _newest_first(
        [
            e
            for e in corpus
            if "timeout" in e["message"] and e["run_id"] == "run-0" and e["service"] == "api"
        ]
    )
    actual = await store.query(Query(q="timeout", run_id="run-0", service="api"))
    assert expected
    assert _ids(expected) == _ids(actual.events)


async def test_unknown_values_match_nothing(store: SqliteStore, corpus: list[Event]) -> None:
    """A value that was never stored gives an empty page, not an error."""
    for name in EXACT_FILTERS:
        page = await store.query(Query(**{name: "never-stored"}))
        assert ([], None) == (page.events, page.next_cursor)


async def test_since_is_inclusive_and_until_exclusive(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """since includes an event at exactly that microsecond; until excludes it."""
    times = [BASE_TIME + i * 0.000_001 for i in range(5)]
    events = [make_event(timestamp=format_timestamp(t)) for t in times]
    await store.append(events)
    page = await store.query(Query(since=times[1], until=times[3]))
    assert _ids([events[2], events[1]]) == _ids(page.events)


async def test_results_are_newest_first_by_timestamp(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Order follows the event timestamp, not the order of arrival."""
    events = [make_event(timestamp=format_timestamp(BASE_TIME + s)) for s in (5, 1, 9, 3, 7)]
    await store.append(events[:2])
    await store.append(events[2:])
    page = await store.query(Query())
    assert _ids(_newest_first(events)) == _ids(page.events)


async def test_events_sharing_a_timestamp_page_without_loss(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Many events in the same millisecond page out completely and once each."""
    stamp = "2026-01-01T00:00:00.000000Z"
    events = [make_event(timestamp=stamp) for _ in range(1500)]
    for start in range(0, 1500, 500):
        await store.append(events[start : start + 500])
    seen = await _all(store, Query(limit=97))
    assert sorted(_ids(events)) == sorted(_ids(seen))
    assert len(seen) == len(set(_ids(seen)))


async def test_cursor_paging_is_stable_while_appending(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Pages over 5,000 events give each once while newer and late events keep arriving."""
    initial = [make_event() for _ in range(5000)]
    for start in range(0, 5000, 500):
        await store.append(initial[start : start + 500])
    stop = asyncio.Event()

    async def keep_appending() -> int:
        n = 0
        while not stop.is_set():
            late = make_event(timestamp=format_timestamp(BASE_TIME + 2.5))  # inside the range
            newer = make_event(timestamp=format_timestamp(BASE_TIME + 10_000 + n))
            await store.append([late, newer])
            n += 1
            await asyncio.sleep(0)
        return n

    first = await store.query(Query(limit=100))
    writer = asyncio.create_task(keep_appending())
    seen = list(first.events)
    cursor = first.next_cursor
    pages = 1
    while cursor is not None:
        page = await store.query(Query(limit=100, cursor=cursor))
        seen.extend(page.events)
        pages += 1
        await asyncio.sleep(0)  # let the appender run between pages
        cursor = page.next_cursor
    stop.set()
    assert await writer > 0
    assert len(seen) == len(set(_ids(seen)))  # nothing repeats
    assert set(_ids(initial)) == set(_ids(seen))  # nothing skipped, no late arrival mixed in
    assert 50 == pages


async def test_tampered_cursor_is_rejected(store: SqliteStore, corpus: list[Event]) -> None:
    """An altered, truncated or foreign cursor raises ValueError with advice."""
    page = await store.query(Query(limit=5))
    assert page.next_cursor is not None
    raw = bytearray(base64.urlsafe_b64decode(page.next_cursor + "=="))
    raw[3] ^= 0x01
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad in (forged, page.next_cursor[:-2], "not a cursor!", ""):
        if not bad:
            continue
        with pytest.raises(ValueError, match="invalid cursor"):
            await store.query(Query(limit=5, cursor=bad))


async def test_limit_bounds(store: SqliteStore, corpus: list[Event]) -> None:
    """limit above MAX_LIMIT is capped; a limit below 1 is a ValueError."""
    assert 60 == len((await store.query(Query(limit=MAX_LIMIT + 500))).events)
    with pytest.raises(ValueError, match="limit"):
        await store.query(Query(limit=0))


async def test_unknown_level_is_a_value_error(store: SqliteStore) -> None:
    """A level outside the canonical five is refused with the allowed names."""
    with pytest.raises(ValueError, match="unknown level"):
        await store.query(Query(level="verbose"))


async def test_text_search_is_all_words_case_insensitive(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """q matches events containing every word, in event name, message or error."""
    a = make_event(message="Connection REFUSED by db-1")
    b = make_event(message="connection reset", error={"type": "ConnectionError", "message": "x"})
    c = make_event(event="window_error", message="refused")
    d = make_event(message="café crème")
    await store.append([a, b, c, d])
    assert {a["event_id"]} == set(_ids((await store.query(Query(q="refused connection"))).events))
    assert {b["event_id"]} == set(_ids((await store.query(Query(q="connectionerror"))).events))
    assert {c["event_id"]} == set(_ids((await store.query(Query(q="window_error"))).events))
    assert {d["event_id"]} == set(_ids((await store.query(Query(q="CAFE"))).events))
    assert {a["event_id"], b["event_id"]} == set(_ids((await store.query(Query(q="conn*"))).events))


@pytest.mark.parametrize(
    "q",
    [
        "' OR 1=1 --",
        '"unbalanced',
        "NEAR(a b) OR c AND NOT d",
        "level; DROP TABLE events",
        "1) UNION ALL SELECT * FROM names --",
        "*",
        "\x00",
        "ü\u2028ö",
    ],
)
async def test_hostile_search_text_is_just_words(
    store: SqliteStore, make_event: Callable[..., Event], q: str
) -> None:
    """Operators and SQL in q are plain words: no error, no extra rows, tables intact (INJ-10)."""
    await store.append([make_event(message="harmless")])
    page = await store.query(Query(q=q))
    assert [] == page.events
    assert 1 == (await store.stats()).events


async def test_event_is_searchable_as_soon_as_append_returns(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """An acknowledged event is found by q, id, time and level at once."""
    event = make_event(message="zanzibar quokka", level="error", trace_id="ab" * 16)
    await store.append([event])
    for query in (
        Query(q="quokka"),
        Query(trace_id="ab" * 16),
        Query(level="error"),
        Query(since=BASE_TIME - 1),
    ):
        assert [event] == (await store.query(query)).events


async def test_trace_is_oldest_first_and_exact(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """trace() returns only that trace's events, oldest first, up to the limit."""
    trace_id = "cd" * 16
    events = [
        make_event(trace_id=trace_id, timestamp=format_timestamp(BASE_TIME + s)) for s in (3, 1, 2)
    ]
    await store.append([*events, make_event(trace_id="ef" * 16)])
    traced = await store.trace(trace_id)
    assert _ids(sorted(events, key=lambda e: e["timestamp"])) == _ids(traced)
    assert 2 == len(await store.trace(trace_id, limit=2))
    assert [] == await store.trace("00" * 15 + "01")


async def test_index_driven_queries_respect_time_range_and_paging(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Filters served by the full-text index honour since/until and page without loss."""
    events = [
        make_event(
            timestamp=format_timestamp(BASE_TIME + i),
            service=("api", "web")[i % 2],
            session_id="sess-x",
            message=f"step {i} walrus",
        )
        for i in range(300)
    ]
    await store.append(events)
    window = Query(since=BASE_TIME + 50, until=BASE_TIME + 250, limit=7)
    for query, keep in (
        (replace(window, service="api"), lambda e: e["service"] == "api"),
        (replace(window, session_id="sess-x"), lambda e: True),
        (replace(window, q="walrus", service="web"), lambda e: e["service"] == "web"),
    ):
        expected = _newest_first(
            [
                e
                for e in events
                if BASE_TIME + 50 <= BASE_TIME + int(e["message"].split()[1]) < BASE_TIME + 250
                and keep(e)
            ]
        )
        assert _ids(expected) == _ids(await _all(store, query))


async def test_non_ascii_search_uses_the_index_tokenizer(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Non-ASCII search words are split and folded exactly like the indexed text."""
    creme = make_event(message="café crème brûlée")
    tokyo = make_event(message="東京 server down")
    await store.append([creme, tokyo])
    assert [creme] == (await store.query(Query(q="CRÈME brulee"))).events
    assert [tokyo] == (await store.query(Query(q="東京"))).events


async def test_search_text_cannot_reach_key_tokens(
    store: SqliteStore, make_event: Callable[..., Event]
) -> None:
    """Private-use characters are dropped from q, so it never matches an id's index token."""
    from logbeacon.store._sqlite_codec import key_token

    event = make_event(trace_id="ab" * 16)
    await store.append([event])
    token = key_token("trace_id", "ab" * 16)
    assert [] == (await store.query(Query(q=token))).events
    assert [event] == (await store.query(Query(trace_id="ab" * 16))).events
