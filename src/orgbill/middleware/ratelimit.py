"""Caller and rate limit: the one step that resolves who is calling and charges its bucket,
once per request, before the endpoint runs (contract → "Rate limits (seed 004)").

- exempt operational paths and Stripe webhooks whose signature verifies: no bucket;
- unknown routes (404/405), no or failed credentials: the client IP, at the public rate;
- an organization (its API key, a user naming an org they belong to, an impersonation token):
  the organization, at its effective plan's api_rate_limit;
- any other valid user token: the user, at the user rate.

The caller it resolves is the one the routes use (`auth/dependencies.py` reads it): one
identification per request. Every response carries the charged bucket's headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orgbill.auth.caller import (
    ORG_HEADER,
    acting_org_plan,
    attach_caller,
    has_credentials,
    identify,
    parse_org_id,
    resolve_acting_org,
)
from orgbill.auth.principal import Caller, UserPrincipal
from orgbill.config import Settings
from orgbill.errors import error_response
from orgbill.kit.client_ip import client_address
from orgbill.kit.context import request_context
from orgbill.kit.routing import RouteMarks, close_session, decide_writes, get_session
from orgbill.plans.store import CatalogStore
from orgbill.ratelimit.buckets import Bucket, RateDecision
from orgbill.ratelimit.context import (
    rate_limit_headers,
    record_decision,
    refusal_headers,
    refusal_message,
)
from orgbill.ratelimit.limiter import RateLimiter
from orgbill.stripe_sync import signature


@dataclass(frozen=True, slots=True)
class CallerPaths:
    exempt: frozenset[str]  # exact paths never limited
    exempt_prefixes: tuple[str, ...]  # their assets
    stripe_webhook: str
    admin_prefix: str  # admin routes act for no organization, whatever their path names


ORG_HEADER_NAME = ORG_HEADER.lower()


def _routed_method(method: str) -> str:
    """HEAD is served as GET (middleware/head.py): it is the GET operation's."""
    return "GET" if method == "HEAD" else method


class RouteTable:
    """Which documented operation a request is for, and its path parameters, matched before
    routing. Built once from the app's OpenAPI document (the operations the app serves), so
    it depends on no router internals; an undocumented path counts as unknown."""

    def __init__(
        self,
        openapi: Callable[[], dict[str, Any]],
        route_marks: Callable[[], dict[tuple[str, str], RouteMarks]] = dict,
    ) -> None:
        self._openapi = openapi
        self._routes: list[tuple[re.Pattern[str], str, frozenset[str]]] | None = None
        # (method, template) of the operations that name their org by X-Organization-Id.
        self._org_header: frozenset[tuple[str, str]] = frozenset()
        self._route_marks = route_marks
        self._marks: dict[tuple[str, str], RouteMarks] | None = None

    def marks(self, method: str, template: str) -> RouteMarks | None:
        """What the route's endpoint tells this step (kit/routing.py), if anything."""
        if self._marks is None:
            self._marks = self._route_marks()
        return self._marks.get((method, template))

    def match(self, method: str, path: str) -> tuple[str | None, dict[str, str]]:
        """(the route's path template, its path params); (None, {}) when unknown or a wrong
        method."""
        if self._routes is None:
            self._build()
        assert self._routes is not None
        method = _routed_method(method)
        for pattern, template, methods in self._routes:
            found = pattern.match(path)
            if found and method in methods:
                return template, found.groupdict()
        return None, {}

    def takes_org_header(self, method: str, template: str) -> bool:
        """Whether the operation acts for the org its X-Organization-Id names (a route that
        acts for none, such as `/me`, ignores the header: its calls are the user's)."""
        return (_routed_method(method), template) in self._org_header

    def _build(self) -> None:
        paths = self._openapi().get("paths", {})
        self._routes = [
            (compile_path(template)[0], template, frozenset(m.upper() for m in item))
            for template, item in paths.items()
        ]
        self._org_header = frozenset(
            (method.upper(), template)
            for template, item in paths.items()
            for method, operation in item.items()
            if any(
                parameter.get("in") == "header"
                and parameter.get("name", "").lower() == ORG_HEADER_NAME
                for parameter in operation.get("parameters", [])
            )
        )


def _note_route(scope: Scope, template: str) -> None:
    context = request_context(scope)
    if context is not None:
        context.route_template = template


class ClientIpCharge:
    """What a request that resolves no caller pays: its client IP's bucket, at the public
    rate. The caller step charges it, and so does the body-size guard outside it, whose 413
    is decided before anything else runs (every response carries its bucket's headers)."""

    def __init__(self, settings: Settings, limiter: RateLimiter | None) -> None:
        self.settings = settings
        self.limiter = limiter

    def client_ip(self, scope: Scope) -> str:
        peer = scope.get("client")
        proxies = self.settings.trusted_proxies
        forwarded_for = Request(scope).headers.getlist("x-forwarded-for") if proxies else []
        return client_address(peer[0] if peer else None, forwarded_for, proxies)

    def bucket(self, client_ip: str) -> Bucket:
        return Bucket.for_rate(
            f"ip:{client_ip}",
            self.settings.public_rate_limit,
            self.settings.rate_limit_burst_seconds,
        )

    async def charge(self, scope: Scope) -> RateDecision | None:
        """Charges and records it on the request (None when the limiter is off)."""
        if self.limiter is None:
            return None
        decision = await self.limiter.hit(self.bucket(self.client_ip(scope)))
        record_decision(scope, decision)
        return decision


class CallerMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: RouteTable,
        settings: Settings,
        limiter: RateLimiter | None,
        catalog_store: CatalogStore,
        paths: CallerPaths,
    ) -> None:
        self.app = app
        self.routes = routes
        self.settings = settings
        self.limiter = limiter
        self.catalog_store = catalog_store
        self.paths = paths
        self.ip_charge = ClientIpCharge(settings, limiter)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        caller = Caller(client_ip=self.ip_charge.client_ip(scope))
        attach_caller(scope, caller)
        try:
            bucket, receive = await self._resolve(request, caller, receive)
            if bucket is not None and self.limiter is not None:
                decision = await self.limiter.hit(bucket)
                record_decision(scope, decision)
                if not decision.allowed:
                    await rate_limited_response(decision)(scope, receive, send)
                    return
            elif self.limiter is not None:
                # Not charged: report the client IP's bucket as it stands (a look is free).
                record_decision(scope, await self.limiter.hit(self._ip_bucket(caller), cost=0))

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [
                        *message.get("headers", []),
                        *(
                            (name.lower().encode(), value.encode())
                            for name, value in rate_limit_headers(scope).items()
                        ),
                    ]
                await send(message)

            await self.app(scope, receive, send_with_headers)
        finally:
            # The route class closes the session it used; this closes one no route took over.
            await close_session(request)

    async def _resolve(
        self, request: Request, caller: Caller, receive: Receive
    ) -> tuple[Bucket | None, Receive]:
        """Which bucket this request is charged to (None: not limited), and the receive
        channel the app reads the body from (replayed if a webhook's body was read here)."""
        path = request.scope["path"]
        if path in self.paths.exempt or path.startswith(self.paths.exempt_prefixes):
            return None, receive
        if path == self.paths.stripe_webhook and request.method == "POST":
            # Matched directly (not through the route table): Stripe sends these in bulk.
            _note_route(request.scope, path)
            body, receive = await _read_body(receive)
            if self._signature_verifies(request, body):
                # The route applies these bytes without verifying them a second time.
                signature.mark_verified(request.scope, body)
                return None, receive
            return self._ip_bucket(caller), receive
        route_path, path_params = self.routes.match(request.method, path)
        if route_path is None:
            return self._ip_bucket(caller), receive  # unknown route or wrong method
        _note_route(request.scope, route_path)
        if not has_credentials(request):
            return self._ip_bucket(caller), receive
        marks = self.routes.marks(request.method, route_path)
        rider = None
        if marks is not None:
            body, replayed = await _read_body(receive)
            if marks.writes_when is not None:
                # Decided before the session opens, so a request that writes nothing (a
                # plain check) identifies its caller on the read-only engine (no BEGIN).
                await decide_writes(
                    Request(request.scope, _replay(body, receive)), marks.writes_when
                )
            if marks.caller_rider is not None:
                rider = marks.caller_rider(body)
            receive = replayed
        session = await get_session(request)
        try:
            caller.principal = await identify(request, session, self.settings, rider)
            named = None
            if not route_path.startswith(self.paths.admin_prefix):
                header = (
                    request.headers.get(ORG_HEADER)
                    if self.routes.takes_org_header(request.method, route_path)
                    else None
                )
                named = parse_org_id(path_params.get("org_id") or header)
            await resolve_acting_org(session, caller, named)
            if caller.acting_org is not None and self.limiter is not None:
                await acting_org_plan(session, caller, self.catalog_store)
        except Exception as exc:
            caller.failure = exc
            caller.principal = caller.acting_org = None
            return self._ip_bucket(caller), receive
        return self._caller_bucket(caller), receive

    def _signature_verifies(self, request: Request, body: bytes) -> bool:
        secret = self.settings.stripe_webhook_secret
        header = request.headers.get("stripe-signature")
        if not secret or not header:
            return False
        try:
            signature.verify(body, header, secret)
        except signature.InvalidSignature:
            return False
        return True

    def _ip_bucket(self, caller: Caller) -> Bucket:
        return self.ip_charge.bucket(caller.client_ip)

    def _caller_bucket(self, caller: Caller) -> Bucket | None:
        if caller.acting_org is not None:
            assert caller.effective_plan is not None or self.limiter is None
            plan = caller.effective_plan
            rate = plan.limits.count("api_rate_limit") if plan is not None else None
            if rate is None:
                return None  # unlimited
            return self._bucket(f"org:{caller.acting_org.id}", float(rate))
        assert isinstance(caller.principal, UserPrincipal)
        return self._bucket(f"user:{caller.principal.user.id}", self.settings.user_rate_limit)

    def _bucket(self, key: str, rate: float) -> Bucket:
        return Bucket.for_rate(key, rate, self.settings.rate_limit_burst_seconds)


def rate_limited_response(decision: RateDecision) -> JSONResponse:
    return error_response(
        429, "rate_limited", refusal_message(decision), headers=refusal_headers(decision)
    )


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """Reads the whole body (the body-size guard outside bounds it) and hands back a receive
    that replays it, so the endpoint reads the same bytes (and verifies them itself, to
    answer the failure, when they did not verify here)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, _replay(body, receive)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands out `body` (already read) once, then defers to `receive`."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
