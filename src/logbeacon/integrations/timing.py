"""`timed`: how long an operation took, how much CPU it used, and an alert when it is slow.

One `performance_metrics` event per run, with the operation's name in `operation`,
`duration_ms` (wall clock, `time.perf_counter`), `cpu_ms` (`time.process_time` delta: CPU
time of the whole process, so for an async function it also counts other tasks that ran
while it awaited, and in a threaded server other threads' work), `success`, and, with
`track_memory=True` and psutil installed, `rss_delta_bytes` (resident set size after minus
before — the process's, not just this call's). A run slower than the threshold also logs a
`performance_alert` at `warn`.

Unlike the seed plan's version, the sync path is real and CPU is measured as time spent,
not as two samples of a system-wide percentage (which compare nothing).

The wrapped function's exception is re-raised unchanged after the event is logged with
`success=false`; its return value is passed through; `functools.wraps` metadata is kept.
Generator functions are refused: timing them would measure only the creation of the
generator.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import time
from collections.abc import Callable
from types import ModuleType, TracebackType
from typing import Any, Final, TypeVar, cast, overload

from logbeacon.exceptions import ConfigError
from logbeacon.sdk import get_logger
from logbeacon.sdk._guard import report

__all__ = ["DEFAULT_SLOW_MS", "SLOW_MS_ENV", "Timed", "timed"]

F = TypeVar("F", bound=Callable[..., Any])

SLOW_MS_ENV: Final = "LOGBEACON_SLOW_MS"
DEFAULT_SLOW_MS: Final = 1000.0

_LEVEL_METHODS: Final = {
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "critical": "critical",
}
_CM_LOGGER: Final = "logbeacon.integrations.timing"

_psutil: ModuleType | None = None
_psutil_missing = False


def _load_psutil() -> ModuleType | None:
    """psutil if installed; imported on first use so `import logbeacon` stays light."""
    global _psutil, _psutil_missing  # noqa: PLW0603 - a one-time import cache
    if _psutil is None and not _psutil_missing:
        try:
            import psutil
        except ImportError:
            _psutil_missing = True
        else:
            _psutil = psutil
    return _psutil


def _rss_bytes() -> int | None:
    psutil = _load_psutil()
    if psutil is None:
        return None
    try:
        # A fresh Process each time: a cached one would point at the parent after fork().
        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


def _parse_threshold(value: object, source: str) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value.strip())
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise ConfigError(f"{source}={value!r} is not valid; expected a number of milliseconds >= 0")


def _resolve_threshold(threshold_ms: float | None) -> float:
    """Argument, else LOGBEACON_SLOW_MS, else 1000 ms.

    A bad argument raises at once (a programming error); a bad environment value falls
    back to the default after reporting it, so a typo in a deployment cannot stop the
    application from importing its decorated functions.
    """
    if threshold_ms is not None:
        return _parse_threshold(threshold_ms, "threshold_ms")
    raw = os.environ.get(SLOW_MS_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_SLOW_MS
    try:
        return _parse_threshold(raw, SLOW_MS_ENV)
    except ConfigError as exc:
        report("timed_threshold", exc)
        return DEFAULT_SLOW_MS


class _Measurement:
    """Start readings for one run; `fields()` turns them into the event's numbers."""

    __slots__ = ("_cpu", "_rss", "_wall")

    def __init__(self, track_memory: bool) -> None:
        self._rss = _rss_bytes() if track_memory else None
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def fields(self) -> dict[str, Any]:
        wall = time.perf_counter()
        cpu = time.process_time()
        out: dict[str, Any] = {
            "duration_ms": round((wall - self._wall) * 1000.0, 3),
            "cpu_ms": round((cpu - self._cpu) * 1000.0, 3),
        }
        if self._rss is not None:
            after = _rss_bytes()
            if after is not None:
                out["rss_delta_bytes"] = after - self._rss
        return out


