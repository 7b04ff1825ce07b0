"""The audit log of admin actions: who changed what, when, under which request id."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.kit.context import current_request_id
from orgbill.kit.pagination import Keyset, PageParams, paginate_statement
from orgbill.kit.time import utcnow
from orgbill.models import AuditLog

AUDIT_KEYSET = Keyset(AuditLog.created_at, AuditLog.id)


async def record(
    session: AsyncSession,
    *,
    actor_user_id: uuid.UUID | None,
    action: str,
    organization_id: uuid.UUID | None,
    details: dict[str, Any],
) -> AuditLog:
    entry = AuditLog(
        id=uuid.uuid4(),
        actor_user_id=actor_user_id,
        action=action,
        organization_id=organization_id,
        details=details,
        request_id=current_request_id(),
        created_at=utcnow(),
    )
    session.add(entry)
    await session.flush()
    return entry


async def list_entries(
    session: AsyncSession, params: PageParams, organization_id: uuid.UUID | None
) -> list[AuditLog]:
    stmt = select(AuditLog)
    if organization_id is not None:
        stmt = stmt.where(AuditLog.organization_id == organization_id)
    stmt = paginate_statement(stmt, params, AUDIT_KEYSET)
    return list((await session.scalars(stmt)).all())
