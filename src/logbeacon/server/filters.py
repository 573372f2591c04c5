"""Parse the query filters of `GET /v1/logs` (and the live tail) into a `store.Query`.

One parser for every reader of filters, so `since=15m` means the same on the query API, the
stream and the WebSocket. Unknown or repeated parameters are a 400 (a typo like `levle=error`
must not silently return everything); a known parameter with a bad value is a 422 naming the
parameter and what it accepts. Values are never echoed back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from typing import Final

from logbeacon.event import normalize_level, parse_timestamp
from logbeacon.exceptions import EventError, LogbeaconError
from logbeacon.store.base import EXACT_FILTERS, MAX_LIMIT, Query

__all__ = [
    "FILTER_PARAMS",
    "FilterError",
    "parse_duration",
    "parse_filters",
    "parse_time",
]

FILTER_PARAMS: Final = ("since", "until", "level", *EXACT_FILTERS, "q", "limit", "cursor")

DEFAULT_LIMIT: Final = 100
_MAX_VALUE: Final = 256
_MAX_CURSOR: Final = 1024
_DURATION_RE: Final = re.compile(r"(\d{1,9})\s*(s|m|h|d|w)")
_TRACE_ID_RE: Final = re.compile(r"[0-9a-f]{32}")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class FilterError(LogbeaconError, ValueError):
    """A filter parameter was unknown (400) or had an invalid value (422)."""

    def __init__(self, status: int, code: str, param: str, message: str) -> None:
        self.status = status
        self.code = code
        self.param = param
        super().__init__(message)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `30s`, `15m`, `1h`, `7d`, `2w`; ValueError otherwise."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"not a duration: {text[:20]!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_time(value: str, *, now: float) -> float:
    """Epoch seconds from RFC 3339 text or a duration back from `now` (`15m` = 15 min ago)."""
    text = value.strip()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    if re.fullmatch(r"\d+(\.\d+)?", text):  # epoch seconds are not part of the contract
        raise ValueError("bare numbers are ambiguous")
    try:
        seconds = parse_timestamp(text)
    except EventError:
        raise ValueError("not a time") from None
    if not math.isfinite(seconds):
        raise ValueError("not a time")
    return seconds


def _invalid(param: str, message: str) -> FilterError:
    return FilterError(422, "invalid_parameter", param, f"{param}: {message}")


def parse_filters(
    params: Iterable[tuple[str, str]],
    *,
    now: float,
    extra_allowed: Collection[str] = (),
    default_limit: int = DEFAULT_LIMIT,
) -> Query:
    """Validate `(name, value)` pairs (a query string's multi-items) into a `Query`.

    `extra_allowed` names parameters the caller consumes itself (e.g. `token`); they are
    accepted and ignored here.
    """
    values: dict[str, str] = {}
    for name, value in params:
        if name in extra_allowed:
            continue
        if name not in FILTER_PARAMS:
            shown = name if _NAME_RE.fullmatch(name) else "?"  # never reflect arbitrary input
            raise FilterError(
                400,
                "unknown_parameter",
                shown,
                f"unknown query parameter {shown!r}; filters are: {', '.join(FILTER_PARAMS)}",
            )
        if name in values:
            raise FilterError(400, "repeated_parameter", name, f"{name} may be given only once")
        values[name] = value

    since = until = None
    if "since" in values:
        since = _time_param("since", values["since"], now)
    if "until" in values:
        until = _time_param("until", values["until"], now)

    level = None
    if "level" in values:
        try:
            level = normalize_level(values["level"])
        except EventError:
            raise _invalid("level", "use debug, info, warn, error or critical") from None

    exact: dict[str, str] = {}
    for name in EXACT_FILTERS:
        if name in values:
            exact[name] = _text_param(name, values[name], _MAX_VALUE)
    if "trace_id" in exact:
        exact["trace_id"] = exact["trace_id"].lower()
        if not _TRACE_ID_RE.fullmatch(exact["trace_id"]):
            raise _invalid("trace_id", "must be 32 hexadecimal characters (W3C trace id)")

    q = _text_param("q", values["q"], _MAX_VALUE) if "q" in values else None
    cursor = _text_param("cursor", values["cursor"], _MAX_CURSOR) if "cursor" in values else None

    limit = default_limit
    if "limit" in values:
        raw = values["limit"].strip()
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise _invalid("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(raw)

    return Query(
        since=since,
        until=until,
        level=level,
        q=q,
        limit=limit,
        cursor=cursor,
        **exact,
    )


def _time_param(name: str, value: str, now: float) -> float:
    try:
        return parse_time(value, now=now)
    except ValueError:
        raise _invalid(
            name, "use RFC 3339 (2026-01-31T12:00:00Z) or a duration such as 15m, 1h, 7d"
        ) from None


def _text_param(name: str, value: str, maximum: int) -> str:
    # Any characters are fine: values only ever reach the store as bound parameters.
    if not value or len(value) > maximum:
        raise _invalid(name, f"must be 1-{maximum} characters")
    return value
