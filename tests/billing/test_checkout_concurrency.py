"""Checkout and portal call Stripe with no transaction open: a slow Stripe (2 s, a real HTTP
fake on loopback, the real SDK) never makes another organization's writes, or the same
organization's, wait; two concurrent first checkouts of one org share one customer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from orgbill.config import Settings
from tests.fixtures.app import client_for, running_app
from tests.fixtures.factories import API, OrgHandle, create_org
from tests.fixtures.stripe import FakeStripe, fake_stripe
from tests.stripe_sync.helpers import customer_of

STRIPE_DELAY = 2.0
# Far below the delay: a write that waited on Stripe would take at least STRIPE_DELAY.
UNBLOCKED = 1.0
URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}


@pytest.fixture(scope="module")
def slow_stripe() -> Iterator[FakeStripe]:
    with fake_stripe() as fake:
        yield fake


@pytest.fixture(scope="module")
async def slow_app(settings: Settings, slow_stripe: FakeStripe) -> AsyncIterator[FastAPI]:
    async with running_app(settings.model_copy(update={"stripe_api_base": slow_stripe.url})) as app:
        yield app


@pytest.fixture
async def http(slow_app: FastAPI, slow_stripe: FakeStripe) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(slow_app) as client:
        slow_stripe.delay = STRIPE_DELAY
        try:
            yield client
        finally:
            slow_stripe.delay = 0.0


async def _stripe_in_flight(fake: FakeStripe, before: int) -> None:
    """Until the app's Stripe call has reached the fake (which then sleeps)."""
    deadline = time.monotonic() + 10
    while len(fake.requests) <= before:
        assert time.monotonic() < deadline, "the app never called Stripe"
        await asyncio.sleep(0.01)


async def _timed_writes(http: httpx.AsyncClient, busy: OrgHandle, other: OrgHandle) -> list[float]:
    """Seconds for a write of another org and one of the org whose Stripe call is in flight."""
    writes = [
        http.post(
            f"{API}/usage/events",
            json={"events": [{"metric": "turns", "quantity": 1}]},
            headers=other.key_headers,
        ),
        http.patch(
            f"{API}/organizations/{busy.id}",
            json={"name": "Renamed while paying"},
            headers=busy.owner.headers,
        ),
    ]
    seconds = []
    for write in writes:
        started = time.monotonic()
        response = await write
        seconds.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
    return seconds


@pytest.mark.parametrize("route", ["checkout", "portal"])
async def test_slow_stripe_call_does_not_block_other_writes(
    http: httpx.AsyncClient, slow_app: FastAPI, slow_stripe: FakeStripe, route: str
) -> None:
    busy, other = await create_org(http), await create_org(http)
    before = len(slow_stripe.requests)
    body = {"plan": "pro", **URLS} if route == "checkout" else {"return_url": URLS["success_url"]}
    started = time.monotonic()
    call = asyncio.create_task(
        http.post(f"{API}/billing/{route}", json=body, headers=busy.key_headers)
    )
    await _stripe_in_flight(slow_stripe, before)  # the customer is being created
    seconds = await _timed_writes(http, busy, other)
    assert max(seconds) < UNBLOCKED, seconds
    response = await call
    assert response.status_code == 200, response.text
    # Customer creation, then the session: two slow calls, and the writes did not wait on them.
    assert time.monotonic() - started >= 2 * STRIPE_DELAY
    customer = await customer_of(slow_app, busy.id)
    assert customer is not None
    assert slow_stripe.requests[-1].form["customer"] == customer
    # Once the customer exists only the session is created: again nothing waits on it.
    before = len(slow_stripe.requests)
    call = asyncio.create_task(
        http.post(f"{API}/billing/{route}", json=body, headers=busy.key_headers)
    )
    await _stripe_in_flight(slow_stripe, before)
    seconds = await _timed_writes(http, busy, other)
    assert max(seconds) < UNBLOCKED, seconds
    assert (await call).status_code == 200


async def test_two_concurrent_first_checkouts_of_one_org_share_one_customer(
    http: httpx.AsyncClient, slow_app: FastAPI, slow_stripe: FakeStripe
) -> None:
    org = await create_org(http)
    before = len(slow_stripe.requests)
    checkouts = [
        http.post(f"{API}/billing/checkout", json={"plan": plan, **URLS}, headers=org.key_headers)
        for plan in ("pro", "business")
    ]
    responses = await asyncio.gather(*checkouts)
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    calls = slow_stripe.requests[before:]
    customer_calls = [c for c in calls if c.path == "/v1/customers"]
    assert len(customer_calls) == 2  # both asked, with the one org-keyed idempotency key
    assert {c.headers["idempotency-key"] for c in customer_calls} == {f"orgbill-customer-{org.id}"}
    customer = await customer_of(slow_app, org.id)
    assert customer is not None
    sessions = [c for c in calls if c.path == "/v1/checkout/sessions"]
    assert [s.form["customer"] for s in sessions] == [customer, customer]
