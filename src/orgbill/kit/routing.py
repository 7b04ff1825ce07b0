"""The request boundary: one session per request, committed before the response is sent."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.routing import BaseRoute

_SESSION_ATTR = "orgbill_session"
_WRITES_ATTR = "orgbill_writes"
_WRITES_WHEN = "orgbill_writes_when"
_CALLER_RIDER = "orgbill_caller_rider"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WritesWhen = Callable[[Request], Awaitable[bool]]
CallerRider = Callable[[bytes], Any]
F = TypeVar("F", bound=Callable[..., Any])


def writes_when(predicate: WritesWhen) -> Callable[[F], F]:
    """Marks an unsafe-method endpoint whose unit of work writes only when `predicate` says
    so (from the raw request, before anything is parsed); otherwise it runs on the
    autocommit, read-only engine like a GET (no BEGIN/COMMIT; no SQLite write lock)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _WRITES_WHEN, predicate)
        return endpoint

    return mark


def rides_with_caller(rider: CallerRider) -> Callable[[F], F]:
    """Marks an endpoint whose request body names reads the caller's lookup can carry in its
    own round trip: `rider(body)` returns what the caller step (auth/caller.py) adds to its
    statement, or None. (kit knows no domain: what a rider returns is auth's business.)"""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _CALLER_RIDER, rider)
        return endpoint

    return mark


@dataclass(frozen=True, slots=True)
class RouteMarks:
    """What an endpoint tells the caller step, which runs before routing."""

    writes_when: WritesWhen | None
    caller_rider: CallerRider | None


def route_marks(routes: Iterable[BaseRoute]) -> dict[tuple[str, str], RouteMarks]:
    """(method, path template) → the marks of each endpoint that has any."""
    found: dict[tuple[str, str], RouteMarks] = {}
    # Route contexts: included routers' routes with their full paths.
    for route in iter_route_contexts(list(routes)):
        marks = RouteMarks(
            writes_when=getattr(route.endpoint, _WRITES_WHEN, None),
            caller_rider=getattr(route.endpoint, _CALLER_RIDER, None),
        )
        if (marks.writes_when or marks.caller_rider) and route.path_format:
            for method in route.methods or ():
                found[(method, route.path_format)] = marks
    return found


async def decide_writes(request: Request, predicate: WritesWhen) -> None:
    """Settles whether this request's unit of work writes, before its session is opened (the
    caller middleware opens it to identify the caller, ahead of routing)."""
    setattr(request.state, _WRITES_ATTR, await predicate(request))


def _writes(request: Request) -> bool:
    decided: bool | None = getattr(request.state, _WRITES_ATTR, None)
    return decided if decided is not None else request.method not in _SAFE_METHODS


async def get_session(request: Request) -> AsyncSession:
    """Dependency: the request's session, opened lazily; the route class commits or rolls back.
    (async, like every dependency here: FastAPI runs plain `def` ones in a thread pool.)"""
    session: AsyncSession | None = getattr(request.state, _SESSION_ATTR, None)
    if session is None:
        # app.state.database is the orgbill.db.Database (not imported: db sits beside kit).
        database = request.app.state.database
        session = database.session(writes=_writes(request))
        setattr(request.state, _SESSION_ATTR, session)
    return session


async def close_session(request: Request) -> None:
    """Closes the request's session if one is still open (whoever opened it)."""
    session: AsyncSession | None = getattr(request.state, _SESSION_ATTR, None)
    if session is not None:
        setattr(request.state, _SESSION_ATTR, None)
        with contextlib.suppress(Exception):
            await session.close()


class TransactionalRoute(APIRoute):
    """Commits the request's unit of work after the endpoint succeeds and before the response
    leaves; any exception rolls it back so nothing half-written survives."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        predicate: WritesWhen | None = getattr(self.endpoint, _WRITES_WHEN, None)

        async def handle(request: Request) -> Response:
            try:
                if predicate is not None and getattr(request.state, _WRITES_ATTR, None) is None:
                    await decide_writes(request, predicate)
                response = await handler(request)
                session: AsyncSession | None = getattr(request.state, _SESSION_ATTR, None)
                # Reads go through the autocommit, read-only engine: nothing to commit.
                if session is not None and _writes(request):
                    await session.commit()
                return response
            except BaseException:
                session = getattr(request.state, _SESSION_ATTR, None)
                if session is not None:
                    # A dead connection cannot roll back; the original error is what matters.
                    with contextlib.suppress(Exception):
                        await session.rollback()
                raise
            finally:
                await close_session(request)

        return handle
