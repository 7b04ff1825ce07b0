"""Review F: billing periods at month ends and the monthly allowance they drive."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from fastapi import FastAPI

from orgbill.credits import repository as credits_repository
from orgbill.credits import service as credits_service
from orgbill.credits.schemas import CreditConsume
from orgbill.entitlements.periods import Period
from orgbill.entitlements.resolver import EffectivePlan, OrgOverrides, SubscriptionInput, resolve
from orgbill.plans.catalog import load_catalog
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


async def consume_at(
    app: FastAPI, org_id: uuid.UUID, plan: EffectivePlan, now: datetime, amount: int = 1
) -> Decimal:
    async with app.state.database.session(writes=True) as session:
        total = await credits_service.consume(
            session,
            org_id,
            None,
            plan,
            CreditConsume(amount=Decimal(amount), idempotency_key=f"rf-{uuid.uuid4()}"),
            now,
        )
        await session.commit()
    return total


async def read_at(app: FastAPI, org_id: uuid.UUID, plan: EffectivePlan, now: datetime) -> Decimal:
    async with app.state.database.session(writes=False) as session:
        state = await credits_repository.get_balance(session, org_id)
        return await credits_service.total_from_balance(session, org_id, plan, now, state)


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
    assert await consume_at(app, org_id, pro(start, end, gap), gap) == 4999
    # The renewal arrives with Stripe's real period, Feb 28 -> Mar 31 (anchor day 31).
    renewed_end = at("2027-03-31T09:30:00")
    mar_29 = at("2027-03-29T12:00:00")
    plan = pro(end, renewed_end, mar_29)
    assert plan.period == Period(end, renewed_end)
    # Still inside the billing month the credits were granted for: nothing may have expired.
    assert await read_at(app, org_id, plan, mar_29) == 4999


async def test_an_allowance_is_granted_for_a_subscription_period_that_began_before_the_free_month(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A subscription created Dec 31 20:00 (first payment pending: `incomplete`) becomes
    active on Jan 1 with its period Dec 31 20:00 -> Jan 31 20:00. Meanwhile, on Jan 1, the org
    spent a credit on the free plan (writing free's January allowance). The pro month has
    never been granted: its 5000 credits must arrive."""
    org_id = uuid.UUID((await create_org(client)).id)
    start, end = at("2026-12-31T20:00:00"), at("2027-01-31T20:00:00")
    jan_1 = at("2027-01-01T06:00:00")
    assert await consume_at(app, org_id, free(jan_1), jan_1) == 99
    activated = at("2027-01-01T10:00:00")
    plan = pro(start, end, activated)
    assert plan.source == "stripe" and plan.period == Period(start, end)
    assert await read_at(app, org_id, plan, activated) == 99 + 5000
    assert await consume_at(app, org_id, plan, activated) == 99 + 5000 - 1


async def test_moving_a_contracts_start_by_a_day_does_not_grant_the_month_twice(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """An admin corrects a contract's starts_at (Dec 1 -> Dec 2, PUT .../enterprise): the
    monthly anniversary moves by a day, but the org is still in its first contract month.
    One month's allowance (250,000), not two overlapping ones."""
    from orgbill.entitlements.resolver import ContractInput

    org_id = uuid.UUID((await create_org(client)).id)
    now = at("2027-03-05T12:00:00")

    def enterprise(starts: str) -> EffectivePlan:
        contract = ContractInput(starts_at=at(starts), ends_at=None)
        return resolve(
            contract=contract, subscription=None, catalog=CATALOG, overrides=OrgOverrides(), now=now
        )

    assert await consume_at(app, org_id, enterprise("2027-03-01T10:00:00"), now) == 249_999
    corrected = enterprise("2027-03-02T10:00:00")
    assert await read_at(app, org_id, corrected, now) == 249_999
