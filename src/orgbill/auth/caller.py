"""Resolving who calls, from the request's credentials, once per request (the caller
middleware runs this before routing; the routes' dependencies read what it found).

Credentials: `X-Api-Key` (an organization), `Authorization: Bearer` or the session cookie
(a user; unsafe methods with the cookie also need the CSRF header). Anything that fails is
recorded on the caller, so the request is anonymous for its bucket and routes that need a
caller answer the failure (401/403)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from orgbill.auth import repository
from orgbill.auth.jwt import decode_token
from orgbill.auth.last_used import ApiKeyUsageRecorder
from orgbill.auth.principal import (
    ApiKeyPrincipal,
    Caller,
    CallerRider,
    NamedOrg,
    Principal,
    UserPrincipal,
)
from orgbill.config import Settings
from orgbill.entitlements.service import effective_plan
from orgbill.errors import Forbidden, Unauthorized
from orgbill.kit.crypto import constant_time_equals, hash_api_key, looks_like_api_key
from orgbill.kit.time import utcnow
from orgbill.models import OrganizationStatus
from orgbill.plans.store import CatalogStore

SESSION_COOKIE = "orgbill_session"
CSRF_COOKIE = "orgbill_csrf"
CSRF_HEADER = "X-CSRF-Token"
ORG_HEADER = "X-Organization-Id"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CALLER_SCOPE_KEY = "orgbill.caller"


def attach_caller(scope: dict, caller: Caller) -> None:  # type: ignore[type-arg]
    scope[_CALLER_SCOPE_KEY] = caller


def request_caller(request: Request) -> Caller:
    caller: Caller | None = request.scope.get(_CALLER_SCOPE_KEY)
    if caller is None:  # only an app built without the caller middleware
        raise RuntimeError("the caller middleware did not run")
    return caller


def has_credentials(request: Request) -> bool:
    headers = request.headers
    return "x-api-key" in headers or "authorization" in headers or SESSION_COOKIE in request.cookies


async def identify(
    request: Request, session: AsyncSession, settings: Settings, rider: CallerRider | None = None
) -> Principal:
    """The caller its credentials prove; raises Unauthorized/Forbidden when they fail. An API
    key's lookup carries `rider` (a route's own reads) in the same round trip."""
    raw_key = request.headers.get("x-api-key")
    authorization = request.headers.get("authorization")
    cookie_token = request.cookies.get(SESSION_COOKIE)
    if raw_key is not None:
        return await _api_key_principal(request, session, settings, raw_key.strip(), rider)
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization header must be 'Bearer <token>'")
        return await _user_principal(session, settings, token.strip())
    if cookie_token:
        _check_csrf(request)
        return await _user_principal(session, settings, cookie_token)
    raise Unauthorized("Missing credentials: send X-Api-Key or a bearer token")


async def _api_key_principal(
    request: Request,
    session: AsyncSession,
    settings: Settings,
    raw_key: str,
    rider: CallerRider | None,
) -> ApiKeyPrincipal:
    if not looks_like_api_key(raw_key):
        raise Unauthorized("Invalid API key")
    found = await repository.get_api_key_with_org(
        session, hash_api_key(raw_key, settings.api_key_secret), rider
    )
    if found is None:
        raise Unauthorized("Invalid API key")
    key, org = found.key, found.organization
    now = utcnow()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        raise Unauthorized("API key revoked or expired")
    if org.status == OrganizationStatus.DELETED:
        raise Unauthorized("Invalid API key")
    recorder: ApiKeyUsageRecorder = request.app.state.api_key_usage
    recorder.record(key.id, key.last_used_at)
    return ApiKeyPrincipal(
        key=key,
        organization=org,
        plan_inputs=found.plan_inputs,
        rider=rider,
        rider_values=found.rider_values,
    )


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


def parse_org_id(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def read_named_org(
    session: AsyncSession, caller: Caller, user: UserPrincipal, org_id: uuid.UUID
) -> NamedOrg | None:
    """The org a user names with the user's role there, read once per request."""
    cached = caller.named(org_id)
    if cached is not False:
        return cached
    found = await repository.get_org_with_role(session, org_id, user.user.id)
    named = NamedOrg(*found) if found else None
    caller.named_org_id, caller.named_org = org_id, named
    return named


async def resolve_acting_org(
    session: AsyncSession, caller: Caller, named_org_id: uuid.UUID | None
) -> None:
    """Sets the organization the request acts for: the API key's; the impersonated one; the
    one a user names (path `{org_id}` or X-Organization-Id) where the user may act for it.
    A user naming an org that is not theirs acts for none: their calls never drain its bucket."""
    principal = caller.principal
    if isinstance(principal, ApiKeyPrincipal):
        caller.acting_org = principal.organization
        return
    if not isinstance(principal, UserPrincipal):
        return
    target = principal.impersonated_org_id or named_org_id
    if target is None:
        return
    named = await read_named_org(session, caller, principal, target)
    if named is None or named.organization.status == OrganizationStatus.DELETED:
        return
    if (
        named.membership_role is not None
        or principal.impersonated_org_id is not None
        or principal.user.is_superadmin
    ):
        caller.acting_org = named.organization


async def acting_org_plan(session: AsyncSession, caller: Caller, store: CatalogStore) -> None:
    """The acting org's effective plan, once per request (its bucket and the route share it)."""
    org = caller.acting_org
    if org is None or caller.effective_plan is not None:
        return
    principal = caller.principal
    if isinstance(principal, ApiKeyPrincipal):
        inputs = principal.plan_inputs
    else:
        inputs = caller.named_org.plan_inputs if caller.named_org else None
    caller.effective_plan = await effective_plan(session, org, store, utcnow(), inputs)
