"""SDK settings and all of its global state: `configure`, `reset`, `get_logger`, `flush`.

Each setting is declared once in `SETTINGS` — keyword argument, then environment variables
(logbeacon's own name first, then the seed plans' aliases), then default — so the docs, the
error messages and the resolution cannot drift apart.

Loggers are `BoundLogger` instances whose level methods live on the class and are *replaced*
by `configure()`: below the configured level a method is a bare ``return None`` (what
`structlog.make_filtering_bound_logger` does), at or above it is a closure over the current
`Pipeline`. So a filtered call costs one attribute lookup and a call, and every logger —
including ones obtained before a reconfigure, and their `.bind()` children — follows the new
configuration at once. structlog's own global configuration is left untouched: an application
that also uses structlog directly keeps its settings.

Before `configure()` the methods are trampolines that configure from the environment on the
first log call (not at `get_logger`, which integrations call at import time).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import IO, Any, Final, Generic, TypeVar, cast

from structlog import BoundLoggerBase
from structlog.typing import FilteringBoundLogger

from logbeacon.context import get_context
from logbeacon.event import LEVEL_NUMBERS, new_event_id, utc_now
from logbeacon.exceptions import ConfigError
from logbeacon.redact import Redaction, Redactor
from logbeacon.sdk import _guard
from logbeacon.sdk.processors import (
    DEFAULT_USER_ID_KEY,
    AddErrorInfo,
    AddProvidedContext,
    AddTimestampAndId,
    Pipeline,
    Processor,
    PseudonymizeUserId,
)
from logbeacon.sdk.renderers import ConsoleRenderer, JsonRenderer
from logbeacon.sdk.sinks import (
    DEFAULT_FILE_BACKUPS,
    DEFAULT_FILE_MAX_BYTES,
    RotatingFileSink,
    Sink,
    StreamSink,
)
from logbeacon.sdk.stdlib import StdlibBridge

__all__ = [
    "SETTINGS",
    "BoundLogger",
    "Setting",
    "Settings",
    "configure",
    "current_settings",
    "flush",
    "get_logger",
    "is_configured",
    "reset",
    "resolve_settings",
]

T = TypeVar("T")

_LEVEL_INPUTS: Final = {
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "critical": "critical",
    "fatal": "critical",
}
_FORMATS: Final = ("json", "console", "auto")
_PROD_ENVIRONMENTS: Final = frozenset({"prod", "production"})
_NAME_MAX: Final = 128


# --------------------------------------------------------------------------- parsers
# Each takes the raw value (an argument of any type, or an environment string) and the name
# of where it came from, and returns the parsed value or raises ConfigError saying what fits.


def _bad(source: str, value: object, accepted: str) -> ConfigError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigError(f"{source}={shown} is not valid; expected {accepted}")


def _parse_name(value: object, source: str) -> str:
    if isinstance(value, str):
        text = value.strip()
        if text and len(text) <= _NAME_MAX and text.isprintable():
            return text
    raise _bad(source, value, f"a non-empty printable string of at most {_NAME_MAX} characters")


def _parse_optional_name(value: object, source: str) -> str | None:
    if value is None:
        return None
    return _parse_name(value, source)


def _parse_level(value: object, source: str) -> str:
    if isinstance(value, str):
        level = _LEVEL_INPUTS.get(value.strip().lower())
        if level is not None:
            return level
        if value.strip().isdigit():
            value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 50:
        for name in ("critical", "error", "warn", "info"):
            if value >= LEVEL_NUMBERS[name]:
                return name
        return "debug"
    raise _bad(source, value, "one of debug, info, warn (or warning), error, critical, or 10..50")


def _parse_format(value: object, source: str) -> str:
    if isinstance(value, str) and value.strip().lower() in _FORMATS:
        return value.strip().lower()
    raise _bad(source, value, "one of json, console, auto")


def _parse_path(value: object, source: str) -> Path | None:
    if value is None:
        return None
    if isinstance(value, str | PathLike) and str(value).strip():
        return Path(str(value)).expanduser()
    raise _bad(source, value, "a directory path")


def _parse_url(value: object, source: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().rstrip("/")
        scheme, sep, rest = text.partition("://")
        if sep and scheme.lower() in ("http", "https") and rest and " " not in rest:
            return text
    raise _bad(source, value, "an http:// or https:// server base URL")


def _parse_secret(value: object, source: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value.strip()
    # Never echo the value: it is a credential.
    raise ConfigError(f"{source} must be a non-empty string")


def _parse_bool(value: object, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise _bad(source, value, "true or false (1/0, yes/no, on/off)")


def _positive_int(minimum: int) -> Callable[[object, str], int]:
    def parse(value: object, source: str) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        raise _bad(source, value, f"an integer >= {minimum}")

    return parse


def _parse_redaction(value: object, source: str) -> Redaction | None:
    if value is None or isinstance(value, Redaction):
        return value
    raise _bad(source, value, "None or logbeacon.Redaction(extra_keys=..., ...)")


def _parse_key(value: object, source: str) -> bytes:
    if isinstance(value, bytes) and value:
        return value
    if isinstance(value, str) and value:
        return value.encode("utf-8")
    raise ConfigError(f"{source} must be a non-empty string")


def _parse_stream(value: object, source: str) -> IO[Any] | None:
    if value is None or callable(getattr(value, "write", None)):
        return cast("IO[Any] | None", value)
    raise _bad(source, value, "a writable stream (an object with .write), or None for stdout")


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One setting: its `configure` argument, environment variables, default and parser.

    `argument=False` marks an environment-only setting (such as the user-id hashing key,
    which belongs in the deployment's secrets, not in code).
    """

    name: str
    env: tuple[str, ...]
    default: T
    parse: Callable[[object, str], T]
    argument: bool = True

    def resolve(self, explicit: object, environ: Mapping[str, str]) -> T:
        """Argument if given, else the first environment variable set (non-empty), else default."""
        if self.argument and explicit is not None:
            return self.parse(explicit, self.name)
        for var in self.env:
            raw = environ.get(var)
            if raw is not None and raw.strip():
                return self.parse(raw, var)
        return self.default


SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting("service", ("LOGBEACON_SERVICE", "SERVICE_NAME"), "app", _parse_name),
    Setting("environment", ("LOGBEACON_ENVIRONMENT", "ENVIRONMENT"), "dev", _parse_name),
    Setting("release", ("LOGBEACON_RELEASE", "RELEASE"), None, _parse_optional_name),
    Setting("level", ("LOGBEACON_LEVEL", "LOG_LEVEL"), "info", _parse_level),
    Setting("format", ("LOGBEACON_FORMAT", "LOG_FORMAT"), "auto", _parse_format),
    Setting("log_dir", ("LOGBEACON_LOG_DIR", "TROUBLESHOOT_API_LOG_DIR"), None, _parse_path),
    Setting(
        "log_max_bytes",
        ("LOGBEACON_LOG_MAX_BYTES",),
        DEFAULT_FILE_MAX_BYTES,
        _positive_int(1024),
    ),
    Setting("log_backups", ("LOGBEACON_LOG_BACKUPS",), DEFAULT_FILE_BACKUPS, _positive_int(0)),
    Setting("ship_to", ("LOGBEACON_URL",), None, _parse_url),
    Setting("ingest_key", ("LOGBEACON_INGEST_KEY",), None, _parse_secret),
    Setting(
        "hmac_secret", ("LOGBEACON_HMAC_SECRET", "LOG_INGEST_HMAC_SECRET"), None, _parse_secret
    ),
    Setting("redaction", (), None, _parse_redaction),
    Setting("capture_stdlib", ("LOGBEACON_CAPTURE_STDLIB",), True, _parse_bool),
    Setting("pseudonymize_user_id", ("LOGBEACON_PSEUDONYMIZE_USER_ID",), True, _parse_bool),
    Setting("user_id_key", ("LOGBEACON_USER_ID_KEY",), DEFAULT_USER_ID_KEY, _parse_key, False),
    Setting("ship_queue_size", ("LOGBEACON_SHIP_QUEUE_SIZE",), 10_000, _positive_int(1)),
    Setting("spool_dir", ("LOGBEACON_SPOOL_DIR",), None, _parse_path),
    Setting("stream", (), None, _parse_stream),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved configuration (what `configure` is running with)."""

    service: str = "app"
    environment: str = "dev"
    release: str | None = None
    level: str = "info"
    format: str = "auto"
    log_dir: Path | None = None
    log_max_bytes: int = DEFAULT_FILE_MAX_BYTES
    log_backups: int = DEFAULT_FILE_BACKUPS
    ship_to: str | None = None
    ingest_key: str | None = field(default=None, repr=False)
    hmac_secret: str | None = field(default=None, repr=False)
    redaction: Redaction | None = None
    capture_stdlib: bool = True
    pseudonymize_user_id: bool = True
    user_id_key: bytes = field(default=DEFAULT_USER_ID_KEY, repr=False)
    ship_queue_size: int = 10_000
    spool_dir: Path | None = None
    stream: IO[Any] | None = None


def resolve_settings(environ: Mapping[str, str] | None = None, **arguments: object) -> Settings:
    """Resolve every setting (argument → environment → default) and check cross-field rules."""
    env = os.environ if environ is None else environ
    unknown = set(arguments) - {s.name for s in SETTINGS if s.argument}
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    values = {s.name: s.resolve(arguments.get(s.name), env) for s in SETTINGS}
    return Settings(**values)


# --------------------------------------------------------------------------- the logger

_METHOD_LEVELS: Final = {
    "debug": "debug",
    "info": "info",
    "msg": "info",
    "warning": "warn",
    "warn": "warn",
    "error": "error",
    "exception": "error",
    "critical": "critical",
    "fatal": "critical",
}
_NUMBER_LEVELS: Final = ((50, "critical"), (40, "error"), (30, "warn"), (20, "info"))


def _level_of_number(number: int) -> str:
    for threshold, name in _NUMBER_LEVELS:
        if number >= threshold:
            return name
    return "debug"


def _nop(self: Any, *args: Any, **kw: Any) -> None:
    return None


async def _anop(self: Any, *args: Any, **kw: Any) -> None:
    return None


def _interpolate(event: Any, args: tuple[Any, ...]) -> str:
    try:
        if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
            return str(event) % args[0]
        return str(event) % args
    except (TypeError, ValueError, KeyError):
        return f"{event} {args!r}"


def _make_method(pipeline: Pipeline, method: str) -> Callable[..., None]:
    level = _METHOD_LEVELS[method]
    wants_exc = method == "exception"
    seed = pipeline.seed
    service = seed["service"]
    # The bound method, not the instance: calling an instance looks `__call__` up every time.
    run = pipeline.__call__

    # `self` and `event` are positional-only so a field called `event` or `self` in **kw
    # cannot turn a log call into a TypeError.
    def log_method(self: BoundLogger, event: Any = None, /, *args: Any, **kw: Any) -> None:
        try:
            if event is None:
                event = kw.pop("event", None) or "log"
            elif args:
                event = _interpolate(event, args)
            if event.__class__ is not str:
                event = str(event)
            if wants_exc and "exc_info" not in kw:
                kw["exc_info"] = True
            event_dict = {**seed, **get_context(), **self._context, **kw}
            event_dict["level"] = level
            event_dict["event"] = event
            if event_dict["message"] is None:
                del event_dict["message"]
            if event_dict["service"] is None:
                event_dict["service"] = service
            run(level, event_dict)
        except Exception as exc:
            _guard.report("log_call", exc)

    log_method.__name__ = method
    return log_method


def _make_async(method: Callable[..., None]) -> Callable[..., Any]:
    # Emitting never blocks for long (sinks write a line and return), so the async variants
    # run inline rather than hopping to an executor thread as structlog's do.
    async def alog_method(self: BoundLogger, *args: Any, **kw: Any) -> None:
        method(self, *args, **kw)

    alog_method.__name__ = f"a{method.__name__}"
    return alog_method


class BoundLogger(BoundLoggerBase):
    """A structlog bound logger whose level methods follow the current configuration.

    ``.debug/.info/.warning/.warn/.error/.exception/.critical(event, **fields)``, async
    variants (``.ainfo`` …), ``.log(level, event, **fields)``, and structlog's
    ``.bind/.unbind/.try_unbind/.new``. The first positional argument is the event name.
    """

    def is_enabled_for(self, level: int) -> bool:
        """Whether a call at stdlib `level` (10..50) would be emitted."""
        return level >= _state.min_level

    def get_effective_level(self) -> int:
        """The configured minimum level as a stdlib number."""
        return _state.min_level

    def log(self, level: int | str, event: Any = None, /, *args: Any, **kw: Any) -> None:
        """Log at a level given as a stdlib number or a level name."""
        try:
            name = (
                _level_of_number(level)
                if isinstance(level, int)
                else _METHOD_LEVELS[str(level).strip().lower()]
            )
        except KeyError:
            name = "info"
        getattr(self, name)(event, *args, **kw)

    async def alog(self, level: int | str, event: Any = None, /, *args: Any, **kw: Any) -> None:
        """Async variant of `log`."""
        self.log(level, event, *args, **kw)


def _install_methods(make: Callable[[str], Callable[..., None]]) -> None:
    for method in _METHOD_LEVELS:
        fn = make(method)
        setattr(BoundLogger, method, fn)
        setattr(BoundLogger, f"a{method}", _anop if fn is _nop else _make_async(fn))


def _trampoline(method: str) -> Callable[..., None]:
    def autoconfigure_then_log(self: BoundLogger, *args: Any, **kw: Any) -> None:
        try:
            _autoconfigure()
        except Exception as exc:
            _guard.report("autoconfigure", exc)
            return
        getattr(self, method)(*args, **kw)

    autoconfigure_then_log.__name__ = method
    return autoconfigure_then_log


# --------------------------------------------------------------------------- global state


class _State:
    """Everything `configure()` sets up, in one place, so `reset()` can undo all of it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings: Settings | None = None
        self.pipeline: Pipeline | None = None
        self.bridge: StdlibBridge | None = None
        self.min_level = LEVEL_NUMBERS["info"]
        self.atexit_registered = False
        self.clock: Callable[[], str] = utc_now
        self.ids: Callable[[], str] = new_event_id


