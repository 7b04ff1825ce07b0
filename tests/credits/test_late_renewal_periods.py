"""A late renewal webhook on a month-end anchor: the derived next period keeps the anchor's
day (Jan 31 -> Feb 28 -> Mar 31, as Stripe bills), and so do the monthly credits written
before the webhook arrives (they last the whole Stripe month)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from orgbill.entitlements.periods import Period
from orgbill.entitlements.resolver import EffectivePlan, OrgOverrides, SubscriptionInput, resolve
from orgbill.plans.catalog import load_catalog
from tests.credits.test_allowance import read_at, write_at
from tests.fixtures.factories import create_org
from tests.fixtures.stripe import PRO_PRICE

CATALOG = load_catalog()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def pro(start: datetime, end: datetime, now: datetime, status: str = "active") -> EffectivePlan:
    sub = SubscriptionInput(
        "sub_review_f", status, PRO_PRICE, current_period_start=start, current_period_end=end
    )
    return resolve(
        contract=None, subscription=sub, catalog=CATALOG, overrides=OrgOverrides(), now=now
    )


def free(now: datetime) -> EffectivePlan:
    return resolve(
        contract=None, subscription=None, catalog=CATALOG, overrides=OrgOverrides(), now=now
    )


def test_a_late_renewal_of_a_jan_31_anchor_steps_to_mar_31_not_mar_28() -> None:
    """Stripe's anchor rule (periods.add_months): Jan 31 -> Feb 28 -> Mar 31. Before the
    renewal webhook lands, the stepped period must be the one Stripe will report."""
    start, end = at("2027-01-31T09:30:00"), at("2027-02-28T09:30:00")
    now = end + timedelta(minutes=10)  # renewal webhook not yet arrived
    assert pro(start, end, now).period == Period(end, at("2027-03-31T09:30:00"))
    # Leap year: Jan 31 -> Feb 29 -> Mar 31.
    start, end = at("2028-01-31T09:30:00"), at("2028-02-29T09:30:00")
    assert pro(start, end, end).period == Period(end, at("2028-03-31T09:30:00"))


async def test_monthly_credits_written_before_a_late_renewal_last_the_whole_stripe_month(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org_id = uuid.UUID((await create_org(client)).id)
    start, end = at("2027-01-31T09:30:00"), at("2027-02-28T09:30:00")
    # 10 minutes into the new Stripe month, the renewal webhook still on its way: a consume
    # writes this month's 5000 pro credits.
    gap = end + timedelta(minutes=10)
    assert await write_at(app, org_id, pro(start, end, gap), gap) == 4999
    # The renewal arrives with Stripe's real period, Feb 28 -> Mar 31 (anchor day 31).
    renewed_end = at("2027-03-31T09:30:00")
    mar_29 = at("2027-03-29T12:00:00")
    plan = pro(end, renewed_end, mar_29)
    assert plan.period == Period(end, renewed_end)
    # Still inside the billing month the credits were granted for: nothing may have expired.
    assert await read_at(app, org_id, plan, mar_29) == 4999
