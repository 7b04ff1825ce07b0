from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.models.base import Base
from orgbill.models.types import CreditAmount


class CreditBalance(Base):
    """The ledger's sum, kept in the same transaction as each entry so reads (the profile's
    `total_credits`) take one row instead of summing the ledger. Only changed by conditional
    atomic updates; the check constraint is a last line of defence."""

    __tablename__ = "credit_balance"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[Decimal] = mapped_column(CreditAmount())
    # Start of the latest allowance month whose monthly credits were recorded.
    monthly_granted_for: Mapped[datetime | None] = mapped_column()
    # The earliest `expires_at` among grants with credits left: a read before it needs no
    # look at the grants (the profile rides on one row); a read after it does.
    next_expiry_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
