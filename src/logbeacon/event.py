"""The canonical logbeacon event: one definition for the SDK, the server and every store.

An event is a plain JSON object (a `dict` here). This module owns the rules that make two
producers' events comparable: level names, timestamp format, event ids, correlation-id
shapes and the size limits. The SDK uses the cheap helpers on its hot path; the server runs
`normalize_event` on everything it receives, because browsers and foreign shippers never run
our SDK.
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from logbeacon.exceptions import EventError

__all__ = [
    "CORRELATION_FIELDS",
    "DEFAULT_LIMITS",
    "LEVELS",
    "LEVEL_NUMBERS",
    "Limits",
    "decode",
    "encode",
    "format_timestamp",
    "is_valid_span_id",
    "is_valid_trace_id",
    "level_number",
    "new_event_id",
    "normalize_event",
    "normalize_level",
    "parse_timestamp",
    "utc_now",
]

LEVELS: Final = ("debug", "info", "warn", "error", "critical")
LEVEL_NUMBERS: Final = {"debug": 10, "info": 20, "warn": 30, "error": 40, "critical": 50}

_LEVEL_ALIASES: Final = {
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "exception": "error",
    "critical": "critical",
    "fatal": "critical",
}

CORRELATION_FIELDS: Final = (
    "trace_id",
    "span_id",
    "request_id",
    "session_id",
    "user_id",
    "correlation_id",
    "run_id",
    "job_id",
    "thread_id",
)

# Plain string fields of the schema; ids are checked separately because their shape matters.
_STRING_FIELDS: Final = (
    "service",
    "environment",
    "release",
    "logger",
    "node",
    "layer_name",
    "status",
    "component",
    "route",
)

# Set by the server; a client's value would be a forgery, so it is discarded on input.
_SERVER_FIELDS: Final = ("received_at", "client_ip", "ingest_id")

_HTTP_KEYS: Final = frozenset({"method", "route", "host", "path", "url", "status", "duration_ms"})

_ID_MAX: Final = 128
_EVENT_NAME_MAX: Final = 256
_TRUNCATED_KEY: Final = "_truncated"
_DEPTH_MARKER: Final = "[depth limit]"
_EVENT_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_HEX32_RE: Final = re.compile(r"[0-9a-f]{32}")
_HEX16_RE: Final = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied to every stored event (DESIGN.md §1).

    Over-long values are truncated and their paths listed in `_truncated`; only an event that
    is still too large after that, or that is not an object, is rejected.
    """

    max_event_bytes: int = 64 * 1024
    max_string: int = 8 * 1024
    max_message: int = 4 * 1024
    max_stack_frames: int = 50
    max_depth: int = 16


DEFAULT_LIMITS: Final = Limits()


# --------------------------------------------------------------------------- encoding


def _json_default(value: object) -> Any:
    """Make anything a user logs serialisable instead of failing the whole event."""
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return repr(value)


