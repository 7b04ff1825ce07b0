"""Where a request's rate-limit decision lives between the caller middleware that makes it
and whatever writes the response (the app, or the outermost 500 in middleware/request_id.py)."""

from __future__ import annotations

from typing import Any

from orgbill.kit.time import utcnow
from orgbill.ratelimit.buckets import RateDecision

_SCOPE_KEY = "orgbill.ratelimit"


def record_decision(scope: dict[str, Any], decision: RateDecision) -> None:
    scope[_SCOPE_KEY] = decision


def recorded_decision(scope: Any) -> RateDecision | None:
    """The decision of the bucket this request was charged to, if it was yet."""
    decision: RateDecision | None = scope.get(_SCOPE_KEY)
    return decision


def rate_limit_headers(scope: Any) -> dict[str, str]:
    """The headers of the bucket this request was charged to (none before it was)."""
    decision: RateDecision | None = scope.get(_SCOPE_KEY)
    return decision.headers(utcnow()) if decision is not None else {}


def refusal_headers(decision: RateDecision) -> dict[str, str]:
    return {**decision.headers(utcnow()), "Retry-After": str(decision.retry_after)}


def refusal_message(decision: RateDecision) -> str:
    rate = decision.bucket.rate
    shown = int(rate) if rate == int(rate) else rate
    return f"Rate limit of {shown} requests per second exceeded"
