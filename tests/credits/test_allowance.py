"""Monthly allowances per calendar month of the billing anchor, driven through the clock the
resolver and the credit service take (no sleeps): a yearly plan gets twelve over its year."""

from __future__ import annotations

import copy
import tomllib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from orgbill.credits import repository as credits_repository
from orgbill.credits import service as credits_service
from orgbill.credits.schemas import CreditConsume
from orgbill.entitlements.periods import add_months
from orgbill.entitlements.resolver import EffectivePlan, OrgOverrides, SubscriptionInput, resolve
from orgbill.models import CreditGrant, CreditLedgerEntry
from orgbill.plans.catalog import DEFAULT_PLANS_FILE, CatalogError, parse_catalog
from tests.fixtures.factories import create_org

ANCHOR = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)  # month ends clamp: Feb 28, Mar 31, …
YEARLY_PRICE = "price_test_pro_yearly"


def yearly_catalog(*, rollover: bool) -> Any:
    document = tomllib.loads(DEFAULT_PLANS_FILE.read_text())
    plan = copy.deepcopy(document["plans"]["pro"])
    plan.update(
        interval="year",
        amount=29000,
        stripe_price_id=YEARLY_PRICE,
        stripe_lookup_key=None,
        rank=5,
    )
    plan["credits_rollover"] = rollover
    plan["limits"].update(monthly_credits=100, max_credits=1000)
    document["plans"]["pro_yearly"] = plan
    return parse_catalog(document)


def yearly_plan(catalog: Any, now: datetime) -> EffectivePlan:
    subscription = SubscriptionInput(
        stripe_subscription_id="sub_yearly",
        status="active",
        stripe_price_id=YEARLY_PRICE,
        current_period_start=ANCHOR,
        current_period_end=add_months(ANCHOR, 12),
    )
    return resolve(
        contract=None,
        subscription=subscription,
        catalog=catalog,
        overrides=OrgOverrides(),
        now=now,
    )


async def write_at(app: FastAPI, org_id: uuid.UUID, plan: EffectivePlan, now: datetime) -> Decimal:
    async with app.state.database.session(writes=True) as session:
        total = await credits_service.consume(
            session,
            org_id,
            None,
            plan,
            CreditConsume(amount=Decimal(1), idempotency_key=f"at-{now.isoformat()}"),
            now,
        )
        await session.commit()
    return total


async def read_at(app: FastAPI, org_id: uuid.UUID, plan: EffectivePlan, now: datetime) -> Decimal:
    async with app.state.database.session(writes=False) as session:
        state = await credits_repository.get_balance(session, org_id)
        return await credits_service.total_from_balance(session, org_id, plan, now, state)


async def recorded(app: FastAPI, org_id: uuid.UUID) -> dict[str, Any]:
    async with app.state.database.session(writes=False) as session:
        months = (
            await session.scalars(
                select(CreditGrant.allowance_month)
                .where(CreditGrant.organization_id == org_id, CreditGrant.kind == "monthly")
                .order_by(CreditGrant.allowance_month)
            )
        ).all()
        kinds = dict(
            (
                await session.execute(
                    select(CreditLedgerEntry.kind, func.count())
                    .where(CreditLedgerEntry.organization_id == org_id)
                    .group_by(CreditLedgerEntry.kind)
                )
            ).all()
        )
        amounts = (
            await session.scalars(
                select(CreditLedgerEntry.amount).where(CreditLedgerEntry.organization_id == org_id)
            )
        ).all()
        remaining = (
            await session.scalars(
                select(CreditGrant.remaining).where(CreditGrant.organization_id == org_id)
            )
        ).all()
        state = await credits_repository.get_balance(session, org_id)
    assert state is not None
    return {
        "months": list(months),
        "kinds": kinds,
        "ledger_matches": sum(amounts, Decimal(0)) == state.balance,
        "grants_match": sum(remaining, Decimal(0)) == state.balance,
        "balance": state.balance,
    }


async def test_a_yearly_plan_gets_twelve_monthly_grants_over_its_year(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org_id = uuid.UUID((await create_org(client)).id)
    catalog = yearly_catalog(rollover=False)
    month_starts = [add_months(ANCHOR, k) for k in range(12)]
    for index, start in enumerate(month_starts):
        mid_month = start.replace(hour=12)
        plan = yearly_plan(catalog, mid_month)
        # Derived at read: this month's 100 show before any write (last month's 99 expired).
        assert await read_at(app, org_id, plan, mid_month) == 100
        assert await write_at(app, org_id, plan, mid_month) == 99
        state = await recorded(app, org_id)
        assert state["months"] == month_starts[: index + 1]
        assert state["ledger_matches"] and state["grants_match"]
    assert state["kinds"] == {"monthly": 12, "consume": 12, "expiry": 11}
    # Each month's allowance expires at that month's end (Jan 31 anchor: Feb 28, then Mar 31).
    async with app.state.database.session(writes=False) as session:
        ends = (
            await session.scalars(
                select(CreditGrant.expires_at)
                .where(CreditGrant.organization_id == org_id)
                .order_by(CreditGrant.allowance_month)
                .limit(3)
            )
        ).all()
    assert [e.isoformat() for e in ends] == [
        "2027-02-28T09:30:00+00:00",
        "2027-03-31T09:30:00+00:00",
        "2027-04-30T09:30:00+00:00",
    ]
    # The next year's first month (the renewal webhook not even arrived) brings the 13th.
    next_year = add_months(ANCHOR, 12).replace(hour=12)
    assert await write_at(app, org_id, yearly_plan(catalog, next_year), next_year) == 99
    assert len((await recorded(app, org_id))["months"]) == 13


async def test_a_rollover_plan_keeps_every_month_and_catches_up_on_unrecorded_ones(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    org_id = uuid.UUID((await create_org(client)).id)
    catalog = yearly_catalog(rollover=True)
    first = ANCHOR.replace(hour=12)
    assert await write_at(app, org_id, yearly_plan(catalog, first), first) == 99
    # Nobody touches credits for months 2 and 3; in month 4 a read already counts them all.
    fourth = add_months(ANCHOR, 3).replace(hour=12)
    plan = yearly_plan(catalog, fourth)
    assert await read_at(app, org_id, plan, fourth) == 399
    assert await write_at(app, org_id, plan, fourth) == 398
    state = await recorded(app, org_id)
    assert state["months"] == [add_months(ANCHOR, k) for k in range(4)]
    assert state["kinds"] == {"monthly": 4, "consume": 2}
    assert state["ledger_matches"] and state["grants_match"]
    # The plan's max_credits (1000) trims what arrives: month 11 brings 2, month 12 nothing.
    last = add_months(ANCHOR, 11).replace(hour=12)
    plan = yearly_plan(catalog, last)
    assert await read_at(app, org_id, plan, last) == 1000
    assert await write_at(app, org_id, plan, last) == 999
    assert len((await recorded(app, org_id))["months"]) == 11


def test_plans_sync_refuses_a_credits_rollover_that_is_not_a_boolean() -> None:
    document = tomllib.loads(DEFAULT_PLANS_FILE.read_text())
    document["plans"]["pro"]["credits_rollover"] = "yes"
    with pytest.raises(CatalogError, match="plan 'pro', field 'credits_rollover'"):
        parse_catalog(document)
    assert yearly_catalog(rollover=True).plans["pro_yearly"].credits_rollover is True
    assert (
        parse_catalog(tomllib.loads(DEFAULT_PLANS_FILE.read_text())).plans["pro"].credits_rollover
        is False
    )
