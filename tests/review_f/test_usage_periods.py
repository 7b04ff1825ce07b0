"""Review F: which period a usage event lands in."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from orgbill.kit.time import isoformat_z, utcnow
from tests.fixtures.factories import API, OrgHandle, assert_error, create_org
from tests.fixtures.plans import set_subscription


async def post(
    client: httpx.AsyncClient, org: OrgHandle, *events: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"{API}/usage/events", json={"events": list(events)}, headers=org.key_headers
    )


async def usage(client: httpx.AsyncClient, org: OrgHandle) -> dict[str, Any]:
    response = await client.get(f"{API}/usage", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_gauge_event_timestamped_before_the_current_period_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """README (Usage, credits): events are 422 for "a timestamp more than 5 minutes ahead or
    before the current period" — a gauge's too (a counter's already is)."""
    org = await create_org(client)
    body = await usage(client, org)
    before = isoformat_z(
        utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0) - timedelta(days=40)
    )
    assert body["period_start"] > before
    counter = await post(client, org, {"metric": "turns", "quantity": 1, "timestamp": before})
    assert_error(counter, 422, "validation_error")
    gauge = await post(client, org, {"metric": "agents", "quantity": 1, "timestamp": before})
    assert_error(gauge, 422, "validation_error")
    assert (await usage(client, org))["agents"]["current"] == 0


async def test_after_a_cancellation_the_free_calendar_month_counts_every_turn_it_contains(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Counters sum per billing period. Back on free after a canceled subscription, the free
    period (this UTC calendar month) contains the turns used under the subscription too: they
    count against free's hard limit of 500."""
    org = await create_org(client)
    assert (await post(client, org, {"metric": "turns", "quantity": 400})).status_code == 200
    await asyncio.sleep(0.01)
    start = utcnow()
    sub_id = await set_subscription(
        app, org.id, "pro", period_start=start, period_end=start + timedelta(days=30)
    )
    assert (await post(client, org, {"metric": "turns", "quantity": 300})).status_code == 200
    assert (await usage(client, org))["turns"]["current"] == 300
    # Canceled at once: the org is back on free, in this calendar month.
    await set_subscription(
        app,
        org.id,
        "pro",
        period_start=start,
        period_end=start + timedelta(days=30),
        status="canceled",
        stripe_subscription_id=sub_id,
    )
    body = await usage(client, org)
    assert body["plan"] == "free"
    assert body["turns"]["current"] == 700  # every turn recorded in this calendar month
    assert_error(await post(client, org, {"metric": "turns", "quantity": 1}), 429, "quota_exceeded")
