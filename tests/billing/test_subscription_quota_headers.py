"""`GET /billing/subscription` carries the quota headers on every answer: an org with no
subscription (404) still has its plan's metered limits, and gets the same `X-Quota-*` as
`/usage`."""

from __future__ import annotations

import httpx

from tests.fixtures.factories import API, assert_error, create_org


async def test_subscription_404_still_carries_quota_headers(client: httpx.AsyncClient) -> None:
    org = await create_org(client)
    response = await client.get(f"{API}/billing/subscription", headers=org.key_headers)
    assert_error(response, 404, "not_found")
    usage = await client.get(f"{API}/usage", headers=org.key_headers)
    expected = {k for k in usage.headers if k.startswith("x-quota-")}
    assert "x-quota-turns-used" in expected and "x-quota-reset" in expected
    sent = {k for k in response.headers if k.startswith("x-quota-")}
    assert sent == expected, f"missing quota headers: {sorted(expected - sent)}"


async def test_the_documented_404_names_the_quota_headers(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    not_found = schema["paths"][f"{API}/billing/subscription"]["get"]["responses"]["404"]
    assert "X-Quota-Reset" in not_found["headers"]
