from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.kit.time import utcnow
from orgbill.models.base import Base, IdMixin


class WebhookEvent(IdMixin, Base):
    """The outbox: an event, written in the transaction of the change that caused it."""

    __tablename__ = "webhook_event"

    type: Mapped[str] = mapped_column(String(64))
    # Every event is about one organization (and its data names it).
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Events that happen once (a usage threshold per metric and period) carry a key: unique.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Order of events (per process strictly increasing; see webhooks_out/outbox.py).
    sequence: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
