"""Failed sign-ins (contract): 10 within 15 minutes for one email make `POST /auth/token` for
that email 429 `rate_limited` with Retry-After, from any IP, until the window passes; a correct
password later still works and clears the count. Time is driven by an injected clock."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from orgbill.config import Settings
from orgbill.ratelimit.limiter import RedisFallback
from orgbill.ratelimit.signin import MAX_FAILURES, WINDOW_SECONDS, SignInGuard, email_key
from tests.fixtures.app import running_app
from tests.fixtures.databases import REDIS_ENV
from tests.fixtures.factories import API, PASSWORD, assert_error, register_user


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["in-process", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Redis | None]:
    if request.param == "in-process":
        yield None
        return
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set: the shared sign-in lockout is not tested")
    client = Redis.from_url(url)
    yield client
    await client.aclose()


def from_ip(app: FastAPI, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_ten_failures_lock_the_email_from_any_ip_until_the_window_passes(
    settings: Settings, store: Redis | None
) -> None:
    clock = FakeClock()
    async with running_app(settings) as app:
        app.state.sign_in_guard = SignInGuard(
            store, f"orgbill-test-{secrets.token_hex(4)}:", RedisFallback(store is not None), clock
        )
        async with from_ip(app, "10.0.0.1") as first, from_ip(app, "10.0.0.2") as second:
            user = await register_user(first, "locked")
            other = await register_user(first, "bystander")

            async def sign_in(http: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
                body = {"email": email, "password": password}
                return await http.post(f"{API}/auth/token", json=body)

            for n in range(MAX_FAILURES):
                clock.now += 10
                http = first if n % 2 else second  # from two IPs: counted per email
                assert (await sign_in(http, user.email, "wrong-password")).status_code == 401
            # Locked, even with the right password, from a third address; the email's case
            # does not matter.
            async with from_ip(app, "10.0.0.3") as third:
                refused = await sign_in(third, user.email.upper(), PASSWORD)
            assert_error(refused, 429, "rate_limited")
            # The oldest failure was 90 s ago: it ages out of the 15-minute window in 810 s.
            assert int(refused.headers["retry-after"]) == WINDOW_SECONDS - 90
            # Another email is not affected.
            assert (await sign_in(first, other.email, PASSWORD)).status_code == 200

            clock.now += WINDOW_SECONDS - 90 - 1
            assert (await sign_in(first, user.email, PASSWORD)).status_code == 429
            clock.now += 1
            assert (await sign_in(first, user.email, PASSWORD)).status_code == 200
            # The success cleared the count: nine fresh failures do not lock again.
            for _ in range(MAX_FAILURES - 1):
                assert (await sign_in(first, user.email, "wrong-password")).status_code == 401
            assert (await sign_in(first, user.email, PASSWORD)).status_code == 200


def test_the_lockout_key_is_a_hash_not_the_email() -> None:
    key = email_key("ada@example.com")
    assert "ada" not in key and len(key) == 64


async def test_guesses_sent_at_once_get_no_more_verdicts_than_the_lock_allows(
    settings: Settings, store: Redis | None
) -> None:
    """An attempt is counted in the same step as the lock is checked, before its password
    is: 30 wrong guesses sent together get 10 verdicts (401) and 20 refusals (429), not 30
    verdicts because each passed the check before any failure was written."""
    async with running_app(settings) as app:
        app.state.sign_in_guard = SignInGuard(
            store, f"orgbill-test-{secrets.token_hex(4)}:", RedisFallback(store is not None)
        )
        async with from_ip(app, "10.0.0.1") as http:
            user = await register_user(http, "brute")
            responses = await asyncio.gather(
                *(
                    http.post(
                        f"{API}/auth/token",
                        json={"email": user.email, "password": f"wrong-guess-{n}"},
                    )
                    for n in range(3 * MAX_FAILURES)
                )
            )
            statuses = sorted(response.status_code for response in responses)
            assert statuses == [401] * MAX_FAILURES + [429] * (2 * MAX_FAILURES), statuses
            right = {"email": user.email, "password": PASSWORD}
            assert_error(await http.post(f"{API}/auth/token", json=right), 429, "rate_limited")


async def test_failed_sign_in_memory_for_emails_never_seen_again_is_released() -> None:
    """The in-process sign-in guard (no Redis, or Redis down) forgets an email once all its
    attempts left the window, whether or not that email is tried again: attempts for
    attacker-chosen addresses must not grow the process's memory without bound."""
    clock = [1_000_000.0]
    guard = SignInGuard(None, "test:", RedisFallback(False), clock=lambda: clock[0])
    for i in range(5000):
        assert await guard.claim_attempt(f"old-{i}@spray.example") is None
    clock[0] += WINDOW_SECONDS * 4  # an hour later: every one of those has aged out
    for i in range(5000):
        assert await guard.claim_attempt(f"new-{i}@spray.example") is None
    remembered = len(guard._local)
    assert remembered == 5000, f"{remembered} emails remembered; 5000 had long aged out"
