from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.models.base import Base, IdMixin, TimestampMixin


class Subscription(IdMixin, TimestampMixin, Base):
    """Our mirror of a Stripe subscription (written by webhooks and reconciliation)."""

    __tablename__ = "subscription"
    __table_args__ = (Index("ix_subscription_org_created", "organization_id", "created_at"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE")
    )
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    # The Stripe price the subscription is for, as Stripe names it. Which plan it means is
    # decided at read time against the live catalog (Catalog.plan_for_price), never stored.
    stripe_price_id: Mapped[str | None] = mapped_column(String(255))
    stripe_lookup_key: Mapped[str | None] = mapped_column(String(255))
    stripe_legacy_plan_id: Mapped[str | None] = mapped_column(String(255))
    current_period_start: Mapped[datetime | None] = mapped_column()
    current_period_end: Mapped[datetime | None] = mapped_column()
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    canceled_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    # `created` of the newest Stripe event applied to this object: older events change nothing.
    stripe_event_created: Mapped[datetime | None] = mapped_column()
