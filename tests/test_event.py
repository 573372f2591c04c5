"""The canonical event helpers: levels, timestamps, event ids, normalisation and limits."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from logbeacon.event import (
    LEVEL_NUMBERS,
    LEVELS,
    Limits,
    decode,
    encode,
    format_timestamp,
    is_valid_span_id,
    is_valid_trace_id,
    level_number,
    new_event_id,
    normalize_event,
    normalize_level,
    parse_timestamp,
    utc_now,
)
from logbeacon.exceptions import EventError

_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")

# --------------------------------------------------------------------------- levels


@pytest.mark.parametrize(
    ("raw", "level"),
    [
        ("debug", "debug"),
        ("INFO", "info"),
        ("WARNING", "warn"),
        ("Warn", "warn"),
        ("warn", "warn"),
        ("error", "error"),
        ("ERROR", "error"),
        ("exception", "error"),
        ("critical", "critical"),
        ("fatal", "critical"),
        ("Debug ", "debug"),
        (" info\t", "info"),
        (10, "debug"),
        (20, "info"),
        (30, "warn"),
        (40, "error"),
        (50, "critical"),
        (25, "info"),
        (0, "debug"),
        (39.9, "warn"),
    ],
)
def test_normalize_level_accepts_names_and_numbers(raw: object, level: str) -> None:
    """Level names in any case/space, aliases and stdlib numbers normalise to canonical names."""
    assert level == normalize_level(raw)


@pytest.mark.parametrize(
    "raw",
    ["dbg", "trace", "verbose", None, ["error"], "", 51, -1, True, float("nan"), "err or"],
)
def test_normalize_level_rejects_unknown(raw: object) -> None:
    """Made-up levels, null, lists, booleans and out-of-range numbers raise invalid_level."""
    with pytest.raises(EventError) as caught:
        normalize_level(raw)
    assert "invalid_level" == caught.value.reason


def test_debug_with_newline_normalises_to_debug_not_higher() -> None:
    """INJ-06: "debug\\n" is stripped to debug; it can never become warn or error."""
    assert "debug" == normalize_level("debug\n")


def test_level_numbers_are_ordered() -> None:
    """LEVEL_NUMBERS ranks the canonical levels in the order of LEVELS."""
    assert list(LEVELS) == sorted(LEVELS, key=level_number)
    assert [10, 20, 30, 40, 50] == [LEVEL_NUMBERS[name] for name in LEVELS]


# --------------------------------------------------------------------------- timestamps


def test_utc_now_format_and_closeness() -> None:
    """utc_now() is fixed-width RFC 3339 UTC with microseconds and Z, and close to now."""
    value = utc_now()
    assert _TS.fullmatch(value)
    assert abs(parse_timestamp(value) - time.time()) < 5


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (1_700_000_000.25, "2023-11-14T22:13:20.250000Z"),
        (1_700_000_000.9999996, "2023-11-14T22:13:21.000000Z"),
    ],
)
def test_format_timestamp(epoch: float, text: str) -> None:
    """format_timestamp renders epoch seconds as fixed-width UTC, carrying rounding over."""
    assert text == format_timestamp(epoch)


def test_timestamps_sort_like_times() -> None:
    """Lexicographic order of formatted timestamps equals time order."""
    epochs = [1.5, 10.0, 999_999_999.0, 1_000_000_000.000001, 1_700_000_000.0]
    texts = [format_timestamp(e) for e in epochs]
    assert texts == sorted(texts)


@pytest.mark.parametrize(
    ("raw", "epoch"),
    [
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14T22:13:20.250z", 1_700_000_000.25),
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
        ("2023-11-14T22:13:20", 1_700_000_000.0),
        (1_700_000_000, 1_700_000_000.0),
        (1_700_000_000_000, 1_700_000_000.0),
    ],
)
def test_parse_timestamp(raw: object, epoch: float) -> None:
    """RFC 3339 (with or without zone: naive is UTC) and epoch seconds or ms are parsed."""
    assert epoch == pytest.approx(parse_timestamp(raw))


@pytest.mark.parametrize("raw", ["yesterday", "", -5, float("inf"), True, None, "2023-13-45T00:00"])
def test_parse_timestamp_rejects(raw: object) -> None:
    """Unparseable, negative and non-finite timestamps raise invalid_timestamp."""
    with pytest.raises(EventError) as caught:
        parse_timestamp(raw)
    assert "invalid_timestamp" == caught.value.reason


# --------------------------------------------------------------------------- event ids


def _ms_of(event_id: str) -> int:
    return int(event_id.replace("-", "")[:12], 16)


def test_event_id_is_uuid7_with_current_time() -> None:
    """new_event_id() is a UUIDv7 whose timestamp is the current millisecond."""
    before = time.time_ns() // 1_000_000
    value = new_event_id()
    after = time.time_ns() // 1_000_000
    assert _UUID7.fullmatch(value)
    assert before <= _ms_of(value) <= after + 1


def test_event_ids_strictly_increase_in_one_thread() -> None:
    """Consecutive ids from one process sort in generation order, even within a millisecond."""
    ids = [new_event_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(ids) == len(set(ids))


def test_event_ids_unique_across_threads() -> None:
    """Ids generated concurrently by 8 threads never collide."""
    results: list[list[str]] = [[] for _ in range(8)]

    def work(slot: list[str]) -> None:
        slot.extend(new_event_id() for _ in range(5_000))

    threads = [threading.Thread(target=work, args=(slot,)) for slot in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    all_ids = [i for slot in results for i in slot]
    assert len(all_ids) == len(set(all_ids))
    assert all(slot == sorted(slot) for slot in results)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_event_ids_unique_after_fork() -> None:
    """A forked child and its parent generate disjoint ids in the same milliseconds."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        payload = json.dumps([new_event_id() for _ in range(2_000)]).encode()
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_fd)
    parent_ids = [new_event_id() for _ in range(2_000)]
    with os.fdopen(read_fd, "rb") as pipe:
        child_ids = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert 0 == status
    assert 4_000 == len(set(parent_ids) | set(child_ids))
    assert child_ids == sorted(child_ids)