class Timed:
    """What `timed(...)` returns: a decorator and a (sync or async) context manager.

    As a decorator it may wrap any number of functions, each call measured on its own. As a
    context manager one object times one block at a time; create a new `timed(...)` for
    each block (re-entering an active one raises, because the two blocks' timings would
    overwrite each other).
    """

    __slots__ = ("_active", "_level", "_name", "_threshold_ms", "_track_memory")

    def __init__(
        self,
        name: str | None,
        *,
        threshold_ms: float | None = None,
        level: str = "info",
        track_memory: bool = False,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"timed() name={name!r} is not valid; expected a non-empty string")
        method = _LEVEL_METHODS.get(level.strip().lower()) if isinstance(level, str) else None
        if method is None:
            raise ConfigError(
                f"timed() level={level!r} is not valid; expected one of "
                "debug, info, warn (or warning), error, critical"
            )
        self._name = name
        self._level = method
        self._threshold_ms = _resolve_threshold(threshold_ms)
        self._track_memory = bool(track_memory)
        self._active: _Measurement | None = None

    @property
    def threshold_ms(self) -> float:
        """The slow-operation threshold in force for this timer."""
        return self._threshold_ms

    # ------------------------------------------------------------------ emitting

    def _emit(
        self, logger_name: str, operation: str, measurement: _Measurement, exc: BaseException | None
    ) -> None:
        fields = measurement.fields()
        log = get_logger(logger_name)
        extra: dict[str, Any] = {"error_type": type(exc).__name__} if exc is not None else {}
        getattr(log, self._level)(
            "performance_metrics",
            operation=operation,
            success=exc is None,
            **fields,
            **extra,
        )
        if fields["duration_ms"] > self._threshold_ms:
            log.warning(
                "performance_alert",
                operation=operation,
                duration_ms=fields["duration_ms"],
                threshold_ms=self._threshold_ms,
                success=exc is None,
            )

    # ------------------------------------------------------------------ decorator

    def __call__(self, func: F) -> F:
        """Wrap a sync or async function; the return value and exceptions pass through."""
        if not callable(func):
            raise TypeError(f"timed() decorates functions, got {type(func).__name__}")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"timed() cannot decorate the generator function {func.__qualname__}: it would "
                "time only the creation of the generator. Time the code that consumes it with "
                f"`with timed({func.__qualname__!r}):` instead."
            )
        operation = self._name or getattr(func, "__qualname__", None) or repr(func)
        logger_name = getattr(func, "__module__", None) or _CM_LOGGER
        track_memory = self._track_memory

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                measurement = _Measurement(track_memory)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    self._emit(logger_name, operation, measurement, exc)
                    raise
                self._emit(logger_name, operation, measurement, None)
                return result

            return cast("F", async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            measurement = _Measurement(track_memory)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                self._emit(logger_name, operation, measurement, exc)
                raise
            self._emit(logger_name, operation, measurement, None)
            return result

        return cast("F", wrapper)

    # ------------------------------------------------------------------ context manager

    def _start(self) -> None:
        if self._name is None:
            raise TypeError("timed() used as a context manager needs a name: with timed('op'):")
        if self._active is not None:
            raise RuntimeError(
                f"timed({self._name!r}) is already timing a block; create a new timed(...) "
                "for each with-block"
            )
        self._active = _Measurement(self._track_memory)

    def _stop(self, exc: BaseException | None) -> None:
        measurement, self._active = self._active, None
        if measurement is not None and self._name is not None:
            self._emit(_CM_LOGGER, self._name, measurement, exc)

    def __enter__(self) -> Timed:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop(exc)

    async def __aenter__(self) -> Timed:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop(exc)


@overload
def timed(name: F, /) -> F: ...


@overload
def timed(
    name: str | None = None,
    /,
    *,
    threshold_ms: float | None = None,
    level: str = "info",
    track_memory: bool = False,
) -> Timed: ...


def timed(
    name: str | Callable[..., Any] | None = None,
    /,
    *,
    threshold_ms: float | None = None,
    level: str = "info",
    track_memory: bool = False,
) -> Timed | Callable[..., Any]:
    """Time a function (``@timed``, ``@timed("fetch_company")``) or a block (``with timed("op")``).

    `threshold_ms` defaults to LOGBEACON_SLOW_MS (read when the timer is created), else
    1000 ms; `level` is the level of `performance_metrics`; `track_memory` adds
    `rss_delta_bytes` when psutil is installed.
    """
    if callable(name):
        return Timed(None, threshold_ms=threshold_ms, level=level, track_memory=track_memory)(name)
    return Timed(name, threshold_ms=threshold_ms, level=level, track_memory=track_memory)
