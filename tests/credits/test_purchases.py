"""Buying credits: a Stripe Checkout session in payment mode (the real SDK against a fake
Stripe on loopback), and the paid session's webhooks adding one `purchase` grant per session
however often, and in whichever form, Stripe reports it; `stripe sync` repairs a missed one."""

from __future__ import annotations

import time
from typing import Any

import httpx
from fastapi import FastAPI

from orgbill.config import Settings
from orgbill.stripe_sync.client import StripeGateway
from orgbill.stripe_sync.reconcile import Reconciler
from tests.credits.test_credits import credits, ledger_sum, profile_credits
from tests.fixtures.factories import (
    API,
    OrgHandle,
    add_member,
    assert_error,
    create_org,
    create_superadmin_user,
    register_user,
)
from tests.fixtures.stripe import (
    FakeStripe,
    checkout_session_object,
    credit_checkout_event,
    deliver,
    new_id,
)
from tests.stripe_sync.helpers import customer_of, inbox_row

URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}


async def buy(client: httpx.AsyncClient, headers: dict[str, str], quantity: Any) -> httpx.Response:
    return await client.post(
        f"{API}/credits/checkout", json={"quantity": quantity, **URLS}, headers=headers
    )


def purchases(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [grant for grant in body["grants"] if grant["kind"] == "purchase"]


async def test_credit_checkout_is_one_payment_line_item_priced_in_minor_units(
    stripe_client: httpx.AsyncClient,
    stripe_app: FastAPI,
    stripe_api: FakeStripe,
    settings: Settings,
) -> None:
    org = await create_org(stripe_client)  # free: 0.05 USD a credit, max_credits 1000
    customers_before = len(stripe_api.calls("/v1/customers"))
    response = await buy(stripe_client, org.key_headers, 250)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["session_id"].startswith("cs_test_") and body["url"].startswith("https://")
    call = stripe_api.calls("/v1/checkout/sessions")[-1]
    form = call.form
    assert form["mode"] == "payment"
    assert form["line_items[0][quantity]"] == "1"
    assert form["line_items[0][price_data][unit_amount]"] == "1250"  # 250 x 0.05 USD
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["line_items[0][price_data][product_data][name]"] == "250 credits"
    assert "line_items[1][quantity]" not in form
    assert form["metadata[organization_id]"] == org.id == form["client_reference_id"]
    assert form["metadata[orgbill_purpose]"] == "credits"
    assert form["metadata[credits]"] == "250"
    assert form["payment_intent_data[metadata][credits]"] == "250"
    assert form["success_url"] == URLS["success_url"]
    assert call.headers["idempotency-key"].startswith("orgbill-credits-checkout-")
    # The org's customer is the one billing checkout uses, created once.
    assert form["customer"] == await customer_of(stripe_app, org.id)
    assert (await buy(stripe_client, org.key_headers, 10)).status_code == 200  # 50 cents
    assert len(stripe_api.calls("/v1/customers")) == customers_before + 1
    # Nothing is granted before the payment.
    assert purchases(await credits(stripe_client, org)) == []

    # A per-credit price finer than a cent: the exact total rounds half-up once.
    admin = await create_superadmin_user(stripe_client, settings)
    patched = await stripe_client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"extra_credit_price": "0.015"}},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    assert (await buy(stripe_client, org.key_headers, 35)).status_code == 200
    form = stripe_api.calls("/v1/checkout/sessions")[-1].form
    assert form["line_items[0][price_data][unit_amount]"] == "53"  # 52.5 cents


async def test_credit_checkout_refuses_more_than_max_credits_and_non_billing_roles(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe, settings: Settings
) -> None:
    org = await create_org(stripe_client)
    sessions_before = len(stripe_api.calls("/v1/checkout/sessions"))
    error = assert_error(await buy(stripe_client, org.key_headers, 1001), 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "quantity"]
    for bad in (0, -1, 1.5, "10", None):
        assert_error(await buy(stripe_client, org.key_headers, bad), 422, "validation_error")
    member, billing = await register_user(stripe_client), await register_user(stripe_client)
    assert (await add_member(stripe_client, org, member, "member")).status_code == 201
    assert (await add_member(stripe_client, org, billing, "billing")).status_code == 201
    scoped = {"X-Organization-Id": org.id}
    assert_error(await buy(stripe_client, member.headers | scoped, 10), 403, "forbidden")
    assert len(stripe_api.calls("/v1/checkout/sessions")) == sessions_before
    assert (await buy(stripe_client, billing.headers | scoped, 1000)).status_code == 200
    # Unlimited max_credits still cannot make a payment larger than Stripe takes.
    admin = await create_superadmin_user(stripe_client, settings)
    patched = await stripe_client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"max_credits": "unlimited"}},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    sessions_before = len(stripe_api.calls("/v1/checkout/sessions"))
    assert_error(await buy(stripe_client, org.key_headers, 10**9), 400, "bad_request")
    assert len(stripe_api.calls("/v1/checkout/sessions")) == sessions_before