# --------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("value", "trace", "span"),
    [
        ("4bf92f3577b34da6a3ce929d0e0e4736", True, False),
        ("00f067aa0ba902b7", False, True),
        ("0" * 32, False, False),
        ("0" * 16, False, False),
        ("4BF92F3577B34DA6A3CE929D0E0E4736", False, False),
        ("4bf92f3577b34da6a3ce929d0e0e473", False, False),
        (12345, False, False),
    ],
)
def test_trace_and_span_id_validation(value: object, trace: bool, span: bool) -> None:
    """Trace ids are 32 and span ids 16 lowercase hex, never all zero."""
    assert (trace, span) == (is_valid_trace_id(value), is_valid_span_id(value))


# --------------------------------------------------------------------------- encoding


def test_encode_is_strict_json() -> None:
    """encode() writes NaN as null, sets/tuples as lists, unknown objects as repr."""
    data = decode(encode({"x": float("nan"), "s": (1, 2), "o": object, 1: "k"}))
    assert (None, [1, 2], "1") == (data["x"], data["s"], next(k for k in data if k == "1"))
    assert data["o"].startswith("<class")


def test_decode_rejects_invalid_utf8() -> None:
    """decode() refuses invalid UTF-8 (INJ-14) instead of storing mojibake."""
    with pytest.raises(ValueError):
        decode(b'{"message":"\xff\xfe"}')


# --------------------------------------------------------------------------- normalize_event


def test_normalize_fills_defaults() -> None:
    """A message-only event gets event=log, level info, service unknown, timestamp, event_id."""
    out = normalize_event({"message": "hi"}, now=1_700_000_000.0)
    assert {
        "timestamp": "2023-11-14T22:13:20.000000Z",
        "level": "info",
        "event": "log",
        "message": "hi",
        "service": "unknown",
    } == {k: out[k] for k in ("timestamp", "level", "event", "message", "service")}
    assert _UUID7.fullmatch(out["event_id"])


