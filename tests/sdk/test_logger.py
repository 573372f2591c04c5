"""End-to-end behaviour of a log call: fields, levels, context, errors, redaction, guard."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog

from logbeacon.context import bind, bound, unbind
from logbeacon.sdk import (
    add_context_provider,
    add_error_enricher,
    configure,
    get_logger,
    internal_errors,
)
from logbeacon.testing import capture_logs
from tests.sdk.conftest import lines

_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def test_json_line_has_canonical_fields_in_order(out: io.StringIO) -> None:
    """One call writes one JSON line starting timestamp, level, service, event, message."""
    configure(service="api", environment="staging", release="v9", stream=out, format="json")
    get_logger("mod").info("node_start", node="developer", fit_score=85, message="hi")
    text = out.getvalue()
    assert 1 == text.count("\n")
    assert text.endswith("\n")
    event = json.loads(text)
    assert ["timestamp", "level", "service", "event", "message"] == list(event)[:5]
    assert _TIMESTAMP.fullmatch(event["timestamp"])
    assert _UUID7.fullmatch(event["event_id"])
    expected = {"level": "info", "service": "api", "event": "node_start", "message": "hi"}
    assert expected == {k: event[k] for k in expected}
    assert ("mod", "staging", "v9", "developer", 85) == (
        event["logger"],
        event["environment"],
        event["release"],
        event["node"],
        event["fit_score"],
    )


@pytest.mark.parametrize(
    ("method", "level"),
    [
        ("debug", "debug"),
        ("info", "info"),
        ("msg", "info"),
        ("warning", "warn"),
        ("warn", "warn"),
        ("error", "error"),
        ("critical", "critical"),
        ("fatal", "critical"),
    ],
)
def test_level_methods_emit_canonical_level(method: str, level: str, out: io.StringIO) -> None:
    """Every level method emits the canonical level name (warn, not warning)."""
    configure(stream=out, format="json", level="debug")
    getattr(get_logger(), method)("e")
    assert [level] == [e["level"] for e in lines(out)]


def test_filtered_calls_produce_nothing(out: io.StringIO) -> None:
    """Calls below the configured level write nothing and are plain no-ops."""
    configure(stream=out, format="json", level="warn")
    log = get_logger()
    log.debug("d", x=1)
    log.info("i")
    log.warning("w")
    assert ["w"] == [e["event"] for e in lines(out)]
    assert "_nop" == type(log).info.__name__


def test_log_method_takes_numbers_and_names(out: io.StringIO) -> None:
    """log(level, event) accepts stdlib numbers and level names and still filters."""
    configure(stream=out, format="json", level="info")
    log = get_logger()
    log.log(10, "below")
    log.log(40, "num")
    log.log("warning", "name")
    assert [("num", "error"), ("name", "warn")] == [(e["event"], e["level"]) for e in lines(out)]


async def test_async_methods_emit(out: io.StringIO) -> None:
    """The a-prefixed async methods emit like their sync counterparts."""
    configure(stream=out, format="json")
    log = get_logger()
    await log.ainfo("async_info", n=1)
    await log.adebug("filtered")
    try:
        raise ValueError("async boom")
    except ValueError:
        await log.aexception("async_failed")
    events = lines(out)
    assert ["async_info", "async_failed"] == [e["event"] for e in events]
    assert "ValueError" == events[1]["error"]["type"]


def test_event_field_name_never_breaks_the_call(out: io.StringIO) -> None:
    """Fields named `event` or `self` and positional %-args do not raise."""
    configure(stream=out, format="json")
    log = get_logger()
    log.info(event="from_kw")
    log.info("positional", self="s")
    log.info("hello %s", "world")
    log.info()
    assert ["from_kw", "positional", "hello world", "log"] == [e["event"] for e in lines(out)]


def test_call_fields_win_over_bound_and_context_fields(out: io.StringIO) -> None:
    """Precedence is context < logger.bind() < call keyword arguments."""
    configure(stream=out, format="json")
    log = get_logger().bind(node="bound", step=1)
    with bound(node="ctx", step=0, run_id="run-1"):
        log.info("e", step=2)
    [event] = lines(out)
    assert ("bound", 2, "run-1") == (event["node"], event["step"], event["run_id"])


def test_context_cannot_override_level_or_event(out: io.StringIO) -> None:
    """A bound `level` or `event` cannot spoof what the call itself says."""
    configure(stream=out, format="json")
    with bound(level="critical", event="forged"):
        get_logger().info("real")
    [event] = lines(out)
    assert ("info", "real") == (event["level"], event["event"])


def test_explicit_service_field_wins(out: io.StringIO) -> None:
    """service= on a call (integrations' default) overrides the configured service."""
    configure(stream=out, format="json", service="api")
    get_logger().info("node_start", service="langgraph")
    assert ["langgraph"] == [e["service"] for e in lines(out)]


def test_bind_unbind_appear_and_disappear(out: io.StringIO) -> None:
    """Ids bound with bind() appear in events until unbind() removes them."""
    configure(stream=out, format="json")
    log = get_logger()
    bind(session_id="s1", request_id="r1")
    log.info("a")
    unbind("session_id")
    log.info("b")
    first, second = lines(out)
    assert ("s1", "r1") == (first["session_id"], first["request_id"])
    assert ("session_id" in second, second["request_id"]) == (False, "r1")


def test_bound_restores_outer_context_after_exception(out: io.StringIO) -> None:
    """After a bound() block raises, events carry the outer ids again, not the inner ones."""
    configure(stream=out, format="json")
    log = get_logger()

    def fail_inside() -> None:
        with bound(request_id="inner", run_id="x"):
            log.info("inside")
            raise RuntimeError("boom")

    with bound(request_id="outer"):
        with pytest.raises(RuntimeError):
            fail_inside()
        log.info("after")
    inside, after = lines(out)
    assert ("inner", "outer") == (inside["request_id"], after["request_id"])
    assert "run_id" not in after


async def test_context_isolated_between_100_asyncio_tasks(out: io.StringIO) -> None:
    """100 concurrent tasks each see only their own bound ids across awaits."""
    configure(stream=out, format="json")
    log = get_logger()

    async def task(i: int) -> None:
        with bound(request_id=f"req-{i}"):
            await asyncio.sleep(0)
            log.info("step", i=i)
            await asyncio.sleep(0.001 * (i % 3))
            log.info("step", i=i)

    await asyncio.gather(*(task(i) for i in range(100)))
    events = lines(out)
    assert 200 == len(events)
    assert all(e["request_id"] == f"req-{e['i']}" for e in events)
    log.info("after")
    assert "request_id" not in lines(out)[-1]


def test_context_isolated_between_threads(out: io.StringIO) -> None:
    """Threads binding different ids never see each other's ids."""
    configure(stream=out, format="json")
    log = get_logger()
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        bind(session_id=f"s-{i}")
        barrier.wait()
        for _ in range(20):
            log.info("tick", i=i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = lines(out)
    assert 160 == len(events)
    assert all(e["session_id"] == f"s-{e['i']}" for e in events)


def _raise_with_local_password() -> None:
    password = "hunter2-local-secret"  # noqa: F841 - the test checks it never appears
    raise ValueError("lookup failed")


def test_exception_becomes_error_object_without_locals(out: io.StringIO) -> None:
    """log.exception() gives error {type, message, stack[list]} and no local variables."""
    configure(stream=out, format="json")
    try:
        _raise_with_local_password()
    except ValueError:
        get_logger().exception("failed")
    [event] = lines(out)
    error = event["error"]
    assert ("error", "ValueError", "lookup failed") == (
        event["level"],
        error["type"],
        error["message"],
    )
    assert isinstance(error["stack"], list)
    assert all(isinstance(frame, str) for frame in error["stack"])
    assert "in _raise_with_local_password" in error["stack"][-1]
    assert "hunter2-local-secret" not in out.getvalue()


@pytest.mark.parametrize("style", ["true", "instance", "tuple"])
def test_exc_info_forms(style: str, out: io.StringIO) -> None:
    """exc_info=True, an exception instance, or a sys.exc_info() tuple all give an error."""
    import sys

    configure(stream=out, format="json")
    log = get_logger()
    try:
        raise KeyError("k")
    except KeyError as exc:
        value: Any = {"true": True, "instance": exc, "tuple": sys.exc_info()}[style]
        if style == "true":
            log.error("e", exc_info=value)
    if style != "true":
        log.error("e", exc_info=value)
    [event] = lines(out)
    assert "KeyError" == event["error"]["type"]
    assert "exc_info" not in event


def test_error_cause_is_summarised(out: io.StringIO) -> None:
    """`raise X from Y` records Y's type and message as error.cause."""
    configure(stream=out, format="json")
    try:
        try:
            raise OSError("disk")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError:
        get_logger().exception("e")
    [event] = lines(out)
    assert {"type": "OSError", "message": "disk"} == event["error"]["cause"]


def test_exception_outside_except_block_has_no_error(out: io.StringIO) -> None:
    """log.exception() with no active exception logs at error without an error object."""
    configure(stream=out, format="json")
    get_logger().exception("no_exc")
    [event] = lines(out)
    assert ("error", False) == (event["level"], "error" in event)


def test_error_string_and_mapping_fields(out: io.StringIO) -> None:
    """error="text" becomes {type: Error, message}; a mapping is kept (copied)."""
    configure(stream=out, format="json")
    given = {"type": "Timeout", "message": "slow"}
    log = get_logger()
    log.error("a", error="bad thing")
    log.error("b", error=given)
    first, second = lines(out)
    assert {"type": "Error", "message": "bad thing"} == first["error"]
    assert given == second["error"]
    assert {"type": "Timeout", "message": "slow"} == given


def test_error_enricher_is_called_with_exception_and_can_edit(out: io.StringIO) -> None:
    """An error enricher receives (exc, error, event) and its edits are emitted."""
    configure(stream=out, format="json")
    seen: list[tuple[type[BaseException] | None, str]] = []

    def enrich(exc: BaseException | None, error: dict[str, Any], event: dict[str, Any]) -> None:
        seen.append((type(exc) if exc else None, event["event"]))
        error["category"] = "timeout"

    remove = add_error_enricher(enrich)
    add_error_enricher(enrich)  # idempotent
    try:
        raise TimeoutError("t")
    except TimeoutError:
        get_logger().exception("with_exc")
    get_logger().error("no_exc", error="plain")
    remove()
    get_logger().error("after_remove", error="plain")
    events = lines(out)
    assert [(TimeoutError, "with_exc"), (None, "no_exc")] == seen
    assert ["timeout", "timeout", None] == [e["error"].get("category") for e in events]


def test_context_provider_used_only_without_trace_id(out: io.StringIO) -> None:
    """Context providers fill trace ids only when the event has none, never overriding."""
    configure(stream=out, format="json")
    calls: list[int] = []

    def provider() -> dict[str, str]:
        calls.append(1)
        return {"trace_id": "a" * 32, "span_id": "b" * 16, "node": "from_provider"}

    add_context_provider(provider)
    log = get_logger()
    log.info("no_trace", node="explicit")
    with bound(trace_id="c" * 32):
        log.info("has_trace")
    first, second = lines(out)
    assert ("a" * 32, "b" * 16, "explicit") == (first["trace_id"], first["span_id"], first["node"])
    assert ("c" * 32, False) == (second["trace_id"], "span_id" in second)
    assert 1 == len(calls)


def test_user_id_is_pseudonymised_and_stable(out: io.StringIO) -> None:
    """user_id is replaced by a stable keyed hash; the same id maps to the same pseudonym."""
    configure(stream=out, format="json")
    log = get_logger()
    log.info("a", user_id="u7")
    log.info("b", user_id="u7")
    log.info("c", user_id="u8")
    log.info("d", user_id=12345)
    ids = [e["user_id"] for e in lines(out)]
    assert re.fullmatch(r"uh_[0-9a-f]{16}", ids[0])
    assert (ids[0] == ids[1], ids[0] != ids[2], "u7" in out.getvalue()) == (True, True, False)
    assert re.fullmatch(r"uh_[0-9a-f]{16}", ids[3])


def test_user_id_key_changes_pseudonym(monkeypatch: pytest.MonkeyPatch, out: io.StringIO) -> None:
    """LOGBEACON_USER_ID_KEY changes the mapping; without it the documented default is used."""
    configure(stream=out, format="json")
    get_logger().info("a", user_id="u7")
    monkeypatch.setenv("LOGBEACON_USER_ID_KEY", "per-deployment-key")
    configure(stream=out, format="json")
    get_logger().info("b", user_id="u7")
    first, second = lines(out)
    assert first["user_id"] != second["user_id"]


def test_user_id_kept_when_pseudonymisation_off(out: io.StringIO) -> None:
    """pseudonymize_user_id=False leaves user_id as given; pseudonyms are never re-hashed."""
    configure(stream=out, format="json", pseudonymize_user_id=False)
    get_logger().info("a", user_id="u7")
    configure(stream=out, format="json")
    get_logger().info("b", user_id="uh_0123456789abcdef")
    first, second = lines(out)
    assert ("u7", "uh_0123456789abcdef") == (first["user_id"], second["user_id"])


def test_secrets_redacted_in_every_sink(tmp_path: Path, out: io.StringIO) -> None:
    """Secret fields and secrets inside messages never reach stdout, the file or captures."""
    configure(stream=out, format="json", log_dir=tmp_path)
    secret_token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    with capture_logs() as captured:
        get_logger().info(
            "login",
            password="hunter2",
            api_key="abc-123-def",
            message=f"used token {secret_token} for bob@example.com",
            nested={"authorization": "Bearer xyz.abc.def"},
        )
    file_text = (tmp_path / "app.jsonl").read_text()
    for output in (out.getvalue(), file_text, json.dumps(captured)):
        for secret in ("hunter2", "abc-123-def", secret_token, "bob@example.com", "xyz.abc"):
            assert secret not in output
    event = captured[0]
    assert ("[REDACTED]", "[REDACTED]") == (event["password"], event["api_key"])
    assert {"api_key", "message", "nested.authorization", "password"} <= set(event["_redacted"])


def test_secrets_in_console_output_are_redacted(out: io.StringIO) -> None:
    """The console renderer prints redacted values too."""
    configure(stream=out, format="console")
    get_logger().info("login", password="hunter2", message="mail bob@example.com")
    text = out.getvalue()
    assert ("hunter2" in text, "bob@example.com" in text, "[REDACTED]" in text) == (
        False,
        False,
        True,
    )


def test_non_serialisable_values_are_rendered_not_raised(out: io.StringIO) -> None:
    """Objects, sets, bytes, huge ints and cycles are rendered instead of raising."""
    configure(stream=out, format="json")

    class Thing:
        def __repr__(self) -> str:
            return "<Thing>"

    cycle: list[Any] = []
    cycle.append(cycle)
    log = get_logger()
    log.info("objects", thing=Thing(), tags={"a"}, raw=b"bytes", path=Path("/x"))
    log.info("big", n=2**70)
    log.info("cycle", c=cycle)
    objects, big, cyc = lines(out)
    assert ("<Thing>", ["a"], "bytes", "/x") == (
        objects["thing"],
        objects["tags"],
        objects["raw"],
        objects["path"],
    )
    assert str(2**70) == big["n"]
    assert "cycle" == cyc["event"]


def test_dataclass_values_are_redacted(out: io.StringIO) -> None:
    """A dataclass logged as a value is redacted by key like a dict (not dumped raw)."""
    import dataclasses

    @dataclasses.dataclass
    class Creds:
        user: str
        password: str

    configure(stream=out, format="json")
    get_logger().info("creds", account=Creds("bob", "hunter2"))
    [event] = lines(out)
    assert {"user": "bob", "password": "[REDACTED]"} == event["account"]


class _BrokenSink:
    name = "broken"

    def emit(self, event: dict[str, Any], line: bytes) -> None:
        raise OSError("disk on fire")

    def flush(self, timeout: float) -> bool:
        return True

    def close(self) -> None:
        return None


def test_broken_sink_never_raises_and_is_counted(
    monkeypatch: pytest.MonkeyPatch, out: io.StringIO
) -> None:
    """In production mode a sink that raises is counted; other sinks still get the event."""
    from logbeacon.sdk.sinks import attach

    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "0")
    configure(stream=out, format="json")
    detach = attach(_BrokenSink())
    try:
        get_logger().info("one")
        get_logger().info("two")
    finally:
        detach()
    assert ["one", "two"] == [e["event"] for e in lines(out)]
    assert {"sink.broken:OSError": 2} == internal_errors()


def test_broken_sink_raises_under_test_mode(out: io.StringIO) -> None:
    """With LOGBEACON_RAISE_INTERNAL=1 (the test suite) internal errors surface."""
    from logbeacon.sdk.sinks import attach

    configure(stream=out, format="json")
    detach = attach(_BrokenSink())
    try:
        with pytest.raises(OSError, match="disk on fire"):
            get_logger().info("one")
    finally:
        detach()


def test_unprintable_value_never_raises(monkeypatch: pytest.MonkeyPatch, out: io.StringIO) -> None:
    """A value whose __repr__ raises still produces an event with a placeholder."""
    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "0")
    configure(stream=out, format="json")

    class Evil:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    get_logger().info("evil", value=Evil())
    [event] = lines(out)
    assert "<unrepresentable Evil>" == event["value"]


