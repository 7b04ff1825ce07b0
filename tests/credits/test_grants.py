"""Credit grants through the API: which grant consumption draws from, expiry at `expires_at`
(derived at read, entered once by the next write), and admin grants' kind and expiry."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from orgbill.config import Settings
from orgbill.kit.time import isoformat_z, utcnow
from tests.credits.test_credits import consume, credits, ledger_sum, profile_credits
from tests.fixtures.factories import (
    API,
    OrgHandle,
    UserHandle,
    assert_error,
    create_org,
    create_superadmin_user,
)


async def admin_grant(
    client: httpx.AsyncClient, admin: UserHandle, org: OrgHandle, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/admin/organizations/{org.id}/credits",
        json={"reason": "test", **body},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


def remaining_by_id(body: dict[str, Any]) -> dict[str, Any]:
    return {grant["id"]: grant["remaining"] for grant in body["grants"]}


async def test_consumption_draws_from_the_soonest_expiry_then_promotional_then_oldest(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    soon = isoformat_z(utcnow() + timedelta(days=40))  # after this month's allowance
    never_grant = (await admin_grant(client, admin, org, amount=10))["grant"]
    never_promo = (await admin_grant(client, admin, org, amount=10, kind="promotional"))["grant"]
    soon_grant = (await admin_grant(client, admin, org, amount=20, expires_at=soon))["grant"]
    soon_promo = (
        await admin_grant(client, admin, org, amount=20, kind="promotional", expires_at=soon)
    )["grant"]
    assert soon_promo["expires_at"] == soon and never_promo["expires_at"] is None
    body = await credits(client, org)
    [monthly] = [g for g in body["grants"] if g["kind"] == "monthly"]
    # GET lists grants in draw order.
    assert [g["id"] for g in body["grants"]] == [
        monthly["id"],  # expires at the end of this month
        soon_promo["id"],  # same expiry as soon_grant: promotional first
        soon_grant["id"],
        never_promo["id"],  # never-expiring last, promotional first
        never_grant["id"],
    ]
    assert body["total_credits"] == 160

    assert (await consume(client, org, 110, "first")).json() == {"total_credits": 50}
    body = await credits(client, org)
    assert remaining_by_id(body) == {
        soon_promo["id"]: 10,
        soon_grant["id"]: 20,
        never_promo["id"]: 10,
        never_grant["id"]: 10,
    }
    assert (await consume(client, org, 35, "second")).json() == {"total_credits": 15}
    body = await credits(client, org)
    assert remaining_by_id(body) == {never_promo["id"]: 5, never_grant["id"]: 10}
    assert ledger_sum(body) == Decimal(15) == body["total_credits"]
    # One ledger entry per movement: a consume spanning three grants is one entry.
    assert [e["amount"] for e in body["ledger"] if e["kind"] == "consume"] == [-35, -110]
    assert await profile_credits(client, org) == 15


async def _wait_until(at: datetime) -> None:
    await asyncio.sleep(max(0.0, (at - utcnow()).total_seconds()) + 0.05)


async def test_an_expired_remainder_stops_counting_at_expires_at_and_is_entered_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    expires_at = utcnow() + timedelta(seconds=1.5)
    granted = await admin_grant(
        client, admin, org, amount=50, kind="promotional", expires_at=isoformat_z(expires_at)
    )
    assert granted["total_credits"] == 150
    assert (await consume(client, org, 10, "before")).json() == {"total_credits": 140}
    assert remaining_by_id(await credits(client, org))[granted["grant"]["id"]] == 40

    await _wait_until(expires_at)
    body = await credits(client, org)
    assert body["total_credits"] == 100 and await profile_credits(client, org) == 100
    assert granted["grant"]["id"] not in remaining_by_id(body)
    [pending] = [e for e in body["ledger"] if e["kind"] == "expiry"]
    assert pending["pending"] is True and pending["amount"] == -40
    assert pending["grant_id"] == granted["grant"]["id"]
    assert ledger_sum(body) == Decimal(100)  # the ledger sums to the balance, even before

    # Two writes after expiry: the expiry entry is written by the first, exactly once.
    results = await asyncio.gather(*(consume(client, org, 1, f"after-{i}") for i in range(2)))
    assert sorted(r.json()["total_credits"] for r in results) == [98, 99]
    body = await credits(client, org)
    [expiry] = [e for e in body["ledger"] if e["kind"] == "expiry"]
    assert expiry["id"] == pending["id"] and expiry["pending"] is False
    assert expiry["amount"] == -40 and expiry["created_at"] == isoformat_z(expires_at)
    assert body["total_credits"] == 98 == ledger_sum(body)
    assert await profile_credits(client, org) == 98


async def test_admin_grants_take_kind_and_a_future_expiry(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    url = f"{API}/admin/organizations/{org.id}/credits"
    past = isoformat_z(utcnow() - timedelta(seconds=1))
    for bad in (
        {"kind": "monthly"},
        {"kind": "purchase"},
        {"expires_at": past},
        {"expires_at": "2030-01-01T00:00:00"},  # no timezone
        {"expires_at": "not a time"},
    ):
        response = await client.post(
            url, json={"amount": 5, "reason": "x", **bad}, headers=admin.headers
        )
        assert_error(response, 422, "validation_error")
    granted = await admin_grant(
        client, admin, org, amount=5, kind="promotional", expires_at="2030-01-01T01:00:00+01:00"
    )
    assert granted["grant"]["kind"] == "promotional" and granted["entry"]["kind"] == "promotional"
    assert granted["grant"]["expires_at"] == "2030-01-01T00:00:00Z"
    assert granted["entry"]["grant_id"] == granted["grant"]["id"]
    assert (await credits(client, org))["total_credits"] == 105
