"""Loading the plans file into the database (`orgbill plans sync`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth.principal import OrgAccess
from orgbill.entitlements import service as entitlements
from orgbill.kit.time import utcnow
from orgbill.plans import schemas
from orgbill.plans.catalog import (
    Catalog,
    CatalogError,
    PlanDef,
    parse_catalog,
)
from orgbill.plans.store import CatalogStore, lock_loaded_catalog, save_loaded_catalog
from orgbill.usage import service as usage_service


@dataclass
class SyncResult:
    version: int
    changed: bool
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)


def _content_hash(document: dict[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def sync_catalog(session: AsyncSession, document: dict[str, Any]) -> SyncResult:
    """Idempotent: the same file twice changes nothing. Validates everything first (strictly:
    this is where an unknown limit is refused), so a bad file changes nothing at all."""
    catalog: Catalog = parse_catalog(document)
    content_hash = _content_hash(document)
    loaded = await lock_loaded_catalog(session)
    if loaded is not None and loaded.content_hash == content_hash:
        return SyncResult(version=catalog.version, changed=False)
    if loaded is not None and catalog.version <= loaded.version:
        raise CatalogError(
            f"field 'version': the plans file changed but its version {catalog.version} is not "
            f"above the loaded version {loaded.version}; bump it"
        )
    before = set((loaded.document.get("plans") or {}) if loaded is not None else ())
    await save_loaded_catalog(session, loaded, catalog.version, content_hash, document, utcnow())
    return SyncResult(
        version=catalog.version,
        changed=True,
        created=sorted(set(catalog.plans) - before),
        updated=sorted(set(catalog.plans) & before),
        deactivated=sorted(before - set(catalog.plans)),
    )


# Reads


def plan_out(plan: PlanDef) -> schemas.PlanOut:
    return schemas.PlanOut(
        code=plan.code,
        name=plan.name,
        description=plan.description,
        price=plan.price,
        amount=plan.amount,
        currency=plan.currency,
        interval=plan.interval,
        stripe_price_id=plan.stripe_price_id,
        stripe_lookup_key=plan.stripe_lookup_key,
        limits=plan.limits.to_json(),
        features=list(plan.features),
        credits_rollover=plan.credits_rollover,
    )


async def list_plans(session: AsyncSession, store: CatalogStore) -> schemas.PlanList:
    catalog = await store.live(session)
    plans = sorted(catalog.plans.values(), key=lambda p: p.rank)
    return schemas.PlanList(data=[plan_out(p) for p in plans], version=catalog.version)


async def current_plan(
    session: AsyncSession, access: OrgAccess, store: CatalogStore
) -> schemas.CurrentPlan:
    now = utcnow()
    plan = await entitlements.plan_for_access(session, access, store, now)
    catalog = store.catalog
    usage = await usage_service.usage_report(session, access, plan, store)
    limits = plan.limits.to_json()
    # seed 001 names the member limit max_team_members; both names are kept.
    limits["max_team_members"] = limits.get("max_members")
    limits["features"] = list(plan.features)
    details = schemas.PlanDetails(
        name=plan.plan.name,
        price=plan.plan.price,
        currency=plan.plan.currency,
        interval=plan.plan.interval,
        limits=limits,
        description=plan.plan.description,
    )
    ranked = sorted(catalog.plans.values(), key=lambda p: p.rank)
    return schemas.CurrentPlan(
        current_plan=plan.plan.code,
        plan_source=plan.source,
        plan_details=details,
        usage=usage.as_schema().model_dump(mode="json"),
        all_plans={p.code: plan_out(p) for p in ranked},
    )


async def explain(
    session: AsyncSession, access: OrgAccess, store: CatalogStore
) -> schemas.PlanExplanation:
    now = utcnow()
    plan = await entitlements.plan_for_access(session, access, store, now)
    return schemas.PlanExplanation(
        organization_id=access.organization.id,
        evaluated_at=now,
        plan=plan.plan.code,
        plan_name=plan.plan.name,
        plan_source=plan.source,
        layers=[
            schemas.LayerOut(layer=d.layer, applied=d.applied, reason=d.reason) for d in plan.layers
        ],
        limits={
            name: schemas.LimitOut(value=limit.to_json(), source=plan.limit_sources[name])
            for name, limit in plan.limits.items()
        },
        features=list(plan.features),
        is_stripe_overdue=plan.is_stripe_overdue,
        period_start=plan.period.start,
        period_end=plan.period.end,
    )
