"""Correlation context (isolation, bound/unbind) and strict W3C traceparent parsing."""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from collections.abc import Iterator

import pytest

from logbeacon.context import (
    TraceParent,
    bind,
    bound,
    clear,
    get_context,
    is_valid_request_id,
    new_request_id,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    unbind,
)

_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
_PARENT = "00f067aa0ba902b7"
_VALID = f"00-{_TRACE}-{_PARENT}-01"


@pytest.fixture(autouse=True)
def _empty_context() -> Iterator[None]:
    """Each test starts and ends with nothing bound."""
    clear()
    yield
    clear()


# --------------------------------------------------------------------------- bind / bound


def test_bind_and_unbind() -> None:
    """bind adds fields, unbind removes the named ones and ignores unknown keys."""
    bind(a=1, b=2)
    unbind("a", "missing")
    assert {"b": 2} == dict(get_context())


def test_context_view_is_read_only() -> None:
    """get_context() returns a view that cannot be mutated in place."""
    bind(a=1)
    view = get_context()
    with pytest.raises(TypeError):
        view["a"] = 2  # type: ignore[index]


def test_bound_restores_previous_values() -> None:
    """bound() overrides for the block and restores the outer values, not an empty context."""
    bind(request_id="outer", user="u")
    with bound(request_id="inner", run_id="r") as ctx:
        assert {"request_id": "inner", "user": "u", "run_id": "r"} == dict(ctx)
    assert {"request_id": "outer", "user": "u"} == dict(get_context())


def test_bound_restores_after_exception() -> None:
    """An exception inside bound() still restores the outer context exactly."""
    bind(request_id="outer")

    def fail() -> None:
        with bound(request_id="inner", node="n"):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        fail()
    assert {"request_id": "outer"} == dict(get_context())


def test_bound_inside_generator_resumed_in_other_context() -> None:
    """A bound() block finished in another Context removes its own keys instead of failing."""

    def gen() -> Iterator[None]:
        with bound(node="g"):
            yield
            yield

    iterator = gen()
    contextvars.copy_context().run(next, iterator)
    ctx = contextvars.copy_context()
    ctx.run(next, iterator)
    with pytest.raises(StopIteration):
        ctx.run(next, iterator)
    assert "node" not in ctx.run(get_context)


async def test_isolation_between_100_asyncio_tasks() -> None:
    """100 concurrent tasks binding their own ids never see another task's ids."""
    bind(service_ctx="parent")
    seen: dict[int, list[str]] = {}

    async def task(i: int) -> None:
        with bound(request_id=f"r{i}"):
            values = []
            for step in range(3):
                await asyncio.sleep(0.001 * ((i + step) % 3))
                values.append(get_context()["request_id"])
                assert "parent" == get_context()["service_ctx"]
            seen[i] = values

    await asyncio.gather(*(task(i) for i in range(100)))
    assert {i: [f"r{i}"] * 3 for i in range(100)} == seen
    assert {"service_ctx": "parent"} == dict(get_context())


async def test_child_task_binding_does_not_leak_to_parent() -> None:
    """bind() inside a child task stays in that task."""

    async def child() -> None:
        bind(leaked="no")

    await asyncio.create_task(child())
    assert "leaked" not in get_context()


def test_isolation_between_threads() -> None:
    """Threads binding different ids each see only their own."""
    barrier = threading.Barrier(10)
    results: dict[int, object] = {}

    def work(i: int) -> None:
        bind(request_id=f"t{i}")
        barrier.wait()
        results[i] = get_context().get("request_id")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {i: f"t{i}" for i in range(10)} == results
    assert {} == dict(get_context())


# --------------------------------------------------------------------------- ids


