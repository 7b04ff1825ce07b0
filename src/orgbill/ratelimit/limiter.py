"""The rate limiter the app uses: Redis when configured, the in-process buckets otherwise,
and the in-process buckets again whenever Redis cannot be reached (serving beats limiting
exactly; the outage is logged, and Redis is retried after a short pause)."""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orgbill.config import Settings
from orgbill.ratelimit.buckets import LocalTokenBuckets, RateDecision
from orgbill.ratelimit.redis_buckets import RedisTokenBuckets

logger = logging.getLogger("orgbill.ratelimit")
# How long to serve from the in-process buckets before trying Redis again.
REDIS_RETRY_SECONDS = 5.0
# A bucket check is on every request: a slow Redis must not make every request slow.
_REDIS_TIMEOUT_SECONDS = 0.25


class RateLimiter:
    def __init__(self, local: LocalTokenBuckets, shared: RedisTokenBuckets | None) -> None:
        self._local = local
        self._shared = shared
        self._shared_down_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        shared = None
        if settings.redis_url:
            client = Redis.from_url(
                settings.redis_url,
                socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
                socket_timeout=_REDIS_TIMEOUT_SECONDS,
            )
            shared = RedisTokenBuckets(client, settings.rate_limit_key_prefix)
        return cls(LocalTokenBuckets(), shared)

    @property
    def using_redis(self) -> bool:
        return self._shared is not None and time.monotonic() >= self._shared_down_until

    async def hit(self, key: str, rate: int, cost: int = 1) -> RateDecision:
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                decision = await self._shared.hit(key, rate, cost)
            except (RedisError, OSError):
                self._shared_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                logger.warning(
                    "redis unreachable; rate limiting in-process for now",
                    extra={"retryInSeconds": REDIS_RETRY_SECONDS},
                    exc_info=True,
                )
            else:
                if self._shared_down_until:
                    self._shared_down_until = 0.0
                    logger.warning("redis reachable again; rate limits are shared")
                return decision
        return self._local.hit(key, rate, cost)

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.aclose()
