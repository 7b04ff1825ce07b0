from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.models.base import Base, IdMixin


class UsageEvent(IdMixin, Base):
    """One reported usage event, kept for audit and replay; reads use `usage_total`."""

    __tablename__ = "usage_event"
    __table_args__ = (
        # The idempotency guarantee: a repeated key is refused by the database itself.
        UniqueConstraint("organization_id", "idempotency_key"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE")
    )
    metric: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime] = mapped_column()
    # Start of the billing period the event counts in (the gauge epoch for gauges).
    period_start: Mapped[datetime] = mapped_column()
    recorded_at: Mapped[datetime] = mapped_column()
