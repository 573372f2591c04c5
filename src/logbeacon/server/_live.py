"""The live tail's core, shared by `GET /v1/stream` (SSE) and `WS /v1/ws`.

- `EventMatcher` applies the filters of `GET /v1/logs` to one event in-process, so a live
  subscriber sees what a query with the same filters would return.
- `Subscription` is one subscriber's bounded outbox. It never blocks the publisher and never
  grows past its limits: the first event that does not fit marks it overflowed, and the
  connection is then cut off with a notice (a slow consumer must not grow server memory;
  Loki's tail reports `dropped_entries` the same way).
- `TailHub` fans out the events this process committed (it is an ingest listener). With
  several ingest nodes sharing a store, a `StorePoller` (`server/_poll.py`) also publishes
  into it the events other nodes committed, and the hub publishes each event id once.
- `load_backlog` reads what a reconnecting client missed, or an initial backlog, from the
  store.

Positions (`Last-Event-ID`) order events by when this server received them (`received_at`,
then `event_id`), not by their own `timestamp`: shippers send batches seconds late and
spools replay hours late, so "newer timestamp" is not "arrived later". Each message carries
the highest position delivered so far on its connection, so the id a client resumes from
never goes backwards.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import math
import os
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, Protocol

from logbeacon.event import LEVEL_NUMBERS, encode, format_timestamp, parse_timestamp
from logbeacon.exceptions import ConfigError, EventError
from logbeacon.store.base import EXACT_FILTERS, MAX_LIMIT, Query, Store

__all__ = [
    "BACKLOG_MAX_BYTES",
    "BACKLOG_SCAN_LIMIT",
    "LATE_WINDOW_SECONDS",
    "Backlog",
    "EventMatcher",
    "LiveItem",
    "LiveSource",
    "Position",
    "Subscription",
    "TailHub",
    "TailSettings",
    "TooManySubscribers",
    "decode_position",
    "encode_position",
    "load_backlog",
    "position_of",
    "search_words",
    "sse_frame",
]

Event = dict[str, Any]
# (received_at or timestamp, event_id); both fixed-width/ASCII, so tuples compare in order.
Position = tuple[str, str]

# A reconnect looks this far behind its position's time for events that arrived late.
LATE_WINDOW_SECONDS: Final = 600.0
# Most stored events one backlog read examines (pages of MAX_LIMIT); bounds its cost.
BACKLOG_SCAN_LIMIT: Final = 100_000
# Most JSON one backlog read holds in memory (the newest events win).
BACKLOG_MAX_BYTES: Final = 32 * 1024 * 1024
_MAX_POSITION: Final = 256
_ASCII_WORD: Final = re.compile(r"[a-z0-9]+")
_WORD: Final = re.compile(r"[^\W_]+")


class TooManySubscribers(Exception):
    """Every live-tail slot is taken; the client should retry later."""


# --------------------------------------------------------------------------- settings

_TAIL_ENV: Final[Mapping[str, str]] = {
    "heartbeat": "LOGBEACON_TAIL_HEARTBEAT",
    "queue_events": "LOGBEACON_TAIL_QUEUE",
    "queue_bytes": "LOGBEACON_TAIL_QUEUE_BYTES",
    "max_subscribers": "LOGBEACON_TAIL_MAX_SUBSCRIBERS",
    "replay_max": "LOGBEACON_TAIL_REPLAY_MAX",
    "poll": "LOGBEACON_TAIL_POLL",
    "poll_lookback": "LOGBEACON_TAIL_POLL_LOOKBACK",
}
_FLOAT_SETTINGS: Final = frozenset({"heartbeat", "poll", "poll_lookback"})


@dataclass(frozen=True, kw_only=True, slots=True)
class TailSettings:
    """Limits of the live tail; argument → environment variable → default.

    `heartbeat` is the seconds between SSE `: ping` comments (proxies close idle streams);
    `queue_events`/`queue_bytes` bound one subscriber's outbox; `max_subscribers` bounds SSE
    streams plus WebSocket connections; `replay_max` bounds the events a (re)connect reads
    from the store before going live.

    `poll` is the seconds between reads of the store for events other ingest nodes committed
    (`server/_poll.py`): None means automatic (on, every second, for a `clickhouse://` store,
    which several nodes share; off otherwise), 0 turns it off. Each read looks
    `poll_lookback` seconds back by event timestamp.
    """

    heartbeat: float = 15.0
    queue_events: int = 10_000
    queue_bytes: int = 8 * 1024 * 1024
    max_subscribers: int = 100
    replay_max: int = 10_000
    poll: float | None = None
    poll_lookback: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.heartbeat) and 0.05 <= self.heartbeat <= 3600):
            raise ConfigError(f"{_TAIL_ENV['heartbeat']} must be 0.05-3600 seconds")
        if self.poll is not None and not (
            self.poll == 0 or (math.isfinite(self.poll) and 0.05 <= self.poll <= 3600)
        ):
            raise ConfigError(f"{_TAIL_ENV['poll']} must be 0 (off) or 0.05-3600 seconds")
        if not (math.isfinite(self.poll_lookback) and 0 <= self.poll_lookback <= 3600):
            raise ConfigError(f"{_TAIL_ENV['poll_lookback']} must be 0-3600 seconds")
        for name in ("queue_events", "queue_bytes", "max_subscribers", "replay_max"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{_TAIL_ENV[name]} must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> TailSettings:
        """Read `LOGBEACON_TAIL_*`; `overrides` (None = unset) win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            variable = _TAIL_ENV[item.name]
            raw = env.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[item.name] = float(raw) if item.name in _FLOAT_SETTINGS else int(raw)
            except ValueError:
                raise ConfigError(f"{variable} must be a number, not {raw[:20]!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# --------------------------------------------------------------------------- positions


def position_of(event: Mapping[str, Any]) -> Position:
    """Where an event sits in arrival order (events stored without `received_at`, e.g. by
    `logbeacon collect` into a local store, fall back to their timestamp)."""
    received = event.get("received_at")
    if received.__class__ is not str:
        received = event.get("timestamp")
    return (received if isinstance(received, str) else "", str(event.get("event_id", "")))


def encode_position(position: Position) -> str:
    """An opaque, header-safe `Last-Event-ID` (base64url, no padding)."""
    raw = f"{position[0]} {position[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def sse_frame(position: Position, data: bytes) -> bytes:
    """One `event: log` frame of the live tail, resumable from `position`."""
    return b"id: %s\nevent: log\ndata: %s\n\n" % (encode_position(position).encode(), data)


def decode_position(text: str) -> Position:
    """The position in a `Last-Event-ID`; ValueError when it is not one of ours."""
    problem = "not a Last-Event-ID of this server; reconnect without it"
    if not text or len(text) > _MAX_POSITION:
        raise ValueError(problem)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise ValueError(problem) from None
    received, sep, event_id = raw.partition(" ")
    if not sep or " " in event_id:
        raise ValueError(problem)
    try:
        canonical = format_timestamp(parse_timestamp(received))  # fixed width: orders as text
    except EventError:
        raise ValueError(problem) from None
    return (canonical, event_id)


# --------------------------------------------------------------------------- items, matching


def search_words(text: str) -> list[str]:
    """Split text into search words like the SQLite index (unicode61, diacritics removed):
    case-folded runs of letters and digits; everything else separates."""
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    decomposed = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    return _WORD.findall(folded)


class LiveItem:
    """One committed event on its way to subscribers; JSON and search words are computed at
    most once, however many subscribers receive it."""

    __slots__ = ("_data", "_frame", "_words", "event", "position")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.position = position_of(event)
        self._data: bytes | None = None
        self._frame: bytes | None = None
        self._words: frozenset[str] | None = None

    @property
    def event_id(self) -> str:
        return self.position[1]

    @property
    def data(self) -> bytes:
        """Compact JSON of the event: one line, since JSON escapes CR and LF (INJ-08)."""
        if self._data is None:
            self._data = encode(self.event)
        return self._data

    @property
    def frame(self) -> bytes:
        """The SSE frame of the event at its own position: every subscriber sends the same
        bytes (ten subscribers at 5,000 events/s encoded 50,000 positions a second)."""
        if self._frame is None:
            self._frame = sse_frame(self.position, self.data)
        return self._frame

    @property
    def words(self) -> frozenset[str]:
        """The words full-text search sees: event name, message, error type and message."""
        if self._words is None:
            event = self.event
            parts = [v for key in ("event", "message") if isinstance(v := event.get(key), str)]
            error = event.get("error")
            if isinstance(error, dict):
                parts += [v for key in ("type", "message") if isinstance(v := error.get(key), str)]
            self._words = frozenset(search_words("\n".join(parts)))
        return self._words


class EventMatcher:
    """The filters of a `Query` applied to one event, as the store would apply them.

    Everything is decided at construction; a call does dictionary lookups and, with `q`, set
    lookups against the event's cached words. Full text: every word of `q` must occur, a
    word ending in `*` matches as a prefix, and a `q` with nothing searchable matches nothing.
    """

    __slots__ = ("_exact", "_level", "_nothing", "_prefixes", "_since", "_until", "_words")

    def __init__(self, query: Query) -> None:
        self._since = None if query.since is None else format_timestamp(query.since)
        self._until = None if query.until is None else format_timestamp(query.until)
        self._level = 0 if query.level is None else LEVEL_NUMBERS[query.level]
        self._exact = tuple(
            (name, value) for name in EXACT_FILTERS if (value := getattr(query, name)) is not None
        )
        words: list[str] = []
        prefixes: list[str] = []
        self._nothing = False
        if query.q is not None and query.q.strip():
            for raw in query.q.split():
                tokens = search_words(raw)
                if raw.endswith("*") and tokens:
                    prefixes.append(tokens.pop())
                words.extend(tokens)
            self._nothing = not words and not prefixes
        self._words = frozenset(words)
        self._prefixes = tuple(prefixes)

    def __call__(self, item: LiveItem) -> bool:
        if self._nothing:
            return False
        event = item.event
        if self._level:
            level = event.get("level")
            if not isinstance(level, str) or LEVEL_NUMBERS.get(level, 0) < self._level:
                return False
        for name, value in self._exact:
            if event.get(name) != value:
                return False
        if self._since is not None or self._until is not None:
            timestamp = event.get("timestamp")
            if not isinstance(timestamp, str):
                return False
            if self._since is not None and timestamp < self._since:
                return False
            if self._until is not None and timestamp >= self._until:
                return False
        if self._words or self._prefixes:
            words = item.words
            if not self._words <= words:
                return False
            for prefix in self._prefixes:
                if not any(word.startswith(prefix) for word in words):
                    return False
        return True


Matcher = Callable[[LiveItem], bool]


# --------------------------------------------------------------------------- subscriptions


class Subscription:
    """One subscriber's bounded outbox of live events and control messages (bytes).

    The publisher calls `offer`/`put` and never waits; the connection's writer drains with
    `next_batch`. When an item does not fit, `overflowed` is set and every later item is only
    counted in `dropped`: the writer then sends a final notice and closes.
    """

    def __init__(self, matcher: Matcher | None, *, max_items: int, max_bytes: int) -> None:
        self.matcher = matcher
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.dropped = 0
        self.closed = False
        self.overflowed = asyncio.Event()
        self._items: deque[LiveItem | bytes] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def offer(self, item: LiveItem) -> None:
        """Queue a live event the matcher accepts (the publisher checks the matcher)."""
        self._add(item, len(item.data))

    def put(self, message: bytes) -> None:
        """Queue a control message (a reply on the WebSocket)."""
        self._add(message, len(message))

    def _add(self, item: LiveItem | bytes, size: int) -> None:
        if self.closed:
            return
        if self.overflowed.is_set():
            self.dropped += 1
            return
        if len(self._items) >= self.max_items or self._bytes + size > self.max_bytes:
            self.dropped += 1
            self.overflowed.set()
            self._ready.set()
            return
        self._items.append(item)
        self._bytes += size
        self._ready.set()

    def set_matcher(self, matcher: Matcher | None) -> None:
        """Replace the filter; queued events of the old filter are discarded, replies kept."""
        self.matcher = matcher
        kept = [item for item in self._items if isinstance(item, bytes)]
        self._items = deque(kept)
        self._bytes = sum(len(item) for item in kept)
        if not kept:
            self._ready.clear()

    async def next_batch(self, idle: float | None, limit: int = 256) -> list[LiveItem | bytes]:
        """Up to `limit` queued items; [] when nothing came for `idle` seconds (None: wait)."""
        if not self._items:
            self._ready.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as an item does, and the stream's writer would then never stop.
            try:
                async with asyncio.timeout(idle):
                    await self._ready.wait()
            except TimeoutError:
                return []
        batch: list[LiveItem | bytes] = []
        items = self._items
        while items and len(batch) < limit:
            item = items.popleft()
            self._bytes -= len(item) if isinstance(item, bytes) else len(item.data)
            batch.append(item)
        if not items:
            self._ready.clear()
        return batch

    def reset(self) -> None:
        """Forget what is queued and the overflow (the caller re-reads it from the store)."""
        self._items.clear()
        self._bytes = 0
        self.dropped = 0
        self.overflowed.clear()
        self._ready.clear()

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._bytes = 0
        self._ready.set()


class LiveSource(Protocol):
    """Where live events come from: this process's ingest (`TailHub`) or, for several ingest
    nodes sharing a store, a poller of that store. The endpoints use only this."""

    settings: TailSettings

    def subscribe(self, matcher: Matcher | None) -> Subscription:
        """A new subscription (raises `TooManySubscribers` when every slot is taken)."""

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to it and free its slot; idempotent."""


class TailHub:
    """Fans out committed events to subscribers; registered as an ingest listener.

    `publish` runs on the event loop right after a commit and never awaits: each matching
    event is offered to each subscriber's bounded outbox, and a full outbox only marks that
    subscriber overflowed. Ingestion is never slowed down by a reader.

    With `deduplicate(capacity)` (on when a store poller also publishes, `server/_poll.py`)
    the hub remembers the ids of the last `capacity` events it published and publishes an
    event whose id it remembers no more than once, whichever of ingest and poller is first.
    """

    def __init__(self, settings: TailSettings | None = None) -> None:
        self.settings = settings or TailSettings()
        self._subscriptions: dict[Subscription, None] = {}
        self._seen: dict[str, None] | None = None
        self._seen_capacity = 0

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, matcher: Matcher | None) -> Subscription:
        if len(self._subscriptions) >= self.settings.max_subscribers:
            raise TooManySubscribers
        subscription = Subscription(
            matcher,
            max_items=self.settings.queue_events,
            max_bytes=self.settings.queue_bytes,
        )
        self._subscriptions[subscription] = None
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        self._subscriptions.pop(subscription, None)

    def deduplicate(self, capacity: int) -> None:
        """Remember the ids of the last `capacity` published events and skip repeats."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._seen = {} if self._seen is None else self._seen
        self._seen_capacity = capacity

    def seen(self, event_id: str) -> bool:
        """Was an event with this id published recently (always False without dedupe)?"""
        return self._seen is not None and event_id in self._seen

    def remember(self, events: Sequence[Event]) -> None:
        """Mark events as published without delivering them (history, not live)."""
        if self._seen is not None:
            self._first_time(events)

    def _first_time(self, events: Sequence[Event]) -> list[Event]:
        seen = self._seen
        assert seen is not None
        fresh: list[Event] = []
        for event in events:
            event_id = str(event.get("event_id", ""))
            if event_id in seen:
                continue
            seen[event_id] = None
            fresh.append(event)
        excess = len(seen) - self._seen_capacity
        if excess > 0:  # dicts keep insertion order: the oldest ids go first
            for old in list(itertools.islice(seen, excess)):
                del seen[old]
        return fresh

    def publish(self, events: Sequence[Event]) -> None:
        """Ingest listener: offer each new event to every subscriber whose filter matches."""
        if self._seen is not None:
            events = self._first_time(events)
        targets = [s for s in self._subscriptions if s.matcher is not None and not s.closed]
        if not targets:
            return
        for event in events:
            item = LiveItem(event)
            for subscription in targets:
                matcher = subscription.matcher
                if matcher is not None and matcher(item):
                    subscription.offer(item)


# --------------------------------------------------------------------------- backlog


@dataclass(slots=True)
class Backlog:
    """Events read from the store before going live, oldest first (as `LiveItem`s, so each
    is encoded once).

    `dropped` counts matching events left out because there were more than the limits (the
    oldest go); `complete` is False when the read stopped at `BACKLOG_SCAN_LIMIT`, so even
    older matches may exist uncounted.
    """

    items: list[LiveItem] = field(default_factory=list)
    dropped: int = 0
    complete: bool = True

    @property
    def events(self) -> list[Event]:
        return [item.event for item in self.items]


async def load_backlog(
    store: Store,
    query: Query,
    *,
    after: Position | None,
    limit: int,
    max_bytes: int = BACKLOG_MAX_BYTES,
    scan_limit: int = BACKLOG_SCAN_LIMIT,
) -> Backlog:
    """Matching events, the newest `limit` (and `max_bytes` of JSON) of them, oldest first.

    With `after` (a reconnect), only events that arrived after that position, looking back
    `LATE_WINDOW_SECONDS` before it by timestamp for late arrivals; without it, every event
    matching `query` (whose `since` says how far back).
    """
    since = query.since
    if after is not None:
        floor = parse_timestamp(after[0]) - LATE_WINDOW_SECONDS
        since = floor if since is None else max(since, floor)
    page_query = replace(query, since=since, limit=MAX_LIMIT, cursor=None)
    backlog = Backlog()
    kept = backlog.items
    size = 0
    full = False
    examined = 0
    while True:
        page = await store.query(page_query)
        examined += len(page.events)
        for event in page.events:  # newest first
            item = LiveItem(event)
            if after is not None and item.position <= after:
                continue
            if not full:
                size += len(item.data)
                full = len(kept) >= limit or size > max_bytes
            if full:
                backlog.dropped += 1
            else:
                kept.append(item)
        if page.next_cursor is None:
            break
        if examined >= scan_limit:
            backlog.complete = False
            break
        page_query = replace(page_query, cursor=page.next_cursor)
    kept.reverse()
    return backlog
