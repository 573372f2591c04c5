"""Read side: query planning, cursors and decoding rows back into events.

Each reader thread owns one read-only connection. Both things a query can walk — the table
itself and the full-text index of words and key tokens — list events by their time key, so
"newest N matching" is a backward scan that stops after N hits. Values always travel as
bound parameters (INJ-10); only fixed SQL fragments are joined.
"""

from __future__ import annotations

import base64
import hmac
import re
import sqlite3
import struct
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Final

from logbeacon.event import LEVEL_NUMBERS
from logbeacon.store._sqlite_codec import (
    KEY_FIELDS,
    ROW_COLUMNS,
    TOKEN_LEVELS,
    decode_event,
    encode_event_id,
    key_token,
)
from logbeacon.store._sqlite_schema import KEY_SHIFT, key_micros
from logbeacon.store.base import MAX_LIMIT, Page, Query

__all__ = ["CursorCodec", "NameCache", "Reader", "fts_match", "uses_index"]

Event = dict[str, Any]

_COLUMNS: Final = ", ".join(f"e.{name.strip()}" for name in ROW_COLUMNS.split(","))
# Filters whose real value is compared after the index match (names are compared by code).
_ID_FILTERS: Final = ("trace_id", "request_id", "session_id", "run_id", "job_id", "correlation_id")
_NAME_COLUMNS: Final = (
    ("service", "svc"),
    ("environment", "env"),
    ("event", "evt"),
    ("node", "node"),
)
_CURSOR: Final = struct.Struct(">Bqq")
_CURSOR_VERSION: Final = 1
_MAC_BYTES: Final = 8
assert set(_ID_FILTERS) < set(KEY_FIELDS)


class NameCache:
    """Codes of the `names` dictionary, shared by every reader (names are never deleted)."""

    def __init__(self) -> None:
        self._values: dict[int, str] = {}

    def value(self, conn: sqlite3.Connection, code: int | None) -> str | None:
        if code is None:
            return None
        value = self._values.get(code)
        if value is None:
            row = conn.execute("SELECT value FROM names WHERE code = ?", (code,)).fetchone()
            value = row[0]
            if len(self._values) > 65_536:
                self._values.clear()
            self._values[code] = value
        return value

    @staticmethod
    def code(conn: sqlite3.Connection, value: str) -> int | None:
        row = conn.execute("SELECT code FROM names WHERE value = ?", (value,)).fetchone()
        return None if row is None else int(row[0])


