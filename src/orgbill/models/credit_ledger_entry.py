from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.models.base import Base, IdMixin
from orgbill.models.types import CreditAmount


class CreditEntryKind(StrEnum):
    # A grant's arrival is entered under its grant kind (orgbill.models.CreditGrantKind).
    MONTHLY = "monthly"
    GRANT = "grant"
    PROMOTIONAL = "promotional"
    PURCHASE = "purchase"
    CONSUME = "consume"
    EXPIRY = "expiry"


class CreditLedgerEntry(IdMixin, Base):
    """Append-only: the sum of `amount` over an org's entries is its balance."""

    __tablename__ = "credit_ledger_entry"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key"),
        Index("ix_credit_ledger_entry_org_created", "organization_id", "created_at"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    # Signed: grants and purchases add, consumption and expiry subtract.
    amount: Mapped[Decimal] = mapped_column(CreditAmount())
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(String(500))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL")
    )
    # The grant an arrival or an expiry is about (consumption may span several: see grants).
    grant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("credit_grant.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column()
