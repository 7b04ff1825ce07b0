"""Several instances on one PostgreSQL database share the deliveries: each event once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest

from orgbill.config import Settings
from tests.fixtures.factories import API, create_org, create_superadmin_user
from tests.fixtures.server import serve
from tests.fixtures.webhook_receiver import Receiver
from tests.webhooks_out.helpers import endpoint_for

EVENTS_PER_INSTANCE = 15


async def test_two_server_instances_deliver_each_event_exactly_once(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has one writer: a single process dispatches")
    admin = await create_superadmin_user(client, settings)
    orgs = [await create_org(client) for _ in range(3)]
    endpoints = [await endpoint_for(client, admin, receiver, org.id) for org in orgs]
    # A receiver slow enough that the instances' rounds overlap.
    for _, path in endpoints:
        receiver.sleep(path, 0.02)
    with serve(settings) as first, serve(settings) as second:
        async with (
            httpx.AsyncClient(base_url=first, timeout=30) as a,
            httpx.AsyncClient(base_url=second, timeout=30) as b,
        ):

            async def rename(http: httpx.AsyncClient, index: int) -> None:
                org = orgs[index % len(orgs)]
                response = await http.patch(
                    f"{API}/organizations/{org.id}",
                    json={"name": f"Instance {index}"},
                    headers=org.owner.headers,
                )
                assert response.status_code == 200, response.text

            await asyncio.gather(
                *(rename(a, i) for i in range(EVENTS_PER_INSTANCE)),
                *(rename(b, EVENTS_PER_INSTANCE + i) for i in range(EVENTS_PER_INSTANCE)),
            )
            expected = 2 * EVENTS_PER_INSTANCE
            received = []
            for _, path in endpoints:
                received += await receiver.wait_for(path, expected // len(orgs), timeout=20)
            await asyncio.sleep(1.0)  # a duplicate would arrive by now
    received = [r for _, path in endpoints for r in receiver.at(path)]
    names = Counter(json.loads(r.body)["data"]["name"] for r in received)
    assert len(received) == expected, names
    assert Counter(r.webhook_id for r in received).most_common(1)[0][1] == 1
    assert set(names) == {f"Instance {i}" for i in range(expected)}
