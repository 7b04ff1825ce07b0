"""One EffectivePlan per request: every route shows the same period, and a stored catalog
written by a newer version (unknown limits) serves normally."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orgbill.config import Settings
from orgbill.db import Database
from orgbill.entitlements.periods import add_months
from orgbill.entitlements.resolver import OrgOverrides, resolve
from orgbill.kit.time import isoformat_z
from orgbill.models import PlanCatalog
from orgbill.plans.catalog import CatalogError, load_catalog, parse_catalog
from tests.fixtures.factories import API, create_org
from tests.fixtures.plans import set_subscription


async def test_late_renewal_shows_one_period_on_every_route(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    now = datetime.now(UTC).replace(microsecond=0)
    # The stored period ended 10 days ago; Stripe renewed, but its webhook has not arrived.
    stale_start = add_months(now - timedelta(days=10), -1)
    stale_end = now - timedelta(days=10)
    sub_id = await set_subscription(
        app, org.id, "pro", period_start=stale_start, period_end=stale_end
    )
    expected_start, expected_end = isoformat_z(stale_end), isoformat_z(add_months(stale_end, 1))
    key = org.key_headers

    profile = await client.get(f"{API}/organizations/profile/{org.id}", headers=key)
    composite = await client.get(f"{API}/organizations/{org.id}", headers=key)
    current = await client.get(f"{API}/plans/current", headers=key)
    explain = await client.get(f"{API}/organizations/{org.id}/plan/explain", headers=key)
    usage = await client.get(f"{API}/usage", headers=key)
    billing = await client.get(f"{API}/billing/subscription", headers=key)
    for response in (profile, composite, current, explain, usage, billing):
        assert response.status_code == 200, response.text

    starts = {
        "composite.plan": composite.json()["plan"]["period_start"],
        "composite.subscription": composite.json()["subscription"]["current_period_start"],
        "plans/current.usage": current.json()["usage"]["period_start"],
        "explain": explain.json()["period_start"],
        "usage": usage.json()["period_start"],
        "billing/subscription": billing.json()["current_period_start"],
    }
    ends = {
        "profile": profile.json()["period_end"],
        "composite.plan": composite.json()["plan"]["period_end"],
        "composite.subscription": composite.json()["subscription"]["current_period_end"],
        "plans/current.usage": current.json()["usage"]["period_end"],
        "explain": explain.json()["period_end"],
        "usage": usage.json()["period_end"],
        "usage quota header": usage.headers["x-quota-reset"],
        "billing quota header": billing.headers["x-quota-reset"],
        "billing/subscription": billing.json()["current_period_end"],
    }
    assert set(starts.values()) == {expected_start}, starts
    assert set(ends.values()) == {expected_end}, ends

    # The renewal webhook lands: every route moves together to the period Stripe names.
    renewed_end = add_months(stale_end, 1) + timedelta(hours=1)
    await set_subscription(
        app,
        org.id,
        "pro",
        period_start=stale_end,
        period_end=renewed_end,
        stripe_subscription_id=sub_id,
    )
    profile = await client.get(f"{API}/organizations/profile/{org.id}", headers=key)
    usage = await client.get(f"{API}/usage", headers=key)
    assert profile.json()["period_end"] == usage.json()["period_end"] == isoformat_z(renewed_end)


def test_free_org_profile_period_is_the_calendar_month() -> None:
    """The profile always names the period the counters use (also on the free plan)."""
    now = datetime(2026, 12, 15, tzinfo=UTC)
    plan = resolve(
        contract=None, subscription=None, catalog=load_catalog(), overrides=OrgOverrides(), now=now
    )
    assert (plan.period.start, plan.period.end) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


@asynccontextmanager
async def stored_catalog(settings: Settings, document: dict[str, Any]) -> AsyncIterator[None]:
    """Writes `document` as the loaded catalog (as a newer version's `plans sync` would),
    and puts the original back afterwards."""
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=True) as session:
            row = await session.get(PlanCatalog, 1)
            assert row is not None
            original = (row.version, row.content_hash, copy.deepcopy(row.document))
            row.version, row.content_hash = row.version + 1, "newer-version-catalog"
            row.document = document
            await session.commit()
        try:
            yield
        finally:
            async with database.session(writes=True) as session:
                row = await session.get(PlanCatalog, 1)
                assert row is not None
                row.version, row.content_hash, row.document = original
                await session.commit()
    finally:
        await database.dispose()


async def _loaded_document(settings: Settings) -> dict[str, Any]:
    database = Database.from_settings(settings)
    try:
        async with database.session(writes=False) as session:
            row = await session.get(PlanCatalog, 1)
            assert row is not None
            return copy.deepcopy(row.document)
    finally:
        await database.dispose()


async def test_stored_catalog_with_an_unknown_limit_serves_normally(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    org = await create_org(client)
    document = await _loaded_document(settings)
    for plan in document["plans"].values():
        plan["limits"]["max_robots"] = 7  # a limit only a newer version knows
    document["plans"]["free"]["badge_colour"] = "teal"  # and a field it added
    # `plans sync` stays strict: this version would refuse to load such a file.
    with pytest.raises(CatalogError, match="unknown"):
        parse_catalog(document)

    key = org.key_headers
    async with stored_catalog(settings, document):
        profile = await client.get(f"{API}/organizations/profile/{org.id}", headers=key)
        composite = await client.get(f"{API}/organizations/{org.id}", headers=key)
        explain = await client.get(f"{API}/organizations/{org.id}/plan/explain", headers=key)
        current = await client.get(f"{API}/plans/current", headers=key)
        usage = await client.get(f"{API}/usage", headers=key)
        plans = await client.get(f"{API}/plans")
        for response in (profile, composite, explain, current, usage, plans):
            assert response.status_code == 200, response.text
        # Kept and shown as stored, beside the limits this version enforces.
        assert profile.json()["limits"]["max_robots"] == 7
        assert profile.json()["max_members"] == document["plans"]["free"]["limits"]["max_members"]
        assert explain.json()["limits"]["max_robots"] == {"value": 7, "source": "plan:free"}
        assert composite.json()["plan"]["limits"]["max_robots"] == 7
        listed = {p["code"]: p for p in plans.json()["data"]}
        assert listed["pro"]["limits"]["max_robots"] == 7

    # Back on the original catalog, the unknown limit is gone again.
    profile = await client.get(f"{API}/organizations/profile/{org.id}", headers=key)
    assert profile.status_code == 200 and "max_robots" not in profile.json()["limits"]
