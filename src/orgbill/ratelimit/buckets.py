"""Token buckets (seed 004): refilled at `rate` tokens per second up to `capacity` (the
burst a bucket allows after being idle: rate x ORGBILL_RATE_LIMIT_BURST_SECONDS, ≥ 1)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from orgbill.kit.time import isoformat_z

# Past this many buckets the in-process store drops the ones that are full again (idle):
# a full bucket and a missing one behave the same.
_SWEEP_THRESHOLD = 50_000


@dataclass(frozen=True, slots=True)
class Bucket:
    """Which bucket a request is charged to, and how it fills."""

    key: str
    rate: float  # tokens per second
    capacity: float

    @classmethod
    def for_rate(cls, key: str, rate: float, burst_seconds: float) -> Bucket:
        return cls(key=key, rate=rate, capacity=max(1.0, rate * burst_seconds))


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    bucket: Bucket
    tokens: float  # left after this request

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.tokens))

    @property
    def seconds_until_full(self) -> float:
        return max(0.0, (self.bucket.capacity - self.tokens) / self.bucket.rate)

    @property
    def retry_after(self) -> int:
        """Whole seconds until one token is back (at least 1)."""
        return max(1, math.ceil((1 - self.tokens) / self.bucket.rate))

    def headers(self, wall_now: datetime) -> dict[str, str]:
        full_at = math.ceil(wall_now.timestamp() + self.seconds_until_full)
        rate = self.bucket.rate
        return {
            "X-RateLimit-Limit": str(int(rate)) if rate == int(rate) else str(rate),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": isoformat_z(datetime.fromtimestamp(full_at, UTC)),
        }


def refill(tokens: float, elapsed: float, bucket: Bucket) -> float:
    return min(bucket.capacity, tokens + max(0.0, elapsed) * bucket.rate)


class LocalTokenBuckets:
    """In-process buckets: exact within one process, which is all it promises."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key -> (tokens, at, idle)

    def hit(self, bucket: Bucket, cost: int = 1) -> RateDecision:
        """Takes `cost` tokens if there are that many (cost 0 only reports)."""
        now = self._clock()
        tokens, at, _ = self._buckets.get(bucket.key, (bucket.capacity, now, 0.0))
        tokens = refill(tokens, now - at, bucket)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        if cost:
            if len(self._buckets) >= _SWEEP_THRESHOLD:
                self._sweep(now)
            self._buckets[bucket.key] = (tokens, now, bucket.capacity / bucket.rate)
        return RateDecision(allowed=allowed, bucket=bucket, tokens=tokens)

    def _sweep(self, now: float) -> None:
        # A bucket is full again `capacity / rate` seconds after its last hit.
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < v[2]}
