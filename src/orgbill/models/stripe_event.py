from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.kit.time import utcnow
from orgbill.models.base import Base, IdMixin


class StripeEventStatus(StrEnum):
    PROCESSED = "processed"  # applied (or already reflected) in our mirror
    IGNORED = "ignored"  # a type we do not act on, or older than the state we hold
    UNMATCHED = "unmatched"  # no organization could be found for it: kept for an admin replay
    FAILED = "failed"  # applying raised; nothing of it was kept, a redelivery or replay retries


class StripeEvent(IdMixin, Base):
    """The webhook inbox: every Stripe event we were sent, keyed on Stripe's event id."""

    __tablename__ = "stripe_event"
    __table_args__ = (
        Index("ix_stripe_event_status_created", "status", "created_at"),
        # A customer's kept (unmatched) events, applied when it gets linked to an organization.
        Index("ix_stripe_event_customer_status", "stripe_customer_id", "status"),
    )

    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    api_version: Mapped[str | None] = mapped_column(String(32))
    # The id of the Stripe object the event is about (sub_…, in_…, cus_…, cs_…).
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # The Stripe customer the object belongs to (the object itself for customer events).
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organization.id", ondelete="SET NULL"), index=True
    )
    # Stripe's `created` for the event: the per-object ordering key.
    event_created_at: Mapped[datetime] = mapped_column()
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    # What applying did, or why it did nothing (for admins reading the inbox).
    outcome: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(String(1000))
    attempts: Mapped[int] = mapped_column(default=0)
    # When orgbill first received the event (named created_at so the shared pagination applies).
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column()
