"""A plain metric check is one read-only round trip: its standing rides with the caller's
API-key lookup (contract: "one round trip to the database on a cache miss")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event, insert

from orgbill.config import Settings
from orgbill.db import Database
from orgbill.models import UsageTotal
from tests.fixtures.factories import API, OrgHandle, create_org

CHECK = f"{API}/check"


@contextmanager
def statements(app: FastAPI) -> Iterator[list[tuple[str, str]]]:
    """(engine, SQL) of every statement the app sends while inside."""
    database = app.state.database
    seen: list[tuple[str, str]] = []
    listeners = []
    for name, engine in (("writer", database.engine), ("reader", database.read_engine)):

        def record(_c: Any, _cur: Any, sql: str, *_: Any, _name: str = name) -> None:
            seen.append((_name, sql))

        event.listen(engine.sync_engine, "before_cursor_execute", record)
        listeners.append((engine.sync_engine, record))
    try:
        yield seen
    finally:
        for target, fn in listeners:
            event.remove(target, "before_cursor_execute", fn)


def _request_statements(seen: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Only this request's: background work (outbound deliveries) may use the writer too.
    return [(e, sql) for e, sql in seen if "api_key" in sql or "usage_total" in sql]


async def _check(client: httpx.AsyncClient, org: OrgHandle, **body: Any) -> dict[str, Any]:
    response = await client.post(CHECK, json=body, headers=org.key_headers)
    assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    return decision


async def _record(client: httpx.AsyncClient, org: OrgHandle, quantity: int) -> None:
    response = await client.post(
        f"{API}/usage/events",
        json={"events": [{"metric": "turns", "quantity": quantity}]},
        headers=org.key_headers,
    )
    assert response.status_code == 200, response.text


async def _period_start(client: httpx.AsyncClient, org: OrgHandle) -> datetime:
    response = await client.get(f"{API}/usage", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return datetime.fromisoformat(response.json()["period_start"])


async def _store_total(
    settings: Settings, org: OrgHandle, period_start: datetime, used: int
) -> None:
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=True) as session:
            await session.execute(
                insert(UsageTotal).values(
                    organization_id=uuid.UUID(org.id),
                    metric="turns",
                    period_start=period_start,
                    used=used,
                    updated_at=period_start,
                )
            )
            await session.commit()
    finally:
        await database.dispose()


async def test_plain_check_is_one_read_only_round_trip(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    await _record(client, org, 7)
    await _check(client, org, metric="turns")  # the key's first use is recorded off-path
    await app.state.api_key_usage.drain()
    with statements(app) as seen:
        decision = await _check(client, org, metric="turns", quantity=2)
    assert (decision["allowed"], decision["used"], decision["reserved"]) == (True, 7, 0)
    sent = _request_statements(seen)
    assert len(sent) == 1, sent
    assert sent[0][0] == "reader"


async def test_plain_check_counts_holds_read_in_the_same_round_trip(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    held = await _check(client, org, metric="turns", quantity=3, reserve=True)
    assert held["allowed"] and held["reservation"] is not None
    await app.state.api_key_usage.drain()
    with statements(app) as seen:
        decision = await _check(client, org, metric="turns")
    assert (decision["used"], decision["reserved"], decision["remaining"]) == (0, 3, 497)
    assert len(_request_statements(seen)) == 1


async def test_plain_check_counts_only_the_current_periods_total(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    start = await _period_start(client, org)
    # Only an older period's total: nothing counted in this one yet.
    await _store_total(settings, org, start - timedelta(days=40), 450)
    assert (await _check(client, org, metric="turns"))["used"] == 0
    await _record(client, org, 5)
    assert (await _check(client, org, metric="turns"))["used"] == 5
    # A total whose start lies between this period's and now (stored under another
    # anchor): the latest one is not this period's, so the check reads this period's itself.
    await _store_total(settings, org, start + timedelta(microseconds=1), 1000)
    decision = await _check(client, org, metric="turns", quantity=495)
    assert (decision["used"], decision["allowed"]) == (5, True)
