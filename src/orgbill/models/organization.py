from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.models.base import Base, IdMixin, TimestampMixin


class OrganizationStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DELETED = "DELETED"


class Organization(IdMixin, TimestampMixin, Base):
    __tablename__ = "organization"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    website: Mapped[str | None] = mapped_column(String(500))
    image_url: Mapped[str | None] = mapped_column(String(1000))
    # status is the one source of truth; is_suspended / is_deleted are derived from it.
    status: Mapped[str] = mapped_column(String(16), default=OrganizationStatus.ACTIVE)
    region_id: Mapped[str] = mapped_column(String(64), default="us-east")
    org_type: Mapped[str] = mapped_column(String(32), default="normal")
    kyc_level: Mapped[int] = mapped_column(default=0)
    placement_group: Mapped[str] = mapped_column(String(64), default="shared")
    # Admin override of the plan's api_rate_limit (requests per second); null = plan's value.
    rate_limit: Mapped[int | None] = mapped_column()
    entitlements: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Admin overrides of plan limits for this org alone (top layer of resolution).
    limit_overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    partner_configuration: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    registerable: Mapped[bool] = mapped_column(default=True)
    deleted_at: Mapped[datetime | None] = mapped_column()
    # The Stripe customer paying for this org (set by checkout, or by an event's metadata).
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)

    @property
    def is_suspended(self) -> bool:
        return self.status == OrganizationStatus.SUSPENDED

    @property
    def is_deleted(self) -> bool:
        return self.status == OrganizationStatus.DELETED
