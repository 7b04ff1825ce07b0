"""FastAPI dependencies: the caller, the organization it acts on, and its role there."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth import repository
from orgbill.auth.jwt import decode_token
from orgbill.auth.last_used import ApiKeyUsageRecorder
from orgbill.auth.principal import (
    ANY_ROLE,
    API_KEY_ROLE,
    SUPERADMIN_READ_ROLE,
    ApiKeyPrincipal,
    OrgAccess,
    Principal,
    UserPrincipal,
)
from orgbill.config import Settings
from orgbill.entitlements.repository import PlanInputs
from orgbill.entitlements.service import plan_for_access
from orgbill.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    OrgSuspended,
    RateLimited,
    Unauthorized,
)
from orgbill.kit.context import request_context
from orgbill.kit.crypto import constant_time_equals, hash_api_key, looks_like_api_key
from orgbill.kit.routing import get_session
from orgbill.kit.time import utcnow
from orgbill.models import Organization, OrganizationStatus, Role
from orgbill.ratelimit.context import rate_limit_state
from orgbill.ratelimit.guard import charge_ip_if_unattributed, charges_org_rate_limit
from orgbill.ratelimit.limiter import RateLimiter

SESSION_COOKIE = "orgbill_session"
CSRF_COOKIE = "orgbill_csrf"
CSRF_HEADER = "X-CSRF-Token"
ORG_HEADER = "X-Organization-Id"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def _api_key_principal(
    request: Request, session: AsyncSession, settings: Settings, raw_key: str
) -> ApiKeyPrincipal:
    if not looks_like_api_key(raw_key):
        raise Unauthorized("Invalid API key")
    found = await repository.get_api_key_with_org(
        session, hash_api_key(raw_key, settings.api_key_secret)
    )
    if found is None:
        raise Unauthorized("Invalid API key")
    key, org, plan_inputs = found
    now = utcnow()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise Unauthorized("API key revoked or expired")
    if org.status == OrganizationStatus.DELETED:
        raise Unauthorized("Invalid API key")
    recorder: ApiKeyUsageRecorder = request.app.state.api_key_usage
    recorder.record(key.id, key.last_used_at)
    return ApiKeyPrincipal(key=key, organization=org, plan_inputs=plan_inputs)


async def _user_principal(session: AsyncSession, settings: Settings, token: str) -> UserPrincipal:
    claims = decode_token(settings, token)
    user = await repository.get_user(session, claims.user_id)
    if user is None:
        raise Unauthorized("Invalid or expired token")
    if claims.impersonated_org_id is not None and not user.is_superadmin:
        raise Unauthorized("Invalid or expired token")
    return UserPrincipal(user=user, impersonated_org_id=claims.impersonated_org_id)


def _check_csrf(request: Request) -> None:
    if request.method not in _UNSAFE_METHODS:
        return
    cookie = request.cookies.get(CSRF_COOKIE)
    header = request.headers.get(CSRF_HEADER)
    if not cookie or not header or not constant_time_equals(cookie, header):
        raise Forbidden("CSRF token missing or invalid")


async def get_principal(request: Request) -> Principal:
    """Who is calling. Takes only the request (no sub-dependencies): FastAPI's per-dependency
    overhead is measurable on the hot path."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    try:
        principal = await _identify(request)
    except (Unauthorized, Forbidden):
        # A failed sign-in is charged to the client IP (429 once its bucket is empty), so
        # guessing keys or tokens on an org route is limited like any public call.
        await charge_ip_if_unattributed(request)
        raise
    request.state.principal = principal
    return principal


async def _identify(request: Request) -> Principal:
    session = await get_session(request)
    settings: Settings = request.app.state.settings
    principal: Principal
    raw_key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization")
    cookie_token = request.cookies.get(SESSION_COOKIE)
    if raw_key is not None:
        principal = await _api_key_principal(request, session, settings, raw_key.strip())
    elif authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization header must be 'Bearer <token>'")
        principal = await _user_principal(session, settings, token.strip())
    elif cookie_token:
        _check_csrf(request)
        principal = await _user_principal(session, settings, cookie_token)
    else:
        raise Unauthorized("Missing credentials: send X-Api-Key or a bearer token")
    return principal


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


UserDep = Annotated[UserPrincipal, Depends(require_user)]
SuperadminDep = Annotated[UserPrincipal, Depends(require_superadmin)]


