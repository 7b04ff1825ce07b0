"""The one org-scoped base for tenant-owned statements: every repository statement over a
table with an `organization_id` starts here, so none can forget the tenant filter."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Delete, Select, Update, delete, select, update


def org_select(model: Any, org_id: uuid.UUID, *columns: Any) -> Select[Any]:
    """SELECT `columns` (default: the entity) of `model` rows owned by `org_id`."""
    return select(*(columns or (model,))).where(model.organization_id == org_id)


def org_update(model: Any, org_id: uuid.UUID) -> Update:
    return update(model).where(model.organization_id == org_id)


def org_delete(model: Any, org_id: uuid.UUID) -> Delete:
    return delete(model).where(model.organization_id == org_id)
