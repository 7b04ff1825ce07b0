"""The credit ledger: monthly grants, consumption, admin grants, and the profile's balance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import (
    API,
    OrgHandle,
    assert_error,
    create_org,
    create_superadmin_user,
)


async def consume(
    client: httpx.AsyncClient, org: OrgHandle, amount: Any, key: str
) -> httpx.Response:
    return await client.post(
        f"{API}/credits/consume",
        json={"amount": amount, "idempotency_key": key, "reason": "test"},
        headers=org.key_headers,
    )


async def credits(client: httpx.AsyncClient, org: OrgHandle) -> dict[str, Any]:
    response = await client.get(f"{API}/credits?limit=200", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return response.json()


async def profile_credits(client: httpx.AsyncClient, org: OrgHandle) -> Any:
    response = await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return response.json()["total_credits"]


def ledger_sum(body: dict[str, Any]) -> Decimal:
    return sum((Decimal(str(entry["amount"])) for entry in body["ledger"]), Decimal(0))


async def test_monthly_credits_show_at_once_and_are_granted_once_per_period(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)  # free: 100 monthly credits, capped at 1000
    assert await profile_credits(client, org) == 100
    before = await credits(client, org)
    assert before["total_credits"] == 100 and before["pending_monthly_grant"] == 100
    assert before["max_credits"] == 1000 and before["extra_credit_price"] == 0.05
    # Shown before it is written: as a grant and as a pending ledger entry, with their ids.
    [pending_grant] = before["grants"]
    assert pending_grant["kind"] == "monthly" and pending_grant["remaining"] == 100
    [pending_entry] = before["ledger"]
    assert pending_entry["pending"] is True and pending_entry["kind"] == "monthly"
    assert pending_entry["grant_id"] == pending_grant["id"]
    assert ledger_sum(before) == Decimal(100)

    for key in ("a", "b"):
        assert (await consume(client, org, 10, key)).status_code == 200
    after = await credits(client, org)
    assert after["total_credits"] == 80 and after["pending_monthly_grant"] == 0
    monthly = [e for e in after["ledger"] if e["kind"] == "monthly"]
    assert len(monthly) == 1 and monthly[0]["amount"] == 100
    assert monthly[0]["id"] == pending_entry["id"] and monthly[0]["pending"] is False
    assert monthly[0]["idempotency_key"].startswith("monthly-credits:")
    assert [(g["id"], g["remaining"]) for g in after["grants"]] == [(pending_grant["id"], 80)]
    assert ledger_sum(after) == Decimal(80)
    assert await profile_credits(client, org) == 80


async def test_consume_is_idempotent_exact_and_never_below_zero(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    first = await consume(client, org, 30, "k1")
    assert first.status_code == 200 and first.json() == {"total_credits": 70}
    replay = await consume(client, org, 30, "k1")
    assert replay.json() == {"total_credits": 70}
    assert_error(await consume(client, org, 31, "k1"), 409, "conflict")

    refused = await consume(client, org, 70.0001, "k2")
    error = assert_error(refused, 402, "insufficient_credits")
    assert error["details"]["available"] == "70.0000"
    for index in range(3):  # decimals stay exact: three 0.1s are 0.3, not 0.30000000000000004
        assert (await consume(client, org, "0.1", f"tenth-{index}")).status_code == 200
    assert (await consume(client, org, "69.7", "rest")).json() == {"total_credits": 0}
    assert_error(await consume(client, org, "0.0001", "k3"), 402, "insufficient_credits")
    # The refused consume left its key free.
    body = await credits(client, org)
    assert body["total_credits"] == 0 and ledger_sum(body) == 0
    assert "k2" not in {e["idempotency_key"] for e in body["ledger"]}

    for bad in (0, -5, "abc", 1.23456, 10**10):
        assert_error(await consume(client, org, bad, "bad"), 422, "validation_error")


async def test_admin_grant_is_audited_and_capped_by_max_credits(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    admin = await create_superadmin_user(client, settings)
    url = f"{API}/admin/organizations/{org.id}/credits"
    granted = await client.post(
        url, json={"amount": 500, "reason": "goodwill"}, headers=admin.headers
    )
    assert granted.status_code == 201, granted.text
    assert granted.json()["total_credits"] == 600  # 100 monthly + 500
    assert granted.json()["entry"]["kind"] == "grant"

    over = await client.post(url, json={"amount": 401, "reason": "too much"}, headers=admin.headers)
    error = assert_error(over, 403, "limit_exceeded")
    assert error["details"]["limit"] == "max_credits"
    to_cap = await client.post(
        url, json={"amount": 400, "reason": "to the cap"}, headers=admin.headers
    )
    assert to_cap.json()["total_credits"] == 1000

    audit = await client.get(
        f"{API}/admin/audit-log", params={"organization_id": org.id}, headers=admin.headers
    )
    entries = [e for e in audit.json()["data"] if e["action"] == "credits.grant"]
    assert len(entries) == 2 and {e["details"]["reason"] for e in entries} == {
        "goodwill",
        "to the cap",
    }
    assert ledger_sum(await credits(client, org)) == Decimal(1000)

    assert_error(
        await client.post(url, json={"amount": 1, "reason": "x"}, headers=org.owner.headers),
        403,
        "forbidden",
    )
    assert_error(
        await client.post(url, json={"amount": 0, "reason": "x"}, headers=admin.headers),
        422,
        "validation_error",
    )
    missing = f"{API}/admin/organizations/00000000-0000-4000-8000-000000000000/credits"
    assert_error(
        await client.post(missing, json={"amount": 1, "reason": "x"}, headers=admin.headers),
        404,
        "not_found",
    )
