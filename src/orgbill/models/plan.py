from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.kit.time import utcnow
from orgbill.models.base import Base


class PlanCatalog(Base):
    """Single row: the plans file `orgbill plans sync` loaded last — its version, content hash
    and whole document, which every instance reads the catalog from."""

    __tablename__ = "plan_catalog"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    # The whole validated catalog (plans and meters) as loaded, so every instance reads the same.
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
