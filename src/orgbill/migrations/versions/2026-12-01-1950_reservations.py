"""reservations: holds taken by POST /check

Revision ID: 0006_reservations
Revises: drop_plan_table
Create Date: 2026-12-01 19:50:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Exact quantities: NUMERIC on PostgreSQL; integer ten-thousandths on SQLite (see
# orgbill.models.types.CreditAmount).
QUANTITY = sa.Numeric(precision=18, scale=4).with_variant(sa.BigInteger(), "sqlite")

revision: str = "0006_reservations"
down_revision: str | None = "drop_plan_table"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reservation",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("quantity", QUANTITY, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reserved_before", QUANTITY, nullable=False),
        sa.Column("committed_quantity", QUANTITY, nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_reservation_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservation")),
        sa.UniqueConstraint(
            "organization_id",
            "idempotency_key",
            name=op.f("uq_reservation_organization_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("reservation", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reservation_holds",
            ["organization_id", "metric", "state", "expires_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("reservation", schema=None) as batch_op:
        batch_op.drop_index("ix_reservation_holds")
    op.drop_table("reservation")
