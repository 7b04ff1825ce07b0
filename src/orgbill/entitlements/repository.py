"""One round trip for everything plan resolution (and the profile) needs about an organization.

Plain columns, not ORM entities: on the hot path, building entities costs more than the query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, Select, Uuid, bindparam, case, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from orgbill.entitlements.resolver import ENTITLING_STATUSES, ContractInput, SubscriptionInput
from orgbill.models import CreditBalance, EnterpriseContract, PlanCatalog, Subscription
from orgbill.plans.catalog import parse_limit
from orgbill.plans.limits import Limit
from orgbill.plans.store import CATALOG_ROW_ID


@dataclass(frozen=True, slots=True)
class BalanceState:
    """An org's credit balance row as plan inputs carry it (the credits domain reads and
    writes it; it lives here because the profile's one round trip fetches it)."""

    balance: Decimal
    monthly_granted_for: datetime | None


@dataclass(frozen=True, slots=True)
class PlanInputs:
    contract: ContractInput | None
    subscription: SubscriptionInput | None
    catalog_revision: str | None
    # The org's credit balance (None before its first credit movement): rides along so the
    # profile's total_credits costs no extra round trip.
    credit_balance: BalanceState | None = None


# Labelled, and read back by label: a caller's own columns may come before them in any number.
_CONTRACT_COLUMNS = (
    EnterpriseContract.id.label("plan_contract_id"),
    EnterpriseContract.starts_at.label("plan_contract_starts_at"),
    EnterpriseContract.ends_at.label("plan_contract_ends_at"),
    EnterpriseContract.overrides.label("plan_contract_overrides"),
    EnterpriseContract.plan_code.label("plan_contract_plan_code"),
)
_SUBSCRIPTION_COLUMNS = (
    Subscription.stripe_subscription_id.label("plan_sub_id"),
    Subscription.status.label("plan_sub_status"),
    Subscription.stripe_price_id.label("plan_sub_price_id"),
    Subscription.stripe_lookup_key.label("plan_sub_lookup_key"),
    Subscription.stripe_legacy_plan_id.label("plan_sub_legacy_plan_id"),
    Subscription.current_period_start.label("plan_sub_period_start"),
    Subscription.current_period_end.label("plan_sub_period_end"),
)
_BALANCE_COLUMNS = (
    CreditBalance.balance.label("plan_credit_balance"),
    CreditBalance.monthly_granted_for.label("plan_credit_granted_for"),
)


def current_subscription_id(org_id: Any) -> Any:
    """Correlated subquery: the subscription that speaks for the org — an entitling one if
    any, else the newest (so explain can say why it does not apply)."""
    candidate = aliased(Subscription)
    # Literal IN list: rendered once into the cached statement, not re-expanded per query.
    entitling = [literal_column(f"'{status}'") for status in sorted(ENTITLING_STATUSES)]
    entitling_first = case((candidate.status.in_(entitling), 0), else_=1)
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
    """Appends the plan-input columns (read back with `plan_inputs_from_row`)."""
    return (
        stmt.add_columns(
            *_CONTRACT_COLUMNS, *_SUBSCRIPTION_COLUMNS, catalog_revision_column(), *_BALANCE_COLUMNS
        )
        .outerjoin(EnterpriseContract, EnterpriseContract.organization_id == org_id)
        .outerjoin(Subscription, Subscription.id == current_subscription_id(org_id))
        .outerjoin(CreditBalance, CreditBalance.organization_id == org_id)
    )


def parse_overrides(owner: str, raw: dict[str, Any] | None) -> dict[str, Limit]:
    """Stored overrides use the plans file's value syntax ("unlimited", decimal strings);
    read leniently, like the stored catalog: a bad one is shown, never fatal."""
    return {
        name: parse_limit(owner, name, value, strict=False) for name, value in (raw or {}).items()
    }


def plan_inputs_from_row(row: Row[Any]) -> PlanInputs:
    """`row`: a row of a statement built with `with_plan_inputs`."""
    values = row._mapping
    contract = None
    if values["plan_contract_id"] is not None:
        contract = ContractInput(
            starts_at=values["plan_contract_starts_at"],
            ends_at=values["plan_contract_ends_at"],
            overrides=parse_overrides("enterprise contract", values["plan_contract_overrides"]),
            plan_code=values["plan_contract_plan_code"],
        )
    subscription = None
    if values["plan_sub_id"] is not None:
        subscription = SubscriptionInput(
            stripe_subscription_id=values["plan_sub_id"],
            status=values["plan_sub_status"],
            stripe_price_id=values["plan_sub_price_id"],
            stripe_lookup_key=values["plan_sub_lookup_key"],
            stripe_legacy_plan_id=values["plan_sub_legacy_plan_id"],
            current_period_start=values["plan_sub_period_start"],
            current_period_end=values["plan_sub_period_end"],
        )
    balance = values["plan_credit_balance"]
    return PlanInputs(
        contract=contract,
        subscription=subscription,
        catalog_revision=values["catalog_revision"],
        credit_balance=(
            BalanceState(balance, values["plan_credit_granted_for"])
            if balance is not None
            else None
        ),
    )


_ORG_ID = bindparam("org_id", type_=Uuid())
# Built once: constructing statements costs more than running them.
_PLAN_INPUTS = with_plan_inputs(select(literal_column("1")), _ORG_ID).select_from(
    select(literal_column("1")).subquery()
)


async def load_plan_inputs(session: AsyncSession, org_id: uuid.UUID) -> PlanInputs:
    row = (await session.execute(_PLAN_INPUTS, {"org_id": org_id})).one()
    return plan_inputs_from_row(row)