async def resolve_org_access(
    session: AsyncSession,
    principal: Principal,
    org_id: uuid.UUID | None,
    *,
    roles: frozenset[Role],
    allow_suspended: bool,
) -> OrgAccess:
    """The tenant guard every org-scoped route goes through."""
    if isinstance(principal, ApiKeyPrincipal):
        org, plan_inputs = principal.organization, principal.plan_inputs
        if org_id is not None and org_id != org.id:
            raise Forbidden("This API key belongs to another organization")
        role = API_KEY_ROLE
    else:
        org, role, plan_inputs = await _user_org_role(session, principal, org_id)
    if org.status == OrganizationStatus.DELETED:
        raise NotFound("Organization not found")
    if role not in roles:
        raise Forbidden(f"Role '{role}' may not do this")
    if org.status == OrganizationStatus.SUSPENDED and not allow_suspended:
        raise OrgSuspended()
    return OrgAccess(organization=org, principal=principal, role=role, plan_inputs=plan_inputs)


async def _user_org_role(
    session: AsyncSession, principal: UserPrincipal, org_id: uuid.UUID | None
) -> tuple[Organization, Role, PlanInputs]:
    # An impersonation token acts on its own org, whatever the URL says (seed 000).
    target = principal.impersonated_org_id or org_id
    if target is None:
        raise BadRequest(f"Header {ORG_HEADER} is required with a user token")
    found = await repository.get_org_with_role(session, target, principal.user.id)
    superadmin = principal.user.is_superadmin
    if found is None:
        if principal.impersonated_org_id is not None or superadmin:
            raise NotFound("Organization not found")
        raise Forbidden("You are not a member of this organization")
    org, membership_role, plan_inputs = found
    if principal.impersonated_org_id is not None:
        return org, Role.OWNER, plan_inputs
    if membership_role is not None:
        return org, Role(membership_role), plan_inputs
    if superadmin:
        return org, SUPERADMIN_READ_ROLE, plan_inputs
    raise Forbidden("You are not a member of this organization")


async def _admit_org(request: Request, session: AsyncSession, access: OrgAccess) -> OrgAccess:
    context = request_context(request.scope)
    if context is not None:
        context.organization_id = str(access.organization.id)
    await _charge_org_rate_limit(request, session, access)
    return access


async def _charge_org_rate_limit(
    request: Request, session: AsyncSession, access: OrgAccess
) -> None:
    """Takes a token from the org's bucket at its effective api_rate_limit. Lives here, not
    in the middleware, because only now is the org (and its plan, prefetched with the
    caller's identity: no extra query) known."""
    state = rate_limit_state(request.scope)
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if state is None or limiter is None or state.decision is not None:
        return
    plan = await plan_for_access(session, access, request.app.state.catalog_store)
    rate = plan.limits.count("api_rate_limit")
    if rate is None:
        return  # unlimited
    state.decision = await limiter.hit(f"org:{access.organization.id}", rate)
    if not state.decision.allowed:
        raise RateLimited(
            f"Rate limit of {rate} requests per second exceeded for this organization",
            headers={"Retry-After": str(state.decision.retry_after)},
        )


def org_access(
    roles: frozenset[Role] = ANY_ROLE, *, allow_suspended: bool = False
) -> Callable[..., Awaitable[OrgAccess]]:
    """For routes with ``{org_id}`` in the path."""

    async def dependency(org_id: uuid.UUID, request: Request) -> OrgAccess:
        session = await get_session(request)
        access = await resolve_org_access(
            session,
            await get_principal(request),
            org_id,
            roles=roles,
            allow_suspended=allow_suspended,
        )
        return await _admit_org(request, session, access)

    return charges_org_rate_limit(dependency)


def _parse_org_header(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise BadRequest(f"Header {ORG_HEADER} must be an organization id") from exc


def current_org_access(
    roles: frozenset[Role] = ANY_ROLE, *, allow_suspended: bool = False
) -> Callable[..., Awaitable[OrgAccess]]:
    """For routes without an org id: the API key's org, or the user's ``X-Organization-Id``."""

    async def dependency(
        request: Request,
        x_organization_id: Annotated[str | None, Header(include_in_schema=True)] = None,
    ) -> OrgAccess:
        session = await get_session(request)
        access = await resolve_org_access(
            session,
            await get_principal(request),
            _parse_org_header(x_organization_id),
            roles=roles,
            allow_suspended=allow_suspended,
        )
        return await _admit_org(request, session, access)

    return charges_org_rate_limit(dependency)


# Read access to an org, by path id or by the caller's current org; a suspended org can
# still read. One name each, shared by every router that reads.
OrgRead = Annotated[OrgAccess, Depends(org_access(ANY_ROLE, allow_suspended=True))]
CurrentOrgRead = Annotated[OrgAccess, Depends(current_org_access(ANY_ROLE, allow_suspended=True))]
