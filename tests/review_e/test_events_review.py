"""Events a product receives: each real change announced once, nothing for a non-change."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API
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
    # CONTRACT: "an event emitted twice for one change" is a defect; Stripe replays change
    # nothing. One invoice.payment_failed from Stripe is one failed payment: replaying the
    # already-processed inbox row (an admin action) must not tell the product it failed twice.
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
    # CONTRACT: credits.low "once on falling below 10% of max_credits"; README: again after it
    # has risen back above. Free plan: 100 monthly credits, max_credits 1000, mark 100.
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
