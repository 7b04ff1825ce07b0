"""SQL for superadmin actions: organizations by id and their enterprise contract."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.kit.tenancy import org_delete, org_select
from orgbill.models import EnterpriseContract, Organization


async def get_organization(session: AsyncSession, org_id: uuid.UUID) -> Organization | None:
    return await session.get(Organization, org_id)


async def lock_organization(session: AsyncSession, org_id: uuid.UUID) -> Organization | None:
    """The org, locked for this transaction and read afresh: concurrent superadmin changes of
    one org (a repeated PUT, the same suspension twice) then apply one after the other, each
    seeing what the one before wrote."""
    return await session.get(Organization, org_id, with_for_update=True, populate_existing=True)


async def get_contract(session: AsyncSession, org_id: uuid.UUID) -> EnterpriseContract | None:
    return await session.scalar(org_select(EnterpriseContract, org_id))


async def delete_contract(session: AsyncSession, org_id: uuid.UUID) -> int:
    result = await session.execute(org_delete(EnterpriseContract, org_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
