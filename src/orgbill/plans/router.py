from __future__ import annotations

from fastapi import APIRouter

from orgbill.auth.dependencies import CurrentOrgRead, OrgRead, SessionDep
from orgbill.kit.routing import TransactionalRoute
from orgbill.plans import schemas, service
from orgbill.plans.dependencies import CatalogStoreDep

router = APIRouter(route_class=TransactionalRoute, tags=["plans"])


@router.get("/plans")
async def list_plans(session: SessionDep, store: CatalogStoreDep) -> schemas.PlanList:
    return await service.list_plans(session, store)


@router.get("/plans/current")
async def get_current_plan(
    access: CurrentOrgRead, session: SessionDep, store: CatalogStoreDep
) -> schemas.CurrentPlan:
    return await service.current_plan(session, access, store)


@router.get("/organizations/{org_id}/plan/explain")
async def explain_plan(
    access: OrgRead, session: SessionDep, store: CatalogStoreDep
) -> schemas.PlanExplanation:
    return await service.explain(session, access, store)
