"""Fifty concurrent consumes at a real server, across several grants: the balance never goes
below zero and stays equal to the ledger's sum and to the grants' remaining credits."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import httpx

from orgbill.config import Settings
from orgbill.kit.time import isoformat_z, utcnow
from tests.fixtures.factories import API, create_org, create_superadmin_user
from tests.fixtures.server import serve


async def test_fifty_concurrent_consumes_across_grants_never_overdraw(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)  # 100 monthly credits, recorded by the first write
    admin = await create_superadmin_user(client, settings)
    for body in (
        {
            "amount": 30,
            "kind": "promotional",
            "expires_at": isoformat_z(utcnow() + timedelta(hours=1)),
        },
        {"amount": 20, "kind": "grant"},
        {"amount": 2.5, "kind": "promotional"},
    ):
        granted = await client.post(
            f"{API}/admin/organizations/{org.id}/credits",
            json={"reason": "test", **body},
            headers=admin.headers,
        )
        assert granted.status_code == 201, granted.text
    # 152.5 credits in four grants; 50 consumes of 4 want 200.
    with serve(settings) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, timeout=60, limits=httpx.Limits(max_connections=50)
        ) as live:
            responses = await asyncio.gather(
                *(
                    live.post(
                        f"{API}/credits/consume",
                        json={"amount": 4, "idempotency_key": f"c-{i}"},
                        headers=org.key_headers,
                    )
                    for i in range(50)
                )
            )
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200] * 38 + [402] * 12, [
                r.text for r in responses if r.status_code not in (200, 402)
            ]
            body = (await live.get(f"{API}/credits?limit=200", headers=org.key_headers)).json()
    assert body["total_credits"] == 0.5
    ledger = sum((Decimal(str(e["amount"])) for e in body["ledger"]), Decimal(0))
    assert ledger == Decimal("0.5")
    assert sum(Decimal(str(g["remaining"])) for g in body["grants"]) == Decimal("0.5")
    consumed = [e for e in body["ledger"] if e["kind"] == "consume"]
    assert len(consumed) == 38
    assert len([e for e in body["ledger"] if e["kind"] == "monthly"]) == 1
    # What is left is in the grant drawn last: the never-expiring grant of kind "grant"
    # (promotional before it on the tie).
    [left] = body["grants"]
    assert left["kind"] == "grant" and left["amount"] == 20 and left["expires_at"] is None