def test_normalize_canonicalises_level_and_timestamp() -> None:
    """Levels and timestamps are rewritten to canonical form."""
    out = normalize_event({"event": "e", "level": "WARNING", "timestamp": 1_700_000_000_000})
    assert ("warn", "2023-11-14T22:13:20.000000Z") == (out["level"], out["timestamp"])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ([], "not_an_object"),
        ("text", "not_an_object"),
        ({}, "missing_event"),
        ({"level": "info"}, "missing_event"),
        ({"event": ""}, "invalid_event"),
        ({"event": 5}, "invalid_event"),
        ({"event": "e", "message": 5}, "invalid_message"),
        ({"event": "e", "level": "loud"}, "invalid_level"),
        ({"event": "e", "timestamp": "yesterday"}, "invalid_timestamp"),
        ({"event": "e", "service": 5}, "invalid_service"),
        ({"event": "e", "request_id": ""}, "invalid_request_id"),
        ({"event": "e", "request_id": "x" * 129}, "invalid_request_id"),
        ({"event": "e", "event_id": "bad id!"}, "invalid_event_id"),
        ({"event": "e", "layer": "four"}, "invalid_layer"),
        ({"event": "e", "duration_ms": -1}, "invalid_duration_ms"),
        ({"event": "e", "duration_ms": "fast"}, "invalid_duration_ms"),
        ({"event": "e", "http": "GET /"}, "invalid_http"),
        ({"event": "e", "http": {"status": "teapot"}}, "invalid_http"),
        ({"event": "e", "error": 5}, "invalid_error"),
        ({"event": "e", "error": {"stack": 5}}, "invalid_error"),
    ],
)
def test_normalize_rejections(raw: object, reason: str) -> None:
    """Malformed events are rejected with a stable reason."""
    with pytest.raises(EventError) as caught:
        normalize_event(raw)
    assert reason == caught.value.reason


def test_normalize_drops_server_fields() -> None:
    """INJ-07: client-sent received_at, client_ip, ingest_id and _truncated are discarded."""
    raw = {"event": "e", "received_at": "x", "client_ip": "1.2.3.4", "ingest_id": "i"}
    out = normalize_event({**raw, "_truncated": ["forged"]})
    assert set() == {"received_at", "client_ip", "ingest_id", "_truncated"} & set(out)


def test_normalize_invalid_trace_ids_marked_not_rejected() -> None:
    """TRC-18: malformed trace/span ids are dropped and flagged; the event is kept."""
    out = normalize_event({"event": "e", "trace_id": "A" * 32, "span_id": "0" * 16})
    assert (True, True, False, False) == (
        out["invalid_trace_id"],
        out["invalid_span_id"],
        "trace_id" in out,
        "span_id" in out,
    )


def test_normalize_coerces_fields() -> None:
    """Numeric ids become strings, layer strings/floats become ints, http method uppercased."""
    out = normalize_event(
        {
            "event": "e",
            "job_id": 6929,
            "layer": "4",
            "http": {"method": "get", "status": "200", "body": "secret", "route": "/x"},
        }
    )
    assert ("6929", 4, {"method": "GET", "status": 200, "route": "/x"}) == (
        out["job_id"],
        out["layer"],
        out["http"],
    )


def test_normalize_error_string_and_stack_string() -> None:
    """An error string becomes {type: Error, message}; a string stack is split into lines."""
    out = normalize_event({"event": "e", "error": "boom"})
    assert {"type": "Error", "message": "boom"} == out["error"]
    out = normalize_event({"event": "e", "error": {"type": "X", "stack": "a\nb"}})
    assert ["a", "b"] == out["error"]["stack"]


def test_normalize_truncates_long_strings_and_marks_paths() -> None:
    """Over-long strings are cut at the limit, marked, and listed in _truncated."""
    limits = Limits(max_string=100, max_message=50)
    out = normalize_event(
        {"event": "e", "message": "m" * 80, "note": "n" * 150, "nested": {"deep": "d" * 120}},
        limits=limits,
    )
    assert out["message"].startswith("m" * 50 + "…[truncated 30 chars]")
    assert out["note"].startswith("n" * 100 + "…")
    assert ["message", "nested.deep", "note"] == out["_truncated"]


def test_normalize_stack_frame_limit() -> None:
    """Stacks over the frame limit keep head and tail with an omission marker."""
    stack = [f"frame {i}" for i in range(100)]
    out = normalize_event({"event": "e", "error": {"type": "X", "stack": stack}})
    frames = out["error"]["stack"]
    assert 50 == len(frames)
    assert ("frame 0", "frame 99") == (frames[0], frames[-1])
    assert "51 frames omitted" in frames[10]
    assert "error.stack" in out["_truncated"]


