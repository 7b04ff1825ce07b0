"""Fifty concurrent consumes at a real server: the balance never goes below zero and stays
equal to the ledger's sum."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, create_org
from tests.fixtures.server import serve


async def test_fifty_concurrent_consumes_never_overdraw(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)  # 100 monthly credits, granted by the first consume
    with serve(settings) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=50)
        ) as live:
            responses = await asyncio.gather(
                *(
                    live.post(
                        f"{API}/credits/consume",
                        json={"amount": 3, "idempotency_key": f"c-{i}"},
                        headers=org.key_headers,
                    )
                    for i in range(50)
                )
            )
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200] * 33 + [402] * 17, [
                r.text for r in responses if r.status_code not in (200, 402)
            ]
            body = (await live.get(f"{API}/credits?limit=200", headers=org.key_headers)).json()
    assert body["total_credits"] == 1
    ledger = sum((Decimal(str(e["amount"])) for e in body["ledger"]), Decimal(0))
    assert ledger == Decimal(1)
    assert len([e for e in body["ledger"] if e["kind"] == "grant"]) == 1
