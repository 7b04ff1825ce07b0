"""Rate-limit headers on every response, and the per-IP bucket for public calls.

Authenticated calls are limited per organization, whose rate is only known once the caller
is identified: the org-access dependency charges that bucket (auth/dependencies.py). This
middleware charges the client IP's bucket, at the public rate, for calls that carry no
credentials, and writes whichever decision was made into the response headers. A call
with credentials that never reaches an organization (e.g. /me) is reported against its
IP's bucket without taking from it.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orgbill.errors import error_response
from orgbill.kit.time import utcnow
from orgbill.ratelimit.context import attach_state
from orgbill.ratelimit.guard import refusal_message
from orgbill.ratelimit.limiter import RateLimiter

# Calls carrying these are charged later: to their organization (org-access dependency) or,
# on routes that act for no organization, to this IP (ratelimit/guard.py).
_CREDENTIAL_HEADERS = frozenset({b"x-api-key", b"authorization", b"stripe-signature"})
_SESSION_COOKIE = b"orgbill_session="


def _has_credentials(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name in _CREDENTIAL_HEADERS or (name == b"cookie" and _SESSION_COOKIE in value):
            return True
    return False


def ip_bucket(scope: Scope) -> str:
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter, public_rate: Callable[[], int]) -> None:
        self.app = app
        self.limiter = limiter
        self.public_rate = public_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = attach_state(scope, ip_bucket(scope), self.public_rate())
        if not _has_credentials(scope):
            state.decision = await self.limiter.hit(state.ip_key, state.public_rate)
            if not state.decision.allowed:
                refusal = error_response(
                    429,
                    "rate_limited",
                    refusal_message(state.decision.limit),
                    headers={
                        **state.decision.headers(utcnow()),
                        "Retry-After": str(state.decision.retry_after),
                    },
                )
                await refusal(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = state.decision or await self.limiter.hit(
                    state.ip_key, state.public_rate, cost=0
                )
                message["headers"] = [
                    *message.get("headers", []),
                    *(
                        (name.lower().encode(), value.encode())
                        for name, value in decision.headers(utcnow()).items()
                    ),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
