"""Superadmin credit grants: an admin route over the credits service."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from orgbill.admin.service import get_live_org
from orgbill.auth.dependencies import SessionDep, SuperadminDep
from orgbill.credits import schemas, service
from orgbill.entitlements.service import effective_plan
from orgbill.kit.routing import TransactionalRoute
from orgbill.kit.time import utcnow
from orgbill.plans.dependencies import CatalogStoreDep

router = APIRouter(prefix="/admin", route_class=TransactionalRoute, tags=["admin"])


@router.post("/organizations/{org_id}/credits", status_code=status.HTTP_201_CREATED)
async def grant_credits(
    org_id: uuid.UUID,
    body: schemas.CreditGrant,
    admin: SuperadminDep,
    session: SessionDep,
    store: CatalogStoreDep,
) -> schemas.CreditGranted:
    now = utcnow()
    org = await get_live_org(session, org_id)
    plan = await effective_plan(session, org, store, now)
    return await service.grant(session, org, plan, body, admin.user.id, now)
