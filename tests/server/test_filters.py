"""The query-filter parser on its own: times, durations, levels, limits, unknown parameters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from logbeacon.server.filters import FilterError, parse_duration, parse_filters, parse_time
from logbeacon.store.base import Query

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604_800), ("2w", 1_209_600), (" 5M ", 300)],
)
def test_durations(text: str, seconds: int) -> None:
    """Durations are a whole number and one unit of s, m, h, d or w."""
    assert seconds == parse_duration(text)


@pytest.mark.parametrize("text", ["", "15", "m", "1.5h", "-1h", "1h30m", "1y", "ten minutes"])
def test_bad_durations(text: str) -> None:
    """Anything else is not a duration."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_since_accepts_duration_and_rfc3339() -> None:
    """since/until take RFC 3339 (any offset) or a duration back from now."""
    assert NOW - 3600 == parse_time("1h", now=NOW)
    assert 1_700_000_000.0 == parse_time("2023-11-14T22:13:20Z", now=NOW)
    assert 1_700_000_000.0 == parse_time("2023-11-15T00:13:20+02:00", now=NOW)


@pytest.mark.parametrize("text", ["yesterday", "1700000000", "2023-13-45T00:00:00Z", "now"])
def test_bad_times(text: str) -> None:
    """Words, bare epoch numbers and impossible dates are refused."""
    with pytest.raises(ValueError, match=r"time|ambiguous"):
        parse_time(text, now=NOW)


def test_every_filter_is_parsed() -> None:
    """Every filter of DESIGN.md §4 maps onto the Query."""
    params = [
        ("since", "1h"),
        ("until", "2027-01-15T08:00:00Z"),
        ("level", "WARNING"),
        ("service", "api"),
        ("environment", "prod"),
        ("event", "http_request"),
        ("trace_id", "4BF92F3577B34DA6A3CE929D0E0E4736"),
        ("request_id", "r1"),
        ("session_id", "s1"),
        ("run_id", "run1"),
        ("job_id", "j1"),
        ("correlation_id", "c1"),
        ("node", "developer"),
        ("q", "timeout"),
        ("limit", "25"),
        ("cursor", "abc"),
        ("token", "ignored"),
    ]
    query = parse_filters(params, now=NOW, extra_allowed=("token",))
    assert (
        Query(
            since=NOW - 3600,
            until=datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp(),
            level="warn",
            service="api",
            environment="prod",
            event="http_request",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            request_id="r1",
            session_id="s1",
            run_id="run1",
            job_id="j1",
            correlation_id="c1",
            node="developer",
            q="timeout",
            limit=25,
            cursor="abc",
        )
        == query
    )


def test_defaults() -> None:
    """No parameters: everything, newest first, 100 per page."""
    assert Query(limit=100) == parse_filters([], now=NOW)


@pytest.mark.parametrize(
    ("params", "status", "param"),
    [
        ([("levle", "error")], 400, "levle"),
        ([("level; DROP TABLE logs", "x")], 400, "?"),
        ([("token", "t")], 400, "token"),
        ([("level", "warn"), ("level", "error")], 400, "level"),
        ([("level", "verbose")], 422, "level"),
        ([("since", "yesterday")], 422, "since"),
        ([("limit", "0")], 422, "limit"),
        ([("limit", "1001")], 422, "limit"),
        ([("limit", "ten")], 422, "limit"),
        ([("limit", "٣")], 422, "limit"),
        ([("trace_id", "xyz")], 422, "trace_id"),
        ([("service", "")], 422, "service"),
        ([("service", "a" * 257)], 422, "service"),
    ],
)
def test_filter_errors(params: list[tuple[str, str]], status: int, param: str) -> None:
    """Unknown/repeated parameters are 400; bad values are 422 naming the parameter."""
    with pytest.raises(FilterError) as info:
        parse_filters(params, now=NOW)
    assert (status, param) == (info.value.status, info.value.param)


def test_sql_looking_values_are_just_values() -> None:
    """Injection-looking values are accepted as plain values for bound parameters (INJ-10)."""
    query = parse_filters([("q", "' OR 1=1 --"), ("service", "1) UNION ALL SELECT")], now=NOW)
    assert ("' OR 1=1 --", "1) UNION ALL SELECT") == (query.q, query.service)


@settings(derandomize=True, max_examples=200)
@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=5))
@example([("since", "\x00")])
@example([("until", "9" * 30 + "d")])
def test_parser_never_raises_anything_but_filter_errors(params: list[tuple[str, str]]) -> None:
    """Arbitrary parameters either parse or raise FilterError, never anything else."""
    status = 200
    try:
        parse_filters(params, now=NOW)
    except FilterError as exc:
        status = exc.status
    assert status in (200, 400, 422)
