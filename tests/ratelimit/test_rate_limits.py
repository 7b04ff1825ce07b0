"""Rate limits through the app (contract → "Rate limits (seed 004)"): one bucket per caller,
charged once before the endpoint; capacity = rate x burst seconds; headers on every response;
junk credentials of any kind charged to the client IP; exempt operational routes and signed
webhooks; Redis shared between two real servers, in-process fallback when it is down."""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from orgbill.config import Settings
from orgbill.db import Database
from orgbill.ratelimit.buckets import LocalTokenBuckets
from tests.fixtures.app import running_app
from tests.fixtures.databases import REDIS_ENV
from tests.fixtures.factories import (
    API,
    OrgHandle,
    assert_error,
    create_org,
    create_superadmin_user,
    register_user,
)
from tests.fixtures.server import serve
from tests.fixtures.stripe import deliver, subscription_event
from tests.fixtures.tcpproxy import free_port

RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
# A public bucket of one request that does not refill during a test.
ONE_SHOT = {"public_rate_limit": 0.01, "rate_limit_burst_seconds": 1}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def random_ip() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"


def client_at(app: FastAPI, ip: str | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=False, client=(ip or random_ip(), 4321)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@asynccontextmanager
async def limited_app(settings: Settings, **overrides: Any) -> AsyncIterator[FastAPI]:
    limited = settings.model_copy(update={"rate_limit_enabled": True, **overrides})
    async with running_app(limited) as app:
        yield app


@asynccontextmanager
async def limited_client(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app with the limiter on, seen from a client IP of its own (its own IP bucket)."""
    async with limited_app(settings, **overrides) as app, client_at(app) as http:
        yield http


async def set_rate_limit(
    client: httpx.AsyncClient, settings: Settings, org: OrgHandle, rate: int
) -> None:
    admin = await create_superadmin_user(client, settings)
    response = await client.patch(
        f"{API}/admin/organizations/{org.id}", json={"rate_limit": rate}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


async def test_org_bucket_allows_its_capacity_then_refuses_with_retry_after(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org, other = await create_org(client), await create_org(client)
    await set_rate_limit(client, settings, org, 2)
    # rate 2/s x 2 s of burst: a capacity of 4.
    async with limited_client(settings, rate_limit_burst_seconds=2) as limited:
        profile = f"{API}/organizations/profile/{org.id}"
        first = await limited.get(profile, headers=org.key_headers)
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit"] == "2"
        assert first.headers["x-ratelimit-remaining"] == "3"
        assert first.headers["x-ratelimit-reset"].endswith("Z")
        burst = [await limited.get(profile, headers=org.key_headers) for _ in range(3)]
        assert [r.status_code for r in burst] == [200, 200, 200]
        refused = await limited.get(f"{API}/usage", headers=org.key_headers)
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-ratelimit-remaining"] == "0"
        # Another org has its own bucket, at its plan's rate (free: 5/s).
        fine = await limited.get(
            f"{API}/organizations/profile/{other.id}", headers=other.key_headers
        )
        assert fine.status_code == 200 and fine.headers["x-ratelimit-limit"] == "5"


async def test_a_free_plan_orgs_ten_call_burst_passes(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    async with limited_client(settings) as limited:  # shipped defaults: burst 2 s
        statuses = [
            (await limited.get(f"{API}/organizations/{org.id}/members", headers=org.key_headers))
            for _ in range(10)
        ]
    assert [r.status_code for r in statuses] == [200] * 10
    assert statuses[0].headers["x-ratelimit-limit"] == "5"


async def test_an_empty_bucket_refills_at_its_rate(settings: Settings) -> None:
    clock = FakeClock()
    # 2/s with a capacity of 4 (2 s of burst), on the test's clock.
    async with limited_app(settings, public_rate_limit=2, rate_limit_burst_seconds=2) as app:
        app.state.rate_limiter.local_buckets = LocalTokenBuckets(clock)
        async with client_at(app) as http:

            async def plans() -> httpx.Response:
                return await http.get(f"{API}/plans")

            assert [(await plans()).status_code for _ in range(4)] == [200] * 4
            refused = await plans()
            assert_error(refused, 429, "rate_limited")
            assert refused.headers["retry-after"] == "1"  # one token back in 0.5 s
            clock.now += 0.5
            assert (await plans()).status_code == 200
            assert (await plans()).status_code == 429
            clock.now += 60  # never above capacity
            after_idle = [(await plans()).status_code for _ in range(5)]
            assert after_idle == [200] * 4 + [429]


async def test_org_user_and_ip_have_separate_buckets(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    outsider = await register_user(client, "outsider")
    async with limited_app(settings, user_rate_limit=7, **ONE_SHOT) as app, client_at(app) as http:
        assert (await http.get(f"{API}/plans")).status_code == 200
        assert_error(await http.get(f"{API}/plans"), 429, "rate_limited")  # IP empty
        me = await http.get(f"{API}/me", headers=org.owner.headers)
        assert me.status_code == 200 and me.headers["x-ratelimit-limit"] == "7"
        by_key = await http.get(f"{API}/organization", headers=org.key_headers)
        assert by_key.status_code == 200 and by_key.headers["x-ratelimit-limit"] == "5"
        # The owner naming their org acts for it: the org's bucket (one token gone above).
        named = await http.get(f"{API}/organizations/{org.id}", headers=org.owner.headers)
        assert named.status_code == 200, named.text
        assert named.headers["x-ratelimit-limit"] == "5"
        assert int(named.headers["x-ratelimit-remaining"]) < 9
        # A user naming an org that is not theirs never drains that org's bucket.
        foreign = await http.get(f"{API}/organizations/{org.id}", headers=outsider.headers)
        assert_error(foreign, 403, "forbidden")
        assert foreign.headers["x-ratelimit-limit"] == "7"


async def test_exempt_routes_never_refuse(settings: Settings) -> None:
    async with limited_client(settings, **ONE_SHOT) as limited:
        assert (await limited.get(f"{API}/plans")).status_code == 200
        assert_error(await limited.get(f"{API}/plans"), 429, "rate_limited")
        for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/redoc", "/metrics"):
            for headers in ({}, {"Authorization": "junk"}, {"X-Api-Key": "junk"}):
                response = await limited.get(path, headers=headers)
                assert response.status_code != 429, (path, headers)


async def test_readyz_asks_the_database_at_most_once_a_second(settings: Settings) -> None:
    async with limited_app(settings) as app, client_at(app) as http:
        database: Database = app.state.database
        probes: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            probes.append(statement)

        event.listen(database.read_engine.sync_engine, "before_cursor_execute", count)
        try:
            statuses = [(await http.get("/readyz")).status_code for _ in range(25)]
        finally:
            event.remove(database.read_engine.sync_engine, "before_cursor_execute", count)
    assert statuses == [200] * 25
    assert 1 <= len([s for s in probes if "SELECT 1" in s]) <= 2


JUNK_CREDENTIALS: dict[str, dict[str, str]] = {
    "api key": {"X-Api-Key": "ob_" + "x" * 40},
    "short api key": {"X-Api-Key": "x"},
    "bearer": {"Authorization": "Bearer not-a-token"},
    "authorization": {"Authorization": "x"},
    "session cookie": {"Cookie": "orgbill_session=junk"},
    "stripe signature": {"Stripe-Signature": "t=1,v1=00"},
}


def _operations(app: FastAPI) -> list[tuple[str, str]]:
    exempt = {"/healthz", "/readyz", "/metrics"}
    found = []
    for path, item in app.openapi()["paths"].items():
        if path in exempt:
            continue
        for method in item:
            filled = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
            found.append((method.upper(), filled))
    return found


async def test_junk_credentials_of_every_kind_on_every_route_are_charged_to_the_ip(
    settings: Settings,
) -> None:
    """No header is a way around the public limit: on public, user, org, admin and webhook
    routes, an unknown route and a wrong method, the second junk call from an IP whose bucket
    holds one request is refused."""
    async with limited_app(settings, stripe_webhook_secret="whsec_test", **ONE_SHOT) as app:
        operations = _operations(app)
        assert len(operations) >= 25, operations  # the walk must actually cover the routes
        operations += [("GET", f"{API}/no-such-route"), ("DELETE", f"{API}/plans")]
        bypasses = []
        for kind, headers in JUNK_CREDENTIALS.items():
            for method, path in operations:
                async with client_at(app) as http:
                    await http.request(method, path, headers=headers)
                    second = await http.request(method, path, headers=headers)
                if second.status_code != 429:
                    bypasses.append((kind, method, path, second.status_code))
                else:
                    assert second.json()["error"]["code"] == "rate_limited"
                    assert int(second.headers["retry-after"]) >= 1
    assert not bypasses, bypasses


async def test_signed_stripe_webhooks_are_never_charged_and_bad_signatures_are(
    settings: Settings,
) -> None:
    async with limited_app(settings, **ONE_SHOT) as app, client_at(app) as limited:
        statuses = []
        for n in range(6):
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
        assert statuses == [200] * 6
        bad = {"Stripe-Signature": "t=1,v1=00", "content-type": "application/json"}
        first = await limited.post(f"{API}/webhooks/stripe", content=b"{}", headers=bad)
        assert first.status_code == 400
        assert_error(
            await limited.post(f"{API}/webhooks/stripe", content=b"{}", headers=bad),
            429,
            "rate_limited",
        )


async def test_forwarded_for_is_believed_only_from_trusted_proxies(settings: Settings) -> None:
    async with limited_app(settings, trusted_proxies=[ip_network("10.0.0.0/8")], **ONE_SHOT) as app:
        proxy = random_ip()  # inside 10.0.0.0/8
        async with client_at(app, proxy) as via_proxy:

            async def plans(forwarded_for: str) -> int:
                headers = {"X-Forwarded-For": forwarded_for}
                return (await via_proxy.get(f"{API}/plans", headers=headers)).status_code

            # The right-most hop that is not a trusted proxy is the client.
            assert await plans("203.0.113.9, 10.9.9.9") == 200
            assert await plans("198.51.100.1, 203.0.113.9") == 429  # the same client
            assert await plans("203.0.113.10") == 200  # another client, its own bucket
        # An untrusted peer's forwarded headers are ignored: no fresh bucket per spoof.
        async with client_at(app, "192.0.2.7") as direct:
            assert (await direct.get(f"{API}/plans")).status_code == 200
            for spoof in (
                {"X-Forwarded-For": "203.0.113.77"},
                {"Forwarded": "for=203.0.113.78"},
                {"X-Real-IP": "203.0.113.79"},
            ):
                assert (await direct.get(f"{API}/plans", headers=spoof)).status_code == 429


async def test_orgbill_serve_keeps_uvicorn_from_believing_spoofed_forwarded_for(
    settings: Settings,
) -> None:
    # uvicorn's own default believes X-Forwarded-For from 127.0.0.1; `orgbill serve` turns it
    # off, so a local client cannot buy a fresh bucket per spoofed address.
    limited = settings.model_copy(update={"rate_limit_enabled": True, **ONE_SHOT})
    with serve(limited) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{url}{API}/plans")).status_code == 200
            spoofed = [
                (
                    await http.get(
                        f"{url}{API}/plans", headers={"X-Forwarded-For": f"203.0.113.{n}"}
                    )
                ).status_code
                for n in range(3)
            ]
    assert spoofed == [429, 429, 429]


async def test_rate_limit_headers_on_404_422_429_and_500(settings: Settings) -> None:
    async with limited_app(settings, public_rate_limit=2, rate_limit_burst_seconds=1) as app:

        async def boom() -> None:
            raise RuntimeError("unexpected")

        app.add_api_route("/boom", boom)
        async with client_at(app) as http:
            responses = [
                await http.get(f"{API}/no-such-route"),
                await http.post(f"{API}/auth/register", json={"email": 1}),
                await http.get("/boom"),
            ]
        async with client_at(app) as http:
            responses.append(await http.get("/boom"))  # 500 from the outermost handler
            for _ in range(3):
                responses.append(await http.get(f"{API}/plans"))
    statuses = [r.status_code for r in responses]
    assert statuses[:2] == [404, 422] and statuses[3] == 500 and 429 in statuses, statuses
    for response in responses:
        assert all(h in response.headers for h in RATE_HEADERS), (response, response.headers)
        assert response.headers["x-ratelimit-limit"] == "2"


async def test_an_oversized_body_is_charged_to_the_ip_and_carries_its_headers(
    settings: Settings,
) -> None:
    """The body-size guard answers before the caller step runs: its 413 is still charged to
    the client IP and carries that bucket's headers, so oversized requests are limited too
    (found in review: they were never charged, and their 413 had no headers)."""
    async with (
        limited_app(
            settings, public_rate_limit=1, rate_limit_burst_seconds=2, max_body_bytes=1000
        ) as app,
        client_at(app) as http,
    ):
        responses = [await http.post(f"{API}/auth/register", content=b"x" * 2000) for _ in range(3)]
    assert [r.status_code for r in responses] == [413, 413, 429], responses
    for response in responses:
        assert all(h in response.headers for h in RATE_HEADERS), response.headers
        assert response.headers["x-ratelimit-limit"] == "1"
    assert responses[2].json()["error"]["code"] == "rate_limited"
    assert "retry-after" in responses[2].headers


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
        async with limited_client(
            settings, redis_url=closed_port, rate_limit_burst_seconds=1
        ) as limited:
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
    await set_rate_limit(client, settings, org, 1)
    shared = settings.model_copy(
        update={
            "rate_limit_enabled": True,
            "redis_url": redis_url,
            "rate_limit_key_prefix": f"orgbill-test-{secrets.token_hex(6)}:",
            "rate_limit_burst_seconds": 3,  # capacity 3, refilling 1/s
        }
    )
    profile = f"{API}/organizations/profile/{org.id}"
    with serve(shared) as first_url, serve(shared) as second_url:
        async with httpx.AsyncClient(timeout=10) as http:
            for url in (first_url, second_url):  # warm both (connections, Lua script)
                assert (await http.get(f"{url}/healthz")).status_code == 200
            statuses = []
            started = time.monotonic()
            for index in range(8):
                url = first_url if index % 2 == 0 else second_url
                statuses.append(
                    (await http.get(url + profile, headers=org.key_headers)).status_code
                )
            elapsed = time.monotonic() - started
    # Two separate in-process limits would allow 6; one shared bucket allows its 3 plus one
    # per second the requests took (a loaded machine is slow).
    assert statuses[:3] == [200, 200, 200], statuses
    assert statuses.count(200) <= 3 + math.ceil(elapsed), (statuses, elapsed)
    assert elapsed >= 2 or statuses.count(200) < 6, (statuses, elapsed)


async def test_the_caller_is_identified_once_per_request(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    """The caller middleware's identification is the one the routes use: one key lookup for
    an API key's profile read, one user and one membership read for a user's org route, with
    the limiter on or off."""
    org = await create_org(client)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    async with limited_app(settings) as limited:
        for target in (app, limited):
            database: Database = target.state.database
            engines = (database.engine.sync_engine, database.read_engine.sync_engine)
            for engine in engines:
                event.listen(engine, "before_cursor_execute", record)
            try:
                async with client_at(target) as http:
                    statements.clear()
                    profile = await http.get(
                        f"{API}/organizations/profile/{org.id}", headers=org.key_headers
                    )
                    assert profile.status_code == 200
                    assert len([s for s in statements if "key_hash" in s]) == 1, statements
                    statements.clear()
                    composite = await http.get(
                        f"{API}/organizations/{org.id}", headers=org.owner.headers
                    )
                    assert composite.status_code == 200
                    membership_reads = [
                        s for s in statements if "membership.role" in s and "LEFT OUTER" in s
                    ]
                    assert len(membership_reads) == 1, statements
            finally:
                for engine in engines:
                    event.remove(engine, "before_cursor_execute", record)
