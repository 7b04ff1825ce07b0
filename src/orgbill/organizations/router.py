from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from orgbill.auth.dependencies import (
    CurrentOrgRead,
    OrgRead,
    OwnUserDep,
    PrincipalDep,
    SessionDep,
    SettingsDep,
    UserDep,
    current_org_access,
    org_access,
)
from orgbill.auth.permissions import Perm
from orgbill.auth.principal import OrgAccess
from orgbill.kit.pagination import Page, PageParams, page_params
from orgbill.kit.routing import TransactionalRoute, get_session
from orgbill.organizations import schemas, service
from orgbill.plans.dependencies import CatalogStoreDep

router = APIRouter(route_class=TransactionalRoute, tags=["organizations"])

ManageOrg = Annotated[OrgAccess, Depends(org_access(Perm.ORG_WRITE))]
ManageMembers = Annotated[OrgAccess, Depends(org_access(Perm.MEMBERS_WRITE))]
ManageKeys = Annotated[OrgAccess, Depends(org_access(Perm.API_KEYS_WRITE))]
DeleteOrg = Annotated[OrgAccess, Depends(org_access(Perm.ORG_DELETE))]
ReadOrgMembers = Annotated[OrgAccess, Depends(org_access(Perm.MEMBERS_READ))]
CurrentOrgKeys = Annotated[OrgAccess, Depends(current_org_access(Perm.API_KEYS_WRITE))]
Paging = Annotated[PageParams, Depends(page_params)]


@router.post("/organizations", status_code=status.HTTP_201_CREATED)
async def create_organization(
    body: schemas.OrganizationCreate, user: OwnUserDep, session: SessionDep, store: CatalogStoreDep
) -> schemas.Organization:
    _, described = await service.create_organization(session, user.user, body, store)
    return described


@router.get("/organizations")
async def list_organizations(
    user: UserDep, session: SessionDep, store: CatalogStoreDep, paging: Paging
) -> Page[schemas.Organization]:
    data, cursor = await service.list_organizations(session, user, paging, store)
    return Page(data=data, next_cursor=cursor)


@router.get("/organization")
async def get_current_organization(
    access: CurrentOrgRead, session: SessionDep, store: CatalogStoreDep
) -> schemas.Organization:
    return await service.get_organization(session, access, store)


@router.post("/organization/regenerate-key")
async def regenerate_key(
    access: CurrentOrgKeys, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> schemas.RegeneratedKey:
    return await service.regenerate_key(session, principal, access, settings)


@router.get("/organizations/profile/{org_id}", response_model=schemas.OrganizationProfile)
async def get_organization_profile(access: OrgRead, request: Request) -> Response:
    # The hottest route takes no further dependencies: each costs measurable time.
    session = await get_session(request)
    profile = await service.get_profile(session, access, request.app.state.catalog_store)
    # The hottest route: serialise the already-validated model once, skipping FastAPI's
    # re-validation of the return value.
    return Response(profile.model_dump_json(), media_type="application/json")


@router.get("/organizations/{org_id}")
async def get_organization(
    access: OrgRead, session: SessionDep, store: CatalogStoreDep
) -> schemas.OrganizationComposite:
    return await service.get_composite(session, access, store)


@router.patch("/organizations/{org_id}")
async def update_organization(
    body: schemas.OrganizationUpdate, access: ManageOrg, session: SessionDep, store: CatalogStoreDep
) -> schemas.Organization:
    return await service.update_organization(session, access, body, store)


@router.delete("/organizations/{org_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_organization(
    access: DeleteOrg, session: SessionDep, store: CatalogStoreDep
) -> Response:
    await service.delete_organization(session, access, store)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/organizations/{org_id}/members")
async def list_members(
    access: ReadOrgMembers, session: SessionDep, paging: Paging
) -> Page[schemas.Member]:
    data, cursor = await service.list_members(session, access, paging)
    return Page(data=data, next_cursor=cursor)


@router.post("/organizations/{org_id}/members", status_code=status.HTTP_201_CREATED)
async def add_member(
    body: schemas.MemberCreate, access: ManageMembers, session: SessionDep, store: CatalogStoreDep
) -> schemas.Member:
    return await service.add_member(session, access, body, store)


@router.patch("/organizations/{org_id}/members/{user_id}")
async def update_member(
    user_id: uuid.UUID, body: schemas.MemberUpdate, access: ManageMembers, session: SessionDep
) -> schemas.Member:
    return await service.update_member(session, access, user_id, body)


@router.delete("/organizations/{org_id}/members/{user_id}", status_code=204)
async def remove_member(user_id: uuid.UUID, access: ManageMembers, session: SessionDep) -> Response:
    await service.remove_member(session, access, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/organizations/{org_id}/api-keys")
async def list_api_keys(
    access: ManageKeys, session: SessionDep, paging: Paging
) -> Page[schemas.ApiKey]:
    data, cursor = await service.list_api_keys(session, access, paging)
    return Page(data=data, next_cursor=cursor)


@router.post("/organizations/{org_id}/api-keys", status_code=status.HTTP_201_CREATED)
async def create_api_key(
    body: schemas.ApiKeyCreate, access: ManageKeys, session: SessionDep, settings: SettingsDep
) -> schemas.ApiKeyCreated:
    return await service.create_api_key(session, access, body, settings)


@router.delete("/organizations/{org_id}/api-keys/{key_id}", status_code=204)
async def revoke_api_key(key_id: uuid.UUID, access: ManageKeys, session: SessionDep) -> Response:
    await service.revoke_api_key(session, access, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
