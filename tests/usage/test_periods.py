"""Billing periods: derived from the plan, half-open, and counters reset by themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from orgbill.entitlements.periods import Period, add_months
from orgbill.entitlements.resolver import ContractInput, OrgOverrides, SubscriptionInput, resolve
from orgbill.kit.time import isoformat_z
from orgbill.plans.catalog import load_catalog
from tests.fixtures.factories import API, OrgHandle, assert_error, create_org
from tests.fixtures.plans import set_subscription
from tests.fixtures.stripe import PRO_PRICE

CATALOG = load_catalog()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def free_plan(now: datetime) -> Any:
    return resolve(
        contract=None, subscription=None, catalog=CATALOG, overrides=OrgOverrides(), now=now
    )


def test_free_plan_period_is_the_utc_calendar_month_and_half_open() -> None:
    boundary = at("2026-12-01T00:00:00")
    before = free_plan(boundary).period_at(boundary - timedelta(microseconds=1))
    exactly = free_plan(boundary).period_at(boundary)
    assert before == Period(at("2026-11-01T00:00:00"), boundary)
    assert exactly == Period(boundary, at("2027-01-01T00:00:00"))
    assert not before.contains(boundary) and exactly.contains(boundary)


def test_stripe_period_is_the_subscriptions_and_steps_on_when_the_renewal_is_late() -> None:
    start, end = at("2026-11-15T10:30:00"), at("2026-12-15T10:30:00")
    sub = SubscriptionInput(
        "sub_1", "active", PRO_PRICE, current_period_start=start, current_period_end=end
    )
    now = at("2026-11-20T00:00:00")
    plan = resolve(
        contract=None, subscription=sub, catalog=CATALOG, overrides=OrgOverrides(), now=now
    )
    assert plan.period_at(now) == Period(start, end)
    assert plan.period_at(end) == Period(end, at("2027-01-15T10:30:00"))
    assert plan.period_at(end - timedelta(microseconds=1)).start == start
    # A short (trial) period is followed by one starting exactly at its end.
    trial = SubscriptionInput(
        "sub_2",
        "trialing",
        PRO_PRICE,
        current_period_start=start,
        current_period_end=start + timedelta(days=14),
    )
    plan = resolve(
        contract=None, subscription=trial, catalog=CATALOG, overrides=OrgOverrides(), now=now
    )
    assert plan.period_at(start + timedelta(days=14)).start == start + timedelta(days=14)


def test_enterprise_period_is_the_contracts_monthly_anniversary_clamped_to_month_end() -> None:
    contract = ContractInput(starts_at=at("2026-01-31T09:00:00"), ends_at=None)
    now = at("2026-03-05T00:00:00")
    plan = resolve(
        contract=contract, subscription=None, catalog=CATALOG, overrides=OrgOverrides(), now=now
    )
    assert plan.period_at(now) == Period(at("2026-02-28T09:00:00"), at("2026-03-31T09:00:00"))
    assert add_months(at("2024-01-31T00:00:00"), 1) == at("2024-02-29T00:00:00")


async def _turns(client: httpx.AsyncClient, org: OrgHandle) -> dict[str, Any]:
    response = await client.get(f"{API}/usage", headers=org.key_headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _post(
    client: httpx.AsyncClient, org: OrgHandle, *events: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"{API}/usage/events", json={"events": list(events)}, headers=org.key_headers
    )


async def test_event_exactly_at_the_boundary_counts_in_the_next_period_and_renewal_resets(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(days=20), now + timedelta(minutes=2)
    sub_id = await set_subscription(app, org.id, "pro", period_start=start, period_end=end)
    response = await _post(
        client,
        org,
        {"metric": "turns", "quantity": 10},
        {
            "metric": "turns",
            "quantity": 1,
            "timestamp": isoformat_z(end - timedelta(microseconds=1)),
        },
        {"metric": "turns", "quantity": 100, "timestamp": isoformat_z(end)},
    )
    assert response.status_code == 200 and response.json()["accepted"] == 3
    body = await _turns(client, org)
    assert body["turns"]["current"] == 11
    assert (body["period_start"], body["period_end"]) == (isoformat_z(start), isoformat_z(end))

    # The renewal webhook moves the period on: the counter starts from zero, with no job.
    renewed_start = now - timedelta(minutes=1)
    await set_subscription(
        app,
        org.id,
        "pro",
        period_start=renewed_start,
        period_end=renewed_start + timedelta(days=30),
        stripe_subscription_id=sub_id,
    )
    assert (await _turns(client, org))["turns"]["current"] == 0


async def test_upgrade_mid_period_carries_usage_and_downgrade_refuses_new_hard_usage(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org = await create_org(client)
    now = datetime.now(UTC)
    period = {"period_start": now - timedelta(days=5), "period_end": now + timedelta(days=25)}
    sub_id = await set_subscription(app, org.id, "pro", **period)
    assert (await _post(client, org, {"metric": "turns", "quantity": 15000})).status_code == 200

    await set_subscription(app, org.id, "business", stripe_subscription_id=sub_id, **period)
    body = await _turns(client, org)
    assert body["plan"] == "business"
    assert body["turns"] == {"current": 15000, "limit": 200000, "percentage": 7.5}
    assert (await _post(client, org, {"metric": "turns", "quantity": 10000})).status_code == 200

    await set_subscription(app, org.id, "pro", stripe_subscription_id=sub_id, **period)
    body = await _turns(client, org)
    assert body["turns"] == {"current": 25000, "limit": 20000, "percentage": 125.0}
    assert any(w["type"] == "turns" and w["severity"] == "critical" for w in body["warnings"])
    refused = await _post(client, org, {"metric": "turns", "quantity": 1})
    assert_error(refused, 429, "quota_exceeded")
    assert refused.headers["x-quota-turns-used"] == "25000"
    # Soft meters still record.
    assert (await _post(client, org, {"metric": "messages", "quantity": 1})).status_code == 200
