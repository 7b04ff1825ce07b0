from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.kit.time import utcnow
from orgbill.models.base import Base, IdMixin, TimestampMixin


class Plan(IdMixin, TimestampMixin, Base):
    """One plan of the catalog, as last loaded by ``orgbill plans sync``."""

    __tablename__ = "plan"

    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    amount: Mapped[int] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(8))
    rank: Mapped[int] = mapped_column(default=0)
    stripe_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_lookup_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
    features: Mapped[list[str]] = mapped_column(JSON)
    # False once the plan left the plans file: kept so old subscriptions still resolve.
    is_active: Mapped[bool] = mapped_column(default=True)


class PlanCatalog(Base):
    """Single row: which plans file version is loaded, and its content hash."""

    __tablename__ = "plan_catalog"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column()
    content_hash: Mapped[str] = mapped_column(String(64))
    # The whole validated catalog (plans and meters) as loaded, so every instance reads the same.
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
