from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orgbill.models.base import Base, IdMixin
from orgbill.models.types import CreditAmount


class ReservationState(StrEnum):
    HELD = "held"  # counts as used while expires_at is in the future
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"  # written by the lazy sweep; a held row past expires_at is expired too
    DENIED = "denied"  # a refused reserve kept only to answer its idempotency key again


class Reservation(IdMixin, Base):
    """A hold on a quantity of one metric (or of credits) taken by `POST /check`.

    Whether it still counts is derived at read time (`state = 'held' AND expires_at > now`),
    so expiry needs no job. Its holder's (org, metric) total row is the lock every writer of
    that metric takes first, which is what keeps holds and usage within a limit together."""

    __tablename__ = "reservation"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key"),
        # The active-holds sum: equality on the first three, a range on expires_at.
        Index("ix_reservation_holds", "organization_id", "metric", "state", "expires_at"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE")
    )
    metric: Mapped[str] = mapped_column(String(64))
    # Exact: credits are decimals; meters hold whole units.
    quantity: Mapped[Decimal] = mapped_column(CreditAmount())
    state: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column()
    # What other live holds kept when this one was granted (the decision's `reserved`).
    reserved_before: Mapped[Decimal] = mapped_column(CreditAmount())
    committed_quantity: Mapped[Decimal | None] = mapped_column(CreditAmount())
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # The decision as first answered, replayed for a repeated idempotency key.
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column()
    settled_at: Mapped[datetime | None] = mapped_column()
