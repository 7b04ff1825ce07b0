"""Superadmin actions. Every change is written to the audit log in the same transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.admin import audit, schemas
from orgbill.auth.jwt import issue_token
from orgbill.auth.principal import UserPrincipal
from orgbill.config import Settings
from orgbill.errors import BadRequest, NotFound
from orgbill.kit.time import utcnow
from orgbill.models import Organization, OrganizationStatus


async def get_live_org(session: AsyncSession, org_id: uuid.UUID) -> Organization:
    org = await session.get(Organization, org_id)
    if org is None or org.status == OrganizationStatus.DELETED:
        raise NotFound("Organization not found")
    return org


async def impersonate(
    session: AsyncSession, admin: UserPrincipal, org_id: uuid.UUID, settings: Settings
) -> schemas.ImpersonationToken:
    await get_live_org(session, org_id)
    token, ttl = issue_token(
        settings,
        admin.user.id,
        ttl_seconds=settings.impersonation_ttl_seconds,
        impersonated_org_id=org_id,
    )
    await audit.record(
        session,
        actor_user_id=admin.user.id,
        action="organization.impersonate",
        organization_id=org_id,
        details={"expires_in": ttl},
    )
    return schemas.ImpersonationToken(access_token=token, expires_in=ttl, org_id=org_id)


async def update_organization(
    session: AsyncSession,
    admin: UserPrincipal,
    org_id: uuid.UUID,
    data: schemas.AdminOrganizationUpdate,
) -> Organization:
    org = await get_live_org(session, org_id)
    requested = data.model_dump(exclude_unset=True)
    if "status" in requested and "is_suspended" in requested:
        wanted = OrganizationStatus.SUSPENDED if data.is_suspended else OrganizationStatus.ACTIVE
        if data.status != wanted:
            raise BadRequest("status and is_suspended disagree")
    if "is_suspended" in requested and data.is_suspended is not None:
        requested["status"] = "SUSPENDED" if data.is_suspended else "ACTIVE"
    requested.pop("is_suspended", None)
    nullable = {"rate_limit"}
    changes: dict[str, Any] = {}
    for field, value in requested.items():
        if value is None and field not in nullable:
            raise BadRequest(f"{field} cannot be null")
        old = getattr(org, field)
        if old != value:
            changes[field] = {"from": old, "to": value}
            setattr(org, field, value)
    if changes:
        org.updated_at = utcnow()
        await session.flush()
        await audit.record(
            session,
            actor_user_id=admin.user.id,
            action="organization.update",
            organization_id=org.id,
            details={"changes": changes},
        )
    return org
