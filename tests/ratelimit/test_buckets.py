"""Token-bucket arithmetic, on a fake clock: capacity = rate x burst seconds (at least 1)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orgbill.config import MAX_BURST_SECONDS, MAX_RATE, MIN_BURST_SECONDS, MIN_RATE
from orgbill.plans.catalog import MAX_COUNT_LIMIT
from orgbill.ratelimit.buckets import Bucket, LocalTokenBuckets, RateDecision


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_its_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    buckets = LocalTokenBuckets(clock)
    org_a = Bucket.for_rate("org:a", 5, burst_seconds=2)
    assert org_a.capacity == 10
    decisions = [buckets.hit(org_a) for _ in range(11)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False]
    assert [d.remaining for d in decisions[:10]] == list(range(9, -1, -1))
    assert decisions[-1].retry_after == 1
    assert buckets.hit(Bucket.for_rate("org:b", 5, 2)).allowed  # buckets are independent

    clock.now += 0.2  # one token back at 5/s
    assert buckets.hit(org_a).allowed
    assert not buckets.hit(org_a).allowed
    clock.now += 10
    assert buckets.hit(org_a, cost=0).remaining == 10  # never above capacity; a look is free
    assert buckets.hit(org_a, cost=0).remaining == 10


def test_capacity_is_at_least_one_request() -> None:
    clock = FakeClock()
    buckets = LocalTokenBuckets(clock)
    slow = Bucket.for_rate("ip:x", 0.1, burst_seconds=2)
    assert slow.capacity == 1
    assert buckets.hit(slow).allowed
    refused = buckets.hit(slow)
    assert not refused.allowed and refused.retry_after == 10
    clock.now += 10
    assert buckets.hit(slow).allowed


def test_headers_say_when_the_bucket_is_full_again() -> None:
    clock = FakeClock()
    buckets = LocalTokenBuckets(clock)
    bucket = Bucket.for_rate("ip:x", 2, burst_seconds=2)
    for _ in range(4):
        decision = buckets.hit(bucket)
    headers = decision.headers(datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC))
    assert headers == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2026-11-22T12:00:02Z",
    }
    assert buckets.hit(bucket).retry_after == 1


# The settings' bounds, and the largest rate a plan (or an admin's limit override) may give.
@pytest.mark.parametrize("rate", [MIN_RATE, MAX_RATE, float(MAX_COUNT_LIMIT)])
@pytest.mark.parametrize("burst_seconds", [MIN_BURST_SECONDS, MAX_BURST_SECONDS])
def test_an_empty_bucket_at_the_bounds_still_has_representable_headers(
    rate: float, burst_seconds: float
) -> None:
    bucket = Bucket.for_rate("ip:x", rate, burst_seconds)
    empty = RateDecision(allowed=False, bucket=bucket, tokens=0.0)
    headers = empty.headers(datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC))
    assert headers["X-RateLimit-Reset"] < "2026-11-24"  # at most a day (the longest burst) on
    assert 1 <= empty.retry_after <= 1000
