"""Token-bucket arithmetic, on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

from orgbill.ratelimit.buckets import LocalTokenBuckets


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_one_second_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    buckets = LocalTokenBuckets(clock)
    decisions = [buckets.hit("org:a", 5) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert decisions[-1].retry_after == 1
    assert buckets.hit("org:b", 5).allowed  # buckets are independent

    clock.now += 0.2  # one token back at 5/s
    assert buckets.hit("org:a", 5).allowed
    assert not buckets.hit("org:a", 5).allowed
    clock.now += 10
    assert buckets.hit("org:a", 5, cost=0).remaining == 5  # never above capacity; a look is free
    assert buckets.hit("org:a", 5, cost=0).remaining == 5


def test_headers_say_when_the_bucket_is_full_again() -> None:
    clock = FakeClock()
    buckets = LocalTokenBuckets(clock)
    for _ in range(2):
        decision = buckets.hit("ip:x", 2)
    headers = decision.headers(datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC))
    assert headers == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2026-11-22T12:00:01Z",
    }
    assert buckets.hit("ip:x", 2).retry_after == 1