def test_closed_stream_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing to a closed stream is counted, not raised, in production mode."""
    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "0")
    stream = io.StringIO()
    configure(stream=stream, format="json")
    stream.close()
    get_logger().error("lost")
    assert {"sink.stream:ValueError": 1} == internal_errors()


def test_failing_hooks_are_counted(monkeypatch: pytest.MonkeyPatch, out: io.StringIO) -> None:
    """A raising enricher or provider is counted and the event is still emitted."""
    monkeypatch.setenv("LOGBEACON_RAISE_INTERNAL", "0")
    configure(stream=out, format="json")

    def bad_enricher(exc: BaseException | None, error: dict[str, Any], ev: dict[str, Any]) -> None:
        raise ZeroDivisionError

    def bad_provider() -> dict[str, Any]:
        raise LookupError

    add_error_enricher(bad_enricher)
    add_context_provider(bad_provider)
    get_logger().error("e", error="x")
    assert ["e"] == [e["event"] for e in lines(out)]
    assert {"error_enricher:ZeroDivisionError": 1, "context_provider:LookupError": 1} == (
        internal_errors()
    )


def test_drop_event_from_processor_is_honoured(out: io.StringIO) -> None:
    """A processor raising structlog.DropEvent drops the event silently."""
    from logbeacon.sdk import config

    configure(stream=out, format="json")
    pipeline = config._state.pipeline
    assert pipeline is not None

    def drop(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        raise structlog.DropEvent

    pipeline.processors = (drop, *pipeline.processors)
    get_logger().info("dropped")
    assert "" == out.getvalue()
