from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.models.base import Base


class UsageTotal(Base):
    """Running total of one metric for one organization and billing period, changed only by
    one atomic upsert per batch, so reads and quota checks never scan events. A counter
    gets a new row each period (the old one simply stops being read: no reset job); a
    gauge keeps one row under a fixed epoch period."""

    __tablename__ = "usage_total"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    used: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column()