def encode(obj: Any) -> bytes:
    """Serialise to compact JSON; NaN and infinities become `null` (strict RFC 8259)."""
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def decode(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON with orjson (rejects invalid UTF-8 and lone surrogates)."""
    return orjson.loads(data)


# --------------------------------------------------------------------------- levels


def normalize_level(value: object) -> str:
    """Return the canonical level name for a level given as text or a stdlib number.

    Accepts any case and surrounding white space (`"WARNING "` → `warn`), the aliases
    `warning`, `fatal`, `exception`, and numbers 0..50 (stdlib's 10/20/30/40/50 and anything
    between, rounded down). Anything else raises `EventError("invalid_level")`, so a made-up
    level can never sneak past a level policy.
    """
    if isinstance(value, str):
        level = _LEVEL_ALIASES.get(value.strip().lower())
        if level is not None:
            return level
    elif (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= 50
    ):
        return LEVELS[max(0, min(4, int(value) // 10 - 1))]
    raise EventError("invalid_level", f"unknown level {value!r}; use one of {', '.join(LEVELS)}")


def level_number(level: str) -> int:
    """Numeric rank of a canonical level (10..50), for minimum-level comparisons."""
    return LEVEL_NUMBERS[level]


# --------------------------------------------------------------------------- timestamps

_ts_cache = threading.local()
_TS_CACHE_MAX: Final = 64


def format_timestamp(epoch_seconds: float) -> str:
    """Format seconds since the epoch as fixed-width RFC 3339 UTC with microseconds and `Z`.

    Fixed width means lexicographic order equals time order, which the stores rely on.
    """
    whole = int(epoch_seconds)
    micros = round((epoch_seconds - whole) * 1_000_000)
    if micros >= 1_000_000:
        whole += 1
        micros -= 1_000_000
    return _format_whole(whole, micros)


def _format_whole(whole: int, micros: int) -> str:
    # Formatting the date part is the expensive bit; events of one second share it. A few
    # seconds are live at once (the server formats now, the retention bound and the future
    # bound per request), so the cache holds several.
    cache: dict[int, str] | None = getattr(_ts_cache, "prefixes", None)
    if cache is None:
        cache = _ts_cache.prefixes = {}
    prefix = cache.get(whole)
    if prefix is None:
        if len(cache) >= _TS_CACHE_MAX:
            cache.clear()
        prefix = cache[whole] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{prefix}.{micros:06d}Z"


def _is_canonical_timestamp(text: str) -> bool:
    """Whether `text` is already in our fixed-width form and names a real instant.

    Most events arrive stamped by our SDK or browser client in exactly this form; for them
    the check (one C call for the date and time) replaces a parse and a format that would
    give the same text back. Years are kept to 1970-2999, where that round trip holds.
    """
    return (
        len(text) == 27
        and text[26] == "Z"
        and text[19] == "."
        and text[10] == "T"
        and text[4] == "-"
        and text[7] == "-"
        and text[13] == ":"
        and text[16] == ":"
        and "1970" <= text[:4] <= "2999"
        and text[20:26].isdigit()
        and text[20:26].isascii()
        and _valid_second(text[:19])
    )


def _valid_second(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def utc_now() -> str:
    """The current time as an event timestamp."""
    ns = time.time_ns()
    return _format_whole(ns // 1_000_000_000, (ns // 1000) % 1_000_000)


def parse_timestamp(value: object) -> float:
    """Parse an RFC 3339 string or a Unix epoch number (seconds, or milliseconds when it is
    larger than any plausible seconds value) into epoch seconds.

    Naive times are taken as UTC. Raises `EventError("invalid_timestamp")`.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number) or number < 0:
            raise EventError("invalid_timestamp", f"timestamp {value!r} is not a valid time")
        return number / 1000.0 if number > 1e11 else number
    if isinstance(value, str) and 10 <= len(value) <= 40:
        text = value.strip()
        if text[-1:] in ("z", "Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
    raise EventError(
        "invalid_timestamp",
        f"timestamp {str(value)[:64]!r} is not RFC 3339 (e.g. 2026-01-31T12:00:00.000Z) "
        "or epoch seconds",
    )


# --------------------------------------------------------------------------- ids

_id_lock = threading.Lock()
_id_last_ms = 0
_id_seq = 0
# The two ends of every id in `_id_last_ms`: "tttttttt-tttt-7" and "-vrrr-rrrrrrrrrrrr".
_id_head = ""
_id_tail = ""
_HEX_DIGITS: Final = "0123456789abcdef"
_HEX_PAIRS: Final = tuple(f"{i:02x}" for i in range(256))
_time_ns: Final = time.time_ns
_getrandbits: Final = random.getrandbits


def _reset_id_state() -> None:
    global _id_lock, _id_last_ms, _id_seq  # noqa: PLW0603 - module state is the generator's memory
    # A fork while another thread held the lock must not leave the child's ids deadlocked.
    _id_lock = threading.Lock()
    _id_last_ms = 0  # forces fresh random bits on the child's first id
    _id_seq = 0


os.register_at_fork(after_in_child=_reset_id_state)


def _id_affixes(ms: int) -> tuple[str, str]:
    """The time prefix of millisecond `ms` and a suffix of 62 fresh random bits."""
    stamp = hex(0x1_0000_0000_0000 | (ms & 0xFFFF_FFFF_FFFF))  # "0x1" + 12 hex digits
    rand = hex(0x8000_0000_0000_0000 | _getrandbits(62))  # "0x" + variant 0b10 + 62 bits
    return f"{stamp[3:11]}-{stamp[11:]}-7", f"-{rand[2:6]}-{rand[6:]}"


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, so ids sort like the events they name.

    Within one millisecond a 12-bit counter (random start) keeps ids from one process
    strictly increasing; 62 random bits keep processes apart. Those bits are drawn afresh
    for every millisecond rather than for every id: ids of one process in one millisecond
    already differ by the counter, another process's bits differ from ours just as likely
    either way, and formatting the 80 bits around the counter once per millisecond is most
    of what an id used to cost on the logging hot path.
    """
    global _id_last_ms, _id_seq, _id_head, _id_tail  # noqa: PLW0603
    now_ms = _time_ns() // 1_000_000
    lock = _id_lock
    lock.acquire()
    try:
        if now_ms > _id_last_ms:
            _id_last_ms = now_ms
            seq = _id_seq = _getrandbits(8)  # random start leaves room to count up
            head, tail = _id_head, _id_tail = _id_affixes(now_ms)
        else:
            seq = _id_seq + 1
            if seq > 0xFFF:  # counter exhausted: borrow the next millisecond
                _id_last_ms += 1
                seq = 0
                _id_head, _id_tail = _id_affixes(_id_last_ms)
            _id_seq = seq
            head, tail = _id_head, _id_tail
    finally:
        lock.release()
    return f"{head}{_HEX_DIGITS[seq >> 8]}{_HEX_PAIRS[seq & 0xFF]}{tail}"


def is_valid_trace_id(value: object) -> bool:
    """32 lowercase hex characters, not all zero (W3C Trace Context)."""
    return isinstance(value, str) and _HEX32_RE.fullmatch(value) is not None and value != "0" * 32


def is_valid_span_id(value: object) -> bool:
    """16 lowercase hex characters, not all zero (W3C Trace Context)."""
    return isinstance(value, str) and _HEX16_RE.fullmatch(value) is not None and value != "0" * 16


# --------------------------------------------------------------------------- normalisation


class _Truncator:
    """Walks one event, copying it while enforcing string, depth and stack limits."""

    __slots__ = ("limits", "paths")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.paths: list[str] = []

    def string(self, value: str, path: str, limit: int) -> str:
        if len(value) <= limit:
            return value
        self.paths.append(path)
        return f"{value[:limit]}…[truncated {len(value) - limit} chars]"

    def value(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, str):
            return self.string(value, path, self.limits.max_string)
        if isinstance(value, bool) or value is None or isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if depth >= self.limits.max_depth:
            self.paths.append(path)
            return _DEPTH_MARKER
        if type(value) is dict or isinstance(value, Mapping):
            return self.mapping(value, path, depth + 1)
        if isinstance(value, list | tuple):
            return [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        return self.string(str(value), path, self.limits.max_string)

    def mapping(self, value: Mapping[Any, Any], path: str, depth: int) -> dict[str, Any]:
        """A copy of `value` whose members sit at `depth`, each within the limits.

        Scalars, nearly every member of a real event, are settled here without building
        their path, which only a truncation needs.
        """
        out: dict[str, Any] = {}
        max_string = self.limits.max_string
        for k, v in value.items():
            key = k if type(k) is str else str(k)
            kind = type(v)
            if kind is str:
                out[key] = (
                    v
                    if len(v) <= max_string
                    else self.string(v, f"{path}.{key}" if path else key, max_string)
                )
            elif kind is int or kind is bool or v is None:
                out[key] = v
            elif kind is float:
                out[key] = v if math.isfinite(v) else None
            else:
                out[key] = self.value(v, f"{path}.{key}" if path else key, depth)
        return out


def _id_field(name: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > _ID_MAX:
        raise EventError(f"invalid_{name}", f"{name} must be a string of 1-{_ID_MAX} characters")
    return value


def _normalize_error(value: object, cut: _Truncator) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"type": "Error", "message": value}
    if type(value) is not dict and not isinstance(value, Mapping):
        raise EventError("invalid_error", "error must be an object with type/message/stack")
    error = cut.mapping({k: v for k, v in value.items() if k != "stack"}, "error", 2)
    if "message" in error and not isinstance(error["message"], str):
        error["message"] = str(error["message"])
    if isinstance(error.get("message"), str):
        error["message"] = cut.string(error["message"], "error.message", cut.limits.max_message)
    stack = value.get("stack")
    if stack is not None:
        if isinstance(stack, str):
            stack = stack.splitlines()
        if not isinstance(stack, list | tuple):
            raise EventError("invalid_error", "error.stack must be a list of strings")
        frames = [
            cut.string(f if isinstance(f, str) else str(f), "error.stack", cut.limits.max_string)
            for f in stack
        ]
        keep = cut.limits.max_stack_frames
        if len(frames) > keep:
            cut.paths.append("error.stack")
            head = max(1, keep // 5)
            tail = keep - head - 1
            frames = [
                *frames[:head],
                f"… {len(frames) - head - tail} frames omitted …",
                *frames[-tail:],
            ]
        error["stack"] = frames
    return error


def _normalize_http(value: object, cut: _Truncator) -> dict[str, Any]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise EventError("invalid_http", "http must be an object (method, route, status, …)")
    http = cut.mapping({k: v for k, v in value.items() if k in _HTTP_KEYS}, "http", 2)
    method = http.get("method")
    if isinstance(method, str):
        http["method"] = method.upper()
    status = http.get("status")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        try:
            http["status"] = int(status)
        except (TypeError, ValueError):
            raise EventError("invalid_http", "http.status must be an integer") from None
    return http


def _number(name: str, value: object) -> float | int:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        if value < 0:
            raise EventError(f"invalid_{name}", f"{name} must not be negative")
        return value
    raise EventError(f"invalid_{name}", f"{name} must be a number")


def normalize_event(
    raw: object,
    *,
    limits: Limits = DEFAULT_LIMITS,
    now: float | None = None,
) -> dict[str, Any]:
    """Validate one incoming event and return its canonical form (a new dict).

    Fills what may be missing (`timestamp` = now, `level` = info, `service` = unknown,
    `event` = "log" when only `message` is given, `event_id`), normalises level and
    timestamp, drops server-owned fields a client must not set, drops malformed
    `trace_id`/`span_id` (marking `invalid_trace_id`/`invalid_span_id`), and truncates
    over-long values, listing their paths in `_truncated`.

    Raises `EventError` with a stable `reason` for what cannot be repaired: not an object,
    no `event` nor `message`, wrong types of schema fields, an event still over the byte
    limit after truncation.
    """
    # `type(...) is dict` first: every parsed event is one, and the ABC check costs more.
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise EventError("not_an_object", "each event must be a JSON object")
    cut = _Truncator(limits)
    src = dict(raw)
    for server_field in (*_SERVER_FIELDS, _TRUNCATED_KEY):
        src.pop(server_field, None)
    out: dict[str, Any] = {}

    ts = src.pop("timestamp", None)
    if ts is None:
        out["timestamp"] = format_timestamp(time.time() if now is None else now)
    elif type(ts) is str and _is_canonical_timestamp(ts):
        out["timestamp"] = ts  # what parsing and formatting it again would give
    else:
        out["timestamp"] = format_timestamp(parse_timestamp(ts))
    level = src.pop("level", None)
    out["level"] = "info" if level is None else normalize_level(level)

    # Declared `object`: what a client sent may be anything (mypyc checks declared types).
    message: object = src.pop("message", None)
    if message is not None and not isinstance(message, str):
        raise EventError("invalid_message", "message must be a string")
    name: object = src.pop("event", None)
    if name is None:
        if message is None:
            raise EventError("missing_event", "an event needs an `event` name or a `message`")
        name = "log"
    if not isinstance(name, str) or not name.strip():
        raise EventError("invalid_event", "event must be a non-empty string")
    out["event"] = cut.string(name, "event", _EVENT_NAME_MAX)
    if message is not None:
        out["message"] = cut.string(message, "message", limits.max_message)

    for field in _STRING_FIELDS:
        value = src.pop(field, None)
        if value is None:
            continue
        if not isinstance(value, str):
            raise EventError(f"invalid_{field}", f"{field} must be a string")
        out[field] = cut.string(value, field, _ID_MAX if field != "route" else limits.max_string)
    out.setdefault("service", "unknown")

    event_id = src.pop("event_id", None)
    if event_id is None:
        out["event_id"] = new_event_id()
    elif isinstance(event_id, str) and _EVENT_ID_RE.fullmatch(event_id):
        out["event_id"] = event_id
    else:
        raise EventError("invalid_event_id", "event_id must be 1-64 characters of [A-Za-z0-9_.:-]")

    for field in CORRELATION_FIELDS:
        value = src.pop(field, None)
        if value is None:
            continue
        if field == "trace_id" and not is_valid_trace_id(value):
            out["invalid_trace_id"] = True
            continue
        if field == "span_id" and not is_valid_span_id(value):
            out["invalid_span_id"] = True
            continue
        out[field] = _id_field(field, value)

    layer = src.pop("layer", None)
    if layer is not None:
        if (isinstance(layer, float) and layer.is_integer()) or (
            isinstance(layer, str) and layer.strip().isdigit()
        ):
            layer = int(layer)
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise EventError("invalid_layer", "layer must be an integer")
        out["layer"] = layer
    duration = src.pop("duration_ms", None)
    if duration is not None:
        out["duration_ms"] = _number("duration_ms", duration)

    http = src.pop("http", None)
    if http is not None:
        out["http"] = _normalize_http(http, cut)
    error = src.pop("error", None)
    if error is not None:
        out["error"] = _normalize_error(error, cut)

    for key, value in src.items():
        out[str(key)] = cut.value(value, str(key), 1)

    if cut.paths:
        out[_TRUNCATED_KEY] = sorted(set(cut.paths))
    if len(encode(out)) > limits.max_event_bytes:
        out = _shrink(out, limits)
    return out


def _shrink(event: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Second pass for events over the byte limit: cut every long string harder."""
    cut = _Truncator(Limits(max_string=1024, max_message=1024, max_depth=limits.max_depth))
    marked = list(event.get(_TRUNCATED_KEY, []))
    shrunk = {
        k: (v if k in ("event_id", _TRUNCATED_KEY) else cut.value(v, k, 0))
        for k, v in event.items()
    }
    shrunk[_TRUNCATED_KEY] = sorted({*marked, *cut.paths})
    if len(encode(shrunk)) > limits.max_event_bytes:
        raise EventError(
            "event_too_large",
            f"event is larger than {limits.max_event_bytes} bytes even after truncation",
        )
    return shrunk
