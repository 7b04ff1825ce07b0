"""delivery retry window: counted from a delivery's own first attempt, not from when it was queued

A delivery waits (in order) behind the earlier ones of its (endpoint, organization) queue; its
retry window ran from `queued_at`, so one queued behind a delivery that failed for the whole
window was `failed` after a single attempt. `retry_window_started_at` is set by its first
attempt since it was queued (null until then; a manual retry clears it).

Backfill: the first attempt's time was never kept. A delivery attempted since it was queued
(`last_attempt_at >= queued_at`) gets its last attempt's time: never earlier than its first, so
no delivery being retried now gets less than its window. The others are null: their window
starts at their next attempt.

Revision ID: 0009_delivery_retry_window
Revises: 0008_webhooks_out
Create Date: 2026-12-07 23:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_delivery_retry_window"
down_revision: str | None = "0008_webhooks_out"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_delivery = sa.table(
    "webhook_delivery",
    sa.column("queued_at", sa.DateTime(timezone=True)),
    sa.column("last_attempt_at", sa.DateTime(timezone=True)),
    sa.column("retry_window_started_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retry_window_started_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute(
        sa.update(_delivery)
        .where(
            _delivery.c.last_attempt_at.is_not(None),
            _delivery.c.last_attempt_at >= _delivery.c.queued_at,
        )
        .values(retry_window_started_at=_delivery.c.last_attempt_at)
    )


def downgrade() -> None:
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_column("retry_window_started_at")
