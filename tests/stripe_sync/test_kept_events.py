"""Events kept `unmatched` for a customer nobody had linked are applied, in order, in the
transaction that links it (a checkout completion or a customer event), in both API eras."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.factories import API, create_org
from tests.fixtures.stripe import (
    customer_event,
    deliver,
    event,
    invoice_event,
    new_id,
    subscription_event,
)
from tests.stripe_sync.helpers import customer_of, inbox_row, subscription_row


def _linking_event(link_by: str, org_id: str, customer: str, sub_id: str) -> dict[str, Any]:
    created = int(time.time())
    if link_by == "customer":
        return customer_event("customer.updated", customer=customer, created=created, org_id=org_id)
    checkout = {
        "id": new_id("cs"),
        "object": "checkout.session",
        "mode": "subscription",
        "client_reference_id": org_id,
        "customer": customer,
        "subscription": sub_id,
        "metadata": {},
    }
    return event("checkout.session.completed", checkout, created, "2025-03-31.basil")


@pytest.mark.parametrize("link_by", ["checkout", "customer"])
@pytest.mark.parametrize("era", ["new", "old"])
async def test_kept_events_apply_in_order_in_the_transaction_that_links_the_customer(
    client: httpx.AsyncClient, app: FastAPI, era: str, link_by: str
) -> None:
    org = await create_org(client)
    customer, other_customer, sub_id = new_id("cus"), new_id("cus"), new_id("sub")
    t0 = int(time.time()) - 60
    sub = {"sub_id": sub_id, "customer": customer, "era": era}  # no metadata: nobody to match
    active = subscription_event("customer.subscription.updated", status="active", created=t0, **sub)
    incomplete = subscription_event(
        "customer.subscription.created", status="incomplete", created=t0, **sub
    )
    older = subscription_event(
        "customer.subscription.updated", status="active", created=t0 + 1, **sub
    )
    newest = subscription_event(
        "customer.subscription.updated",
        status="active",
        created=t0 + 2,
        cancel_at_period_end=True,
        **sub,
    )
    invoice_id = new_id("in")
    paid = invoice_event(
        "invoice.paid",
        invoice_id=invoice_id,
        customer=customer,
        sub_id=sub_id,
        status="paid",
        created=t0 + 1,
        era=era,
    )
    elsewhere = subscription_event(
        "customer.subscription.created",
        sub_id=new_id("sub"),
        customer=other_customer,
        status="active",
        created=t0,
        era=era,
    )
    # Delivered out of order, as Stripe may: the same-second pair reversed, the newest early.
    kept = [active, newest, incomplete, paid, older, elsewhere]
    for payload in kept:
        response = await deliver(client, payload)
        assert response.json()["status"] == "unmatched", response.text
    assert await subscription_row(app, sub_id) is None

    linking = await deliver(client, _linking_event(link_by, org.id, customer, sub_id))
    assert linking.status_code == 200 and linking.json()["status"] == "processed"
    assert await customer_of(app, org.id) == customer

    row = await subscription_row(app, sub_id)
    assert row is not None and row.organization_id is not None
    assert (row.status, row.cancel_at_period_end) == ("active", True)
    assert row.stripe_event_created is not None
    assert int(row.stripe_event_created.timestamp()) == t0 + 2
    statuses = {p["id"]: (await inbox_row(app, p["id"])) for p in kept}
    assert {k: v.status for k, v in statuses.items() if v} == {
        active["id"]: "processed",
        newest["id"]: "processed",
        incomplete["id"]: "ignored",  # same second as active, an earlier stage
        paid["id"]: "processed",
        older["id"]: "processed",  # applied before the newest: in Stripe's order
        elsewhere["id"]: "unmatched",  # another customer's: still waiting
    }
    profile = await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    assert profile.json()["plan_source"] == "stripe" and profile.json()["sub_status"] == "active"
    invoices = await client.get(f"{API}/billing/invoices", headers=org.key_headers)
    assert [i["stripe_invoice_id"] for i in invoices.json()["data"]] == [invoice_id]
    # Each kept event was applied once more (its first try kept it); the other is untouched.
    attempts = {k: v.attempts for k, v in statuses.items() if v}
    assert attempts[active["id"]] == 2 and attempts[elsewhere["id"]] == 1
