from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.models.base import Base, IdMixin, TimestampMixin


class WebhookEndpoint(IdMixin, TimestampMixin, Base):
    """Where orgbill sends its events (superadmin-managed). The signing secret is never
    stored: only a random nonce, from which the secret is derived with the server's
    ORGBILL_API_KEY_SECRET, so a database dump alone cannot sign."""

    __tablename__ = "webhook_endpoint"

    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    # Event types this endpoint receives, or ["*"] for all.
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Only this organization's events; null: every organization's.
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    enabled: Mapped[bool] = mapped_column(default=True)
    secret_nonce: Mapped[str] = mapped_column(String(64))
    # Start of the current run of failed attempts (null after a success): disabled after 3 days.
    failing_since: Mapped[datetime | None] = mapped_column()
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
