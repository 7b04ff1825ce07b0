"""Stamps every response with a fresh ULID ``X-Request-Id`` and turns any exception that
escaped the app into the contract's 500 envelope (no internals)."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orgbill.errors import internal_error_response
from orgbill.kit.context import RequestContext, attach_context, request_id_var
from orgbill.kit.ids import new_ulid
from orgbill.ratelimit.context import rate_limit_headers

logger = logging.getLogger("orgbill.errors")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_ulid()
        attach_context(scope, RequestContext(request_id=request_id))
        token = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error", extra={"requestId": request_id})
            if started:
                raise
            response = internal_error_response()
            # The bucket this request was charged to, as on every other response.
            response.headers.update(rate_limit_headers(scope))
            await response(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
