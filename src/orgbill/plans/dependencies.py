from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from orgbill.plans.catalog import Catalog


def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog


CatalogDep = Annotated[Catalog, Depends(get_catalog)]
