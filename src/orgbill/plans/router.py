from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from orgbill.auth.dependencies import SessionDep, current_org_access, org_access
from orgbill.auth.permissions import Perm
from orgbill.auth.principal import OrgAccess
from orgbill.kit.routing import TransactionalRoute
from orgbill.plans import schemas, service
from orgbill.plans.dependencies import CatalogStoreDep

router = APIRouter(route_class=TransactionalRoute, tags=["plans"])

CurrentOrgRead = Annotated[
    OrgAccess, Depends(current_org_access(Perm.ORG_READ, allow_suspended=True))
]
OrgRead = Annotated[OrgAccess, Depends(org_access(Perm.ORG_READ, allow_suspended=True))]


@router.get("/plans")
async def list_plans(session: SessionDep, store: CatalogStoreDep) -> schemas.PlanList:
    return await service.list_plans(session, store)


@router.get("/plans/current")
async def current_plan(
    access: CurrentOrgRead, session: SessionDep, store: CatalogStoreDep
) -> schemas.CurrentPlan:
    return await service.current_plan(session, access, store)


@router.get("/organizations/{org_id}/plan/explain")
async def explain_plan(
    access: OrgRead, session: SessionDep, store: CatalogStoreDep
) -> schemas.PlanExplanation:
    return await service.explain(session, access, store)
