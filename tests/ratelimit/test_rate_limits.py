"""Rate limits through the app: headers on every response, 429 per org and per IP, Redis
shared between two real servers, and in-process fallback when Redis is down."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from orgbill.config import Settings
from tests.fixtures.app import running_app
from tests.fixtures.databases import REDIS_ENV
from tests.fixtures.factories import (
    API,
    OrgHandle,
    assert_error,
    create_org,
    create_superadmin_user,
)
from tests.fixtures.server import serve
from tests.fixtures.stripe import deliver, subscription_event
from tests.fixtures.tcpproxy import free_port

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@asynccontextmanager
async def limited_client(
    settings: Settings, **overrides: object
) -> AsyncIterator[httpx.AsyncClient]:
    """An app with the limiter on, seen from a client IP of its own (its own IP bucket)."""
    limited = settings.model_copy(update={"rate_limit_enabled": True, **overrides})
    ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
    async with running_app(limited) as app:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def set_rate_limit(
    client: httpx.AsyncClient, settings: Settings, org: OrgHandle, rate: int
) -> None:
    admin = await create_superadmin_user(client, settings)
    response = await client.patch(
        f"{API}/admin/organizations/{org.id}", json={"rate_limit": rate}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


async def test_org_bucket_refuses_past_its_rate_with_retry_after(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org, other = await create_org(client), await create_org(client)
    await set_rate_limit(client, settings, org, 2)
    async with limited_client(settings) as limited:
        profile = f"{API}/organizations/profile/{org.id}"
        first = await limited.get(profile, headers=org.key_headers)
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit"] == "2"
        assert first.headers["x-ratelimit-remaining"] == "1"
        assert first.headers["x-ratelimit-reset"].endswith("Z")
        assert (await limited.get(profile, headers=org.key_headers)).status_code == 200
        refused = await limited.get(f"{API}/usage", headers=org.key_headers)
        assert_error(refused, 429, "rate_limited")
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["x-ratelimit-remaining"] == "0"
        # Another org has its own bucket, at its plan's rate (free: 5/s).
        fine = await limited.get(
            f"{API}/organizations/profile/{other.id}", headers=other.key_headers
        )
        assert fine.status_code == 200 and fine.headers["x-ratelimit-limit"] == "5"


async def test_every_response_carries_rate_limit_headers_and_public_calls_are_per_ip(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    async with limited_client(settings) as limited:
        # Capacity 5, refilling 5/s: a slow machine may let a token back in, so drain until
        # the first refusal rather than counting exactly six calls.
        public = []
        for _ in range(20):
            public.append(await limited.get("/healthz"))
            if public[-1].status_code == 429:
                break
        for response in public:
            assert all(h in response.headers for h in RATE_HEADERS), response.headers
        assert [r.status_code for r in public[:5]] == [200] * 5
        error = assert_error(public[-1], 429, "rate_limited")
        assert "5 requests per second" in error["message"]
        assert public[-1].headers["retry-after"] == "1"
        # Credentials that reach an org are limited per org, not by the exhausted IP bucket.
        by_org = await limited.get(f"{API}/organizations/profile/{org.id}", headers=org.key_headers)
        assert by_org.status_code == 200 and by_org.headers["x-ratelimit-remaining"] == "4"
        # Credentials that act for no org, or fail, are this IP's calls: refused too.
        bad_key = {"X-Api-Key": "ob_" + "x" * 40}
        for url, headers in (
            (f"{API}/me", org.owner.headers),
            (f"{API}/organization", bad_key),
            (f"{API}/plans", {"Authorization": "Bearer junk"}),
        ):
            burst = [await limited.get(url, headers=headers) for _ in range(4)]
            assert all(h in burst[-1].headers for h in RATE_HEADERS)
            refused = [r for r in burst if r.status_code == 429]
            assert refused, [r.status_code for r in burst]
            assert_error(refused[0], 429, "rate_limited")


async def test_junk_credentials_do_not_bypass_the_public_limit(settings: Settings) -> None:
    junk = {"Authorization": "Bearer not-a-token"}
    async with limited_client(settings) as limited:  # one client IP
        sign_ins = [
            await limited.post(
                f"{API}/auth/token",
                json={"email": "x@example.com", "password": "wrong-password"},
                headers=junk,
            )
            for _ in range(12)
        ]
    async with limited_client(settings) as limited:  # another client IP
        guesses = [
            await limited.get(f"{API}/organization", headers={"X-Api-Key": "ob_" + "y" * 40})
            for _ in range(12)
        ]
    # Without the charge every one would be a 401. The bucket (5, refilling 5/s) lets the
    # first ones through; argon2 time lets a token or two back in between.
    for attempts in (sign_ins, guesses):
        statuses = [r.status_code for r in attempts]
        assert set(statuses) == {401, 429}, statuses
        assert statuses[0] == 401 and statuses.count(429) >= 3, statuses


async def test_unreachable_redis_falls_back_to_in_process_limits_and_logs_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    await set_rate_limit(client, settings, org, 2)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("orgbill.ratelimit")
    logger.addHandler(handler)
    try:
        closed_port = f"redis://127.0.0.1:{free_port()}/0"
        async with limited_client(settings, redis_url=closed_port) as limited:
            profile = f"{API}/organizations/profile/{org.id}"
            statuses = [
                (await limited.get(profile, headers=org.key_headers)).status_code for _ in range(3)
            ]
    finally:
        logger.removeHandler(handler)
    assert statuses == [200, 200, 429]
    assert any("redis unreachable" in r.getMessage() for r in records)


async def test_two_servers_share_one_limit_through_redis(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    redis_url = os.environ.get(REDIS_ENV)
    if not redis_url:
        pytest.skip(f"{REDIS_ENV} is not set: the shared (Redis) rate limit is not tested")
    org = await create_org(client)
    await set_rate_limit(client, settings, org, 3)
    shared = settings.model_copy(
        update={
            "rate_limit_enabled": True,
            "redis_url": redis_url,
            "rate_limit_key_prefix": f"orgbill-test-{secrets.token_hex(6)}:",
        }
    )
    profile = f"{API}/organizations/profile/{org.id}"
    with serve(shared) as first_url, serve(shared) as second_url:
        async with httpx.AsyncClient(timeout=10) as http:
            for url in (first_url, second_url):  # warm both (connections, Lua script)
                assert (await http.get(f"{url}/healthz")).status_code == 200
            statuses = []
            for index in range(8):
                url = first_url if index % 2 == 0 else second_url
                statuses.append(
                    (await http.get(url + profile, headers=org.key_headers)).status_code
                )
    # Two separate in-process limits would allow 6; one shared bucket allows 3 (plus at most
    # one token refilled while the requests ran).
    assert statuses[:3] == [200, 200, 200], statuses
    assert 3 <= statuses.count(200) <= 4, statuses
    assert statuses.count(429) >= 4


async def test_signed_stripe_webhooks_are_not_charged_to_the_public_ip_bucket(
    settings: Settings,
) -> None:
    # The public rate is 5/s; Stripe delivers bursts from a few IPs and never sends a key.
    async with limited_client(settings) as limited:
        statuses = []
        for n in range(12):
            payload = subscription_event(
                "customer.subscription.updated",
                sub_id=f"sub_burst_{secrets.token_hex(4)}",
                customer=f"cus_burst_{n}",
                status="active",
                created=1_800_000_000 + n,
            )
            response = await deliver(limited, payload)
            statuses.append(response.status_code)
            assert all(h in response.headers for h in RATE_HEADERS)
        assert statuses == [200] * 12
        public = [(await limited.get(f"{API}/plans")).status_code for _ in range(12)]
        assert 429 in public  # while unsigned public calls from that IP are limited
