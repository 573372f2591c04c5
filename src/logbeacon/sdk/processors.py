"""The processor chain every event passes through, and the pipeline that runs it.

A log call first builds the event dict in the bound logger (`logbeacon.sdk.config`) from the
pipeline's `seed` — the canonical fields in order, with the configured service, environment
and release — then the bound context (`logbeacon.context`), the logger's own bound fields and
the call's keyword arguments; later ones win, so an explicit field beats context and
configuration. Then `Pipeline` runs, each step a plain structlog-style processor
``(logger, method_name, event_dict) -> event_dict`` that does its set-up in `__init__`:

1. `AddErrorInfo` — `exc_info` → ``error: {type, message, stack}`` (never local variables),
   then the error enrichers from `hooks`;
2. `AddProvidedContext` — correlation fields from the context providers in `hooks`;
3. `PseudonymizeUserId` — keyed hash of `user_id` (unless switched off);
4. the redactor — after every step that can add user data, so nothing leaves the process
   unredacted;
5. `AddTimestampAndId` — the two values the SDK generates itself (see its docstring).

Then the JSON line is rendered once and ``(event, line)`` handed to every sink. A processor
in step 1-3 may raise `structlog.DropEvent` to drop an event.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from types import FunctionType, MethodType
from typing import Any, Final, TypeAlias

from structlog import DropEvent

from logbeacon.event import new_event_id, utc_now
from logbeacon.sdk import hooks as _hooks
from logbeacon.sdk import sinks as _sinks
from logbeacon.sdk._guard import report
from logbeacon.sdk.renderers import JsonRenderer
from logbeacon.sdk.sinks import Sink

__all__ = [
    "DEFAULT_USER_ID_KEY",
    "AddErrorInfo",
    "AddProvidedContext",
    "AddTimestampAndId",
    "EventDict",
    "Pipeline",
    "Processor",
    "PseudonymizeUserId",
    "error_from_exception",
]

EventDict: TypeAlias = dict[str, Any]
Processor: TypeAlias = Callable[[Any, str, EventDict], EventDict]

# Used when LOGBEACON_USER_ID_KEY is unset, so one user id maps to the same pseudonym in
# every process. Public by design: with it, anyone can test guesses against a pseudonym.
DEFAULT_USER_ID_KEY: Final = b"logbeacon-user-id-pseudonymisation-default-key-v1"
USER_ID_PREFIX: Final = "uh_"
_PSEUDONYM_RE: Final = re.compile(r"uh_[0-9a-f]{16}")

_MAX_STACK_FRAMES: Final = 50


class AddTimestampAndId:
    """Stamp the event with `timestamp` (unless given) and a UUIDv7 `event_id` (unless given).

    Runs *after* redaction: both values are generated here, never user input, and keeping
    them out of the redactor's walk saves it two unique strings per event that its caches
    cannot help with. A timestamp or event_id passed by the caller is user input and so is
    present (and redacted) before this runs. `clock` and `ids` are injectable for
    deterministic tests (`logbeacon.testing.freeze`).
    """

    __slots__ = ("_clock", "_ids")

    def __init__(
        self, clock: Callable[[], str] = utc_now, ids: Callable[[], str] = new_event_id
    ) -> None:
        self._clock = clock
        self._ids = ids

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("timestamp") is None:
            event_dict["timestamp"] = self._clock()
        if "event_id" not in event_dict:
            event_dict["event_id"] = self._ids()
        return event_dict


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _frame_text(frame: traceback.FrameSummary) -> str:
    text = f'File "{frame.filename}", line {frame.lineno}, in {frame.name}'
    line = (frame.line or "").strip()
    return f"{text}: {line}" if line else text


def error_from_exception(exc: BaseException) -> dict[str, Any]:
    """The `error` object for an exception: type, message, stack (one string per frame).

    Only code locations and source lines: local variables are never read, so a `password`
    in some frame cannot end up in a log. Long stacks keep their outermost and innermost
    frames. The direct cause (``raise … from``) or context is summarised as `cause`.
    """
    frames = [_frame_text(f) for f in traceback.extract_tb(exc.__traceback__)]
    if len(frames) > _MAX_STACK_FRAMES:
        head = _MAX_STACK_FRAMES // 5
        tail = _MAX_STACK_FRAMES - head - 1
        omitted = len(frames) - head - tail
        frames = [*frames[:head], f"... {omitted} frames omitted ...", *frames[-tail:]]
    error: dict[str, Any] = {
        "type": type(exc).__name__,
        "message": _safe_str(exc),
        "stack": frames,
    }
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None:
        error["cause"] = {"type": type(cause).__name__, "message": _safe_str(cause)}
    return error


def _exception_of(exc_info: object) -> BaseException | None:
    if exc_info is True:
        return sys.exc_info()[1]
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        if isinstance(value, BaseException):
            return value
        kind = exc_info[0]
        if isinstance(kind, type) and issubclass(kind, BaseException):
            return kind()
    return None


class AddErrorInfo:
    """`exc_info` (True, an exception, or a `sys.exc_info()` tuple) → the `error` object.

    Also accepts ``error=<exception>`` and ``error="text"``. A mapping passed as `error` is
    copied (never mutated) and merged over what the exception gave. Then every error
    enricher from `hooks` edits the error in place; one that raises is reported and skipped.
    """

    __slots__ = ()

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        if "exc_info" not in event_dict and "error" not in event_dict:
            return event_dict
        exc = _exception_of(event_dict.pop("exc_info", None))
        given = event_dict.get("error")
        if isinstance(given, BaseException):
            exc = exc or given
            given = None
        error: dict[str, Any] | None = error_from_exception(exc) if exc is not None else None
        if isinstance(given, Mapping):
            error = {**(error or {}), **given}
        elif isinstance(given, str):
            error = {**(error or {"type": "Error"}), "message": given}
        elif given is not None and error is None:
            error = {"type": "Error", "message": _safe_str(given)}
        if error is None:
            event_dict.pop("error", None)
            return event_dict
        event_dict["error"] = error
        for enrich in _hooks.error_enrichers():
            try:
                enrich(exc, error, event_dict)
            except Exception as hook_error:
                report("error_enricher", hook_error)
        return event_dict


class AddProvidedContext:
    """Ask the context providers from `hooks` for correlation fields (OpenTelemetry ids).

    Runs only when the event has no `trace_id` yet (an id bound by the ASGI middleware or
    passed explicitly wins), and never overrides a field the event already has.
    """

    __slots__ = ()

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        providers = _hooks.context_providers()
        if not providers or "trace_id" in event_dict:
            return event_dict
        for provide in providers:
            try:
                fields = provide()
            except Exception as hook_error:
                report("context_provider", hook_error)
                continue
            if fields:
                for key, value in fields.items():
                    if key not in event_dict:
                        event_dict[key] = value
        return event_dict


class PseudonymizeUserId:
    """Replace `user_id` with ``uh_`` + 16 hex of HMAC-SHA256(key, user id).

    Deterministic for a given key, so one user's events still join up across services that
    share the key (`LOGBEACON_USER_ID_KEY`). This is pseudonymisation, not anonymisation:
    whoever knows the key can confirm a guessed id. Already pseudonymised values pass through
    unchanged, so an id hashed by one service is not hashed again by the next.
    """

    __slots__ = ("_hash",)

    def __init__(self, key: bytes = DEFAULT_USER_ID_KEY) -> None:
        @lru_cache(maxsize=4096)
        def pseudonym(user_id: str) -> str:
            digest = hmac.new(key, user_id.encode("utf-8", "replace"), hashlib.sha256)
            return USER_ID_PREFIX + digest.hexdigest()[:16]

        self._hash = pseudonym

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        user_id = event_dict.get("user_id")
        if user_id is None:
            return event_dict
        text = user_id if isinstance(user_id, str) else _safe_str(user_id)
        if _PSEUDONYM_RE.fullmatch(text) is None:
            event_dict["user_id"] = self._hash(text)
        return event_dict


def _fast_callable(step: Callable[..., Any]) -> Callable[..., Any]:
    """`step`, or its class's Python ``__call__`` bound to it (what calling `step` runs).

    Calling an instance goes through a slot lookup every time; calling the bound method it
    resolves to skips that, and per event that is most of what a step with nothing to do
    costs. Functions, bound methods and builtins are returned as they are.
    """
    for klass in type(step).__mro__:
        call = klass.__dict__.get("__call__")
        if call is not None:
            return MethodType(call, step) if isinstance(call, FunctionType) else step
    return step


class Pipeline:
    """Runs the processors, redacts, stamps, renders once and writes to every sink.

    Built whole by `configure()` and swapped atomically, so a log call sees either the old or
    the new configuration, never a mix. `seed` is the dict every event starts from (see the
    module docstring). Sink failures are reported through the guard, never raised.

    `redact` receives a dict the pipeline owns (the log call built it) and may return that
    very dict when nothing needs scrubbing (`Redactor.event_redactor`). `processors` and
    `sinks` may be replaced on a live pipeline (tests insert steps); the processors' resolved
    callables are refreshed with them.
    """

    __slots__ = (
        "_processors",
        "_redact",
        "_render",
        "_render_call",
        "_stamp",
        "_stamp_call",
        "_steps",
        "seed",
        "sinks",
    )

    def __init__(
        self,
        *,
        seed: Mapping[str, Any],
        processors: Sequence[Processor],
        redact: Callable[[EventDict], EventDict],
        stamp: Processor,
        render: JsonRenderer,
        sinks: Sequence[Sink],
    ) -> None:
        self.seed = dict(seed)
        self.processors = processors
        self._redact = redact
        self._stamp = stamp
        self._stamp_call = _fast_callable(stamp)
        self._render = render
        self._render_call = _fast_callable(render)
        self.sinks = tuple(sinks)

    @property
    def processors(self) -> tuple[Processor, ...]:
        """The steps before redaction, in order."""
        return self._processors

    @processors.setter
    def processors(self, processors: Sequence[Processor]) -> None:
        steps = tuple(processors)
        self._steps = tuple(_fast_callable(step) for step in steps)
        self._processors = steps

    @property
    def redact(self) -> Callable[[EventDict], EventDict]:
        """The redaction step (runs after the processors)."""
        return self._redact

    @property
    def stamp(self) -> Processor:
        """Adds the SDK-generated `timestamp` and `event_id` after redaction."""
        return self._stamp

    @property
    def render(self) -> JsonRenderer:
        """Renders the JSON line every sink receives."""
        return self._render

    def __call__(self, method_name: str, event_dict: EventDict) -> None:
        try:
            for step in self._steps:
                event_dict = step(None, method_name, event_dict)
        except DropEvent:
            return
        event_dict = self._stamp_call(None, method_name, self._redact(event_dict))
        line = self._render_call(event_dict)
        for sink in self.sinks:
            try:
                sink.emit(event_dict, line)
            except Exception as exc:
                report(f"sink.{sink.name}", exc)
        attached = _sinks._attached
        if attached:
            for sink in attached:
                try:
                    sink.emit(event_dict, line)
                except Exception as exc:
                    report(f"sink.{sink.name}", exc)

    def flush(self, timeout: float) -> bool:
        """Flush every sink, sharing one deadline; True if all finished in time."""
        deadline = time.monotonic() + timeout
        ok = True
        for sink in self.sinks:
            try:
                ok = sink.flush(max(deadline - time.monotonic(), 0.0)) and ok
            except Exception as exc:
                report(f"sink.{sink.name}.flush", exc)
                ok = False
        return ok

    def close(self) -> None:
        """Close every sink (their files); errors are reported, not raised."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                report(f"sink.{sink.name}.close", exc)