_state = _State()
_install_methods(_trampoline)


def _autoconfigure() -> None:
    with _state.lock:
        if _state.settings is not None:
            return
        try:
            configure()
        except ConfigError as exc:
            # A bad environment variable must not make logging raise inside the app: run
            # with defaults and say why once on the internal logger.
            _guard.report("autoconfigure", exc)
            _apply(Settings())


def _resolve_format(settings: Settings, stream: IO[Any] | None) -> str:
    if settings.format != "auto":
        return settings.format
    if _is_tty(stream) and settings.environment.lower() not in _PROD_ENVIRONMENTS:
        return "console"
    return "json"


def _is_tty(stream: IO[Any] | None) -> bool:
    target = stream if stream is not None else sys.stdout
    try:
        return bool(target.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _build_sinks(settings: Settings) -> list[Sink]:
    fmt = _resolve_format(settings, settings.stream)
    console = ConsoleRenderer(colors=_is_tty(settings.stream)) if fmt == "console" else None
    sinks: list[Sink] = [StreamSink(settings.stream, console)]
    if settings.log_dir is not None:
        try:
            sinks.append(
                RotatingFileSink(
                    settings.log_dir,
                    f"{settings.service}.jsonl",
                    max_bytes=settings.log_max_bytes,
                    backups=settings.log_backups,
                )
            )
        except OSError as exc:
            raise ConfigError(
                f"log_dir {str(settings.log_dir)!r} cannot be used for the log file: "
                f"{exc.strerror or exc}; choose a writable directory or unset log_dir"
            ) from exc
    if settings.ship_to is not None:
        from logbeacon.sdk.shipper import Shipper  # only apps that ship pay for it

        base = {"service": settings.service, "environment": settings.environment}
        if settings.release is not None:
            base["release"] = settings.release
        sinks.append(
            Shipper(
                settings.ship_to,
                ingest_key=settings.ingest_key,
                hmac_secret=settings.hmac_secret,
                queue_size=settings.ship_queue_size,
                spool_dir=settings.spool_dir,
                base_fields=base,
            )
        )
    return sinks


def _build_pipeline(settings: Settings, sinks: list[Sink]) -> Pipeline:
    redactor = Redactor(settings.redaction)
    seed: dict[str, Any] = {
        "timestamp": None,
        "level": None,
        "service": settings.service,
        "event": None,
        "message": None,
        "environment": settings.environment,
    }
    if settings.release is not None:
        seed["release"] = settings.release
    processors: list[Processor] = [AddErrorInfo(), AddProvidedContext()]
    if settings.pseudonymize_user_id:
        processors.append(PseudonymizeUserId(settings.user_id_key))
    return Pipeline(
        seed=seed,
        processors=processors,
        redact=redactor.event_redactor(),
        stamp=AddTimestampAndId(clock=_state.clock, ids=_state.ids),
        render=JsonRenderer(scrub=redactor.redact, scrub_text=redactor.redact_text),
        sinks=sinks,
    )


def _apply(settings: Settings) -> None:
    """Swap in a configuration built from `settings` (caller holds the lock)."""
    sinks = _build_sinks(settings)
    pipeline = _build_pipeline(settings, sinks)
    min_level = LEVEL_NUMBERS[settings.level]
    old_pipeline, old_bridge = _state.pipeline, _state.bridge

    def make(method: str) -> Callable[..., None]:
        if LEVEL_NUMBERS[_METHOD_LEVELS[method]] < min_level:
            return _nop
        return _make_method(pipeline, method)

    _install_methods(make)
    _state.settings = settings
    _state.pipeline = pipeline
    _state.min_level = min_level

    root = logging.getLogger()
    if old_bridge is not None:
        root.removeHandler(old_bridge)
        _state.bridge = None
    if settings.capture_stdlib:
        bridge = StdlibBridge(pipeline, min_level)
        root.addHandler(bridge)
        _state.bridge = bridge
    if old_pipeline is not None:
        old_pipeline.close()
    if not _state.atexit_registered:
        atexit.register(_flush_at_exit)
        _state.atexit_registered = True


def configure(
    *,
    service: str | None = None,
    environment: str | None = None,
    release: str | None = None,
    level: str | int | None = None,
    format: str | None = None,
    log_dir: str | PathLike[str] | None = None,
    ship_to: str | None = None,
    ingest_key: str | None = None,
    hmac_secret: str | None = None,
    redaction: Redaction | None = None,
    capture_stdlib: bool | None = None,
    pseudonymize_user_id: bool | None = None,
    ship_queue_size: int | None = None,
    spool_dir: str | PathLike[str] | None = None,
    stream: IO[Any] | None = None,
    log_max_bytes: int | None = None,
    log_backups: int | None = None,
) -> None:
    """Configure logbeacon for this process; calling it again reconfigures cleanly.

    Every argument left as None falls back to its environment variable, then its default
    (see `SETTINGS` and docs/sdk.md). Raises `ConfigError` naming the setting and what it
    accepts; on error the previous configuration stays in force.
    """
    settings = resolve_settings(
        service=service,
        environment=environment,
        release=release,
        level=level,
        format=format,
        log_dir=log_dir,
        ship_to=ship_to,
        ingest_key=ingest_key,
        hmac_secret=hmac_secret,
        redaction=redaction,
        capture_stdlib=capture_stdlib,
        pseudonymize_user_id=pseudonymize_user_id,
        ship_queue_size=ship_queue_size,
        spool_dir=spool_dir,
        stream=stream,
        log_max_bytes=log_max_bytes,
        log_backups=log_backups,
    )
    with _state.lock:
        _apply(settings)


def reset() -> None:
    """Return to the unconfigured state: sinks closed, stdlib handler removed, counts zeroed.

    The next log call configures again from the environment. Hooks and attached sinks
    (`logbeacon.testing.capture_logs`) are not touched.
    """
    with _state.lock:
        if _state.bridge is not None:
            logging.getLogger().removeHandler(_state.bridge)
            _state.bridge = None
        pipeline, _state.pipeline = _state.pipeline, None
        _state.settings = None
        _state.min_level = LEVEL_NUMBERS["info"]
        _state.clock = utc_now
        _state.ids = new_event_id
        _install_methods(_trampoline)
        if pipeline is not None:
            pipeline.close()
        _guard.reset_counts()


def is_configured() -> bool:
    """Whether `configure()` (explicit or automatic) is in force."""
    return _state.settings is not None


def current_settings() -> Settings | None:
    """The settings in force, or None before configuration."""
    return _state.settings


def get_logger(name: str | None = None, **initial_values: Any) -> FilteringBoundLogger:
    """A logger; `name` becomes the `logger` field. Works before `configure()`.

    Cheap enough to call per module at import time; it does not configure anything.
    """
    context: dict[str, Any] = {"logger": name} if name is not None else {}
    context.update(initial_values)
    return cast("FilteringBoundLogger", BoundLogger(None, (), context))


def flush(timeout: float = 5.0) -> bool:
    """Write out everything buffered (every sink); True if it finished within `timeout`."""
    pipeline = _state.pipeline
    if pipeline is None:
        return True
    try:
        return pipeline.flush(timeout)
    except Exception as exc:
        _guard.report("flush", exc)
        return False


def _flush_at_exit() -> None:
    # At interpreter exit there is nobody left to tell about a failure.
    with contextlib.suppress(Exception):
        flush(timeout=2.0)


def _set_test_sources(
    clock: Callable[[], str] | None, ids: Callable[[], str] | None
) -> tuple[Callable[[], str], Callable[[], str]]:
    """Swap the timestamp and event-id sources (used by `logbeacon.testing.freeze`).

    Returns the previous pair; rebuilds the pipeline so the change applies at once.
    """
    with _state.lock:
        previous = (_state.clock, _state.ids)
        _state.clock = clock or utc_now
        _state.ids = ids or new_event_id
        if _state.settings is not None:
            _apply(_state.settings)
        return previous
