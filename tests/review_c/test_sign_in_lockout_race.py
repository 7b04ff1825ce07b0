"""Review C: the failed-sign-in lockout (contract: 10 failures within 15 minutes lock
`POST /auth/token` for that email) must hold when the guesses arrive at once."""

from __future__ import annotations

import asyncio

import httpx

from orgbill.ratelimit.signin import MAX_FAILURES
from tests.fixtures.factories import API, PASSWORD, assert_error, register_user


async def test_concurrent_wrong_passwords_get_at_most_ten_verdicts(
    client: httpx.AsyncClient,
) -> None:
    # authenticate() checks the lock, verifies the password (argon2, ~tens of ms in a thread)
    # and only then records the failure: 30 guesses sent together all pass the check, so an
    # attacker gets 30 (or 300) password verdicts instead of 10 before the lock engages.
    user = await register_user(client, "brute")
    guesses = 3 * MAX_FAILURES

    async def guess(n: int) -> httpx.Response:
        body = {"email": user.email, "password": f"wrong-guess-{n}"}
        return await client.post(f"{API}/auth/token", json=body)

    responses = await asyncio.gather(*(guess(n) for n in range(guesses)))
    verdicts = [r for r in responses if r.status_code == 401]
    locked = [r for r in responses if r.status_code == 429]
    assert len(verdicts) + len(locked) == guesses, [r.status_code for r in responses]
    assert len(verdicts) <= MAX_FAILURES, (
        f"{len(verdicts)} passwords were checked for one email; the lockout allows {MAX_FAILURES}"
    )
    for refused in locked:
        assert_error(refused, 429, "rate_limited")
    # And the email is locked now, even for the right password.
    after = await client.post(f"{API}/auth/token", json={"email": user.email, "password": PASSWORD})
    assert_error(after, 429, "rate_limited")
