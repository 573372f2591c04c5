"""Query parameters of the derived read APIs (`/v1/runs`, `/v1/errors`, `/v1/analysis`).

Same rules as `filters.parse_filters` for `/v1/logs`: an unknown or repeated parameter is a
400 (a typo must not silently widen the answer), a bad value a 422 naming the parameter and
what it accepts, and values are never echoed back. The OpenAPI declarations live next to the
parsers so the documented schema and the accepted values cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Any, Final

from logbeacon.event import LEVELS, normalize_level
from logbeacon.exceptions import EventError
from logbeacon.server.filters import FilterError, parse_time

__all__ = [
    "LEVEL_SCHEMA",
    "MAX_TEXT",
    "TIME_HELP",
    "TIME_SCHEMA",
    "choice_param",
    "collect_params",
    "int_param",
    "level_param",
    "openapi_param",
    "text_param",
    "time_param",
]

MAX_TEXT: Final = 256
TIME_HELP: Final = "RFC 3339 (2026-01-31T12:00:00Z) or a duration back from now: 15m, 1h, 7d"
TIME_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [
        {"type": "string", "pattern": "^[0-9]{1,6}[smhdw]$"},
        {"type": "string", "format": "date-time"},
    ]
}
LEVEL_SCHEMA: Final[dict[str, Any]] = {"type": "string", "enum": [*LEVELS, "warning", "fatal"]}
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def openapi_param(
    name: str, description: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One optional query parameter for `openapi_extra`."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
    }


def _invalid(name: str, message: str) -> FilterError:
    return FilterError(422, "invalid_parameter", name, f"{name}: {message}")


def collect_params(
    items: Iterable[tuple[str, str]], known: Collection[str], *, ignored: Collection[str] = ()
) -> dict[str, str]:
    """The query string as a dict; 400 for a parameter not in `known` or given twice."""
    values: dict[str, str] = {}
    for name, value in items:
        if name in ignored:
            continue
        if name not in known:
            shown = name if _NAME_RE.fullmatch(name) else "?"  # never reflect arbitrary input
            raise FilterError(
                400,
                "unknown_parameter",
                shown,
                f"unknown query parameter {shown!r}; this endpoint takes: {', '.join(known)}",
            )
        if name in values:
            raise FilterError(400, "repeated_parameter", name, f"{name} may be given only once")
        values[name] = value
    return values


def time_param(name: str, value: str, *, now: float) -> float:
    """Epoch seconds of RFC 3339 text or a duration back from `now`."""
    try:
        return parse_time(value, now=now)
    except ValueError:
        raise _invalid(
            name, "use RFC 3339 (2026-01-31T12:00:00Z) or a duration such as 15m, 1h, 7d"
        ) from None


def text_param(name: str, value: str) -> str:
    # Any characters are fine: values only ever reach the store as bound parameters.
    if not value or len(value) > MAX_TEXT:
        raise _invalid(name, f"must be 1-{MAX_TEXT} characters")
    return value


def int_param(name: str, value: str, *, low: int, high: int) -> int:
    raw = value.strip()
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise _invalid(name, f"must be a whole number from {low} to {high}")
    return int(raw)


def level_param(value: str) -> str:
    try:
        return normalize_level(value)
    except EventError:
        raise _invalid("level", "use debug, info, warn, error or critical") from None


def choice_param(name: str, value: str, choices: Collection[str]) -> str:
    if value not in choices:
        raise _invalid(name, f"use one of {', '.join(choices)}")
    return value
