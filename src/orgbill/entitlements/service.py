"""Gathers an organization's resolution inputs and calls the pure resolver. Every read and
every limit check goes through `effective_plan`, so they all agree — on the plan, its
limits and the billing period."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.entitlements import repository
from orgbill.entitlements.repository import PlanInputs, parse_overrides
from orgbill.entitlements.resolver import EffectivePlan, OrgOverrides, resolve
from orgbill.kit.time import utcnow
from orgbill.models import Organization
from orgbill.plans.catalog import Catalog
from orgbill.plans.store import CatalogStore


class PlanHolder(Protocol):
    """What a request's org access offers this layer (auth's `OrgAccess` is one): the org,
    its prefetched inputs and a slot for this request's resolved plan. A protocol, so
    entitlements does not import auth, which sits above it."""

    @property
    def organization(self) -> Organization: ...

    plan_inputs: PlanInputs | None
    effective_plan: EffectivePlan | None


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
    session: AsyncSession, access: PlanHolder, store: CatalogStore, now: datetime | None = None
) -> EffectivePlan:
    """The effective plan of the org a request acts on, reusing prefetched inputs; resolved
    once per request (the rate limiter and the route share it)."""
    if access.effective_plan is None:
        if access.plan_inputs is None:
            access.plan_inputs = await repository.load_plan_inputs(session, access.organization.id)
        access.effective_plan = await effective_plan(
            session, access.organization, store, now or utcnow(), access.plan_inputs
        )
    return access.effective_plan
