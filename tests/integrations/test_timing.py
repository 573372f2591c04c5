"""`timed`: performance_metrics / performance_alert events from decorators and blocks."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest

from logbeacon.exceptions import ConfigError
from logbeacon.integrations.timing import DEFAULT_SLOW_MS, timed


def named(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    """The captured events called `event`."""
    return [e for e in logs if e["event"] == event]


def burn_cpu() -> int:
    """Deterministic CPU-bound work (a few tens of milliseconds)."""
    return sum(i * i for i in range(400_000))


def test_sync_function_returns_value_and_logs_metrics(logs: list[dict[str, Any]]) -> None:
    """A decorated sync function returns its value and logs one performance_metrics event."""

    @timed("fetch_company")
    def fetch_company(name: str) -> dict[str, str]:
        return {"name": name}

    assert {"name": "acme"} == fetch_company("acme")
    [event] = logs
    assert ("performance_metrics", "info", "fetch_company", True) == (
        event["event"],
        event["level"],
        event["operation"],
        event["success"],
    )
    assert event["duration_ms"] >= 0
    assert event["cpu_ms"] >= 0
    assert "rss_delta_bytes" not in event
    assert "error_type" not in event


async def test_async_function_is_timed_across_the_await(logs: list[dict[str, Any]]) -> None:
    """A decorated coroutine function is awaited inside the measurement."""

    @timed("slow_call")
    async def slow_call() -> str:
        await asyncio.sleep(0.05)
        return "done"

    assert inspect.iscoroutinefunction(slow_call)
    assert "done" == await slow_call()
    [event] = named(logs, "performance_metrics")
    assert "slow_call" == event["operation"]
    assert event["duration_ms"] >= 45


def test_raising_function_logs_failure_and_reraises_the_same_exception(
    logs: list[dict[str, Any]],
) -> None:
    """success=false and error_type are logged; the caller gets the identical exception."""
    error = ValueError("bad input")

    @timed("parse")
    def parse() -> None:
        raise error

    with pytest.raises(ValueError) as raised:
        parse()
    assert raised.value is error
    [event] = named(logs, "performance_metrics")
    assert (False, "ValueError") == (event["success"], event["error_type"])


async def test_raising_coroutine_reraises_the_same_exception(logs: list[dict[str, Any]]) -> None:
    """The async wrapper re-raises the identical exception after logging success=false."""
    error = KeyError("k")

    @timed("lookup")
    async def lookup() -> None:
        raise error

    with pytest.raises(KeyError) as raised:
        await lookup()
    assert raised.value is error
    assert [False] == [e["success"] for e in named(logs, "performance_metrics")]


def test_bare_decorator_uses_the_qualified_name(logs: list[dict[str, Any]]) -> None:
    """`@timed` without arguments names the operation after the function's qualname."""

    class Repo:
        @timed
        def load(self, n: int) -> int:
            return n * 2

    assert 6 == Repo().load(3)
    [event] = logs
    assert Repo.load.__qualname__ == event["operation"]
    assert event["operation"].endswith("Repo.load")
    assert __name__ == event["logger"]


def test_wraps_metadata_is_preserved() -> None:
    """Name, qualname, docstring, module and __wrapped__ survive decoration."""

    def original(x: int) -> int:
        """Doubles x."""
        return x * 2

    wrapped = timed("double")(original)
    assert (
        original.__name__,
        original.__qualname__,
        original.__doc__,
        original.__module__,
        original,
    ) == (
        wrapped.__name__,
        wrapped.__qualname__,
        wrapped.__doc__,
        wrapped.__module__,
        wrapped.__wrapped__,  # type: ignore[attr-defined]
    )
    assert inspect.signature(original) == inspect.signature(wrapped)


def test_context_manager_times_a_block(logs: list[dict[str, Any]]) -> None:
    """`with timed("op")` logs the block's metrics under the given operation name."""
    with timed("load_rows"):
        time.sleep(0.02)
    [event] = logs
    assert ("load_rows", True) == (event["operation"], event["success"])
    assert event["duration_ms"] >= 15


def test_context_manager_reports_failure_and_does_not_swallow(
    logs: list[dict[str, Any]],
) -> None:
    """An exception in the block is logged as success=false and propagates unchanged."""
    error = RuntimeError("x")
    with pytest.raises(RuntimeError) as raised, timed("block"):
        raise error
    assert raised.value is error
    assert [(False, "RuntimeError")] == [(e["success"], e["error_type"]) for e in logs]


async def test_async_context_manager(logs: list[dict[str, Any]]) -> None:
    """`async with timed("op")` measures the awaited block."""
    async with timed("fan_out"):
        await asyncio.sleep(0.02)
    [event] = logs
    assert "fan_out" == event["operation"]
    assert event["duration_ms"] >= 15


