from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.kit.time import utcnow
from orgbill.models.base import Base, IdMixin


class WebhookDeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its first attempt or a retry
    DELIVERED = "delivered"  # a 2xx came back
    FAILED = "failed"  # retried for the whole retry window without a 2xx


class WebhookDelivery(IdMixin, Base):
    """One event to one endpoint, with its delivery log."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id"),
        # The dispatcher's scan: due pending deliveries, and each queue's head.
        Index("ix_webhook_delivery_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_queue", "endpoint_id", "organization_id", "status", "sequence"),
        # The delivery log of an endpoint, newest first.
        Index("ix_webhook_delivery_endpoint_created", "endpoint_id", "created_at"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_event.id", ondelete="CASCADE"))
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE")
    )
    # Copied from the event: deliveries are in order per endpoint and organization.
    organization_id: Mapped[uuid.UUID] = mapped_column()
    sequence: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=WebhookDeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column()
    # A dispatcher holds the delivery until then while it sends: no other instance takes it.
    locked_until: Mapped[datetime | None] = mapped_column()
    # When it was queued: created, or retried by hand.
    queued_at: Mapped[datetime] = mapped_column()
    # Its first attempt since it was queued; retries run for the retry window from here.
    # Not from `queued_at`: a delivery may wait behind an earlier one of its queue for that
    # one's whole window, and would otherwise be `failed` after a single attempt.
    retry_window_started_at: Mapped[datetime | None] = mapped_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column()
    last_latency_ms: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
