"""Gathers an organization's resolution inputs and calls the pure resolver. Every read and
every limit check goes through `effective_plan`, so they all agree."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth.principal import OrgAccess
from orgbill.entitlements import repository
from orgbill.entitlements.repository import PlanInputs, parse_overrides
from orgbill.entitlements.resolver import EffectivePlan, OrgOverrides, resolve
from orgbill.kit.time import utcnow
from orgbill.models import Organization
from orgbill.plans.catalog import Catalog
from orgbill.plans.store import CatalogStore


def org_overrides(org: Organization) -> OrgOverrides:
    return OrgOverrides(
        limits=parse_overrides("organization override", org.limit_overrides),
        rate_limit=org.rate_limit,
        entitlements=tuple(org.entitlements or ()),
    )


def resolve_with(
    org: Organization, inputs: PlanInputs, catalog: Catalog, now: datetime
) -> EffectivePlan:
    return resolve(
        contract=inputs.contract,
        subscription=inputs.subscription,
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
    """The effective plan of the org a request acts on, reusing prefetched inputs; resolved
    once per request (the rate limiter and the route share it)."""
    if access.effective_plan is None:
        access.effective_plan = await effective_plan(
            session, access.organization, store, now or utcnow(), access.plan_inputs
        )
    return access.effective_plan
