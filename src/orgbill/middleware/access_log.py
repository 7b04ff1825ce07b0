"""One JSON line and the request metrics per request: requestId, organizationId, client IP,
user agent, method, path, route template, status, duration."""

from __future__ import annotations

import logging
import time

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orgbill.kit.context import request_context
from orgbill.kit.metrics import HTTP_REQUEST_DURATION, HTTP_REQUESTS

logger = logging.getLogger("orgbill.access")

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Paths no route matched share one label: a scanner must not mint a series per URL.
UNMATCHED_ROUTE = "unmatched"


def route_template(scope: Scope) -> str:
    """The matched route's path template, e.g. `/api/v1/organizations/{org_id}`."""
    route = scope.get("route")
    if route is None:
        context = request_context(scope)
        if context is not None and context.route_template is not None:
            return context.route_template  # refused before the router ran
        # FastAPI records the matched route for its own routes only, not for mounts (the
        # docs' assets): find the mount the path is under.
        route = _mount_for(scope)
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ROUTE
    if isinstance(route, Mount):
        return f"{path}/{{path}}"
    # A route of an included router may know only its own path: put back the prefix it was
    # served under (as many leading segments as the served path has beyond the route's).
    served = scope["path"].strip("/").split("/")
    own = path.strip("/").split("/")
    prefix = "/".join(served[: max(len(served) - len(own), 0)])
    return f"/{prefix}{path}" if prefix else path


def _mount_for(scope: Scope) -> Mount | None:
    app = scope.get("app")
    served = scope.get("path", "")
    for route in getattr(app, "routes", ()):
        if isinstance(route, Mount) and (served + "/").startswith(route.path + "/"):
            return route
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, log_probes: bool = False) -> None:
        self.app = app
        self.log_probes = log_probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            labels = (scope["method"], route, str(status))
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_REQUEST_DURATION.labels(*labels).observe(elapsed)
            if logger.isEnabledFor(logging.INFO) and (
                self.log_probes or scope["path"] not in PROBE_PATHS
            ):
                self._log(scope, route, status, elapsed)

    @staticmethod
    def _log(scope: Scope, route: str, status: int, elapsed: float) -> None:
        context = request_context(scope)
        client = scope.get("client")
        client_ip = (context.client_ip if context else None) or (client[0] if client else None)
        logger.info(
            "request",
            extra={
                "requestId": context.request_id if context else None,
                "organizationId": context.organization_id if context else None,
                "clientIp": client_ip,
                "userAgent": _header(scope, b"user-agent"),
                "method": scope["method"],
                "path": scope["path"],
                "route": route,
                "status": status,
                "durationMs": round(elapsed * 1000, 2),
            },
        )
