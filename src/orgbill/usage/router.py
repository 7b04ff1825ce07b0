from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from orgbill.auth.dependencies import SessionDep, current_org_access
from orgbill.auth.permissions import Perm
from orgbill.auth.principal import OrgAccess
from orgbill.entitlements.service import plan_for_access
from orgbill.kit.metrics import USAGE_EVENTS_ACCEPTED
from orgbill.kit.routing import TransactionalRoute
from orgbill.kit.time import utcnow
from orgbill.plans.dependencies import CatalogStoreDep
from orgbill.usage import schemas, service

router = APIRouter(route_class=TransactionalRoute, tags=["usage"])

ReadUsage = Annotated[OrgAccess, Depends(current_org_access(Perm.USAGE_READ))]
# Reporting usage is the product's own call (its API key); among users, owners and admins.
ReportUsage = Annotated[OrgAccess, Depends(current_org_access(Perm.USAGE_WRITE))]


@router.post("/usage/events")
async def record_usage_events(
    body: schemas.UsageEventBatch, access: ReportUsage, session: SessionDep, store: CatalogStoreDep
) -> schemas.UsageEventsRecorded:
    now = utcnow()
    plan = await plan_for_access(session, access, store, now)
    recorded = await service.record_events(session, access, plan, store.catalog, body, now)
    USAGE_EVENTS_ACCEPTED.inc(recorded.accepted)
    return recorded


@router.get("/usage")
async def get_usage(
    access: ReadUsage, session: SessionDep, store: CatalogStoreDep, response: Response
) -> schemas.Usage:
    plan = await plan_for_access(session, access, store)
    report = await service.usage_report(session, access, plan, store)
    response.headers.update(service.quota_headers(report))
    return report.as_schema()
