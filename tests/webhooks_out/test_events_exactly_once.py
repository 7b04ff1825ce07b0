"""Events a product receives: each real change announced once, nothing for a non-change."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, create_api_key
from tests.fixtures.stripe import deliver, invoice_event, new_id, subscription_event
from tests.fixtures.webhook_receiver import Receiver
from tests.webhooks_out.helpers import of_type, org_with_endpoint, payloads


async def _settle(receiver: Receiver, path: str, count: int) -> list[dict[str, Any]]:
    """Waits for `count` deliveries, then a little longer so any extra one arrives too."""
    await receiver.wait_for(path, count)
    await asyncio.sleep(0.6)
    return payloads(receiver.at(path))


async def test_admin_replay_of_a_processed_payment_failed_event_does_not_announce_it_again(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    # One invoice.payment_failed from Stripe is one failed payment: an admin replay of the
    # already-processed inbox row changes nothing and announces nothing again.
    admin, org, _, path = await org_with_endpoint(
        client, settings, receiver, ["invoice.payment_failed"]
    )
    sub_id, customer, now = new_id("sub"), new_id("cus"), int(time.time())
    created = subscription_event(
        "customer.subscription.created",
        sub_id=sub_id,
        customer=customer,
        status="active",
        created=now,
        org_id=org.id,
    )
    assert (await deliver(client, created)).status_code == 200
    failed = invoice_event(
        "invoice.payment_failed",
        invoice_id=new_id("in"),
        customer=customer,
        sub_id=sub_id,
        status="open",
        created=now,
    )
    delivered = await deliver(client, failed)
    assert delivered.status_code == 200 and delivered.json()["status"] == "processed"
    await receiver.wait_for(path, 1)
    replayed = await client.post(
        f"{API}/admin/stripe/events/{failed['id']}/replay", headers=admin.headers
    )
    assert replayed.status_code == 200, replayed.text
    events = await _settle(receiver, path, 2)
    assert [e["type"] for e in events] == ["invoice.payment_failed"]


async def test_credits_low_again_when_an_expiry_takes_the_balance_back_below_the_mark(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    # credits.low once per fall below 10% of max_credits, again after the balance rose back
    # above; an expiry is a fall like a consume. Free plan: 100 monthly credits, max_credits
    # 1000, mark 100.
    admin, org, _, path = await org_with_endpoint(client, settings, receiver, ["credits.low"])

    async def consume(amount: str, key: str) -> None:
        response = await client.post(
            f"{API}/credits/consume",
            json={"amount": amount, "idempotency_key": key},
            headers=org.key_headers,
        )
        assert response.status_code == 200, response.text

    await consume("20", "below-1")  # 100 -> 80: the first fall below the mark
    await receiver.wait_for(path, 1)
    expires = datetime.now(UTC) + timedelta(seconds=2)
    granted = await client.post(
        f"{API}/admin/organizations/{org.id}/credits",
        json={"amount": "60", "reason": "short trial", "expires_at": expires.isoformat()},
        headers=admin.headers,
    )
    assert granted.status_code == 201, granted.text  # 140: back above the mark
    await asyncio.sleep(2.5)  # the 60 expire: the balance is 80 again, below the mark
    await consume("1", "below-2")  # records the expiry and spends: 79
    credits = await client.get(f"{API}/credits", headers=org.key_headers)
    assert credits.json()["total_credits"] == 79, credits.text
    events = await _settle(receiver, path, 2)
    lows = of_type(receiver.at(path), "credits.low")
    assert len(lows) == 2, [e["type"] for e in events]


async def test_a_patch_that_changes_nothing_sends_no_organization_updated(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    # organization.updated is for a change: the owner's PATCH resending the org's current name
    # sends nothing (as the admin PATCH does not).
    admin, org, _, path = await org_with_endpoint(
        client, settings, receiver, ["organization.updated"]
    )
    current = (await client.get(f"{API}/organizations/{org.id}", headers=org.owner.headers)).json()
    name = current["organization"]["name"]
    same = await client.patch(
        f"{API}/organizations/{org.id}", json={"name": name}, headers=org.owner.headers
    )
    assert same.status_code == 200, same.text
    admin_same = await client.patch(
        f"{API}/admin/organizations/{org.id}", json={"kyc_level": 0}, headers=admin.headers
    )
    assert admin_same.status_code == 200, admin_same.text
    # A real change afterwards, so the test knows delivery is running.
    real = await client.patch(
        f"{API}/organizations/{org.id}", json={"name": name + " renamed"}, headers=org.owner.headers
    )
    assert real.status_code == 200
    events = await _settle(receiver, path, 1)
    assert [e["data"]["name"] for e in events] == [name + " renamed"]


async def test_deleting_an_org_does_not_announce_revoking_a_key_that_already_expired(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    # Deleting the org sends api_key.revoked for each key that still worked: one past its
    # expires_at had stopped on its own.
    _, org, _, path = await org_with_endpoint(client, settings, receiver, ["api_key.revoked"])
    expiring = await create_api_key(
        client,
        org.owner,
        org.id,
        name="short lived",
        expires_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
    )
    await asyncio.sleep(1.5)
    refused = await client.get(
        f"{API}/organizations/profile/{org.id}", headers={"X-Api-Key": expiring["key"]}
    )
    assert refused.status_code == 401  # it already stopped working
    deleted = await client.delete(f"{API}/organizations/{org.id}", headers=org.owner.headers)
    assert deleted.status_code == 204
    events = await _settle(receiver, path, 1)
    assert [e["data"]["id"] for e in events] == [org.api_key_id]


_VERSION = iter(range(50_000, 60_000))
