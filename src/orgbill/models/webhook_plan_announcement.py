from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.kit.time import utcnow
from orgbill.models.base import Base


class WebhookPlanAnnouncement(Base):
    """The plan last announced per organization (organization.plan_changed): the dispatcher's
    sweep compares it with the plan resolved now to notice time-driven changes."""

    __tablename__ = "webhook_plan_announcement"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True
    )
    plan_code: Mapped[str] = mapped_column(String(64))
    plan_source: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
