"""Gathers an organization's resolution inputs and calls the pure resolver."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.entitlements.resolver import (
    ContractInput,
    EffectivePlan,
    OrgOverrides,
    SubscriptionInput,
    resolve,
)
from orgbill.models import Organization
from orgbill.plans.catalog import Catalog


def org_overrides(org: Organization) -> OrgOverrides:
    return OrgOverrides(rate_limit=org.rate_limit, entitlements=tuple(org.entitlements or ()))


def resolve_for_org(
    org: Organization,
    catalog: Catalog,
    now: datetime,
    *,
    contract: ContractInput | None,
    subscription: SubscriptionInput | None,
) -> EffectivePlan:
    return resolve(
        contract=contract,
        subscription=subscription,
        catalog=catalog,
        overrides=org_overrides(org),
        now=now,
    )


async def effective_plan(
    session: AsyncSession, org: Organization, catalog: Catalog, now: datetime
) -> EffectivePlan:
    """The one resolution every read and limit check uses."""
    del session  # contracts and subscriptions are read here once their tables exist
    return resolve_for_org(org, catalog, now, contract=None, subscription=None)