def test_alert_above_threshold(logs: list[dict[str, Any]]) -> None:
    """A run slower than threshold_ms also logs performance_alert at warn."""
    with timed("slow", threshold_ms=5):
        time.sleep(0.02)
    metrics, alert = logs
    assert ("performance_metrics", "performance_alert") == (metrics["event"], alert["event"])
    assert ("warn", "slow", 5.0) == (alert["level"], alert["operation"], alert["threshold_ms"])
    assert metrics["duration_ms"] == alert["duration_ms"]


def test_no_alert_below_threshold(logs: list[dict[str, Any]]) -> None:
    """A run faster than the threshold logs only the metrics."""
    with timed("fast", threshold_ms=10_000):
        pass
    assert ["performance_metrics"] == [e["event"] for e in logs]


def test_threshold_from_environment(
    logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """LOGBEACON_SLOW_MS sets the default threshold when no argument is given."""
    assert DEFAULT_SLOW_MS == timed("x").threshold_ms
    monkeypatch.setenv("LOGBEACON_SLOW_MS", "1")
    timer = timed("env_slow")
    assert 1.0 == timer.threshold_ms
    assert 7.0 == timed("arg_wins", threshold_ms=7).threshold_ms
    with timer:
        time.sleep(0.01)
    assert ["performance_metrics", "performance_alert"] == [e["event"] for e in logs]


def test_invalid_environment_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad LOGBEACON_SLOW_MS raises under the test suite, else falls back to the default."""
    monkeypatch.setenv("LOGBEACON_SLOW_MS", "fast")
    with pytest.raises(ConfigError, match="LOGBEACON_SLOW_MS"):
        timed("x")
    monkeypatch.delenv("LOGBEACON_RAISE_INTERNAL")
    assert DEFAULT_SLOW_MS == timed("x").threshold_ms


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold_ms": -1}, {"threshold_ms": "soon"}, {"level": "loud"}],
    ids=["negative threshold", "text threshold", "unknown level"],
)
def test_invalid_arguments_raise_config_error(kwargs: dict[str, Any]) -> None:
    """Bad arguments fail at decoration time with a message naming the argument."""
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        timed("x", **kwargs)


def test_level_argument_sets_the_metrics_level(logs: list[dict[str, Any]]) -> None:
    """`level=` chooses the level of performance_metrics."""
    with timed("quiet", level="debug"):
        pass
    with timed("loud", level="warning"):
        pass
    assert ["debug", "warn"] == [e["level"] for e in logs]


def test_cpu_time_is_measured_for_cpu_bound_work(logs: list[dict[str, Any]]) -> None:
    """cpu_ms reflects CPU actually spent (not a percentage sample) for a CPU-bound loop."""
    timed("burn")(burn_cpu)()
    [event] = logs
    assert event["cpu_ms"] > 5


def test_cpu_time_is_small_while_sleeping(logs: list[dict[str, Any]]) -> None:
    """Sleeping takes wall time but almost no CPU time."""
    with timed("nap"):
        time.sleep(0.1)
    [event] = logs
    assert event["duration_ms"] >= 95
    assert event["cpu_ms"] < 30


def test_rss_delta_only_when_asked(logs: list[dict[str, Any]]) -> None:
    """track_memory=True adds rss_delta_bytes (psutil is installed here); default omits it."""
    kept: list[bytes] = []

    @timed("allocate", track_memory=True)
    def allocate() -> None:
        kept.append(b"x" * 32_000_000)

    allocate()
    with timed("plain"):
        pass
    tracked, plain = logs
    assert tracked["rss_delta_bytes"] > 16_000_000
    assert "rss_delta_bytes" not in plain


def test_generator_functions_are_rejected() -> None:
    """Decorating a generator function fails clearly instead of timing its creation."""

    def rows() -> Any:
        yield 1

    async def arows() -> Any:
        yield 1

    for fn in (rows, arows):
        with pytest.raises(TypeError, match="generator"):
            timed("rows")(fn)


def test_context_manager_misuse_is_reported() -> None:
    """A nameless timer cannot time a block, and one timer cannot time two blocks at once."""
    with pytest.raises(TypeError, match="needs a name"), timed():
        pass
    timer = timed("once")
    with timer, pytest.raises(RuntimeError, match="already timing"), timer:
        pass


def test_one_decorator_object_times_concurrent_calls_separately(
    logs: list[dict[str, Any]],
) -> None:
    """Each call of a decorated function gets its own measurement (nested calls included)."""

    @timed("fib")
    def fib(n: int) -> int:
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert 5 == fib(5)
    assert 15 == len(logs)
    assert all(e["success"] for e in logs)
