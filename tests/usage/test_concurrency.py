"""Concurrent batches at a real server: a hard limit is exact, never overshot."""

from __future__ import annotations

import asyncio

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, create_org
from tests.fixtures.server import serve


async def test_concurrent_batches_stop_exactly_at_a_hard_limit(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)  # free: 500 turns (hard)
    with serve(settings) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=40)
        ) as live:
            batch = [{"metric": "turns", "quantity": 10}, {"metric": "logs", "quantity": 1}]
            responses = await asyncio.gather(
                *(
                    live.post(
                        f"{API}/usage/events",
                        json={"events": [*batch, {"metric": "turns", "quantity": 10}]},
                        headers=org.key_headers,
                    )
                    for _ in range(40)
                )
            )
            usage = (await live.get(f"{API}/usage", headers=org.key_headers)).json()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 25 + [429] * 15, statuses
    # All-or-nothing: refused batches left none of their logs behind.
    assert usage["turns"]["current"] == 500 and usage["logs"]["current"] == 25
