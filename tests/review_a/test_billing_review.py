"""Review A: billing and credit checkout defects, against the fake Stripe on loopback."""

from __future__ import annotations

import time

import httpx
from fastapi import FastAPI

from orgbill.config import Settings
from tests.fixtures.factories import API, create_org, create_superadmin_user
from tests.fixtures.stripe import FakeStripe, StripeAnswer, customer_event, deliver
from tests.stripe_sync.helpers import customer_of

URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}

# What Stripe answers a Checkout session whose total is under its minimum charge amount
# ($0.50 for USD, see Stripe's "Minimum and maximum charge amounts").
BELOW_MINIMUM = StripeAnswer(
    400,
    {
        "type": "invalid_request_error",
        "message": "The Checkout Session's total amount due must add up to at least $0.50 usd",
    },
)


async def test_checkout_after_stripe_deleted_the_customer_uses_a_new_customer(
    stripe_client: httpx.AsyncClient, stripe_app: FastAPI, stripe_api: FakeStripe
) -> None:
    """customer.deleted unlinks the org's customer; the next checkout must create a new
    one. It sends the same org-keyed Idempotency-Key as the first creation, so Stripe (for
    24 h) replays the first answer: the deleted customer is linked again and every checkout
    and portal session is then refused by Stripe (`No such customer`: a 503)."""
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


async def test_buying_fewer_credits_than_stripes_minimum_charge_is_a_4xx_not_503(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe
) -> None:
    """Free plan: 0.05 USD a credit, so 5 credits are 25 cents, under Stripe's 50-cent
    minimum. Stripe refuses the session; orgbill answers 503 `unavailable` ("retry later"),
    which no retry can fix: the caller's quantity is at fault (Nothing a client can send is
    a 5xx). It should be refused as the caller's 400 (as a total under one minor unit is)."""
    org = await create_org(stripe_client)
    stripe_api.failures["/v1/checkout/sessions"] = BELOW_MINIMUM
    try:
        response = await stripe_client.post(
            f"{API}/credits/checkout", json={"quantity": 5, **URLS}, headers=org.key_headers
        )
    finally:
        stripe_api.failures.clear()
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("bad_request", "validation_error")


async def test_a_total_that_rounds_to_stripes_maximum_is_charged_not_refused(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe, settings: Settings
) -> None:
    """README: the total is computed exactly, rounded half-up once to the minor unit, and
    only a total over 99,999,999 is 400. 1 credit at 999,999.994 USD is 99,999,999.4 cents,
    which rounds to 99,999,999: chargeable. It is refused, because the unrounded amount is
    compared with the maximum."""
    org = await create_org(stripe_client)
    admin = await create_superadmin_user(stripe_client, settings)
    patched = await stripe_client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"extra_credit_price": "999999.994"}},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    response = await stripe_client.post(
        f"{API}/credits/checkout", json={"quantity": 1, **URLS}, headers=org.key_headers
    )
    assert response.status_code == 200, response.text
    form = stripe_api.calls("/v1/checkout/sessions")[-1].form
    assert form["line_items[0][price_data][unit_amount]"] == "99999999"


async def test_checkout_for_an_org_already_paying_does_not_start_a_second_subscription(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe
) -> None:
    """Checkout in `subscription` mode always creates a new Stripe subscription; it never
    changes the existing one. An org on an active pro subscription that opens checkout for
    business ends up with two live subscriptions, both billed every period (orgbill's plan
    resolution uses only one). A careful billing API refuses (409 `conflict`, change plans
    through the billing portal) rather than send the customer to pay twice."""
    from tests.fixtures.stripe import new_id, subscription_event

    org = await create_org(stripe_client)
    first = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": "pro", **URLS}, headers=org.key_headers
    )
    assert first.status_code == 200, first.text
    customer = stripe_api.calls("/v1/checkout/sessions")[-1].form["customer"]
    active = subscription_event(
        "customer.subscription.created",
        sub_id=new_id("sub"),
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
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "conflict"
