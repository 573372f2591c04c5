"""The bad-input table: every hostile or broken body gets a clear 4xx or a per-event rejection,
never a 5xx, and never costs a valid sibling its place in the store."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests.server.conftest import Harness, HarnessFactory

VALID = b'{"event":"valid_sibling","level":"error","service":"api"}'


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    status: int
    error: str | None = None  # whole-request error code
    rejected: tuple[tuple[int, str], ...] = ()  # per-event rejections (index, reason)
    headers: tuple[tuple[str, str], ...] = ()


def batch(*items: bytes) -> bytes:
    return b"[" + b",".join(items) + b"]"


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


CASES = [
    Case("malformed json", b'{"event": "x",', 400, "invalid_json"),
    Case("trailing comma", b'[{"event":"x"},]', 400, "invalid_json"),
    Case("empty body", b"", 400, "empty_body"),
    Case("whitespace body", b"  \n ", 400, "empty_body"),
    Case("scalar body", b'"just a string"', 400, "invalid_body"),
    Case("null body", b"null", 400, "invalid_body"),
    Case("number body", b"42", 400, "invalid_body"),
    Case(
        "wrong type: event",
        batch(b'{"event":123,"level":"error"}', VALID),
        200,
        rejected=((0, "invalid_event"),),
    ),
    Case(
        "wrong type: message object",
        batch(b'{"event":"x","message":{}}', VALID),
        200,
        rejected=((0, "invalid_message"),),
    ),
    Case(
        "wrong type: service list",
        batch(b'{"event":"x","service":["a"]}', VALID),
        200,
        rejected=((0, "invalid_service"),),
    ),
    Case(
        "wrong type: level list",
        batch(b'{"event":"x","level":["error"]}', VALID),
        200,
        rejected=((0, "invalid_level"),),
    ),
    Case(
        "wrong type: level bool",
        batch(b'{"event":"x","level":true}', VALID),
        200,
        rejected=((0, "invalid_level"),),
    ),
    Case(
        "timestamp yesterday",
        batch(b'{"event":"x","timestamp":"yesterday"}', VALID),
        200,
        rejected=((0, "invalid_timestamp"),),
    ),
    Case(
        "missing event and message",
        batch(b'{"level":"error","service":"api"}', VALID),
        200,
        rejected=((0, "missing_event"),),
    ),
    Case(
        "unknown levels",
        batch(b'{"event":"x","level":"verbose"}', b'{"event":"y","level":"trace"}', VALID),
        200,
        rejected=((0, "invalid_level"), (1, "invalid_level")),
    ),
    Case(
        "non-object items",
        batch(b"1", b'"s"', b"null", b"[]", VALID),
        200,
        rejected=(
            (0, "not_an_object"),
            (1, "not_an_object"),
            (2, "not_an_object"),
            (3, "not_an_object"),
        ),
    ),
    Case(
        "event too large after truncation",
        batch(
            orjson.dumps({"event": "x", **{f"k{i}": "v" * 100 for i in range(2000)}}),
            VALID,
        ),
        200,
        rejected=((0, "event_too_large"),),
    ),
    Case(
        "10 MB body", b'{"event":"x","message":"' + b"a" * 10_000_000 + b'"}', 413, "body_too_large"
    ),
    Case("100 000-deep nesting", deep(100_000), 400, "too_deep"),
    Case("100-deep nesting", deep(100), 400, "too_deep"),
    Case("deep inside event", b'{"event":"x","a":' + b"[" * 70 + b"]" * 70 + b"}", 400, "too_deep"),
    Case("invalid utf-8", b'{"event":"x","message":"\xff\xfe"}', 400, "invalid_encoding"),
    Case("lone surrogate", b'{"event":"x","message":"\\ud800"}', 400, "invalid_encoding"),
    Case("raw NUL byte in string", b'{"event":"x","message":"a\x00b"}', 400, "invalid_json"),
    Case("raw newline in string", b'{"event":"x","message":"a\nb"}', 400, "invalid_json"),
    Case("huge number", b'{"event":"x","n":1e400}', 400, "invalid_json"),
    Case("5000-digit integer", b'{"event":"x","n":' + b"9" * 5000 + b"}", 400, "invalid_json"),
    Case("NaN", b'{"event":"x","latency":NaN}', 400, "invalid_json"),
    Case("Infinity", b'{"event":"x","attrs":{"x":Infinity}}', 400, "invalid_json"),
    Case(
        "duplicate keys", b'{"level":"error","level":"debug","message":"m"}', 400, "duplicate_keys"
    ),
    Case(
        "nested duplicate keys",
        batch(b'{"event":"x","a":{"b":1,"b":2}}', VALID),
        400,
        "duplicate_keys",
    ),
    Case("5000-event batch", batch(*[VALID] * 5000), 413, "too_many_events"),
    Case(
        "invalid gzip",
        b"\x1f\x8b not really gzip",
        400,
        "invalid_gzip",
        headers=(("content-encoding", "gzip"),),
    ),
    Case(
        "truncated gzip",
        gzip.compress(VALID)[:-6],
        400,
        "invalid_gzip",
        headers=(("content-encoding", "gzip"),),
    ),
    Case(
        "bad content-length",
        VALID,
        400,
        "invalid_content_length",
        headers=(("content-length", "ten"),),
    ),
    Case(
        "latin-1 charset",
        VALID,
        415,
        "unsupported_charset",
        headers=(("content-type", "text/plain; charset=latin-1"),),
    ),
]


@pytest.fixture
async def big_burst(make_harness: HarnessFactory) -> Any:
    async with make_harness(burst=100_000, rate=1_000_000.0) as harness:
        yield harness


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input_is_refused_cleanly(big_burst: Harness, case: Case) -> None:
    """Each bad input gets its documented 4xx or per-event reason; valid siblings are stored."""
    headers = {"content-type": "application/json", **dict(case.headers)}
    async with big_burst.client() as client:
        response = await client.post("/v1/logs", content=case.body, headers=headers)
    body = response.json()
    assert case.status == response.status_code, body
    if case.error is not None:
        assert case.error == body["error"]
        assert set(body) >= {"error", "message"}
        assert [] == await big_burst.all_events()
    else:
        expected = [{"index": i, "reason": r} for i, r in case.rejected]
        assert expected == body["rejected"]
        stored = await big_burst.all_events()
        assert ["valid_sibling"] == [e["event"] for e in stored]


async def test_error_bodies_never_echo_the_input(big_burst: Harness) -> None:
    """A 4xx body names the problem without reflecting the offending value (LIM-12)."""
    secret = b"<script>alert(1)</script>sk-FAKE-SECRET"
    bodies = [
        b'{"event":"' + secret + b'","event":"x"}',
        b'{"event":"' + secret + b'",',
        b'{"event":"' + secret + b'","n":NaN}',
    ]
    async with big_burst.client() as client:
        for body in bodies:
            response = await client.post(
                "/v1/logs", content=body, headers={"content-type": "application/json"}
            )
            assert 400 == response.status_code
            assert b"sk-FAKE-SECRET" not in response.content
            assert b"<script>" not in response.content


async def test_escaped_nul_and_controls_round_trip(big_burst: Harness) -> None:
    """Escaped NUL, DEL and ANSI escapes are stored verbatim, not truncated (INJ-03/04)."""
    message = "a\x00b\x7f\x1b[31mERROR\x1b[0m\x1b]0;pwned\x07"
    async with big_burst.client() as client:
        await client.post("/v1/logs", json={"event": "x", "message": message})
        response = await client.get("/v1/logs", headers=big_burst.read_headers)
    assert message == response.json()["events"][0]["message"]
    assert b"\\u0000" in response.content


async def test_deep_values_inside_an_event_are_truncated_and_marked(big_burst: Harness) -> None:
    """Nesting within the body limit but past the event limit is cut and listed in _truncated."""
    value: Any = "leaf"
    for _ in range(30):
        value = {"d": value}
    async with big_burst.client() as client:
        response = await client.post("/v1/logs", json={"event": "x", "tree": value})
    stored = (await big_burst.all_events())[0]
    assert 1 == response.json()["accepted"]
    assert "[depth limit]" in orjson.dumps(stored).decode()
    assert stored["_truncated"]


async def test_large_integer_inside_64_bits_is_kept(big_burst: Harness) -> None:
    """Integers that fit 64 bits survive exactly; larger ones become floats, never a 500."""
    body = (
        b'[{"event":"a","n":18446744073709551615},{"event":"b","n":123456789012345678901234567890}]'
    )
    async with big_burst.client() as client:
        response = await client.post(
            "/v1/logs", content=body, headers={"content-type": "application/json"}
        )
    stored = {e["event"]: e["n"] for e in await big_burst.all_events()}
    assert 2 == response.json()["accepted"]
    assert 18446744073709551615 == stored["a"]
    assert 1.2345678901234568e29 == stored["b"]
