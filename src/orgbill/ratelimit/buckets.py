"""Token buckets (seed 004): capacity = the rate in requests per second, refilled at that
rate, so a caller may burst one second's worth and then sustain the rate."""

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
class RateDecision:
    allowed: bool
    limit: int
    tokens: float  # left after this request
    rate: float

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.tokens))

    @property
    def seconds_until_full(self) -> float:
        return max(0.0, (self.limit - self.tokens) / self.rate)

    @property
    def retry_after(self) -> int:
        """Whole seconds until one token is back (at least 1)."""
        return max(1, math.ceil((1 - self.tokens) / self.rate))

    def headers(self, wall_now: datetime) -> dict[str, str]:
        full_at = math.ceil(wall_now.timestamp() + self.seconds_until_full)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": isoformat_z(datetime.fromtimestamp(full_at, UTC)),
        }


def refill(tokens: float, elapsed: float, rate: float) -> float:
    return min(rate, tokens + max(0.0, elapsed) * rate)


class LocalTokenBuckets:
    """In-process buckets: exact within one process, which is all it promises."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def hit(self, key: str, rate: int, cost: int = 1) -> RateDecision:
        """Takes `cost` tokens if there are that many (cost 0 only reports)."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(rate), now))
        tokens = refill(tokens, now - at, rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        if cost:
            if len(self._buckets) >= _SWEEP_THRESHOLD:
                self._sweep(now)
            self._buckets[key] = (tokens, now)
        return RateDecision(allowed=allowed, limit=rate, tokens=tokens, rate=rate)

    def _sweep(self, now: float) -> None:
        # A bucket is full again one second after its last hit (capacity = rate).
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 1.0}
