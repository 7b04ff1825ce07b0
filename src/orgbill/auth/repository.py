"""Queries that identify callers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, Uuid, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth.principal import ApiKeyRef, CallerRider
from orgbill.entitlements.repository import PlanInputs, plan_inputs_from_row, with_plan_inputs
from orgbill.models import ApiKey, Membership, Organization, OrganizationStatus, User

# Statements are built once at import: building them per request costs more than running them.
# Labelled `key_<field of ApiKeyRef>`, read back by name.
_API_KEY_COLUMNS = tuple(
    getattr(ApiKey, name).label(f"key_{name}") for name in ApiKeyRef.__dataclass_fields__
)
_API_KEY_WITH_ORG = with_plan_inputs(
    select(Organization, *_API_KEY_COLUMNS)
    .join(Organization, Organization.id == ApiKey.organization_id)
    .where(ApiKey.key_hash == bindparam("key_hash")),
    ApiKey.organization_id,
)
_ORG_WITH_ROLE = with_plan_inputs(
    select(Organization, Membership.role.label("membership_role"))
    .outerjoin(
        Membership,
        (Membership.organization_id == Organization.id)
        & (Membership.user_id == bindparam("user_id", type_=Uuid())),
    )
    .where(Organization.id == bindparam("org_id", type_=Uuid())),
    Organization.id,
)


_RIDDEN: dict[str, tuple[Select[Any], tuple[str, ...]]] = {}


def _ridden_lookup(rider: CallerRider) -> tuple[Select[Any], tuple[str, ...]]:
    """The key lookup extended with a rider's columns (built once per rider name), and their
    labels."""
    found = _RIDDEN.get(rider.name)
    if found is None:
        columns = rider.columns(ApiKey.organization_id)
        found = _RIDDEN[rider.name] = (
            _API_KEY_WITH_ORG.add_columns(*columns),
            tuple(column.key for column in columns),
        )
    return found


@dataclass(frozen=True, slots=True)
class ApiKeyLookup:
    key: ApiKeyRef
    organization: Organization
    plan_inputs: PlanInputs
    rider_values: dict[str, Any] | None


async def get_api_key_with_org(
    session: AsyncSession, key_hash: str, rider: CallerRider | None = None
) -> ApiKeyLookup | None:
    """The key, its org, the org's plan inputs and what `rider` asks for, in one round trip
    (the hot path)."""
    if rider is None:
        stmt, labels = _API_KEY_WITH_ORG, ()
        params: dict[str, Any] = {"key_hash": key_hash}
    else:
        stmt, labels = _ridden_lookup(rider)
        params = {**rider.params, "key_hash": key_hash}
    row = (await session.execute(stmt, params)).first()
    if row is None:
        return None
    values = row._mapping
    key = ApiKeyRef(**{name: values[f"key_{name}"] for name in ApiKeyRef.__dataclass_fields__})
    return ApiKeyLookup(
        key,
        row.Organization,
        plan_inputs_from_row(row),
        {label: values[label] for label in labels} if rider is not None else None,
    )


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    """`email` as normalised at registration."""
    return await session.scalar(select(User).where(User.email == email))


async def live_memberships(session: AsyncSession, user_id: uuid.UUID) -> list[Membership]:
    """The user's memberships of organizations that are not deleted, oldest first."""
    stmt = (
        select(Membership)
        .join(Organization, Organization.id == Membership.organization_id)
        .where(Membership.user_id == user_id)
        .where(Organization.status != OrganizationStatus.DELETED)
        .order_by(Membership.created_at)
    )
    return list((await session.scalars(stmt)).all())


async def get_org_with_role(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Organization, str | None, PlanInputs] | None:
    params = {"org_id": org_id, "user_id": user_id}
    row = (await session.execute(_ORG_WITH_ROLE, params)).first()
    if row is None:
        return None
    return row.Organization, row.membership_role, plan_inputs_from_row(row)


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
