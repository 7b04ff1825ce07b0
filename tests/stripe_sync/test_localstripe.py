"""The SDK paths against localstripe, and the end-to-end run: localstripe's webhooks reach a
running orgbill (uvicorn on loopback), cancelling returns the org to free, and a subscription
made while webhooks were off is found by `orgbill stripe sync`."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import stripe
import uvicorn

from orgbill.cli import sync_stripe
from orgbill.config import Settings
from orgbill.main import create_app
from orgbill.stripe_sync.client import StripeGateway
from tests.fixtures.databases import TEST_STRIPE_WEBHOOK_SECRET
from tests.fixtures.factories import API, OrgHandle, create_org
from tests.fixtures.stripe import PRO_PRICE, LocalStripe
from tests.fixtures.tcpproxy import free_port


def _sdk(localstripe: LocalStripe) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_localstripe",
        base_addresses={"api": localstripe.url},
        max_network_retries=0,
    )


def _create_pro_plan(sdk: stripe.StripeClient) -> None:
    # localstripe has no prices: a plan whose id is the catalog's price id stands in for it.
    product = sdk.v1.products.create(params={"name": "orgbill Pro"})
    sdk.v1.plans.create(
        params={
            "id": PRO_PRICE,
            "amount": 2900,
            "currency": "usd",
            "interval": "month",
            "product": product.id,
        }
    )


def _subscribe(sdk: stripe.StripeClient, customer_id: str, org_id: str) -> str:
    payment_method = sdk.v1.payment_methods.attach("pm_card_visa", params={"customer": customer_id})
    sdk.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": payment_method.id}}
    )
    subscription = sdk.v1.subscriptions.create(
        params={
            "customer": customer_id,
            "items": [{"plan": PRO_PRICE}],
            "metadata": {"organization_id": org_id},
        }
    )
    assert subscription.status == "active"
    return subscription.id


def _stripe_settings(settings: Settings, localstripe: LocalStripe) -> Settings:
    return settings.model_copy(update={"stripe_api_base": localstripe.url})


async def _profile(http: httpx.AsyncClient, org: OrgHandle) -> dict[str, Any]:
    response = await http.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """orgbill under uvicorn on a loopback port, in its own thread and event loop."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def test_gateway_creates_a_customer_once_and_sync_mirrors_stripe_idempotently(
    client: httpx.AsyncClient, settings: Settings, localstripe: LocalStripe
) -> None:
    org = await create_org(client)
    sdk = _sdk(localstripe)
    await asyncio.to_thread(_create_pro_plan, sdk)
    gateway = StripeGateway("sk_test_localstripe", api_base=localstripe.url)
    customer_id = await gateway.create_customer(organization_id=uuid.UUID(org.id), name="Acme")
    [listed] = await gateway.list_customers()
    assert listed["id"] == customer_id and listed["metadata"]["organization_id"] == org.id
    sub_id = await asyncio.to_thread(_subscribe, sdk, customer_id, org.id)

    stripe_settings = _stripe_settings(settings, localstripe)
    report = await sync_stripe(stripe_settings, uuid.UUID(org.id))
    assert report.counts["customer.linked"] == 1
    assert report.counts["subscription.created"] == 1
    assert report.counts["invoice.created"] == 1
    profile = await _profile(client, org)
    assert profile["plan_source"] == "stripe" and profile["plan_name"] == "Pro"
    subscription = (await client.get(f"{API}/billing/subscription", headers=org.key_headers)).json()
    assert subscription["stripe_subscription_id"] == sub_id
    assert subscription["current_period_end"] is not None
    [invoice] = (await client.get(f"{API}/billing/invoices", headers=org.key_headers)).json()[
        "data"
    ]
    assert invoice["amount"] == 2900 and invoice["status"] == "paid"
    # Twice is safe: nothing changes the second time.
    again = await sync_stripe(stripe_settings)
    assert again.changed == 0, again.changes
    assert again.counts["subscription.unchanged"] == 1

    await asyncio.to_thread(sdk.v1.subscriptions.cancel, sub_id)
    repaired = await sync_stripe(stripe_settings)
    assert repaired.counts["subscription.updated"] == 1
    assert (await _profile(client, org))["plan_source"] == "free"


async def test_end_to_end_webhooks_from_localstripe_then_cancel_then_sync_after_webhooks_off(
    settings: Settings, localstripe: LocalStripe
) -> None:
    stripe_settings = _stripe_settings(settings, localstripe)
    sdk = _sdk(localstripe)
    await asyncio.to_thread(_create_pro_plan, sdk)
    with serving(stripe_settings) as base_url:
        localstripe.register_webhook(
            "orgbill", f"{base_url}{API}/webhooks/stripe", TEST_STRIPE_WEBHOOK_SECRET
        )
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            org = await create_org(http)
            gateway = StripeGateway("sk_test_localstripe", api_base=localstripe.url)
            customer_id = await gateway.create_customer(
                organization_id=uuid.UUID(org.id), name="E2E"
            )
            sub_id = await asyncio.to_thread(_subscribe, sdk, customer_id, org.id)

            async def paid() -> bool:
                return (await _profile(http, org))["plan_source"] == "stripe"

            await _eventually(paid)
            profile = await _profile(http, org)
            assert profile["plan_name"] == "Pro" and profile["sub_status"] == "active"

            await asyncio.to_thread(sdk.v1.subscriptions.cancel, sub_id)

            async def free() -> bool:
                return (await _profile(http, org))["plan_source"] == "free"

            await _eventually(free)

            # Webhooks off: a new subscription is invisible until `orgbill stripe sync`.
            localstripe.register_webhook("orgbill", "http://127.0.0.1:9/off", "whsec_off")
            second = await asyncio.to_thread(
                sdk.v1.subscriptions.create,
                {"customer": customer_id, "items": [{"plan": PRO_PRICE}]},
            )
            await asyncio.sleep(1.5)  # longer than localstripe's ~1 s delivery delay
            assert (await _profile(http, org))["plan_source"] == "free"
            report = await sync_stripe(stripe_settings, uuid.UUID(org.id))
            assert report.counts["subscription.created"] == 1
            assert any(second.id in change for change in report.changes)
            profile = await _profile(http, org)
            assert profile["plan_source"] == "stripe" and profile["plan_name"] == "Pro"
            billing = (
                await http.get(f"{API}/billing/subscription", headers=org.key_headers)
            ).json()
            assert billing["stripe_subscription_id"] == second.id
