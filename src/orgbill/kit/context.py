"""Per-request context readable from anywhere (logs, error bodies)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_SCOPE_KEY = "orgbill.context"


@dataclass(slots=True)
class RequestContext:
    """Mutable per-request facts the outer middleware reports after the app has run."""

    request_id: str
    organization_id: str | None = None
    # The client's address once resolved (trusted proxies); the TCP peer until then.
    client_ip: str | None = None
    # The documented route the caller step matched before routing: the route's label for a
    # request refused before the router ran (a chunked body past the limit, say).
    route_template: str | None = None


def current_request_id() -> str | None:
    return request_id_var.get()


def attach_context(scope: dict[str, Any], context: RequestContext) -> None:
    scope[_SCOPE_KEY] = context


def request_context(scope: Any) -> RequestContext | None:
    return scope.get(_SCOPE_KEY)
