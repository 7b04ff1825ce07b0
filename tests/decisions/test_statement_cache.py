"""Hot writes send only statements SQLAlchemy compiled once: its dialect INSERT … ON CONFLICT
constructs have no cache key and compile again on every execution (about a millisecond of
CPU each), so the hot paths send them as `kit.sql.CompiledOnce` text instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine.interfaces import CacheStats

from tests.fixtures.factories import API, create_org


@contextmanager
def uncached_statements(app: FastAPI) -> Iterator[list[str]]:
    """SQL of each compiled statement the app sends that has no compiled-cache key."""
    uncached: list[str] = []
    database = app.state.database

    def record(_c: Any, _cur: Any, sql: str, _p: Any, context: Any, _many: bool) -> None:
        if context.compiled is not None and context.cache_hit is CacheStats.NO_CACHE_KEY:
            uncached.append(sql.split(" (")[0])

    engines = (database.engine.sync_engine, database.read_engine.sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield uncached
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def _post(client: httpx.AsyncClient, path: str, headers: dict[str, str], **body: Any) -> Any:
    response = await client.post(f"{API}{path}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_reserve_commit_and_a_usage_event_send_only_cached_statements(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    headers = org.key_headers
    with uncached_statements(app) as uncached:
        for _ in range(2):
            held = await _post(client, "/check", headers, metric="turns", quantity=2, reserve=True)
            reservation = held["reservation"]["id"]
            await _post(client, f"/reservations/{reservation}/commit", headers, quantity=1)
            await _post(
                client, "/usage/events", headers, events=[{"metric": "turns", "quantity": 1}]
            )
    assert uncached == []
    usage = (await client.get(f"{API}/usage", headers=headers)).json()
    assert usage["turns"]["current"] == 4  # two commits of 1 and two events of 1