def test_normalize_depth_limit() -> None:
    """Nesting deeper than max_depth is replaced by a marker and listed."""
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(20):
        deep = {"d": deep}
    out = normalize_event({"event": "e", "deep": deep}, limits=Limits(max_depth=4))
    assert "[depth limit]" == out["deep"]["d"]["d"]["d"]
    assert ["deep.d.d.d"] == out["_truncated"]


def test_normalize_non_finite_numbers_become_null() -> None:
    """INJ-15: NaN and infinities in attributes are normalised to null."""
    out = normalize_event({"event": "e", "attrs": {"latency": float("nan"), "x": float("inf")}})
    assert {"latency": None, "x": None} == out["attrs"]
    assert "NaN" not in encode(out).decode()


def test_normalize_oversized_event_shrinks_or_rejects() -> None:
    """An event over the byte limit is shrunk by harder truncation, else rejected."""
    limits = Limits(max_event_bytes=4096, max_string=8192)
    out = normalize_event({"event": "e", "a": "x" * 3000, "b": "y" * 3000}, limits=limits)
    assert len(encode(out)) <= 4096
    assert {"a", "b"} <= set(out["_truncated"])
    many = {f"k{i}": "v" * 900 for i in range(10)}
    with pytest.raises(EventError) as caught:
        normalize_event({"event": "e", **many}, limits=Limits(max_event_bytes=4096))
    assert "event_too_large" == caught.value.reason


def test_normalize_keeps_control_characters_verbatim() -> None:
    """INJ-04/05: NUL, DEL and JSON-looking text are kept as data, not interpreted."""
    raw = {"event": "e", "message": 'x","level":"info","msg":"forged', "v": "a\x00b\x7f"}
    out = normalize_event({**raw, "level": "error"})
    assert ("error", raw["message"], "a\x00b\x7f") == (out["level"], out["message"], out["v"])
    assert "msg" not in out


def test_normalize_does_not_mutate_input() -> None:
    """normalize_event returns a new dict and leaves its argument alone."""
    raw = {"event": "e", "level": "WARNING", "received_at": "x"}
    normalize_event(raw)
    assert {"event": "e", "level": "WARNING", "received_at": "x"} == raw


def test_normalized_timestamp_is_utc() -> None:
    """A timestamp with an offset is stored as the same instant in UTC."""
    out = normalize_event({"event": "e", "timestamp": "2026-01-01T02:00:00+02:00"})
    parsed = datetime.fromisoformat(out["timestamp"].replace("Z", "+00:00"))
    assert datetime(2026, 1, 1, 0, 0, tzinfo=UTC) == parsed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-31T12:00:00.123456Z", "2026-01-31T12:00:00.123456Z"),
        ("2026-01-31 12:00:00.123456Z", "2026-01-31T12:00:00.123456Z"),
        ("2026-01-31T12:00:00.123456+00:00", "2026-01-31T12:00:00.123456Z"),
        ("2026-01-31T13:00:00.123456+01:00", "2026-01-31T12:00:00.123456Z"),
        ("2024-02-29T23:59:59.999999Z", "2024-02-29T23:59:59.999999Z"),
        ("1970-01-01T00:00:00.000000Z", "1970-01-01T00:00:00.000000Z"),
    ],
)
def test_canonical_timestamps_pass_and_others_are_rewritten(raw: str, expected: str) -> None:
    """A timestamp already in canonical form is kept; any other spelling becomes canonical."""
    assert expected == normalize_event({"event": "x", "timestamp": raw})["timestamp"]


@pytest.mark.parametrize(
    "raw",
    [
        "2026-02-30T00:00:00.000000Z",  # no such day
        "2026-13-01T00:00:00.000000Z",
        "2026-01-01T24:00:00.000000Z",
        "2026-01-01T00:00:00.00000\u0663Z",  # a digit, but not an ASCII one
        "2026-01-01T00:00:00.00000xZ",
    ],
)
def test_timestamps_that_only_look_canonical_are_refused(raw: str) -> None:
    """The canonical-form shortcut still refuses impossible dates and non-ASCII digits."""
    with pytest.raises(EventError) as info:
        normalize_event({"event": "x", "timestamp": raw})
    assert "invalid_timestamp" == info.value.reason
