from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from orgbill.auth.dependencies import SessionDep, current_org_access
from orgbill.auth.permissions import Perm
from orgbill.auth.principal import OrgAccess
from orgbill.credits import schemas, service
from orgbill.entitlements.service import plan_for_access
from orgbill.kit.pagination import PageParams, page_params
from orgbill.kit.routing import TransactionalRoute
from orgbill.kit.time import utcnow
from orgbill.plans.dependencies import CatalogStoreDep

router = APIRouter(route_class=TransactionalRoute, tags=["credits"])

ReadCredits = Annotated[OrgAccess, Depends(current_org_access(Perm.CREDITS_READ))]
# Spending credits is the product's own call (its API key); among users, owners and admins.
SpendCredits = Annotated[OrgAccess, Depends(current_org_access(Perm.CREDITS_SPEND))]


@router.get("/credits")
async def get_credits(
    access: ReadCredits,
    session: SessionDep,
    store: CatalogStoreDep,
    paging: Annotated[PageParams, Depends(page_params)],
) -> schemas.Credits:
    now = utcnow()
    plan = await plan_for_access(session, access, store, now)
    return await service.overview(session, access, plan, paging, now)


@router.post("/credits/consume")
async def consume_credits(
    body: schemas.CreditConsume, access: SpendCredits, session: SessionDep, store: CatalogStoreDep
) -> schemas.CreditBalanceOut:
    now = utcnow()
    plan = await plan_for_access(session, access, store, now)
    return schemas.CreditBalanceOut(
        total_credits=await service.consume(session, access, plan, body, now)
    )
