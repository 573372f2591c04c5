"""Turning lines of program output into events, for `logbeacon run` and `logbeacon collect`.

A line that is a JSON object with an `event` (or `message`) string is a structured event and
keeps its own fields; any other line — plain text, JSON without those fields, JSON whose
fields do not validate (say `"level": "verbose"`) — becomes an `output` event carrying the
line as `text`, so nothing a program prints is lost because it was almost structured.
Fields the caller supplies (`service`, `job_id` …) fill in what the line does not say.

Every event leaves here normalised (`logbeacon.event.normalize_event`: size limits, canonical
level and timestamp, an `event_id`) and redacted, because both commands send it out of the
process, and the local store takes only normalised, redacted events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from logbeacon.event import normalize_event
from logbeacon.exceptions import EventError
from logbeacon.redact import Redactor, default_redactor

__all__ = ["MAX_LINE_BYTES", "decode_line", "line_to_event"]

#: Longest line kept; the rest of a longer line is skipped and the event marked `truncated`.
MAX_LINE_BYTES: Final = 1024 * 1024

# Common spellings of the level field in other JSON loggers (python-json-logger, GCP).
_LEVEL_ALIASES: Final = ("levelname", "severity")


def decode_line(raw: bytes) -> str:
    """The line as text without its line ending; invalid UTF-8 becomes U+FFFD."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw.decode("utf-8", "replace")


def _structured(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] != "{" or stripped[-1] != "}":
        return None
    try:
        doc = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if not isinstance(doc.get("event"), str) and not isinstance(doc.get("message"), str):
        return None
    if "level" not in doc:
        for alias in _LEVEL_ALIASES:
            if alias in doc:
                doc["level"] = doc.pop(alias)
                break
    return doc


def line_to_event(
    raw: bytes,
    *,
    defaults: Mapping[str, Any],
    output_fields: Mapping[str, Any] | None = None,
    truncated: bool = False,
    event_id: str | None = None,
    redactor: Redactor | None = None,
) -> dict[str, Any]:
    """The event for one line of output.

    `defaults` fill fields the line does not set (a structured line's own `service` or
    `job_id` wins); when the line names a `job_id` but no `run_id`, its run is its job
    (DESIGN.md §8). `output_fields` are added to `output` events only (`stream`, `file`).
    `event_id` is used unless the line carries a valid one of its own.
    """
    text = decode_line(raw)
    event: dict[str, Any] | None = None
    doc = None if truncated else _structured(text)
    if doc is not None:
        candidate = {**defaults, **doc}
        if "run_id" not in doc and "job_id" in doc:
            candidate["run_id"] = doc["job_id"]
        if event_id is not None and "event_id" not in doc:
            candidate["event_id"] = event_id
        try:
            event = normalize_event(candidate)
        except EventError:
            event = None
    if event is None:
        candidate = {**defaults, "event": "output", "level": "info", **(output_fields or {})}
        candidate["text"] = text
        if truncated:
            candidate["truncated"] = True
        if event_id is not None:
            candidate["event_id"] = event_id
        event = normalize_event(candidate)
    return (redactor or default_redactor()).redact_event(event)
