"""Queries that identify callers."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.entitlements.repository import PlanInputs, plan_inputs_from_row, with_plan_inputs
from orgbill.models import ApiKey, Membership, Organization, User


async def get_api_key_with_org(
    session: AsyncSession, key_hash: str
) -> tuple[ApiKey, Organization, PlanInputs] | None:
    """The key, its org and the org's plan inputs in one round trip (the hot path)."""
    stmt = with_plan_inputs(
        select(ApiKey, Organization)
        .join(Organization, Organization.id == ApiKey.organization_id)
        .where(ApiKey.key_hash == key_hash),
        ApiKey.organization_id,
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1], plan_inputs_from_row(*row[2:])) if row else None


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_org_with_role(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Organization, str | None, PlanInputs] | None:
    stmt = with_plan_inputs(
        select(Organization, Membership.role)
        .outerjoin(
            Membership,
            (Membership.organization_id == Organization.id) & (Membership.user_id == user_id),
        )
        .where(Organization.id == org_id),
        Organization.id,
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1], plan_inputs_from_row(*row[2:])) if row else None


async def touch_api_key(
    session: AsyncSession, key_id: uuid.UUID, now: datetime, interval: timedelta
) -> None:
    """Conditional, so many instances together still write at most once per interval."""
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - interval))
        .values(last_used_at=now)
    )
