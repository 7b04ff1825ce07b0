"""Per-IP limiting of calls that carry credentials but act for no organization.

The middleware charges the client IP's bucket up front only for calls without credentials;
a credentialed call waits to be charged to its organization's bucket. A route that resolves
no organization (sign-in, /me, admin, the public catalog) must not become a way around the
public limit by sending any `Authorization` header, so such routes charge the IP bucket here,
before their endpoint runs. Routes authenticated by a signature instead (Stripe webhooks) are
exempt: their sender bursts from few IPs and a refused delivery only comes back later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.dependencies.models import Dependant

from orgbill.errors import RateLimited
from orgbill.ratelimit.context import rate_limit_state
from orgbill.ratelimit.limiter import RateLimiter

F = TypeVar("F", bound=Callable[..., Any])
_ORG_LIMITED = "orgbill_charges_org_rate_limit"
_SIGNATURE_AUTHENTICATED = "orgbill_signature_authenticated"


def charges_org_rate_limit(dependency: F) -> F:
    """Marks a dependency that charges the caller's organization bucket."""
    setattr(dependency, _ORG_LIMITED, True)
    return dependency


def signature_authenticated(endpoint: F) -> F:
    """Marks an endpoint whose caller proves itself with a request signature."""
    setattr(endpoint, _SIGNATURE_AUTHENTICATED, True)
    return endpoint


def needs_ip_limit(endpoint: Callable[..., Any], dependant: Dependant) -> bool:
    if getattr(endpoint, _SIGNATURE_AUTHENTICATED, False):
        return False
    pending = list(dependant.dependencies)
    while pending:
        sub = pending.pop()
        if getattr(sub.call, _ORG_LIMITED, False):
            return False
        pending.extend(sub.dependencies)
    return True


def refusal_message(limit: int) -> str:
    return f"Rate limit of {limit} requests per second exceeded"


async def charge_ip_if_unattributed(request: Request) -> None:
    state = rate_limit_state(request.scope)
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if state is None or limiter is None or state.decision is not None:
        return  # limiter off, or already charged (no credentials: by the middleware)
    state.decision = await limiter.hit(state.ip_key, state.public_rate)
    if not state.decision.allowed:
        raise RateLimited(
            refusal_message(state.decision.limit),
            headers={"Retry-After": str(state.decision.retry_after)},
        )
