"""Races at a real server: holds are exact under concurrency on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from orgbill.config import Settings
from tests.fixtures.factories import API, OrgHandle, create_org, create_superadmin_user
from tests.fixtures.server import serve

CONCURRENT_RESERVES = 200
LAST_UNITS = 7


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    with serve(settings) as base_url:
        limits = httpx.Limits(max_connections=CONCURRENT_RESERVES)
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
            yield http


async def _reserve(live: httpx.AsyncClient, org: OrgHandle, metric: str, quantity: object) -> dict:
    response = await live.post(
        f"{API}/check",
        json={"metric": metric, "quantity": quantity, "reserve": True},
        headers=org.key_headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def _event(live: httpx.AsyncClient, org: OrgHandle, metric: str, quantity: int) -> int:
    response = await live.post(
        f"{API}/usage/events",
        json={"events": [{"metric": metric, "quantity": quantity}]},
        headers=org.key_headers,
    )
    assert response.status_code in (200, 429), response.text
    return response.status_code


async def test_concurrent_reserves_for_the_last_units_hold_exactly_that_many(
    client: httpx.AsyncClient, live: httpx.AsyncClient
) -> None:
    org = await create_org(client)  # free: 500 turns, hard
    assert await _event(live, org, "turns", 500 - LAST_UNITS) == 200
    decisions = await asyncio.gather(
        *(_reserve(live, org, "turns", 1) for _ in range(CONCURRENT_RESERVES))
    )
    held = [d for d in decisions if d["allowed"]]
    refused = [d for d in decisions if not d["allowed"]]
    assert len(held) == LAST_UNITS
    assert len({d["reservation"]["id"] for d in held}) == LAST_UNITS
    assert {d["code"] for d in refused} == {"quota_exceeded"}
    assert all(d["reservation"] is None for d in refused)
    standing = await live.post(f"{API}/check", json={"metric": "turns"}, headers=org.key_headers)
    assert standing.json()["reserved"] == LAST_UNITS and standing.json()["remaining"] == 0
    assert await _event(live, org, "turns", 1) == 429
    # Committing them all lands exactly on the limit.
    commits = await asyncio.gather(
        *(
            live.post(
                f"{API}/reservations/{d['reservation']['id']}/commit", headers=org.key_headers
            )
            for d in held
        )
    )
    assert [r.status_code for r in commits] == [200] * LAST_UNITS
    usage = (await live.get(f"{API}/usage", headers=org.key_headers)).json()
    assert usage["turns"]["current"] == 500


async def test_concurrent_commit_and_release_have_one_outcome(
    client: httpx.AsyncClient, live: httpx.AsyncClient
) -> None:
    org = await create_org(client)
    committed_total = 0
    for _ in range(12):
        hold = (await _reserve(live, org, "turns", 3))["reservation"]
        url = f"{API}/reservations/{hold['id']}"
        commit, release = await asyncio.gather(
            live.post(f"{url}/commit", headers=org.key_headers),
            live.post(f"{url}/release", headers=org.key_headers),
        )
        assert sorted([commit.status_code, release.status_code]) == [200, 409], (
            commit.text,
            release.text,
        )
        winner = commit if commit.status_code == 200 else release
        assert winner.json()["state"] == ("committed" if winner is commit else "released")
        if winner is commit:
            committed_total += 3
        final = (await live.get(url, headers=org.key_headers)).json()
        assert final["state"] == winner.json()["state"]
    usage = (await live.get(f"{API}/usage", headers=org.key_headers)).json()
    assert usage["turns"]["current"] == committed_total
    standing = await live.post(f"{API}/check", json={"metric": "turns"}, headers=org.key_headers)
    assert standing.json()["reserved"] == 0


async def test_a_hold_and_a_usage_event_cannot_both_take_the_last_unit(
    client: httpx.AsyncClient, live: httpx.AsyncClient
) -> None:
    org = await create_org(client)  # free: 2 agents, hard gauge
    assert await _event(live, org, "agents", 1) == 200
    for _ in range(12):
        decision, status = await asyncio.gather(
            _reserve(live, org, "agents", 1), _event(live, org, "agents", 1)
        )
        assert decision["allowed"] != (status == 200), (decision, status)
        if decision["allowed"]:
            url = f"{API}/reservations/{decision['reservation']['id']}/release"
            assert (await live.post(url, headers=org.key_headers)).status_code == 200
        else:
            assert await _event(live, org, "agents", -1) == 200
    usage = (await live.get(f"{API}/usage", headers=org.key_headers)).json()
    assert usage["agents"]["current"] == 1


async def test_a_credit_hold_and_a_consume_cannot_both_spend_the_balance(
    client: httpx.AsyncClient, live: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)  # 100 monthly credits
    admin = await create_superadmin_user(client, settings)
    for round_ in range(10):
        decision, consume = await asyncio.gather(
            _reserve(live, org, "credits", 60),
            live.post(
                f"{API}/credits/consume",
                json={"amount": 60, "idempotency_key": f"race-{round_}"},
                headers=org.key_headers,
            ),
        )
        assert consume.status_code in (200, 402), consume.text
        assert decision["allowed"] != (consume.status_code == 200), (decision, consume.text)
        if decision["allowed"]:
            url = f"{API}/reservations/{decision['reservation']['id']}/release"
            assert (await live.post(url, headers=org.key_headers)).status_code == 200
        else:
            refill = await live.post(
                f"{API}/admin/organizations/{org.id}/credits",
                json={"amount": 60, "reason": "next round"},
                headers=admin.headers,
            )
            assert refill.status_code == 201, refill.text
    credits = (await live.get(f"{API}/credits", headers=org.key_headers)).json()
    assert credits["total_credits"] == 100
