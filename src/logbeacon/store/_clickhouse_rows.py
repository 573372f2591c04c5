"""How events become ClickHouse rows, full-text tokens and page cursors.

Everything a row derives from an event is computed here, in Python, by the same functions
the SQLite store uses (timestamp parsing, error facts, step durations, run ids), so both
stores index, group and derive identically. Rows travel as `JSONEachRow` blocks.
"""

from __future__ import annotations

import base64
import hmac
import re
import struct
import threading
import unicodedata
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, Final

import orjson

from logbeacon.event import LEVEL_NUMBERS, encode, parse_timestamp
from logbeacon.exceptions import EventError
from logbeacon.store._sqlite_codec import encode_event_id, fts_text, parse_micros
from logbeacon.store._sqlite_derived import (
    _DURATION_EVENTS,
    ERROR_LEVEL,
    RUN_EVENTS,
    _ErrorFacts,
    _run_id,
    _step_event,
)
from logbeacon.store._sqlite_read import _Tokenizer

__all__ = [
    "MAX_MICROS",
    "CursorCodec",
    "Encoded",
    "GroupRows",
    "ch_time",
    "clamp_micros",
    "document_words",
    "encode_event",
    "search_terms",
]

Event = dict[str, Any]

# DateTime64(6) holds 1900..2299; stored times are clamped to 1970..2299 (the event body
# keeps the exact original text).
MAX_MICROS: Final = 10_413_791_999_999_999
_TIE_MASK: Final = 1023
_ASCII_WORD: Final = re.compile(r"[A-Za-z0-9]+")
_ID_FIELDS: Final = ("trace_id", "request_id", "session_id", "run_id", "job_id", "correlation_id")
_NAME_FIELDS: Final = ("service", "environment", "event", "node")
_local = threading.local()


def clamp_micros(micros: int) -> int:
    return min(max(micros, 0), MAX_MICROS)


def ch_time(micros: int) -> str:
    """A DateTime64(6) value as JSONEachRow accepts it: seconds with six decimals."""
    seconds, fraction = divmod(clamp_micros(micros), 1_000_000)
    return f"{seconds}.{fraction:06d}"


# --------------------------------------------------------------------------- full text


def _unicode_tokens(text: str) -> list[str]:
    """Split and fold like SQLite's `unicode61 remove_diacritics 2` (it is asked directly)."""
    tokenizer: _Tokenizer | None = getattr(_local, "tokenizer", None)
    if tokenizer is None:
        tokenizer = _local.tokenizer = _Tokenizer()
    return tokenizer.tokens(text)


def _tokens(text: str) -> list[str]:
    if text.isascii():
        return [token.lower() for token in _ASCII_WORD.findall(text)]
    return _unicode_tokens(text)


def document_words(event: Mapping[str, Any]) -> str:
    """The `words` column: folded tokens of event name, message and error type/message,
    space separated with a leading and trailing space (so a prefix is `' pre'`)."""
    text = fts_text(event)
    if not text:
        return ""
    return " " + " ".join(_tokens(text)) + " "


def search_terms(q: str) -> list[tuple[str, bool]] | None:
    """`q` as (token, is_prefix) terms that must all occur, split like the indexed text;
    None when nothing searchable is left (the SQLite store's `fts_match` rules)."""
    if not q.isascii():
        # Private-use characters are the SQLite index's key-token marks: never searchable.
        q = "".join(ch for ch in q if unicodedata.category(ch) != "Co")
    terms: list[tuple[str, bool]] = []
    for word in q.split():
        prefix = word.endswith("*")
        tokens = _tokens(word)
        for index, token in enumerate(tokens):
            terms.append((token, prefix and index == len(tokens) - 1))
    return terms or None


# --------------------------------------------------------------------------- cursors

_CURSOR: Final = struct.Struct(">BqHq")
_CURSOR_VERSION: Final = 1
_MAC_BYTES: Final = 8


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: the last row's sort key and the first page's snapshot."""

    micros: int
    tie: int
    event_id: str
    snapshot: int


class CursorCodec:
    """Opaque, tamper-evident cursors: the keyset position plus a MAC under the store's
    secret (shared by every node through the `meta` table)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return blake2b(payload, key=self._secret, digest_size=_MAC_BYTES).digest()

    def encode(self, position: Position) -> str:
        payload = _CURSOR.pack(
            _CURSOR_VERSION, position.micros, position.tie, position.snapshot
        ) + position.event_id.encode(errors="surrogatepass")
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def decode(self, cursor: str) -> Position:
        problem = (
            "invalid cursor: it was altered, truncated or comes from another store; "
            "repeat the query without a cursor to start again"
        )
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (ValueError, TypeError):
            raise ValueError(problem) from None
        if len(raw) < _CURSOR.size + _MAC_BYTES:
            raise ValueError(problem)
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise ValueError(problem)
        version, micros, tie, snapshot = _CURSOR.unpack(payload[: _CURSOR.size])
        if version != _CURSOR_VERSION:
            raise ValueError(problem)
        event_id = payload[_CURSOR.size :].decode(errors="surrogatepass")
        return Position(micros, tie, event_id, snapshot)


