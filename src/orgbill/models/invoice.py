from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.kit.time import utcnow
from orgbill.models.base import Base, IdMixin


class Invoice(IdMixin, Base):
    """Our mirror of a Stripe invoice (written by webhooks and reconciliation).
    Amounts are integer minor units of `currency`, as Stripe sends them."""

    __tablename__ = "invoice"
    __table_args__ = (Index("ix_invoice_org_created", "organization_id", "created_at"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE")
    )
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger)
    amount_due: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger)
    invoice_pdf: Mapped[str | None] = mapped_column(String(1000))
    hosted_invoice_url: Mapped[str | None] = mapped_column(String(1000))
    period_start: Mapped[datetime | None] = mapped_column()
    period_end: Mapped[datetime | None] = mapped_column()
    # Stripe's `created` for the invoice (lists are ordered by it).
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # `created` of the newest Stripe event applied to this invoice: older events change nothing.
    stripe_event_created: Mapped[datetime | None] = mapped_column()
