"""A credit purchase's total against Stripe's limits on one payment: under its minimum charge
in the currency is the caller's 400 (checked here, and Stripe's own refusal of the amount is
a 400 too, never a 503), and a total that rounds to its maximum is charged."""

from __future__ import annotations

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, assert_error, create_org, create_superadmin_user
from tests.fixtures.stripe import FakeStripe, StripeAnswer

URLS = {"success_url": "https://app.example.com/ok", "cancel_url": "https://app.example.com/no"}

# Stripe's refusal of a Checkout total under the settlement currency's minimum.
AMOUNT_TOO_SMALL = StripeAnswer(
    400,
    {
        "type": "invalid_request_error",
        "code": "amount_too_small",
        "message": "The Checkout Session's total amount due must add up to at least $0.50 usd",
    },
)


async def test_fewer_credits_than_stripes_minimum_charge_are_refused_before_stripe(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe
) -> None:
    """Free plan: 0.05 USD a credit, so 5 credits are 25 cents, under Stripe's 50-cent
    minimum: 400 naming the fewest credits that can be bought (10), and no session."""
    org = await create_org(stripe_client)
    sessions_before = len(stripe_api.calls("/v1/checkout/sessions"))
    response = await stripe_client.post(
        f"{API}/credits/checkout", json={"quantity": 5, **URLS}, headers=org.key_headers
    )
    error = assert_error(response, 400, "bad_request")
    assert error["details"] == {"minimum_quantity": 10}
    assert "0.50 USD" in error["message"]
    assert len(stripe_api.calls("/v1/checkout/sessions")) == sessions_before
    exactly = await stripe_client.post(
        f"{API}/credits/checkout", json={"quantity": 10, **URLS}, headers=org.key_headers
    )
    assert exactly.status_code == 200, exactly.text


async def test_stripes_own_refusal_of_the_amount_is_the_callers_400(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe
) -> None:
    """A minimum the local table does not know (another settlement currency): Stripe's
    `amount_too_small` is the caller's to fix, 400, not `503 unavailable` ("retry later")."""
    org = await create_org(stripe_client)
    stripe_api.failures["/v1/checkout/sessions"] = AMOUNT_TOO_SMALL
    try:
        response = await stripe_client.post(
            f"{API}/credits/checkout", json={"quantity": 10, **URLS}, headers=org.key_headers
        )
    finally:
        stripe_api.failures.clear()
    error = assert_error(response, 400, "bad_request")
    assert error["details"] == {"code": "amount_too_small"}


async def test_a_total_that_rounds_to_stripes_maximum_is_charged_not_refused(
    stripe_client: httpx.AsyncClient, stripe_api: FakeStripe, settings: Settings
) -> None:
    """The total is rounded half-up once, then compared with Stripe's 99,999,999: 1 credit at
    999,999.994 USD is 99,999,999.4 cents, which rounds to 99,999,999, chargeable; at
    999,999.995 it rounds to 100,000,000, one payment too many (400)."""
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
    patched = await stripe_client.patch(
        f"{API}/admin/organizations/{org.id}",
        json={"limit_overrides": {"extra_credit_price": "999999.995"}},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    over = await stripe_client.post(
        f"{API}/credits/checkout", json={"quantity": 1, **URLS}, headers=org.key_headers
    )
    assert_error(over, 400, "bad_request")