# --------------------------------------------------------------------------- events


def _text(value: object) -> str:
    return value if value.__class__ is str else ""


@dataclass(slots=True)
class Encoded:
    """One event's row values and what it contributes to the derived tables."""

    event: Mapping[str, Any]
    event_id: str
    micros: int
    level: str
    row: dict[str, Any]
    run_key: str | None


def encode_event(event: Mapping[str, Any]) -> Encoded:
    """The `events` row of one event; raises `EventError` like the SQLite store does."""
    event_id = event.get("event_id")
    if event_id.__class__ is not str or not event_id:
        raise EventError("invalid_event_id", "every stored event needs a string event_id")
    stamp = event.get("timestamp")
    micros = parse_micros(stamp)
    if micros is None:
        micros = round(parse_timestamp(stamp) * 1_000_000)
    level_name = event.get("level")
    level = level_name if level_name.__class__ is str and level_name in LEVEL_NUMBERS else ""
    packed = encode_event_id(event_id)
    tie = zlib.crc32(packed if isinstance(packed, bytes) else packed.encode(errors="surrogatepass"))
    try:
        body = orjson.dumps(event).decode()
    except TypeError:
        body = encode(event).decode()
    row: dict[str, Any] = {
        "ts": ch_time(micros),
        "tie": tie & _TIE_MASK,
        "event_id": event_id,
        "level": level,
        "words": document_words(event),
        "body": body,
    }
    for field_name in (*_NAME_FIELDS, *_ID_FIELDS):
        row[field_name] = _text(event.get(field_name))
    name = event.get("event")
    run_key = _run_id(event, name) if isinstance(name, str) and name in RUN_EVENTS else None
    return Encoded(event, event_id, micros, level, row, run_key)


@dataclass(slots=True)
class GroupRows:
    """The JSONEachRow blocks of one commit group (only its newly stored events)."""

    events: list[bytes] = field(default_factory=list)
    errors: list[bytes] = field(default_factory=list)
    steps: list[bytes] = field(default_factory=list)
    run_events: list[bytes] = field(default_factory=list)

    def add(self, item: Encoded, *, batch: int, pos: int) -> None:
        event = item.event
        row = item.row
        row["ingest"] = batch
        self.events.append(orjson.dumps(row))
        level = LEVEL_NUMBERS.get(item.level, 0)
        name = event.get("event")
        if level >= ERROR_LEVEL:
            self._error(item, batch, pos)
        if name.__class__ is str and name in _DURATION_EVENTS:
            service = _text(event.get("service"))
            step = _step_event(event, name, item.micros, item.event_id, service)
            if step is not None:
                self.steps.append(
                    orjson.dumps(
                        {
                            "ts": ch_time(item.micros),
                            "event_id": item.event_id,
                            "kind": step[2],
                            "name": step[3],
                            "service": step[4],
                            "duration_ms": step[5],
                            "failed": step[6],
                        }
                    )
                )
        if item.run_key is not None:
            self.run_events.append(self.run_event(item, batch, pos))

    @staticmethod
    def run_event(item: Encoded, batch: int, pos: int) -> bytes:
        assert item.run_key is not None
        return orjson.dumps(
            {
                "run_key": item.run_key,
                "event_id": item.event_id,
                "batch": batch,
                "pos": pos,
                "ts": item.micros,
                "body": item.row["body"],
            }
        )

    def _error(self, item: Encoded, batch: int, pos: int) -> None:
        event = item.event
        try:
            facts = _ErrorFacts(event)
        except Exception:  # one odd event must never fail its batch (as in SQLite)
            return
        suggestions = None if facts.suggestions is None else orjson.dumps(facts.suggestions)
        self.errors.append(
            orjson.dumps(
                {
                    "ts": ch_time(item.micros),
                    "event_id": item.event_id,
                    "batch": batch,
                    "pos": pos,
                    "fingerprint": facts.fingerprint,
                    "type": facts.type,
                    "message": facts.message,
                    "category": facts.category,
                    "suggestions": None if suggestions is None else suggestions.decode(),
                    "level": item.level,
                    "service": _text(event.get("service")),
                    "environment": _text(event.get("environment")),
                    "trace_id": _text(event.get("trace_id")),
                }
            )
        )


def block(rows: Sequence[bytes]) -> bytes:
    return b"\n".join(rows) + b"\n"
