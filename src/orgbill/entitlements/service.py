"""Gathers an organization's resolution inputs and calls the pure resolver. Every read and
every limit check goes through `effective_plan`, so they all agree."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth.principal import OrgAccess
from orgbill.entitlements import repository
from orgbill.entitlements.repository import PlanInputs
from orgbill.entitlements.resolver import (
    ContractInput,
    EffectivePlan,
    OrgOverrides,
    SubscriptionInput,
    resolve,
)
from orgbill.kit.time import utcnow
from orgbill.models import EnterpriseContract, Organization, Subscription
from orgbill.plans.catalog import Catalog, LimitValue, parse_limit
from orgbill.plans.store import CatalogStore


def parse_overrides(owner: str, raw: Mapping[str, Any] | None) -> dict[str, LimitValue]:
    """Stored overrides use the plans file's value syntax ("unlimited", decimal strings)."""
    return {name: parse_limit(owner, name, value) for name, value in (raw or {}).items()}


def org_overrides(org: Organization) -> OrgOverrides:
    return OrgOverrides(
        limits=parse_overrides("organization override", org.limit_overrides),
        rate_limit=org.rate_limit,
        entitlements=tuple(org.entitlements or ()),
    )


def contract_input(contract: EnterpriseContract | None) -> ContractInput | None:
    if contract is None:
        return None
    return ContractInput(
        starts_at=contract.starts_at,
        ends_at=contract.ends_at,
        overrides=parse_overrides("enterprise contract", contract.overrides),
        plan_code=contract.plan_code,
    )


def subscription_input(subscription: Subscription | None) -> SubscriptionInput | None:
    if subscription is None:
        return None
    return SubscriptionInput(
        stripe_subscription_id=subscription.stripe_subscription_id,
        status=subscription.status,
        plan_code=subscription.plan_code,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
    )


def resolve_with(
    org: Organization, inputs: PlanInputs, catalog: Catalog, now: datetime
) -> EffectivePlan:
    return resolve(
        contract=contract_input(inputs.contract),
        subscription=subscription_input(inputs.subscription),
        catalog=catalog,
        overrides=org_overrides(org),
        now=now,
    )


async def effective_plan(
    session: AsyncSession,
    org: Organization,
    store: CatalogStore,
    now: datetime,
    inputs: PlanInputs | None = None,
) -> EffectivePlan:
    """`inputs` may come prefetched with the caller's identity (one round trip per request)."""
    if inputs is None:
        inputs = await repository.load_plan_inputs(session, org.id)
    catalog = await store.current(session, inputs.catalog_revision)
    return resolve_with(org, inputs, catalog, now)


async def plan_for_access(
    session: AsyncSession, access: OrgAccess, store: CatalogStore, now: datetime | None = None
) -> EffectivePlan:
    """The effective plan of the org a request acts on, reusing prefetched inputs."""
    return await effective_plan(
        session, access.organization, store, now or utcnow(), access.plan_inputs
    )
