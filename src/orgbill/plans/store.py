"""The catalog every request resolves against, kept in step with the database.

The loaded catalog lives in `plan_catalog`; each resolution reads its content hash in the
same round trip as the org's contract and subscription, so a `plans sync` on any instance
shows on the very next request here too.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.models import PlanCatalog
from orgbill.plans.catalog import Catalog, CatalogError, parse_catalog

logger = logging.getLogger("orgbill.plans")
CATALOG_ROW_ID = 1


class CatalogStore:
    def __init__(self, fallback: Catalog) -> None:
        # The plans file, used only until `orgbill plans sync` has loaded a catalog.
        self._fallback = fallback
        self._catalog = fallback
        self._revision: str | None = None

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def revision(self) -> str | None:
        """The content hash `catalog` was loaded at (None: the plans file, nothing synced)."""
        return self._revision

    async def live(self, session: AsyncSession) -> Catalog:
        """The catalog as the database has it now (one small read)."""
        revision = await session.scalar(
            select(PlanCatalog.content_hash).where(PlanCatalog.id == CATALOG_ROW_ID)
        )
        return await self.current(session, revision)

    async def current(self, session: AsyncSession, revision: str | None) -> Catalog:
        """The catalog at `revision` (the hash the caller just read from the database)."""
        if revision == self._revision:
            return self._catalog
        if revision is None:
            self._catalog, self._revision = self._fallback, None
            return self._catalog
        row = await session.get(PlanCatalog, CATALOG_ROW_ID)
        if row is None:  # removed between the two reads
            return self._fallback
        try:
            # Lenient: `plans sync` validated it strictly, perhaps as a newer version that
            # knows limits this one does not. Those are kept, not fatal.
            catalog = parse_catalog(row.document, strict=False)
        except CatalogError:
            logger.exception("stored plan catalog unreadable; serving the previous one")
            return self._catalog
        self._catalog, self._revision = catalog, row.content_hash
        logger.info("plan catalog loaded", extra={"version": row.version})
        return self._catalog


# The catalog row's writes (`orgbill plans sync`).


async def lock_loaded_catalog(session: AsyncSession) -> PlanCatalog | None:
    """The loaded catalog row, locked until the sync's transaction ends."""
    return await session.get(PlanCatalog, CATALOG_ROW_ID, with_for_update=True)


async def save_loaded_catalog(
    session: AsyncSession,
    loaded: PlanCatalog | None,
    version: int,
    content_hash: str,
    document: dict[str, Any],
    now: datetime,
) -> None:
    if loaded is None:
        loaded = PlanCatalog(id=CATALOG_ROW_ID)
        session.add(loaded)
    loaded.version, loaded.content_hash = version, content_hash
    loaded.document, loaded.synced_at = document, now
    await session.flush()
