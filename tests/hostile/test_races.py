"""Conditional writes under real concurrency (uvicorn on loopback, both databases): a race
never forks state."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import func, select

from orgbill.config import Settings
from orgbill.db import Database
from orgbill.models import ApiKey, Membership, Role
from tests.fixtures.factories import API, add_member, create_org, register_user
from tests.fixtures.server import serve

RACERS = 8


async def _count(settings: Settings, stmt: object) -> int:
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=False) as session:
            return int(await session.scalar(stmt) or 0)  # type: ignore[call-overload]
    finally:
        await database.dispose()


async def test_concurrent_regenerations_with_one_key_yield_exactly_one_successor(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    org = await create_org(client)
    with serve(settings) as base_url:
        limits = httpx.Limits(max_connections=RACERS)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
            responses = await asyncio.gather(
                *(
                    http.post(f"{API}/organization/regenerate-key", headers=org.key_headers)
                    for _ in range(RACERS)
                )
            )
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200] + [401] * (RACERS - 1), statuses
            [winner] = [r for r in responses if r.status_code == 200]
            successor = winner.json()["api_key"]
            for loser in (r for r in responses if r.status_code == 401):
                assert loser.json()["error"]["code"] == "unauthorized"
            fresh = await http.get(f"{API}/organization", headers={"X-Api-Key": successor})
            assert fresh.status_code == 200
            old = await http.get(f"{API}/organization", headers=org.key_headers)
            assert old.status_code == 401
    live = select(func.count()).where(
        ApiKey.organization_id == uuid.UUID(org.id), ApiKey.revoked_at.is_(None)
    )
    assert await _count(settings, live) == 1


async def test_two_owners_removing_each_other_at_once_leave_one_owner(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    org = await create_org(client)
    second = await register_user(client, "second-owner")
    assert (await add_member(client, org, second, "owner")).status_code == 201
    with serve(settings) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            first_removes_second = http.delete(
                f"{API}/organizations/{org.id}/members/{second.id}", headers=org.owner.headers
            )
            second_demotes_first = http.patch(
                f"{API}/organizations/{org.id}/members/{org.owner.id}",
                json={"role": "member"},
                headers=second.headers,
            )
            responses = await asyncio.gather(first_removes_second, second_demotes_first)
    # Serialised on the organization's row: whichever ran second saw a lone owner, or was
    # no longer an owner; either way one owner remains.
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] in (200, 204) and statuses[1] in (403, 404, 409), statuses
    owners = select(func.count()).where(
        Membership.organization_id == uuid.UUID(org.id), Membership.role == Role.OWNER
    )
    assert await _count(settings, owners) == 1
