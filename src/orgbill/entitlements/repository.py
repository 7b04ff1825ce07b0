"""One round trip for everything plan resolution (and the profile) needs about an organization."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from orgbill.entitlements.resolver import ENTITLING_STATUSES
from orgbill.models import CreditBalance, EnterpriseContract, PlanCatalog, Subscription
from orgbill.plans.store import CATALOG_ROW_ID


@dataclass(frozen=True, slots=True)
class PlanInputs:
    contract: EnterpriseContract | None
    subscription: Subscription | None
    catalog_revision: str | None
    # The org's credit balance row (None before its first credit movement): rides along so
    # the profile's total_credits costs no extra round trip.
    credit_balance: CreditBalance | None = None


def current_subscription_id(org_id: Any) -> Any:
    """Correlated subquery: the subscription that speaks for the org — an entitling one if
    any, else the newest (so explain can say why it does not apply)."""
    candidate = aliased(Subscription)
    entitling_first = case((candidate.status.in_(ENTITLING_STATUSES), 0), else_=1)
    return (
        select(candidate.id)
        .where(candidate.organization_id == org_id)
        .order_by(entitling_first, candidate.created_at.desc())
        .limit(1)
        .correlate_except(candidate)
        .scalar_subquery()
    )


def catalog_revision_column() -> Any:
    return (
        select(PlanCatalog.content_hash)
        .where(PlanCatalog.id == CATALOG_ROW_ID)
        .scalar_subquery()
        .label("catalog_revision")
    )


def with_plan_inputs(stmt: Select[Any], org_id: Any) -> Select[Any]:
    """Adds (contract, subscription, catalog revision, credit balance) to a select over an
    organization."""
    return (
        stmt.add_columns(EnterpriseContract, Subscription, catalog_revision_column(), CreditBalance)
        .outerjoin(EnterpriseContract, EnterpriseContract.organization_id == org_id)
        .outerjoin(Subscription, Subscription.id == current_subscription_id(org_id))
        .outerjoin(CreditBalance, CreditBalance.organization_id == org_id)
    )


def plan_inputs_from_row(
    contract: Any, subscription: Any, revision: Any, credit_balance: Any = None
) -> PlanInputs:
    return PlanInputs(
        contract=contract,
        subscription=subscription,
        catalog_revision=revision,
        credit_balance=credit_balance,
    )


async def load_plan_inputs(session: AsyncSession, org_id: uuid.UUID) -> PlanInputs:
    stmt = (
        select(EnterpriseContract, Subscription, catalog_revision_column(), CreditBalance)
        .select_from(select(1).subquery())
        .outerjoin(EnterpriseContract, EnterpriseContract.organization_id == org_id)
        .outerjoin(Subscription, Subscription.id == current_subscription_id(org_id))
        .outerjoin(CreditBalance, CreditBalance.organization_id == org_id)
    )
    row = (await session.execute(stmt)).one()
    return plan_inputs_from_row(*row)
