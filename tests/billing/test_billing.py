"""Billing routes: checkout and portal call the real SDK against a fake Stripe endpoint that
answers with the official fixtures; reads and their auth."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from orgbill.config import Settings
from orgbill.stripe_sync.client import STRIPE_API_VERSION
from tests.fixtures.factories import (
    API,
    add_member,
    assert_error,
    create_org,
    create_superadmin_user,
    register_user,
)
from tests.fixtures.stripe import PRO_PRICE, FakeStripe
from tests.stripe_sync.helpers import customer_of

URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}


async def test_checkout_creates_the_customer_once_and_a_session_for_the_plans_price(
    stripe_client: httpx.AsyncClient, stripe_app: FastAPI, stripe_api: FakeStripe
) -> None:
    org = await create_org(stripe_client)
    customers_before = len(stripe_api.calls("/v1/customers"))
    response = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": "pro", **URLS}, headers=org.key_headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["session_id"].startswith("cs_test_") and body["url"].startswith("https://")
    [customer_call] = stripe_api.calls("/v1/customers")[customers_before:]
    assert customer_call.form["metadata[organization_id]"] == org.id
    assert customer_call.headers["idempotency-key"] == f"orgbill-customer-{org.id}"
    assert customer_call.headers["stripe-version"] == STRIPE_API_VERSION
    checkout_call = stripe_api.calls("/v1/checkout/sessions")[-1]
    assert checkout_call.form["client_reference_id"] == org.id
    assert checkout_call.form["line_items[0][price]"] == PRO_PRICE
    assert checkout_call.form["mode"] == "subscription"
    assert checkout_call.form["subscription_data[metadata][organization_id]"] == org.id
    assert checkout_call.form["success_url"] == URLS["success_url"]
    assert checkout_call.headers["idempotency-key"].startswith("orgbill-checkout-")
    customer = await customer_of(stripe_app, org.id)
    assert customer is not None and checkout_call.form["customer"] == customer
    # A second checkout reuses the customer.
    again = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": "business", **URLS}, headers=org.key_headers
    )
    assert again.status_code == 200
    assert len(stripe_api.calls("/v1/customers")) == customers_before + 1
    assert stripe_api.calls("/v1/checkout/sessions")[-1].form["customer"] == customer
    assert (
        stripe_api.calls("/v1/checkout/sessions")[-1].headers["idempotency-key"]
        != checkout_call.headers["idempotency-key"]
    )


@pytest.mark.parametrize("plan", ["free", "enterprise"])
async def test_checkout_for_a_plan_without_a_price_is_400(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe, plan: str
) -> None:
    org = await create_org(stripe_client)
    calls_before = len(stripe_api.requests)
    response = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": plan, **URLS}, headers=org.key_headers
    )
    error = assert_error(response, 400, "bad_request")
    assert "no Stripe price" in error["message"]
    assert len(stripe_api.requests) == calls_before  # nothing was created at Stripe
    unknown = await stripe_client.post(
        f"{API}/billing/checkout", json={"plan": "platinum", **URLS}, headers=org.key_headers
    )
    assert "Unknown plan" in assert_error(unknown, 400, "bad_request")["message"]


async def test_portal_returns_a_session_url_for_the_orgs_customer(
    stripe_client: httpx.AsyncClient, stripe_app: FastAPI, stripe_api: FakeStripe
) -> None:
    org = await create_org(stripe_client)
    response = await stripe_client.post(
        f"{API}/billing/portal",
        json={"return_url": "https://app.example.com/billing"},
        headers=org.key_headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["url"].startswith("https://billing.stripe.com/")
    portal_call = stripe_api.calls("/v1/billing_portal/sessions")[-1]
    assert portal_call.form["customer"] == await customer_of(stripe_app, org.id)
    assert portal_call.form["return_url"] == "https://app.example.com/billing"
    assert portal_call.headers["idempotency-key"].startswith("orgbill-portal-")


async def test_billing_actions_need_a_billing_role_and_work_while_suspended(
    stripe_client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(stripe_client)
    member, accountant = await register_user(stripe_client), await register_user(stripe_client)
    assert (await add_member(stripe_client, org, member, "member")).status_code == 201
    assert (await add_member(stripe_client, org, accountant, "billing")).status_code == 201
    url = f"{API}/billing/checkout"
    as_member = {**member.headers, "X-Organization-Id": org.id}
    assert_error(
        await stripe_client.post(url, json={"plan": "pro", **URLS}, headers=as_member),
        403,
        "forbidden",
    )
    # A member may read billing.
    assert_error(
        await stripe_client.get(f"{API}/billing/subscription", headers=as_member), 404, "not_found"
    )
    assert (await stripe_client.get(f"{API}/billing/invoices", headers=as_member)).json() == {
        "data": [],
        "next_cursor": None,
    }
    # A user must name the org.
    assert_error(
        await stripe_client.get(f"{API}/billing/invoices", headers=member.headers),
        400,
        "bad_request",
    )
    admin = await create_superadmin_user(stripe_client, settings)
    suspended = await stripe_client.patch(
        f"{API}/admin/organizations/{org.id}", json={"is_suspended": True}, headers=admin.headers
    )
    assert suspended.status_code == 200
    as_accountant = {**accountant.headers, "X-Organization-Id": org.id}
    assert (
        await stripe_client.post(url, json={"plan": "pro", **URLS}, headers=as_accountant)
    ).status_code == 200
    assert (
        await stripe_client.get(f"{API}/billing/invoices", headers=as_accountant)
    ).status_code == 200
    portal = await stripe_client.post(
        f"{API}/billing/portal", json={"return_url": "https://a.example/b"}, headers=as_accountant
    )
    assert portal.status_code == 200


async def test_stripe_being_unreachable_is_503_without_details(client: httpx.AsyncClient) -> None:
    # The suite's default app points Stripe at a closed loopback port.
    org = await create_org(client)
    response = await client.post(
        f"{API}/billing/checkout", json={"plan": "pro", **URLS}, headers=org.key_headers
    )
    error = assert_error(response, 503, "unavailable")
    assert "sk_test" not in error["message"]
