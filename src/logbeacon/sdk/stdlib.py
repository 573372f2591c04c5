"""Bridge from the standard library's `logging` into the logbeacon pipeline.

Libraries log through `logging` (uvicorn, httpx, langchain, sqlalchemy …). `StdlibBridge` is a
`logging.Handler` installed on the root logger: each record becomes an event with
``event="log"``, ``message=`` the formatted message, ``logger=`` the record's name, the level
from its number, its `exc_info` as the `error` object, any ``extra={...}`` fields, and the
correlation context bound in the thread or task that logged it — the same processors,
redaction and sinks as `get_logger()` events.

Two loops are cut here: records of logbeacon's own `logbeacon.internal` logger never enter
the pipeline (an internal error while emitting would otherwise log itself forever), and a
record logged *while* this handler is emitting on the same thread (a sink that logs) is
dropped.

The handler's level is the configured level; the levels of other loggers are left alone, so
a library that is quiet today stays quiet (the root logger defaults to WARNING: set
``logging.getLogger().setLevel(logging.INFO)`` to see libraries' info records).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

from logbeacon.context import get_context
from logbeacon.event import format_timestamp
from logbeacon.sdk._guard import INTERNAL_LOGGER_NAME, report
from logbeacon.sdk.processors import Pipeline

__all__ = ["StdlibBridge", "record_to_event"]

_CANONICAL_BY_NUMBER: Final = ((50, "critical"), (40, "error"), (30, "warn"), (20, "info"))
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS: Final = frozenset(
    {
        *logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)
# Extras that would overwrite what the bridge itself decides.
_PROTECTED: Final = frozenset({"event", "level", "logger", "message", "timestamp"})


def _level_name(levelno: int) -> str:
    for number, name in _CANONICAL_BY_NUMBER:
        if levelno >= number:
            return name
    return "debug"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        # A bad %-format in someone else's library must not lose the record.
        return f"{record.msg!s} {record.args!r}"


def record_to_event(
    record: logging.LogRecord, context: Mapping[str, Any], seed: Mapping[str, Any]
) -> dict[str, Any]:
    """The event dict for one stdlib record, starting from the pipeline's `seed`.

    Precedence: configuration (seed) < bound context < `extra=` fields < the record's facts.
    """
    event: dict[str, Any] = {**seed, **context}
    event.update(
        {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and k not in _PROTECTED}
    )
    event["timestamp"] = format_timestamp(record.created)
    event["level"] = _level_name(record.levelno)
    event["event"] = "log"
    event["message"] = _message(record)
    event["logger"] = record.name
    if event.get("service") is None:
        event["service"] = seed.get("service")
    if record.exc_info and record.exc_info[0] is not None:
        event["exc_info"] = record.exc_info
    elif record.stack_info:
        event["stack_info"] = record.stack_info
    return event


class StdlibBridge(logging.Handler):
    """Root-logger handler feeding stdlib records into a `Pipeline`."""

    def __init__(self, pipeline: Pipeline, level: int) -> None:
        super().__init__(level)
        self._pipeline = pipeline
        self._local = threading.local()

    def handle(self, record: logging.LogRecord) -> bool:
        """Skip `logging.Handler`'s per-handler lock: our sinks lock for themselves."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name
        if name == INTERNAL_LOGGER_NAME or name.startswith(INTERNAL_LOGGER_NAME + "."):
            return
        local = self._local
        if getattr(local, "busy", False):
            return
        local.busy = True
        try:
            pipeline = self._pipeline
            event = record_to_event(record, get_context(), pipeline.seed)
            pipeline(event["level"], event)
        except Exception as exc:
            report("stdlib_bridge", exc)
        finally:
            local.busy = False
