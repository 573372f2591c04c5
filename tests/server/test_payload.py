"""The body parser: the fast duplicate-key check agrees with an exact parse on every input."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logbeacon.server.errors import ApiError
from logbeacon.server.payload import parse_document


class _Repeated(Exception):
    pass


def _exact_has_repeats(data: bytes) -> bool:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise _Repeated
        return dict(pairs)

    try:
        json.loads(data, object_pairs_hook=hook)
    except _Repeated:
        return True
    return False


def _refused_for_repeats(data: bytes) -> bool:
    try:
        parse_document(data)
    except ApiError as exc:
        refused = exc.error
    else:
        return False
    assert "duplicate_keys" == refused
    return True


@pytest.mark.parametrize(
    "body",
    [
        b'{"level":"error","level":"debug","message":"m"}',
        # a spaced colon hides one key from a byte count; the repeat must still be found
        b'{"level" :"error","level":"debug","message":"m"}',
        b'{"level"\n:"error","level":"debug","message":"m"}',
        # a value holding `":` adds one to a byte count; the repeat must still be found
        b'{"level":"error","level":"debug","message":"x\\":"}',
        b'{"level":"error","level":"debug","message":"x\\":","m" :1}',
        # the same key written twice with different escapes
        b'{"event":"x","lev\\u0065l":"error","level":"debug"}',
        b'[{"event":"a"},{"event":"b","n":{"k":1,"k":2}}]',
        b'{"events":[{"event":"a","a":1,"a":1}]}',
    ],
)
def test_repeated_keys_are_refused_in_every_spelling(body: bytes) -> None:
    """A repeated key is refused however the body spells it, so a second level cannot hide."""
    assert _refused_for_repeats(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"event":"x","message":"a \\":\\" b"}',
        b'{"event" : "x", "level" : "warn"}',
        b'[{"event":"a","level":"info"},{"event":"a","level":"info"}]',
        b'{"event":"x","nested":{"event":"y","level":"error"}}',
        b'{"event":"x","":1}',
    ],
)
def test_bodies_without_repeats_parse(body: bytes) -> None:
    """Strings holding `":`, spaced colons and equal keys in different objects are all fine."""
    assert orjson.loads(body) == parse_document(body)


_keys = st.sampled_from(["a", "b", "level", 'x\\":', "lev\\u0065l", "level "])
_scalars = st.one_of(st.integers(-5, 5), st.sampled_from(['"v"', '"x\\":y"', "null", "true"]))


@st.composite
def _objects(draw: st.DrawFn, depth: int = 0) -> str:
    members = []
    for _ in range(draw(st.integers(0, 4))):
        key = draw(_keys)
        if depth < 2 and draw(st.booleans()):
            value = draw(_objects(depth + 1))
        else:
            value = str(draw(_scalars))
        colon = draw(st.sampled_from([":", " :", ": ", "\t:"]))
        members.append(f'"{key}"{colon}{value}')
    return "{" + ",".join(members) + "}"


@settings(max_examples=400, deadline=None)
@given(_objects())
def test_fast_check_agrees_with_exact_parse(text: str) -> None:
    """For any object mixing repeats, escapes, spaced colons and `":` in values, the parser
    refuses exactly the bodies an exact pairs-hook parse finds repeats in."""
    data = text.encode()
    assert _exact_has_repeats(data) == _refused_for_repeats(data)
