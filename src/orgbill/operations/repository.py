"""The readiness probe's reads: the schema revision and whether a catalog is loaded."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from orgbill.models import PlanCatalog
from orgbill.plans.store import CATALOG_ROW_ID


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT 1"))


async def schema_revision(conn: AsyncConnection) -> str | None:
    """Raises when the version table is missing (a database never migrated)."""
    return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def catalog_loaded(conn: AsyncConnection) -> bool:
    row = await conn.execute(select(PlanCatalog.id).where(PlanCatalog.id == CATALOG_ROW_ID))
    return row.first() is not None
