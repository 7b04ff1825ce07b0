"""drop the plan table: nothing reads it

`plans sync` wrote each plan into `plan` besides the whole document into `plan_catalog`;
every read (the resolver, /plans, Stripe mapping) comes from `plan_catalog`. Downgrade
recreates the empty table (the next `plans sync` of the older version fills it again).

Revision ID: drop_plan_table
Revises: 0005
Create Date: 2026-12-01 19:50:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "drop_plan_table"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("plan")


def downgrade() -> None:
    op.create_table(
        "plan",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("interval", sa.String(length=8), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("stripe_price_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_lookup_key", sa.String(length=255), nullable=True),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan")),
        sa.UniqueConstraint("code", name=op.f("uq_plan_code")),
        sa.UniqueConstraint("stripe_lookup_key", name=op.f("uq_plan_stripe_lookup_key")),
        sa.UniqueConstraint("stripe_price_id", name=op.f("uq_plan_stripe_price_id")),
    )
