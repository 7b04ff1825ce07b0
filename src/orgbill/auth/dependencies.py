"""FastAPI dependencies: the caller (resolved once by the caller middleware), the organization
it acts on, and whether its role there grants the route's permission (auth/permissions.py)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth.caller import (
    CSRF_COOKIE,
    ORG_HEADER,
    SESSION_COOKIE,
    read_named_org,
    request_caller,
)
from orgbill.auth.permissions import Perm, allows
from orgbill.auth.principal import (
    API_KEY_ROLE,
    SUPERADMIN_READ_ROLE,
    ApiKeyPrincipal,
    Caller,
    NamedOrg,
    OrgAccess,
    Principal,
    UserPrincipal,
)
from orgbill.config import Settings
from orgbill.errors import BadRequest, Forbidden, NotFound, OrgSuspended, Unauthorized
from orgbill.kit.context import request_context
from orgbill.kit.routing import get_session
from orgbill.models import OrganizationStatus, Role

__all__ = ["CSRF_COOKIE", "ORG_HEADER", "SESSION_COOKIE"]


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_principal(request: Request) -> Principal:
    """Who is calling, as the caller middleware found it; its failure is this route's answer.
    Takes only the request (no sub-dependencies): each dependency costs time on the hot path."""
    caller = request_caller(request)
    if caller.failure is not None:
        raise caller.failure
    if caller.principal is None:
        raise Unauthorized("Missing credentials: send X-Api-Key or a bearer token")
    return caller.principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def require_user(principal: PrincipalDep) -> UserPrincipal:
    if not isinstance(principal, UserPrincipal):
        raise Forbidden("This route needs a user token, not an API key")
    return principal


async def require_superadmin(principal: PrincipalDep) -> UserPrincipal:
    if not isinstance(principal, UserPrincipal) or not principal.user.is_superadmin:
        raise Forbidden("Superadmin only")
    if principal.impersonated_org_id is not None:
        raise Forbidden("An impersonation token cannot call admin routes")
    return principal


async def require_own_user(user: Annotated[UserPrincipal, Depends(require_user)]) -> UserPrincipal:
    """A user acting as themselves: an impersonation token acts for its organization only,
    so it cannot, say, create organizations."""
    if user.impersonated_org_id is not None:
        raise Forbidden("An impersonation token acts for its organization only")
    return user


UserDep = Annotated[UserPrincipal, Depends(require_user)]
OwnUserDep = Annotated[UserPrincipal, Depends(require_own_user)]
SuperadminDep = Annotated[UserPrincipal, Depends(require_superadmin)]


async def resolve_org_access(
    session: AsyncSession,
    caller: Caller,
    principal: Principal,
    org_id: uuid.UUID | None,
    *,
    permission: Perm,
    allow_suspended: bool,
) -> OrgAccess:
    """The tenant guard every org-scoped route goes through."""
    if isinstance(principal, ApiKeyPrincipal):
        org, plan_inputs = principal.organization, principal.plan_inputs
        if org_id is not None and org_id != org.id:
            raise Forbidden("This API key belongs to another organization")
        role = API_KEY_ROLE
    else:
        role, named = await _user_org_role(session, caller, principal, org_id)
        org, plan_inputs = named.organization, named.plan_inputs
    if org.status == OrganizationStatus.DELETED:
        raise NotFound("Organization not found")
    if not allows(role, permission):
        raise Forbidden(f"Role '{role}' may not do this")
    if org.status == OrganizationStatus.SUSPENDED and not allow_suspended:
        raise OrgSuspended()
    # The plan the caller middleware resolved for this org's bucket, reused by the route.
    plan = caller.effective_plan if caller.acting_org is org else None
    return OrgAccess(
        organization=org,
        principal=principal,
        role=role,
        plan_inputs=plan_inputs,
        effective_plan=plan,
    )


async def _user_org_role(
    session: AsyncSession, caller: Caller, principal: UserPrincipal, org_id: uuid.UUID | None
) -> tuple[Role, NamedOrg]:
    # An impersonation token acts on its own org, whatever the URL says (seed 000).
    target = principal.impersonated_org_id or org_id
    if target is None:
        raise BadRequest(f"Header {ORG_HEADER} is required with a user token")
    named = await read_named_org(session, caller, principal, target)
    superadmin = principal.user.is_superadmin
    if named is None:
        if principal.impersonated_org_id is not None or superadmin:
            raise NotFound("Organization not found")
        raise Forbidden("You are not a member of this organization")
    if principal.impersonated_org_id is not None:
        return Role.OWNER, named
    if named.membership_role is not None:
        return Role(named.membership_role), named
    if superadmin:
        return SUPERADMIN_READ_ROLE, named
    raise Forbidden("You are not a member of this organization")


def _admit(request: Request, access: OrgAccess) -> OrgAccess:
    context = request_context(request.scope)
    if context is not None:
        context.organization_id = str(access.organization.id)
    return access


def org_access(
    permission: Perm, *, allow_suspended: bool = False
) -> Callable[..., Awaitable[OrgAccess]]:
    """For routes with ``{org_id}`` in the path."""

    async def dependency(org_id: uuid.UUID, request: Request) -> OrgAccess:
        caller = request_caller(request)
        access = await resolve_org_access(
            await get_session(request),
            caller,
            await get_principal(request),
            org_id,
            permission=permission,
            allow_suspended=allow_suspended,
        )
        return _admit(request, access)

    return dependency


def _parse_org_header(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise BadRequest(f"Header {ORG_HEADER} must be an organization id") from exc


def current_org_access(
    permission: Perm, *, allow_suspended: bool = False
) -> Callable[..., Awaitable[OrgAccess]]:
    """For routes without an org id: the API key's org, or the user's ``X-Organization-Id``."""

    async def dependency(
        request: Request,
        x_organization_id: Annotated[str | None, Header(include_in_schema=True)] = None,
    ) -> OrgAccess:
        caller = request_caller(request)
        access = await resolve_org_access(
            await get_session(request),
            caller,
            await get_principal(request),
            _parse_org_header(x_organization_id),
            permission=permission,
            allow_suspended=allow_suspended,
        )
        return _admit(request, access)

    return dependency


# Read access to an org, by path id or by the caller's current org; a suspended org can
# still read. One name each, shared by every router that reads.
OrgRead = Annotated[OrgAccess, Depends(org_access(Perm.ORG_READ, allow_suspended=True))]
CurrentOrgRead = Annotated[
    OrgAccess, Depends(current_org_access(Perm.ORG_READ, allow_suspended=True))
]
