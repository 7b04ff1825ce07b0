"""Stripe sync against its own reads and a deleted customer: a state `stripe sync` read ties with
an event of the same second, a customer Stripe deleted is never linked again, and a signed
body whose times no datetime can hold is not an event (400)."""

from __future__ import annotations

import time

import httpx
from fastapi import FastAPI

from orgbill.stripe_sync.client import StripeGateway
from orgbill.stripe_sync.reconcile import Reconciler
from tests.fixtures.factories import API, OrgHandle, assert_error, create_org
from tests.fixtures.stripe import (
    WEBHOOK_URL,
    FakeStripe,
    customer_event,
    deliver,
    event,
    new_id,
    signed,
    subscription_event,
)
from tests.stripe_sync.helpers import customer_of, subscription_row


def _now() -> int:
    return int(time.time())


async def _plan_source(client: httpx.AsyncClient, org: OrgHandle) -> str:
    response = await client.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return response.json()["plan_source"]


async def test_a_cancellation_in_the_same_second_as_a_stripe_sync_read_is_not_lost(
    stripe_client: httpx.AsyncClient, stripe_app: FastAPI, stripe_api: FakeStripe
) -> None:
    """`stripe sync` reads the subscription active; Stripe then cancels it, stamping the
    event with the second of the read. The read is stamped on Stripe's clock (whole seconds),
    so the two tie and the same-second rule applies (canceled is terminal): the cancellation
    is applied and the org falls to free. (Stamped with microseconds, the read counted as
    newer and the cancellation was dropped as stale.)"""
    org = await create_org(stripe_client)
    sub_id, customer = new_id("sub"), new_id("cus")
    active = subscription_event(
        "customer.subscription.updated",
        sub_id=sub_id,
        customer=customer,
        status="active",
        created=_now() - 60,
        org_id=org.id,
    )["data"]["object"]
    stripe_api.listed["/v1/subscriptions"] = [active]
    gateway = StripeGateway("sk_test_fake", api_base=stripe_api.url, max_network_retries=0)
    reconciler = Reconciler(stripe_app.state.database, gateway, stripe_app.state.catalog_store)
    try:
        report = await reconciler.run()
    finally:
        stripe_api.listed.clear()
    assert report.counts["subscription.created"] == 1, report.as_dict()
    row = await subscription_row(stripe_app, sub_id)
    assert row is not None and row.status == "active"
    assert await _plan_source(stripe_client, org) == "stripe"
    # Stripe's clock: whole seconds, the second the sync read the subscription in.
    read_at = row.stripe_event_created
    assert read_at is not None
    second = int(read_at.timestamp())
    canceled = subscription_event(
        "customer.subscription.deleted",
        sub_id=sub_id,
        customer=customer,
        status="canceled",
        created=second,
        org_id=org.id,
    )
    response = await deliver(stripe_client, canceled)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "processed", response.json()
    row = await subscription_row(stripe_app, sub_id)
    assert row is not None and row.status == "canceled"
    assert await _plan_source(stripe_client, org) == "free"


async def test_a_late_checkout_completion_does_not_relink_a_deleted_customer(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """Stripe deleted the customer; the checkout completion of an hour earlier is delivered
    after it (a retried delivery). A deletion is final: the org stays unlinked, or every
    later checkout and portal session would be refused by Stripe (`No such customer`)."""
    org = await create_org(client)
    customer, now = new_id("cus"), _now()
    linked = customer_event(
        "customer.created", customer=customer, created=now - 3600, org_id=org.id
    )
    assert (await deliver(client, linked)).json()["status"] == "processed"
    assert await customer_of(app, org.id) == customer
    deleted = customer_event("customer.deleted", customer=customer, created=now, org_id=org.id)
    assert (await deliver(client, deleted)).json()["status"] == "processed"
    assert await customer_of(app, org.id) is None
    checkout = {
        "id": new_id("cs"),
        "object": "checkout.session",
        "client_reference_id": org.id,
        "customer": customer,
        "mode": "subscription",
        "subscription": new_id("sub"),
        "metadata": {},
    }
    late = event("checkout.session.completed", checkout, now - 3500, "2025-03-31.basil")
    assert (await deliver(client, late)).status_code == 200
    assert await customer_of(app, org.id) is None


async def test_a_late_subscription_event_does_not_relink_a_deleted_customer(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """The same through the subscription insert path: a subscription first seen after its
    customer's deletion does not link that customer to the org."""
    org = await create_org(client)
    customer, now = new_id("cus"), _now()
    deleted = customer_event("customer.deleted", customer=customer, created=now, org_id=org.id)
    assert (await deliver(client, deleted)).status_code == 200
    old = subscription_event(
        "customer.subscription.created",
        sub_id=new_id("sub"),
        customer=customer,
        status="active",
        created=now - 3600,
        org_id=org.id,
    )
    assert (await deliver(client, old)).status_code == 200
    assert await customer_of(app, org.id) is None


async def test_a_signed_event_with_an_out_of_range_created_is_400_not_500(
    client: httpx.AsyncClient,
) -> None:
    """A signed body whose `created` is a number no datetime holds is not a Stripe event:
    400 like every other malformed event, not an OverflowError's 500 (which Stripe would
    retry for days)."""
    for created in (10**20, 1e300):
        payload = event(
            "customer.created",
            {"id": new_id("cus"), "object": "customer", "metadata": {}},
            created,  # type: ignore[arg-type]
            "2025-03-31.basil",
        )
        body, headers = signed(payload)
        response = await client.post(WEBHOOK_URL, content=body, headers=headers)
        assert_error(response, 400, "bad_request")
