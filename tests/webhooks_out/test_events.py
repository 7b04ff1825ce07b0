"""Every event type's payload, from the change that causes it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import (
    API,
    create_api_key,
    create_superadmin_user,
    register_user,
)
from tests.fixtures.stripe import deliver, invoice_event, new_id, subscription_event
from tests.fixtures.webhook_receiver import Receiver
from tests.webhooks_out.helpers import endpoint_for, org_with_endpoint, payloads, verified


async def _events(receiver: Receiver, path: str, count: int) -> list[dict[str, Any]]:
    received = await receiver.wait_for(path, count)
    assert len(received) >= count, payloads(received)
    return payloads(received)


async def _only(
    receiver: Receiver, path: str, event_type: str, count: int = 1
) -> list[dict[str, Any]]:
    got = [p for p in await _events(receiver, path, count) if p["type"] == event_type]
    assert len(got) == count, got
    return [p["data"] for p in got]


async def test_organization_created_carries_the_organization_object(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin = await create_superadmin_user(client, settings)
    endpoint, path = await endpoint_for(client, admin, receiver, None, ["organization.created"])
    owner = await register_user(client, "owner")
    created = await client.post(
        f"{API}/organizations", json={"name": "Brand New"}, headers=owner.headers
    )
    assert created.status_code == 201
    org_id = created.json()["id"]
    deadline = time.monotonic() + 10
    mine: list[dict[str, Any]] = []
    while not mine and time.monotonic() < deadline:
        mine = [
            verified(r, endpoint["secret"])
            for r in receiver.at(path)
            if verified(r, endpoint["secret"])["data"]["id"] == org_id
        ]
        await asyncio.sleep(0.02)
    [event] = mine
    assert event["type"] == "organization.created"
    assert event["data"] == {**created.json(), "organization_id": org_id}


async def test_organization_suspended_reactivated_and_deleted(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin, org, _, path = await org_with_endpoint(client, settings, receiver, ["*"])
    admin_url = f"{API}/admin/organizations/{org.id}"
    suspended = await client.patch(admin_url, json={"is_suspended": True}, headers=admin.headers)
    assert suspended.status_code == 200, suspended.text
    reactivated = await client.patch(admin_url, json={"status": "ACTIVE"}, headers=admin.headers)
    assert reactivated.status_code == 200
    placed = await client.patch(admin_url, json={"kyc_level": 2}, headers=admin.headers)
    assert placed.status_code == 200
    deleted = await client.delete(f"{API}/organizations/{org.id}", headers=org.owner.headers)
    assert deleted.status_code == 204
    events = await _events(receiver, path, 5)
    assert [e["type"] for e in events] == [
        "organization.suspended",
        "organization.reactivated",
        "organization.updated",
        "api_key.revoked",  # deleting the org revokes its keys, each announced
        "organization.deleted",
    ]
    assert events[0]["data"]["status"] == "SUSPENDED" and events[0]["data"]["is_suspended"]
    assert events[1]["data"]["status"] == "ACTIVE"
    assert events[2]["data"]["kyc_level"] == 2
    assert events[3]["data"]["id"] == org.api_key_id
    assert events[4]["data"]["status"] == "DELETED" and events[4]["data"]["is_deleted"]
    assert all(e["data"]["organization_id"] == org.id for e in events)
    assert events[0]["data"] == {**suspended.json(), "organization_id": org.id}


async def test_api_key_created_and_revoked_carry_id_and_prefix_never_the_key(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    _, org, _, path = await org_with_endpoint(
        client, settings, receiver, ["api_key.created", "api_key.revoked"]
    )
    key = await create_api_key(client, org.owner, org.id, name="events key")
    revoked = await client.delete(
        f"{API}/organizations/{org.id}/api-keys/{key['id']}", headers=org.owner.headers
    )
    assert revoked.status_code == 204
    regenerated = await client.post(f"{API}/organization/regenerate-key", headers=org.key_headers)
    assert regenerated.status_code == 200, regenerated.text
    events = await _events(receiver, path, 4)
    assert [e["type"] for e in events] == [
        "api_key.created",
        "api_key.revoked",
        "api_key.revoked",
        "api_key.created",
    ]
    created = events[0]["data"]
    assert created == {
        "organization_id": org.id,
        "id": key["id"],
        "prefix": key["prefix"],
        "name": "events key",
    }
    assert events[1]["data"]["id"] == key["id"]
    assert events[2]["data"]["id"] == org.api_key_id
    assert events[3]["data"]["prefix"] == regenerated.json()["api_key_prefix"]
    for received in await receiver.wait_for(path, 4):
        assert key["key"].encode() not in received.body
        assert regenerated.json()["api_key"].encode() not in received.body


async def test_deleting_an_org_announces_each_key_it_revokes_and_only_those(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    _, org, _, path = await org_with_endpoint(client, settings, receiver, ["api_key.revoked"])
    live = await create_api_key(client, org.owner, org.id, name="still live")
    gone = await create_api_key(client, org.owner, org.id, name="revoked first")
    keys_url = f"{API}/organizations/{org.id}/api-keys"
    revoked = await client.delete(f"{keys_url}/{gone['id']}", headers=org.owner.headers)
    assert revoked.status_code == 204
    deleted = await client.delete(f"{API}/organizations/{org.id}", headers=org.owner.headers)
    assert deleted.status_code == 204
    events = await _events(receiver, path, 3)
    assert [e["type"] for e in events] == ["api_key.revoked"] * 3
    assert events[0]["data"]["id"] == gone["id"]
    # The org's deletion: its two live keys, once each; the key revoked before, not again.
    assert sorted(e["data"]["id"] for e in events[1:]) == sorted([org.api_key_id, live["id"]])
    assert {e["data"]["prefix"] for e in events[1:]} >= {live["prefix"]}
    await asyncio.sleep(0.3)
    assert len(receiver.at(path)) == 3  # nothing more arrives
    for key in (live, gone):
        refused = await client.get(
            f"{API}/organizations/profile/{org.id}", headers={"X-Api-Key": key["key"]}
        )
        assert refused.status_code == 401


async def test_stripe_webhooks_emit_subscription_invoice_and_plan_events(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    _, org, _, path = await org_with_endpoint(client, settings, receiver, ["*"])
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
    invoice_id = new_id("in")
    failed = invoice_event(
        "invoice.payment_failed",
        invoice_id=invoice_id,
        customer=customer,
        sub_id=sub_id,
        status="open",
        created=now,
    )
    assert (await deliver(client, failed)).status_code == 200
    paid = invoice_event(
        "invoice.paid",
        invoice_id=invoice_id,
        customer=customer,
        sub_id=sub_id,
        status="paid",
        created=now + 1,
    )
    assert (await deliver(client, paid)).status_code == 200
    # A replay changes nothing and sends nothing.
    assert (await deliver(client, paid)).status_code == 200
    events = await _events(receiver, path, 4)
    await asyncio.sleep(0.3)
    events = payloads(receiver.at(path))
    assert [e["type"] for e in events] == [
        "subscription.updated",
        "organization.plan_changed",
        "invoice.payment_failed",
        "invoice.paid",
    ]
    subscription = events[0]["data"]
    assert subscription["organization_id"] == org.id
    assert subscription["stripe_subscription_id"] == sub_id
    assert subscription["plan"] == "pro"
    assert subscription["status"] == "active"
    assert subscription["cancel_at_period_end"] is False
    assert subscription["current_period_end"].endswith("Z")
    assert events[1]["data"] == {
        "organization_id": org.id,
        "from": "free",
        "to": "pro",
        "plan_source": "stripe",
        "previous_plan_source": "free",
    }
    for invoice in (events[2]["data"], events[3]["data"]):
        assert invoice["organization_id"] == org.id
        assert invoice["stripe_invoice_id"] == invoice_id
        assert invoice["amount"] == 2900 and invoice["currency"] == "usd"
    assert events[2]["data"]["status"] == "open"
    assert events[3]["data"]["status"] == "paid"
    listed = await client.get(f"{API}/billing/invoices", headers=org.key_headers)
    assert events[3]["data"]["id"] == listed.json()["data"][0]["id"]


async def test_plan_changed_follows_contracts_and_admin_changes(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    admin, org, _, path = await org_with_endpoint(
        client, settings, receiver, ["organization.plan_changed"]
    )
    contract_url = f"{API}/admin/organizations/{org.id}/enterprise"
    started = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    put = await client.put(contract_url, json={"starts_at": started}, headers=admin.headers)
    assert put.status_code == 200
    # A contract change that keeps the plan announces nothing.
    again = await client.put(
        contract_url,
        json={"starts_at": started, "overrides": {"max_members": 50}},
        headers=admin.headers,
    )
    assert again.status_code == 200
    removed = await client.delete(contract_url, headers=admin.headers)
    assert removed.status_code == 204
    events = await _events(receiver, path, 2)
    await asyncio.sleep(0.3)
    assert [(e["data"]["from"], e["data"]["to"]) for e in payloads(receiver.at(path))] == [
        ("free", "enterprise"),
        ("enterprise", "free"),
    ]
    assert events[0]["data"]["plan_source"] == "enterprise"
    assert events[1]["data"]["plan_source"] == "free"


async def test_usage_threshold_crossed_once_per_metric_threshold_and_period(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    _, org, _, path = await org_with_endpoint(
        client, settings, receiver, ["usage.threshold_crossed"]
    )

    async def use(metric: str, quantity: int) -> None:
        response = await client.post(
            f"{API}/usage/events",
            json={"events": [{"metric": metric, "quantity": quantity}]},
            headers=org.key_headers,
        )
        assert response.status_code == 200, response.text

    await use("turns", 399)  # 79.8% of the free plan's 500: nothing yet
    await use("turns", 1)  # 80%
    await use("turns", 100)  # 100%
    await use("agents", 2)  # 80% and 100% of max_agents 2 at once
    await use("agents", -2)
    await use("agents", 2)  # crossed again in the same period: not announced again
    data = await _only(receiver, path, "usage.threshold_crossed", 4)
    await asyncio.sleep(0.3)
    assert len(receiver.at(path)) == 4
    usage = await client.get(f"{API}/usage", headers=org.key_headers)
    period_end = usage.json()["period_end"]
    assert [(d["metric"], d["percentage"], d["used"], d["limit"]) for d in data] == [
        ("turns", 80, 400, 500),
        ("turns", 100, 500, 500),
        ("agents", 80, 2, 2),
        ("agents", 100, 2, 2),
    ]
    assert all(d["organization_id"] == org.id for d in data)
    assert {d["period_end"] for d in data} == {period_end}


async def test_committed_reservation_announces_the_threshold_it_crosses(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    _, org, _, path = await org_with_endpoint(
        client, settings, receiver, ["usage.threshold_crossed"]
    )
    held = await client.post(
        f"{API}/check",
        json={"metric": "turns", "quantity": 400, "reserve": True},
        headers=org.key_headers,
    )
    assert held.status_code == 200 and held.json()["allowed"], held.text
    reservation_id = held.json()["reservation"]["id"]
    # A hold is not usage: nothing is announced until it is committed.
    await asyncio.sleep(0.3)
    assert receiver.at(path) == []
    committed = await client.post(
        f"{API}/reservations/{reservation_id}/commit", json={}, headers=org.key_headers
    )
    assert committed.status_code == 200, committed.text
    [data] = await _only(receiver, path, "usage.threshold_crossed", 1)
    assert (data["metric"], data["percentage"], data["used"], data["limit"]) == (
        "turns",
        80,
        400,
        500,
    )


async def test_credits_low_once_on_falling_below_ten_percent_of_max_credits(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    _, org, _, path = await org_with_endpoint(client, settings, receiver, ["credits.low"])

    async def consume(amount: str, key: str) -> dict[str, Any]:
        response = await client.post(
            f"{API}/credits/consume",
            json={"amount": amount, "idempotency_key": key},
            headers=org.key_headers,
        )
        assert response.status_code == 200, response.text
        return response.json()

    # The free plan: 100 monthly credits, max_credits 1000; the mark is 100.
    await consume("1", "first")
    await consume("1", "second")
    data = await _only(receiver, path, "credits.low", 1)
    await asyncio.sleep(0.3)
    assert len(receiver.at(path)) == 1
    assert data[0] == {"organization_id": org.id, "total_credits": 99, "max_credits": 1000}