class CursorCodec:
    """Opaque, tamper-evident page cursors: (last key, snapshot generation) plus a MAC.

    The key is the keyset position; the generation hides events committed after the first
    page, so late events with old timestamps cannot slip into later pages.
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return blake2b(payload, key=self._secret, digest_size=_MAC_BYTES).digest()

    def encode(self, key: int, gen: int) -> str:
        payload = _CURSOR.pack(_CURSOR_VERSION, key, gen)
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode().rstrip("=")

    def decode(self, cursor: str) -> tuple[int, int]:
        problem = (
            "invalid cursor: it was altered, truncated or comes from another store; "
            "repeat the query without a cursor to start again"
        )
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (ValueError, TypeError):
            raise ValueError(problem) from None
        if len(raw) != _CURSOR.size + _MAC_BYTES:
            raise ValueError(problem)
        payload, mac = raw[: _CURSOR.size], raw[_CURSOR.size :]
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise ValueError(problem)
        version, key, gen = _CURSOR.unpack(payload)
        if version != _CURSOR_VERSION:
            raise ValueError(problem)
        return key, gen


# --------------------------------------------------------------------------- full text

_ASCII_WORD: Final = re.compile(r"[A-Za-z0-9]+")


class _Tokenizer:
    """Splits non-ASCII search text exactly like the index's unicode61 tokenizer does.

    The index stores no positions (detail=none, a third of the size), so a search term must be
    one token; asking SQLite itself is the only exact way to split arbitrary unicode.
    """

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        self._conn.execute(
            "CREATE VIRTUAL TABLE t USING fts5 (x, tokenize='unicode61 remove_diacritics 2')"
        )
        self._conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab (t, instance)")

    def tokens(self, text: str) -> list[str]:
        with self._conn:
            self._conn.execute("DELETE FROM t")
            self._conn.execute("INSERT INTO t (rowid, x) VALUES (1, ?)", (text,))
            rows = self._conn.execute("SELECT term FROM v ORDER BY offset").fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        self._conn.close()


def fts_match(text: str, tokenizer: _Tokenizer | None = None) -> str | None:
    """Turn user search text into a safe FTS5 expression: every word must occur.

    Each token is quoted, so FTS5 operators in the input (`OR`, `NEAR`, `"`, `-`) are plain
    words. A word ending in `*` matches as a prefix. None when nothing searchable is left.
    """
    terms: list[str] = []
    if not text.isascii():
        # Private-use characters would let search text reach the index's key tokens.
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Co")
    for word in text.split():
        prefix = word.endswith("*")
        if word.isascii():
            tokens = _ASCII_WORD.findall(word)
        else:
            own = tokenizer if tokenizer is not None else _Tokenizer()
            try:
                tokens = own.tokens(word)
            finally:
                if tokenizer is None:
                    own.close()
        for index, token in enumerate(tokens):
            quoted = '"' + token.replace('"', '""') + '"'
            terms.append(quoted + "*" if prefix and index == len(tokens) - 1 else quoted)
    return " ".join(terms) if terms else None


def _quote(token: str) -> str:
    return '"' + token.replace('"', '""') + '"'


def _key_terms(tokens: list[str], level_number: int | None) -> list[str]:
    """FTS5 terms for exact filters: every key token, and a warn+ level if asked for."""
    terms = [_quote(token) for token in tokens]
    if level_number is not None and level_number >= LEVEL_NUMBERS[TOKEN_LEVELS[0]]:
        levels = [
            _quote(key_token("level", name))
            for name in TOKEN_LEVELS
            if LEVEL_NUMBERS[name] >= level_number
        ]
        terms.append("(" + " OR ".join(levels) + ")")
    return terms


def uses_index(query: Query) -> bool:
    """Whether `Reader._plan` walks the full-text index for this query (the same tests)."""
    if query.q is not None and query.q.strip():
        return True
    if any(getattr(query, name) for name in KEY_FIELDS):
        return True
    level = LEVEL_NUMBERS.get(query.level) if query.level is not None else None
    return level is not None and level >= LEVEL_NUMBERS[TOKEN_LEVELS[0]]


# --------------------------------------------------------------------------- reader


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    params: list[Any]


class Reader:
    """One read-only connection and the queries the Store protocol needs."""

    def __init__(self, conn: sqlite3.Connection, names: NameCache, cursors: CursorCodec) -> None:
        self.conn = conn
        self._names = names
        self._cursors = cursors
        self._tokenizer: _Tokenizer | None = None

    def close(self) -> None:
        if self._tokenizer is not None:
            self._tokenizer.close()
        self.conn.close()

    def _name(self, code: int | None) -> str | None:
        return self._names.value(self.conn, code)

    def _decode(self, row: Sequence[Any]) -> Event:
        return decode_event(row, self._name)

    # ------------------------------------------------------------------ query

    def query(self, query: Query) -> Page:
        if query.limit < 1:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        limit = min(query.limit, MAX_LIMIT)
        position = self._cursors.decode(query.cursor) if query.cursor else None
        conn = self.conn
        conn.execute("BEGIN")
        try:
            gen, max_bump, indexed = conn.execute(
                "SELECT gen, max_bump, fts_gen FROM state"
            ).fetchone()
            if position is not None:
                upper, gen = position
            else:
                upper = None
                if uses_index(query):
                    # The index may trail the table: rows after `indexed` are not in it yet,
                    # and a later page must not find them there either.
                    gen = indexed
            return self._page(query, limit, upper, gen, max_bump)
        finally:
            conn.execute("COMMIT")

    def _page(self, query: Query, limit: int, upper: int | None, gen: int, max_bump: int) -> Page:
        checks = [(name, value) for name in _ID_FILTERS if (value := getattr(query, name))]
        events: list[Event] = []
        last_key: int | None = None
        while True:
            plan = self._plan(query, limit - len(events) + 1, upper, gen, max_bump)
            if plan is None:
                return Page(events=[])
            rows = self.conn.execute(plan.sql, plan.params).fetchall()
            more = len(rows) > limit - len(events)
            for row in rows:
                if len(events) == limit:
                    break
                event = self._decode(row)
                last_key = row[0]
                # The index matched a 48-bit hash of each id; the real value decides.
                if all(event.get(name) == value for name, value in checks):
                    events.append(event)
            if not more:
                return Page(events=events)
            if len(events) == limit:
                assert last_key is not None
                return Page(events=events, next_cursor=self._cursors.encode(last_key, gen))
            upper = last_key

    def _plan(
        self, query: Query, fetch: int, upper: int | None, gen: int, max_bump: int
    ) -> _Plan | None:
        """Walk the full-text index (words and key tokens) newest-first when any filter has
        terms there, else the table itself; every other filter becomes a row predicate.
        """
        where: list[str] = []
        params: list[Any] = []
        tokens = [key_token(name, value) for name in KEY_FIELDS if (value := getattr(query, name))]
        level_number = None
        if query.level is not None:
            level_number = LEVEL_NUMBERS.get(query.level)
            if level_number is None:
                raise ValueError(f"unknown level {query.level!r}; use one of {list(LEVEL_NUMBERS)}")
        terms = _key_terms(tokens, level_number)
        if query.q is not None and query.q.strip():
            if self._tokenizer is None and not query.q.isascii():
                self._tokenizer = _Tokenizer()
            words = fts_match(query.q, self._tokenizer)
            if words is None:
                return None  # nothing searchable in q: nothing can match
            terms.append(words)

        if terms:
            source = "fts CROSS JOIN events AS e ON e.id = fts.rowid"
            key = "fts.rowid"
            where.append("fts MATCH ?")
            params.append(" AND ".join(terms))
        else:
            source = "events AS e"
            key = "e.id"
        if upper is not None:
            where.append(f"{key} < ?")
            params.append(upper)
        if query.since is not None:
            since = round(query.since * 1_000_000)
            where.append(f"{key} >= ?")
            params.append(key_micros(since) << KEY_SHIFT)
            where.append("e.ts >= ?")
            params.append(since)
        if query.until is not None:
            until = round(query.until * 1_000_000)
            where.append(f"{key} < ?")
            params.append((key_micros(until) + max_bump + 1) << KEY_SHIFT)
            where.append("e.ts < ?")
            params.append(until)
        where.append("e.gen <= ?")
        params.append(gen)
        if level_number is not None:
            where.append("e.lvl >= ?")
            params.append(level_number)
        for field, column in _NAME_COLUMNS:
            value = getattr(query, field)
            if value is None:
                continue
            code = self._names.code(self.conn, value)
            if code is None:
                return None  # never stored: nothing can match
            where.append(f"e.{column} = ?")
            params.append(code)
        params.append(fetch)
        sql = (
            f"SELECT {_COLUMNS} FROM {source} WHERE {' AND '.join(where)}"  # noqa: S608 - fixed fragments only
            f" ORDER BY {key} DESC LIMIT ?"
        )
        return _Plan(sql, params)

    # ------------------------------------------------------------------ lookups

    def trace(self, trace_id: str, limit: int) -> list[Event]:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM fts CROSS JOIN events AS e ON e.id = fts.rowid"  # noqa: S608
            " WHERE fts MATCH ? ORDER BY fts.rowid LIMIT ?",
            (_quote(key_token("trace_id", trace_id)), limit),
        ).fetchall()
        decoded = [(row[1], row[0], self._decode(row)) for row in rows]
        decoded.sort(key=lambda item: (item[0], item[1]))
        return [event for _, _, event in decoded if event.get("trace_id") == trace_id]

    def get(self, event_id: str) -> Event | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM events AS e WHERE e.eid = ?",  # noqa: S608
            (encode_event_id(event_id),),
        ).fetchone()
        return None if row is None else self._decode(row)

    def summary(self) -> tuple[int, int | None, int | None, int]:
        conn = self.conn
        conn.execute("BEGIN")
        try:
            count = conn.execute("SELECT events FROM state").fetchone()[0]
            oldest = conn.execute("SELECT ts FROM events ORDER BY id LIMIT 1").fetchone()
            newest = conn.execute("SELECT ts FROM events ORDER BY id DESC LIMIT 1").fetchone()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.execute("COMMIT")
        return (
            count,
            None if oldest is None else oldest[0],
            None if newest is None else newest[0],
            version,
        )
