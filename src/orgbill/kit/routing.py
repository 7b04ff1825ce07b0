"""The request boundary: one session per request, committed before the response is sent."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

_SESSION_ATTR = "orgbill_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request) -> AsyncSession:
    """Dependency: the request's session, opened lazily; the route class commits or rolls back.
    (async, like every dependency here: FastAPI runs plain `def` ones in a thread pool.)"""
    session: AsyncSession | None = getattr(request.state, _SESSION_ATTR, None)
    if session is None:
        # app.state.database is the orgbill.db.Database (not imported: db sits beside kit).
        database = request.app.state.database
        session = database.session(writes=request.method not in _SAFE_METHODS)
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

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
                session: AsyncSession | None = getattr(request.state, _SESSION_ATTR, None)
                # Safe methods read through the autocommit, read-only engine: nothing to commit.
                if session is not None and request.method not in _SAFE_METHODS:
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