async def test_a_credit_price_is_bounded_and_the_largest_one_is_refused_not_a_500(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe, settings: Settings
) -> None:
    """extra_credit_price is at most 10^9 (major units per credit): past it an override is
    422 (1e30 was stored, and a checkout's total then had more digits than a Decimal
    rounds: a 500); at it, a purchase too large for one payment is 400."""
    org = await create_org(stripe_client)
    admin = await create_superadmin_user(stripe_client, settings)
    url = f"{API}/admin/organizations/{org.id}"
    for price in ("1e30", "1000000000.01", 10**10):
        body = {"limit_overrides": {"extra_credit_price": price}}
        assert_error(
            await stripe_client.patch(url, json=body, headers=admin.headers),
            422,
            "validation_error",
        )
    unbounded = {"max_credits": "unlimited", "extra_credit_price": 10**9}
    patched = await stripe_client.patch(
        url, json={"limit_overrides": unbounded}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    sessions_before = len(stripe_api.calls("/v1/checkout/sessions"))
    for quantity in (10, 10**9):
        assert_error(await buy(stripe_client, org.key_headers, quantity), 400, "bad_request")
    assert len(stripe_api.calls("/v1/checkout/sessions")) == sessions_before


async def _purchase_events(org: OrgHandle, credits_bought: int, **kwargs: Any) -> Any:
    created = int(time.time())
    return lambda event_type, **more: credit_checkout_event(
        event_type, org_id=org.id, credits=credits_bought, created=created, **(kwargs | more)
    )


async def test_a_paid_purchase_adds_one_grant_however_often_stripe_reports_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)  # free: max_credits 1000
    session_id = new_id("cs_test")
    make = await _purchase_events(org, 5000, session_id=session_id, customer=new_id("cus"))
    completed = make("checkout.session.completed")
    for _ in range(3):  # the same event delivered three times
        assert (await deliver(client, completed)).status_code == 200
    # The same session in a second completed event and in async_payment_succeeded.
    assert (await deliver(client, make("checkout.session.completed"))).status_code == 200
    succeeded = make("checkout.session.async_payment_succeeded")
    assert (await deliver(client, succeeded)).status_code == 200

    body = await credits(client, org)
    [purchase] = purchases(body)
    assert purchase["amount"] == 5000 == purchase["remaining"] and purchase["expires_at"] is None
    assert [e["amount"] for e in body["ledger"] if e["kind"] == "purchase"] == [5000]
    # Paid for, so it passes max_credits (1000) on top of this month's allowance (100).
    assert body["total_credits"] == 5100 == ledger_sum(body)
    assert await profile_credits(client, org) == 5100
    first = await inbox_row(app, completed["id"])
    assert first is not None and first.status == "processed" and "added" in (first.outcome or "")
    last = await inbox_row(app, succeeded["id"])
    assert last is not None and "already added" in (last.outcome or "")
    # Purchased credits are spent last.
    assert [g["kind"] for g in body["grants"]] == ["monthly", "purchase"]


async def test_an_unpaid_session_adds_nothing_until_its_payment_succeeds(
    client: httpx.AsyncClient,
) -> None:
    org = await create_org(client)
    make = await _purchase_events(org, 40)
    unpaid = make("checkout.session.completed", payment_status="unpaid")
    assert (await deliver(client, unpaid)).status_code == 200
    body = await credits(client, org)
    assert purchases(body) == [] and body["total_credits"] == 100
    paid = make("checkout.session.async_payment_succeeded")
    assert (await deliver(client, paid)).status_code == 200
    body = await credits(client, org)
    assert [p["amount"] for p in purchases(body)] == [40] and body["total_credits"] == 140
    assert ledger_sum(body) == 140


async def test_stripe_sync_repairs_a_missed_purchase_once(
    stripe_client: httpx.AsyncClient, stripe_app: FastAPI, stripe_api: FakeStripe
) -> None:
    org = await create_org(stripe_client)
    missed = checkout_session_object(org_id=org.id, credits=70)
    unpaid = checkout_session_object(org_id=org.id, credits=900, payment_status="unpaid")
    stripe_api.listed["/v1/checkout/sessions"] = [missed, unpaid]
    gateway = StripeGateway("sk_test_fake", api_base=stripe_api.url, max_network_retries=0)
    reconciler = Reconciler(stripe_app.state.database, gateway, stripe_app.state.catalog_store)
    try:
        report = await reconciler.run()
        assert report.counts["credit_purchase.created"] == 1
        assert any(missed["id"] in change for change in report.changes)
        again = await reconciler.run()
        assert again.counts.get("credit_purchase.created", 0) == 0
    finally:
        stripe_api.listed.clear()
    listed = stripe_api.calls("/v1/checkout/sessions")
    assert any(r.method == "GET" for r in listed)
    body = await credits(stripe_client, org)
    assert [p["amount"] for p in purchases(body)] == [70]
    assert body["total_credits"] == 170 == ledger_sum(body)
    # The webhook arriving late changes nothing more.
    late = credit_checkout_event(
        "checkout.session.completed",
        org_id=org.id,
        credits=70,
        created=int(time.time()),
        session_id=missed["id"],
    )
    assert (await deliver(stripe_client, late)).status_code == 200
    assert [p["amount"] for p in purchases(await credits(stripe_client, org))] == [70]
