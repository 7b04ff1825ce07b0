"""HEAD is answered as GET without its body (RFC 9110 9.3.2: a server that answers GET
answers HEAD). FastAPI's routes take GET only; the layers outside still see HEAD (the access
log and metrics name it), the routes see GET, and the headers (Content-Length included) are
the GET's."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        routed: Scope = {**scope, "method": "GET"}
        try:
            await self.app(routed, receive, send_without_body)
        finally:
            # What routing recorded (the matched route, its path params) is the request's:
            # the access log and metrics outside name the route template from it.
            scope.update({key: value for key, value in routed.items() if key != "method"})
