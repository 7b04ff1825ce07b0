"""Which bucket a call is charged to, and HEAD on read routes."""

from __future__ import annotations

import httpx

from orgbill.config import Settings
from tests.fixtures.factories import API, create_org
from tests.ratelimit.test_rate_limits import client_at, limited_app


async def test_me_and_organizations_with_an_org_header_are_charged_to_the_user_bucket(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # CONTRACT "Rate limits": "user — a valid user token on a route that acts for no organization
    # (`/me`, `GET|POST /organizations`, `/admin/*`): refill at `ORGBILL_USER_RATE_LIMIT`".
    org = await create_org(client)  # free plan: api_rate_limit 5
    headers = {**org.owner.headers, "X-Organization-Id": org.id}
    async with limited_app(settings, user_rate_limit=7) as app, client_at(app) as http:
        me = await http.get(f"{API}/me", headers=headers)
        listed = await http.get(f"{API}/organizations", headers=headers)
    assert me.status_code == 200 and listed.status_code == 200
    # Observed: "5" (the organization's bucket, drained by calls that act for no organization).
    assert me.headers["x-ratelimit-limit"] == "7", me.headers
    assert listed.headers["x-ratelimit-limit"] == "7", listed.headers


async def test_head_on_a_get_route_is_answered_like_get(client: httpx.AsyncClient) -> None:
    # CONTRACT "Where this file is silent, do what a careful API designer at Stripe would do";
    # RFC 9110 9.1: "All general-purpose servers MUST support the methods GET and HEAD"
    # (README: "GET/HEAD requests run on an autocommit, read-only connection").
    org = await create_org(client)
    for path, headers in (
        ("/healthz", {}),
        (f"{API}/plans", {}),
        (f"{API}/organization", org.key_headers),
    ):
        got = await client.get(path, headers=headers)
        head = await client.head(path, headers=headers)
        assert got.status_code == 200
        # Observed: 405 method_not_allowed for every one of them.
        assert head.status_code == 200, (path, head.status_code)
        assert head.content == b""
