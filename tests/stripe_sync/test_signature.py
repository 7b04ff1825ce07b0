"""Stripe-Signature checks beyond the common cases in test_webhooks.py (the SDK verifies)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from tests.fixtures.databases import TEST_STRIPE_WEBHOOK_SECRET
from tests.fixtures.factories import assert_error
from tests.fixtures.stripe import WEBHOOK_URL, customer_event, new_id, signed


async def test_a_secret_roll_header_with_one_matching_v1_verifies(
    client: httpx.AsyncClient,
) -> None:
    payload = customer_event(
        "customer.created", customer=new_id("cus"), created=int(time.time()), org_id=None
    )
    body, headers = signed(payload)
    timestamp, good = headers["Stripe-Signature"].split(",")
    headers["Stripe-Signature"] = f"{timestamp},v1={'0' * 64},{good}"
    response = await client.post(WEBHOOK_URL, content=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_a_body_that_is_not_utf8_is_400_even_when_its_bytes_are_signed(
    client: httpx.AsyncClient,
) -> None:
    body = json.dumps({"id": "evt_x"}).encode()[:-1] + b'\xff"}'
    timestamp = int(time.time())
    digest = hmac.new(
        TEST_STRIPE_WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    headers = {"Stripe-Signature": f"t={timestamp},v1={digest}"}
    assert_error(await client.post(WEBHOOK_URL, content=body, headers=headers), 400, "bad_request")
