"""SQL for organizations, memberships and API keys. Tenant-owned statements start from the
org-scoped base (kit/tenancy.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.entitlements.repository import PlanInputs, plan_inputs_from_row, with_plan_inputs
from orgbill.kit.pagination import Keyset, PageParams, paginate_statement
from orgbill.kit.tenancy import org_delete, org_select, org_update
from orgbill.kit.time import utcnow
from orgbill.models import ApiKey, Membership, Organization, Role, Subscription, User

ORGANIZATION_KEYSET = Keyset(Organization.created_at, Organization.id)
# A membership has no id of its own: within an org, user_id is unique.
MEMBER_KEYSET = Keyset(Membership.created_at, Membership.user_id)
API_KEY_KEYSET = Keyset(ApiKey.created_at, ApiKey.id)


async def insert_organization(session: AsyncSession, org: Organization) -> bool:
    """False when the slug is taken (the unique constraint decides, not a prior read)."""
    try:
        async with session.begin_nested():
            session.add(org)
    except IntegrityError:
        return False
    return True


async def lock_organization(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Serialises membership changes of one org (a row lock on PostgreSQL; SQLite's
    writers are already serialised by BEGIN IMMEDIATE)."""
    await session.execute(
        select(Organization.id).where(Organization.id == org_id).with_for_update()
    )


@dataclass(frozen=True, slots=True)
class ListedOrganization:
    organization: Organization
    plan_inputs: PlanInputs
    api_key_prefix: str | None


def _newest_key_prefix(org_id: Any) -> Any:
    """The prefix of the org's newest key that still works (neither revoked nor expired)."""
    now = utcnow()
    return (
        org_select(ApiKey, org_id, ApiKey.prefix)
        .where(ApiKey.revoked_at.is_(None))
        .where(or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
        .order_by(ApiKey.created_at.desc())
        .limit(1)
        .correlate_except(ApiKey)
        .scalar_subquery()
        .label("newest_key_prefix")
    )


async def list_user_organizations(
    session: AsyncSession,
    user_id: uuid.UUID | None,
    params: PageParams,
    *,
    only: uuid.UUID | None = None,
) -> list[ListedOrganization]:
    """A page of organizations (the user's; all for None; `only` that one) with their plan
    inputs and key prefix: one query, not three per organization."""
    stmt = select(Organization, _newest_key_prefix(Organization.id)).where(
        Organization.status != "DELETED"
    )
    if only is not None:
        stmt = stmt.where(Organization.id == only)
    if user_id is not None:
        stmt = stmt.join(Membership, Membership.organization_id == Organization.id).where(
            Membership.user_id == user_id
        )
    stmt = with_plan_inputs(stmt, Organization.id)
    stmt = paginate_statement(stmt, params, ORGANIZATION_KEYSET)
    return [
        ListedOrganization(row.Organization, plan_inputs_from_row(row), row.newest_key_prefix)
        for row in (await session.execute(stmt)).all()
    ]


async def newest_active_key_prefix(session: AsyncSession, org_id: uuid.UUID) -> str | None:
    return await session.scalar(select(_newest_key_prefix(org_id)))


# Members


async def list_members(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams
) -> list[tuple[Membership, User]]:
    stmt = org_select(Membership, org_id, Membership, User).join(
        User, User.id == Membership.user_id
    )
    stmt = paginate_statement(stmt, params, MEMBER_KEYSET)
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


async def get_member(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Membership, User] | None:
    stmt = (
        org_select(Membership, org_id, Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.user_id == user_id)
    )
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row else None


async def count_members(session: AsyncSession, org_id: uuid.UUID) -> int:
    stmt = org_select(Membership, org_id, func.count())
    return int(await session.scalar(stmt) or 0)


async def count_owners(session: AsyncSession, org_id: uuid.UUID) -> int:
    stmt = org_select(Membership, org_id, func.count()).where(Membership.role == Role.OWNER)
    return int(await session.scalar(stmt) or 0)


async def find_user(
    session: AsyncSession, *, user_id: uuid.UUID | None, email: str | None
) -> User | None:
    if user_id is not None:
        return await session.get(User, user_id)
    return await session.scalar(select(User).where(User.email == (email or "").lower()))


async def insert_membership(session: AsyncSession, membership: Membership) -> bool:
    try:
        async with session.begin_nested():
            session.add(membership)
    except IntegrityError:
        return False
    return True


async def delete_membership(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> int:
    stmt = org_delete(Membership, org_id).where(Membership.user_id == user_id)
    result = await session.execute(stmt)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# API keys


async def list_api_keys(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams
) -> list[ApiKey]:
    stmt = org_select(ApiKey, org_id)
    stmt = paginate_statement(stmt, params, API_KEY_KEYSET)
    return list((await session.scalars(stmt)).all())


async def get_api_key(session: AsyncSession, org_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
    stmt = org_select(ApiKey, org_id).where(ApiKey.id == key_id)
    return await session.scalar(stmt)


@dataclass(frozen=True, slots=True)
class RevokedKey:
    """What the api_key.revoked event names of a key."""

    id: uuid.UUID
    organization_id: uuid.UUID
    prefix: str
    name: str
    expires_at: datetime | None

    def worked_until(self, now: datetime) -> bool:
        """Whether the key still worked when revoked (an expired one stopped on its own)."""
        return self.expires_at is None or self.expires_at > now


async def revoke_api_keys(
    session: AsyncSession,
    org_id: uuid.UUID,
    now: datetime,
    *,
    key_id: uuid.UUID | None = None,
    name: str | None = None,
) -> list[RevokedKey]:
    """Revokes the org's live keys (all, one, or those called `name`); returns exactly the
    keys this statement revoked, so of racing revocations each key is announced once."""
    stmt = org_update(ApiKey, org_id).where(ApiKey.revoked_at.is_(None)).values(revoked_at=now)
    if key_id is not None:
        stmt = stmt.where(ApiKey.id == key_id)
    if name is not None:
        stmt = stmt.where(ApiKey.name == name)
    stmt = stmt.returning(
        ApiKey.id, ApiKey.organization_id, ApiKey.prefix, ApiKey.name, ApiKey.expires_at
    )
    rows = (await session.execute(stmt)).all()
    return [RevokedKey(*row) for row in rows]


async def get_subscription(
    session: AsyncSession, org_id: uuid.UUID, stripe_subscription_id: str
) -> Subscription | None:
    stmt = org_select(Subscription, org_id).where(
        Subscription.stripe_subscription_id == stripe_subscription_id
    )
    return await session.scalar(stmt)
