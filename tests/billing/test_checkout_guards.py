"""Checkout's guards: a customer Stripe deleted is replaced by a new one (not replayed under
the first customer's idempotency key), and an org whose subscription still bills cannot start
a second one through checkout (409: plan changes go through the billing portal)."""

from __future__ import annotations

import time

import httpx
from fastapi import FastAPI

from tests.fixtures.factories import API, assert_error, create_org
from tests.fixtures.stripe import FakeStripe, customer_event, deliver, new_id, subscription_event
from tests.stripe_sync.helpers import customer_of

URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}


async def test_checkout_after_stripe_deleted_the_customer_uses_a_new_customer(
    stripe_client: httpx.AsyncClient, stripe_app: FastAPI, stripe_api: FakeStripe
) -> None:
    """customer.deleted unlinks the org's customer; the next checkout creates a new one under
    a new idempotency key (under the first, Stripe replays the deleted customer for a day)."""
    org = await create_org(stripe_client)
    first = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": "pro", **URLS}, headers=org.key_headers
    )
    assert first.status_code == 200, first.text
    deleted_customer = await customer_of(stripe_app, org.id)
    assert deleted_customer is not None
    gone = customer_event(
        "customer.deleted", customer=deleted_customer, created=int(time.time()), org_id=org.id
    )
    assert (await deliver(stripe_client, gone)).json()["status"] == "processed"
    assert await customer_of(stripe_app, org.id) is None

    again = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": "pro", **URLS}, headers=org.key_headers
    )
    assert again.status_code == 200, again.text
    relinked = await customer_of(stripe_app, org.id)
    assert relinked is not None
    assert relinked != deleted_customer
    assert stripe_api.calls("/v1/checkout/sessions")[-1].form["customer"] != deleted_customer
    keys = [call.headers["idempotency-key"] for call in stripe_api.calls("/v1/customers")]
    assert keys[-1] == f"orgbill-customer-{org.id}-after-{deleted_customer}", keys


async def test_checkout_for_an_org_already_paying_does_not_start_a_second_subscription(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe
) -> None:
    """Checkout in `subscription` mode always creates a new Stripe subscription: an org on an
    active pro subscription opening checkout for business would be billed for both. It is
    409 `conflict` (plan changes go through the billing portal), and Stripe is not called."""
    org = await create_org(stripe_client)
    first = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": "pro", **URLS}, headers=org.key_headers
    )
    assert first.status_code == 200, first.text
    customer = stripe_api.calls("/v1/checkout/sessions")[-1].form["customer"]
    sub_id = new_id("sub")
    active = subscription_event(
        "customer.subscription.created",
        sub_id=sub_id,
        customer=customer,
        status="active",
        created=int(time.time()),
        org_id=org.id,
    )
    assert (await deliver(stripe_client, active)).json()["status"] == "processed"
    subscription = await stripe_client.get(f"{API}/billing/subscription", headers=org.key_headers)
    assert subscription.status_code == 200 and subscription.json()["status"] == "active"
    sessions_before = len(stripe_api.calls("/v1/checkout/sessions"))
    again = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": "business", **URLS}, headers=org.key_headers
    )
    assert len(stripe_api.calls("/v1/checkout/sessions")) == sessions_before
    assert "billing portal" in assert_error(again, 409, "conflict")["message"]
    # Once it no longer bills, checkout starts a new subscription again.
    ended = subscription_event(
        "customer.subscription.deleted",
        sub_id=sub_id,
        customer=customer,
        status="canceled",
        created=int(time.time()) + 1,
        org_id=org.id,
    )
    assert (await deliver(stripe_client, ended)).json()["status"] == "processed"
    resumed = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": "business", **URLS}, headers=org.key_headers
    )
    assert resumed.status_code == 200, resumed.text
