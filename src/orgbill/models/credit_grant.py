from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.models.base import Base, IdMixin
from orgbill.models.types import CreditAmount


class CreditGrantKind(StrEnum):
    MONTHLY = "monthly"
    PURCHASE = "purchase"
    GRANT = "grant"
    PROMOTIONAL = "promotional"


class CreditGrant(IdMixin, Base):
    """A lot of credits: consumption draws down `remaining`; what is left at `expires_at` is
    written off by an `expiry` ledger entry (`expired_at` says when that was recorded).
    The sum of `remaining` over an org's grants equals its ledger's sum and its balance row."""

    __tablename__ = "credit_grant"
    __table_args__ = (
        CheckConstraint("remaining >= 0", name="remaining_not_negative"),
        CheckConstraint("remaining <= amount", name="remaining_within_amount"),
        # Once per org and month of the billing anchor, whatever races to record it.
        UniqueConstraint("organization_id", "allowance_month"),
        # One purchase grant per Stripe Checkout session, however often Stripe tells us.
        UniqueConstraint("stripe_checkout_session_id"),
        Index("ix_credit_grant_org_remaining", "organization_id", "remaining"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(CreditAmount())
    remaining: Mapped[Decimal] = mapped_column(CreditAmount())
    expires_at: Mapped[datetime | None] = mapped_column()
    expired_at: Mapped[datetime | None] = mapped_column()
    # Start of the allowance month a `monthly` grant is for.
    allowance_month: Mapped[datetime | None] = mapped_column()
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column()
