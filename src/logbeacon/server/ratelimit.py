"""Token buckets per client (per IP and per key) with memory that stays flat.

Each client key owns a bucket of `burst` tokens refilled at `rate` tokens per second; one event
costs one token. State lives in a bounded LRU (like nginx's `limit_req_zone`): at `max_keys`
the least recently used state is dropped, preferring one whose bucket has refilled completely
(dropping it loses nothing, because a new bucket starts full). An active offender is touched
on every request, so a flood of fresh keys cannot push it out and reset its debt.

The clock is injectable so tests never sleep.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["Decision", "TokenBucketLimiter"]

# How many of the oldest states eviction inspects looking for an idle (full) bucket.
_EVICTION_SCAN: Final = 16


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of a request: allowed, or how many seconds until it would be."""

    allowed: bool
    retry_after: float = 0.0


class TokenBucketLimiter:
    """Token buckets keyed by client; not thread-safe (the server calls it from one loop)."""

    __slots__ = ("_clock", "_state", "burst", "max_keys", "rate")

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst and max_keys >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        # key -> (tokens at `stamp`, stamp)
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state)

    def tokens(self, key: str) -> float:
        """Tokens `key` has now (a key never seen has a full bucket)."""
        return self._level(key, self._clock())

    def _level(self, key: str, now: float) -> float:
        state = self._state.get(key)
        if state is None:
            return self.burst
        tokens, stamp = state
        return min(self.burst, tokens + max(0.0, now - stamp) * self.rate)

    def check(self, keys: Sequence[str], cost: float = 1.0) -> Decision:
        """Would a request of `cost` pass for every key? Consumes nothing."""
        now = self._clock()
        return self._decide(keys, cost, now)

    def acquire(self, keys: Sequence[str], cost: float = 1.0) -> Decision:
        """Take `cost` tokens from every key's bucket, or none of them if any is short."""
        now = self._clock()
        decision = self._decide(keys, cost, now)
        if decision.allowed:
            for key in keys:
                self._store(key, self._level(key, now) - cost, now)
        else:
            # A refused client is still active: keep it away from eviction, or a flood of
            # new keys would push it out and hand it a fresh, full bucket.
            for key in keys:
                if key in self._state:
                    self._state.move_to_end(key)
        return decision

    def _decide(self, keys: Sequence[str], cost: float, now: float) -> Decision:
        deficit = 0.0
        for key in keys:
            deficit = max(deficit, cost - self._level(key, now))
        if deficit <= 0:
            return Decision(True)
        return Decision(False, deficit / self.rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        state = self._state
        if key in state:
            state.move_to_end(key)
        elif len(state) >= self.max_keys:
            self._evict(now)
        state[key] = (tokens, now)

    def _evict(self, now: float) -> None:
        state = self._state
        victim: str | None = None
        for index, (key, (tokens, stamp)) in enumerate(state.items()):
            if index >= _EVICTION_SCAN:
                break
            if tokens + (now - stamp) * self.rate >= self.burst:
                victim = key
                break
        if victim is None:
            victim = next(iter(state))
        del state[victim]
