"""The token-bucket limiter on its own: arithmetic, bounded state, eviction, and a model test."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from logbeacon.server.auth import rate_key_for_host
from logbeacon.server.ratelimit import TokenBucketLimiter
from tests.server.conftest import FakeClock


def test_burst_then_limited_then_refilled() -> None:
    """B tokens pass at once, the next is refused with the wait, and waiting refills (LIM-01)."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=5, burst=10, clock=clock)
    assert limiter.acquire(["ip"], 10).allowed
    refused = limiter.acquire(["ip"], 1)
    assert (False, 0.2) == (refused.allowed, pytest.approx(refused.retry_after))
    clock.advance(0.2)
    assert limiter.acquire(["ip"], 1).allowed


def test_retry_after_is_enough_for_the_whole_request() -> None:
    """The wait covers the whole cost, so retrying after exactly that long succeeds (RL-06)."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=2, burst=10, clock=clock)
    limiter.acquire(["ip"], 9)
    refused = limiter.acquire(["ip"], 5)
    clock.advance(refused.retry_after)
    assert (False, True) == (refused.allowed, limiter.acquire(["ip"], 5).allowed)


def test_refused_request_consumes_nothing() -> None:
    """A refused request takes no tokens from any bucket (the client retries the same batch)."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=1, burst=10, clock=clock)
    limiter.acquire(["ip", "key"], 8)
    limiter.acquire(["ip2", "key"], 5)
    assert (2.0, 10.0) == (limiter.tokens("key"), limiter.tokens("ip2"))


def test_every_key_must_have_tokens() -> None:
    """A request is charged to its IP and its key; either one empty refuses it."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=1, burst=3, clock=clock)
    assert limiter.acquire(["ip-a", "key"], 3).allowed
    assert not limiter.acquire(["ip-b", "key"], 1).allowed
    assert limiter.acquire(["ip-b", "other-key"], 1).allowed


def test_tokens_never_exceed_burst() -> None:
    """An idle bucket refills to the burst, not beyond."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=100, burst=5, clock=clock)
    limiter.acquire(["ip"], 5)
    clock.advance(3600)
    assert 5.0 == limiter.tokens("ip")


def test_state_stays_bounded_after_200000_distinct_keys() -> None:
    """200 000 distinct clients never hold more than max_keys states, memory stays flat (RL-01)."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=50, burst=500, max_keys=10_000, clock=clock)
    sizes = set()
    for i in range(180_000):
        limiter.acquire([f"ip:{i}"], 1)
        if i % 1000 == 999:
            sizes.add(len(limiter))
    tracemalloc.start()
    try:
        # After one full turnover of the table every live state was allocated under tracing,
        # so what is traced is the table's whole content; another turnover must not grow it.
        for i in range(180_000, 190_000):
            limiter.acquire([f"ip:{i}"], 1)
        after_one_turnover, _ = tracemalloc.get_traced_memory()
        for i in range(190_000, 200_000):
            limiter.acquire([f"ip:{i}"], 1)
        after_two_turnovers, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 10_000 == max(sizes)
    assert 10_000 == len(limiter)
    assert abs(after_two_turnovers - after_one_turnover) < 100_000


def test_flood_of_new_keys_cannot_reset_an_active_offender() -> None:
    """An abuser stays limited while 200 000 fresh keys pass through a 1 000-entry table (RL-02)."""
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate=1, burst=10, max_keys=1_000, clock=clock)
    allowed = refused = 0
    for i in range(200_000):
        limiter.acquire([f"fresh:{i}"], 1)
        if i % 100 == 0:
            clock.advance(0.1)  # 10 abuser requests/s against a 1/s budget
            if limiter.acquire(["abuser"], 1).allowed:
                allowed += 1
            else:
                refused += 1
    assert refused / (allowed + refused) >= 0.85


def test_ipv6_clients_are_grouped_by_64() -> None:
    """Addresses in one IPv6 /64 share a bucket; IPv4-mapped ones use the IPv4 key (RL-04)."""
    keys = {rate_key_for_host(f"2001:db8:1:2::{i:x}") for i in range(1000)}
    assert {"ip:2001:db8:1:2::/64"} == keys
    assert "ip:192.0.2.1" == rate_key_for_host("::ffff:192.0.2.1")
    assert "ip:unknown" == rate_key_for_host(None)
    assert "ip:testclient" == rate_key_for_host("testclient")


class LimiterModel(RuleBasedStateMachine):
    """The limiter against a reference token bucket, under random clocks and clients (FUZ-10)."""

    RATE, BURST, MAX_KEYS = 3.0, 7, 4

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.limiter = TokenBucketLimiter(
            self.RATE, self.BURST, max_keys=self.MAX_KEYS, clock=self.clock
        )
        self.model: dict[str, tuple[float, float]] = {}

    def level(self, key: str) -> float:
        tokens, stamp = self.model.get(key, (float(self.BURST), self.clock.now))
        return min(self.BURST, tokens + (self.clock.now - stamp) * self.RATE)

    @rule(dt=st.floats(min_value=0, max_value=5, allow_nan=False))
    def advance_clock(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(ip=st.sampled_from(["a", "b", "c"]), cost=st.integers(min_value=1, max_value=9))
    def request(self, ip: str, cost: int) -> None:
        expected = self.level(ip) >= cost
        decision = self.limiter.acquire([ip], cost)
        assert expected == decision.allowed
        if decision.allowed:
            self.model[ip] = (self.level(ip) - cost, self.clock.now)
        else:
            assert decision.retry_after == pytest.approx((cost - self.level(ip)) / self.RATE)

    @invariant()
    def bounded(self) -> None:
        assert len(self.limiter) <= self.MAX_KEYS


LimiterModel.TestCase.settings = settings(max_examples=60, derandomize=True, deadline=None)
test_limiter_matches_reference_model = LimiterModel.TestCase