def test_generated_ids_have_w3c_shapes() -> None:
    """New trace ids are 32 hex, span ids 16 hex, request ids valid request ids."""
    assert re.fullmatch(r"[0-9a-f]{32}", new_trace_id())
    assert re.fullmatch(r"[0-9a-f]{16}", new_span_id())
    assert is_valid_request_id(new_request_id())
    assert len({new_trace_id() for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("abc-123", True),
        ("a.b:c_d-e", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("a b", False),
        ("a\nb", False),
        ("é", False),
        (None, False),
    ],
)
def test_request_id_validation(value: object, valid: bool) -> None:
    """Incoming x-request-id is kept only if 1-128 chars of [A-Za-z0-9._:-]."""
    assert valid == is_valid_request_id(value)


# --------------------------------------------------------------------------- traceparent


def test_trc01_valid_header() -> None:
    """TRC-01: a valid header gives its trace id, parent id and sampled flag."""
    parsed = parse_traceparent(_VALID)
    assert TraceParent(_TRACE, _PARENT, True) == parsed


def test_trc01_child_keeps_trace_with_new_parent() -> None:
    """TRC-01: the outbound header keeps the trace id with a new non-zero parent id."""
    parsed = parse_traceparent(_VALID)
    assert parsed is not None
    child = parsed.child()
    header = child.format()
    assert (_TRACE, True) == (child.trace_id, child.sampled)
    assert child.span_id != _PARENT
    assert re.fullmatch(rf"00-{_TRACE}-[0-9a-f]{{16}}-01", header)
    assert "0" * 16 != child.span_id


@pytest.mark.parametrize(
    "header",
    [
        f"ff-{_TRACE}-{_PARENT}-01",  # TRC-03 forbidden version
        "ff-12345678901234567890123456789012-1234567890123456-01",
        f".0-{_TRACE}-{_PARENT}-01",  # TRC-04 malformed versions
        f"0.-{_TRACE}-{_PARENT}-01",
        f"000-{_TRACE}-{_PARENT}-01",
        f"0000-{_TRACE}-{_PARENT}-01",
        f"0-{_TRACE}-{_PARENT}-01",
        f"00-{'0' * 32}-1234567890123456-01",  # TRC-05 all-zero ids
        "00-12345678901234567890123456789012-0000000000000000-01",
        f"00-{_TRACE[:-1]}.-{_PARENT}-01",  # TRC-06 bad trace id
        f"00-{_TRACE[:-1]}-{_PARENT}-01",
        f"00-{_TRACE}0-{_PARENT}-01",
        f"00-{_TRACE}-{_PARENT[:-1]}.-01",  # TRC-06 bad parent id
        f"00-{_TRACE}-{_PARENT[:-1]}-01",
        f"00-{_TRACE}-{_PARENT}0-01",
        _VALID.upper(),  # TRC-07 uppercase
        f"00-{_TRACE.upper()}-{_PARENT.upper()}-01",
        f"00-{_TRACE}-{_PARENT}-.0",  # TRC-08 bad flags
        f"00-{_TRACE}-{_PARENT}-0.",
        f"00-{_TRACE}-{_PARENT}-001",
        f"00-{_TRACE}-{_PARENT}-1",
        f"{_VALID}.",  # TRC-09 version 00 with trailing data
        f"{_VALID}-what-the-future-will-be-like",
        f"cc-{_TRACE}-{_PARENT}-01.what-the-future-will-be-like",
        "cc-1234",  # TRC-09 short future version
        "",
        "x" * 600,
    ],
)
def test_invalid_headers_restart_the_trace(header: str) -> None:
    """TRC-03..09: every malformed traceparent parses to None (start a new trace)."""
    assert parse_traceparent(header) is None


def test_none_header_restarts() -> None:
    """A missing header means a new trace."""
    assert parse_traceparent(None) is None


def test_trc09_future_version_with_more_fields_is_accepted() -> None:
    """TRC-09: a higher version with extra '-' fields keeps the trace id; outbound is 00."""
    parsed = parse_traceparent(f"cc-{_TRACE}-{_PARENT}-01-what-the-future-will-be-like")
    assert parsed is not None
    assert (_TRACE, _PARENT) == (parsed.trace_id, parsed.span_id)
    assert parsed.format().startswith("00-")


@pytest.mark.parametrize("header", [f" {_VALID}", f"\t{_VALID}", f"{_VALID} ", f"\t {_VALID} \t"])
def test_trc10_optional_whitespace_is_accepted(header: str) -> None:
    """TRC-10: spaces and tabs around the value are accepted."""
    assert TraceParent(_TRACE, _PARENT, True) == parse_traceparent(header)


def test_trc11_two_different_headers_restart() -> None:
    """TRC-11: two traceparent values joined by a comma (how proxies combine them) restart."""
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    assert parse_traceparent(f"{_VALID},{other}") is None


@pytest.mark.parametrize(("flags", "sampled"), [("09", True), ("01", True), ("00", False)])
def test_trc12_flags_use_a_mask_and_outbound_zeroes_reserved_bits(
    flags: str, sampled: bool
) -> None:
    """TRC-12: the sampled bit is read by mask; outbound flags are 01 or 00 only."""
    parsed = parse_traceparent(f"00-{_TRACE}-{_PARENT}-{flags}")
    assert parsed is not None
    assert sampled == parsed.sampled
    assert ("01" if sampled else "00") == parsed.format()[-2:]


def test_new_traceparent_is_valid() -> None:
    """TraceParent.new() formats to a header that parses back to itself."""
    fresh = TraceParent.new()
    assert fresh == parse_traceparent(fresh.format())
