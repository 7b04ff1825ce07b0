"""A gauge event dated before the current period is refused like a counter's (422
`closed_period`): late usage cannot move a level from a time already reported on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from orgbill.kit.time import isoformat_z, utcnow
from tests.fixtures.factories import API, OrgHandle, assert_error, create_org


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
