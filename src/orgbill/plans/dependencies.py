from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from orgbill.plans.store import CatalogStore


async def get_catalog_store(request: Request) -> CatalogStore:
    return request.app.state.catalog_store


CatalogStoreDep = Annotated[CatalogStore, Depends(get_catalog_store)]
