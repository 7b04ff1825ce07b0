"""Refuses request bodies over ``ORGBILL_MAX_BODY_BYTES`` with 413 ``payload_too_large`` before
anything parses them: at once when ``Content-Length`` says so, else by counting the bytes as
they stream in (chunked bodies carry no length)."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orgbill.errors import PayloadTooLarge, error_response
from orgbill.middleware.ratelimit import ClientIpCharge, rate_limited_response
from orgbill.ratelimit.context import rate_limit_headers, recorded_decision


class BodySizeLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, ip_charge: ClientIpCharge | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.ip_charge = ip_charge

    def _refusal(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"Request body exceeds {self.max_body_bytes} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Refused before the caller step ran (a declared length): charged to the client IP
        # like any request that names no caller, so oversized ones are limited too.
        if recorded_decision(scope) is None and self.ip_charge is not None:
            decision = await self.ip_charge.charge(scope)
            if decision is not None and not decision.allowed:
                limited = rate_limited_response(decision)
                await _closing(limited)(scope, receive, send)
                return
        refusal = self._refusal()
        response = error_response(
            refusal.status_code, refusal.code, refusal.message, headers=rate_limit_headers(scope)
        )
        await _closing(response)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the server itself refuses a malformed length
                if declared > self.max_body_bytes:
                    await self._refuse(scope, receive, send)
                    return
                break

        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise self._refusal()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            # Once the limit tripped, whatever the app made of the exception (FastAPI turns a
            # failed body read into a 400) is replaced by the 413 below.
            if exceeded:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except PayloadTooLarge:
            if not exceeded:
                raise
        if exceeded and not response_started:
            await self._refuse(scope, receive, send)


def _closing(response: JSONResponse) -> JSONResponse:
    # The rest of the body is not read: the client must not reuse this connection.
    response.headers["connection"] = "close"
    return response
