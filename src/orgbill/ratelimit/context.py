"""Where a request's rate-limit decision lives between whoever made it (the middleware for
public calls, the org-access dependency for authenticated ones) and the response headers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orgbill.ratelimit.buckets import RateDecision

_SCOPE_KEY = "orgbill.ratelimit"


@dataclass(slots=True)
class RateLimitState:
    ip_key: str
    public_rate: int
    decision: RateDecision | None = None


def attach_state(scope: dict[str, Any], ip_key: str, public_rate: int) -> RateLimitState:
    state = RateLimitState(ip_key=ip_key, public_rate=public_rate)
    scope[_SCOPE_KEY] = state
    return state


def rate_limit_state(scope: Any) -> RateLimitState | None:
    return scope.get(_SCOPE_KEY)
