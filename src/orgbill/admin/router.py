from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from orgbill.admin import schemas, service
from orgbill.audit import repository as audit
from orgbill.auth.dependencies import SessionDep, SettingsDep, SuperadminDep
from orgbill.kit.pagination import Page, PageParams, build_page, page_params
from orgbill.kit.routing import TransactionalRoute
from orgbill.organizations import schemas as org_schemas
from orgbill.plans.dependencies import CatalogStoreDep

router = APIRouter(prefix="/admin", route_class=TransactionalRoute, tags=["admin"])


@router.post("/impersonate")
async def impersonate_organization(
    body: schemas.ImpersonateRequest,
    admin: SuperadminDep,
    session: SessionDep,
    settings: SettingsDep,
) -> schemas.ImpersonationToken:
    return await service.impersonate(session, admin, body.org_id, settings)


@router.patch("/organizations/{org_id}")
async def admin_update_organization(
    org_id: uuid.UUID,
    body: schemas.AdminOrganizationUpdate,
    admin: SuperadminDep,
    session: SessionDep,
    store: CatalogStoreDep,
) -> org_schemas.Organization:
    return await service.update_organization(session, admin, org_id, body, store)


@router.get("/audit-log")
async def list_audit_log(
    _: SuperadminDep,
    session: SessionDep,
    paging: Annotated[PageParams, Depends(page_params)],
    organization_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[schemas.AuditEntry]:
    rows = await audit.list_entries(session, paging, organization_id)
    page, cursor = build_page(rows, paging, audit.AUDIT_KEYSET)
    return Page(data=[schemas.AuditEntry.model_validate(r) for r in page], next_cursor=cursor)


@router.put("/organizations/{org_id}/enterprise")
async def put_enterprise_contract(
    org_id: uuid.UUID,
    body: schemas.EnterpriseContractPut,
    admin: SuperadminDep,
    session: SessionDep,
    store: CatalogStoreDep,
) -> schemas.EnterpriseContract:
    contract = await service.put_contract(session, admin, org_id, body, store)
    return service.contract_schema(contract)


@router.delete("/organizations/{org_id}/enterprise", status_code=status.HTTP_204_NO_CONTENT)
async def delete_enterprise_contract(
    org_id: uuid.UUID, admin: SuperadminDep, session: SessionDep, store: CatalogStoreDep
) -> Response:
    await service.delete_contract(session, admin, org_id, store)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
