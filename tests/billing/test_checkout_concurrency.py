"""Checkout and portal call Stripe with no transaction open: a slow Stripe (2 s, a real HTTP
fake on loopback, the real SDK) never makes another organization's writes, or the same
organization's, wait; two concurrent first checkouts of one org share one customer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.app import client_for
from tests.fixtures.factories import API, OrgHandle, create_org
from tests.fixtures.stripe import FakeStripe
from tests.stripe_sync.helpers import customer_of

STRIPE_DELAY = 2.0
# Far below the delay: a write that waited on Stripe would take at least STRIPE_DELAY.
UNBLOCKED = 1.0
URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}


@pytest.fixture
async def http(stripe_app: FastAPI, stripe_api: FakeStripe) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(stripe_app) as client:
        stripe_api.delay = STRIPE_DELAY
        try:
            yield client
        finally:
            stripe_api.delay = 0.0


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
        http.post(
            f"{API}/credits/consume",
            json={"amount": 1, "idempotency_key": f"while-paying-{time.monotonic()}"},
            headers=busy.key_headers,
        ),
    ]
    seconds = []
    for write in writes:
        started = time.monotonic()
        response = await write
        seconds.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
    return seconds


ROUTES = {
    "checkout": ("/billing/checkout", {"plan": "pro", **URLS}),
    "portal": ("/billing/portal", {"return_url": URLS["success_url"]}),
    "credits": ("/credits/checkout", {"quantity": 10, **URLS}),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_slow_stripe_call_does_not_block_other_writes(
    http: httpx.AsyncClient, stripe_app: FastAPI, stripe_api: FakeStripe, route: str
) -> None:
    busy, other = await create_org(http), await create_org(http)
    before = len(stripe_api.requests)
    path, body = ROUTES[route]
    started = time.monotonic()
    call = asyncio.create_task(http.post(f"{API}{path}", json=body, headers=busy.key_headers))
    await _stripe_in_flight(stripe_api, before)  # the customer is being created
    seconds = await _timed_writes(http, busy, other)
    assert max(seconds) < UNBLOCKED, seconds
    response = await call
    assert response.status_code == 200, response.text
    # Customer creation, then the session: two slow calls, and the writes did not wait on them.
    assert time.monotonic() - started >= 2 * STRIPE_DELAY
    customer = await customer_of(stripe_app, busy.id)
    assert customer is not None
    assert stripe_api.requests[-1].form["customer"] == customer
    # Once the customer exists only the session is created: again nothing waits on it.
    before = len(stripe_api.requests)
    call = asyncio.create_task(http.post(f"{API}{path}", json=body, headers=busy.key_headers))
    await _stripe_in_flight(stripe_api, before)
    seconds = await _timed_writes(http, busy, other)
    assert max(seconds) < UNBLOCKED, seconds
    assert (await call).status_code == 200


async def test_two_concurrent_first_checkouts_of_one_org_share_one_customer(
    http: httpx.AsyncClient, stripe_app: FastAPI, stripe_api: FakeStripe
) -> None:
    org = await create_org(http)
    before = len(stripe_api.requests)
    checkouts = [
        http.post(f"{API}/billing/checkout", json={"plan": plan, **URLS}, headers=org.key_headers)
        for plan in ("pro", "business")
    ]
    responses = await asyncio.gather(*checkouts)
    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    calls = stripe_api.requests[before:]
    customer_calls = [c for c in calls if c.path == "/v1/customers"]
    assert len(customer_calls) == 2  # both asked, with the one org-keyed idempotency key
    assert {c.headers["idempotency-key"] for c in customer_calls} == {f"orgbill-customer-{org.id}"}
    customer = await customer_of(stripe_app, org.id)
    assert customer is not None
    sessions = [c for c in calls if c.path == "/v1/checkout/sessions"]
    assert [s.form["customer"] for s in sessions] == [customer, customer]
