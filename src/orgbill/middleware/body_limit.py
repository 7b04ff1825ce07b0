"""Refuses request bodies over ``ORGBILL_MAX_BODY_BYTES`` with 413 ``payload_too_large`` before
anything parses them: at once when ``Content-Length`` says so, else by counting the bytes as
they stream in (chunked bodies carry no length)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orgbill.errors import PayloadTooLarge, error_response


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _refusal(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"Request body exceeds {self.max_body_bytes} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal()
        response = error_response(refusal.status_code, refusal.code, refusal.message)
        # The rest of the body is not read: the client must not reuse this connection.
        response.headers["connection"] = "close"
        await response(scope, receive, send)

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
