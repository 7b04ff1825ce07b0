"""credit grants: credits live in grants with their own expiry; the ledger points at them

Converts each organization's single balance into one never-expiring `grant`, so no existing
credits vanish and the ledger still sums to the balance.

Revision ID: c14e0a9f5d21
Revises: 0006_reservations
Create Date: 2026-12-01 19:50:00+00:00
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# As in 0004: NUMERIC on PostgreSQL, integer ten-thousandths on SQLite.
CREDITS = sa.Numeric(precision=18, scale=4).with_variant(sa.BigInteger(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)

revision: str = "c14e0a9f5d21"
down_revision: str | None = "0006_reservations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "credit_grant",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", CREDITS, nullable=False),
        sa.Column("remaining", CREDITS, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("expired_at", TIMESTAMP, nullable=True),
        sa.Column("allowance_month", TIMESTAMP, nullable=True),
        sa.Column("stripe_checkout_session_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("remaining >= 0", name=op.f("ck_credit_grant_remaining_not_negative")),
        sa.CheckConstraint(
            "remaining <= amount", name=op.f("ck_credit_grant_remaining_within_amount")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organization.id"],
            name=op.f("fk_credit_grant_organization_id_organization"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_grant")),
        sa.UniqueConstraint(
            "organization_id",
            "allowance_month",
            name=op.f("uq_credit_grant_organization_id_allowance_month"),
        ),
        sa.UniqueConstraint(
            "stripe_checkout_session_id",
            name=op.f("uq_credit_grant_stripe_checkout_session_id"),
        ),
    )
    with op.batch_alter_table("credit_grant", schema=None) as batch_op:
        batch_op.create_index(
            "ix_credit_grant_org_remaining", ["organization_id", "remaining"], unique=False
        )
    with op.batch_alter_table("credit_ledger_entry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grant_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_credit_ledger_entry_grant_id_credit_grant"),
            "credit_grant",
            ["grant_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("credit_balance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_expiry_at", TIMESTAMP, nullable=True))

    # Today's balances become never-expiring grants (raw column values copied as stored).
    balance = sa.table(
        "credit_balance",
        sa.column("organization_id", sa.Uuid()),
        sa.column("balance", CREDITS),
    )
    grant = sa.table(
        "credit_grant",
        sa.column("id", sa.Uuid()),
        sa.column("organization_id", sa.Uuid()),
        sa.column("kind", sa.String()),
        sa.column("amount", CREDITS),
        sa.column("remaining", CREDITS),
        sa.column("created_at", TIMESTAMP),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(balance.c.organization_id, balance.c.balance).where(balance.c.balance > 0)
    ).all()
    now = datetime.now(UTC)
    if connection.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # orgbill stores naive UTC on SQLite
    if rows:
        op.bulk_insert(
            grant,
            [
                {
                    "id": uuid.uuid4(),
                    "organization_id": row.organization_id,
                    "kind": "grant",
                    "amount": row.balance,
                    "remaining": row.balance,
                    "created_at": now,
                }
                for row in rows
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("credit_balance", schema=None) as batch_op:
        batch_op.drop_column("next_expiry_at")
    with op.batch_alter_table("credit_ledger_entry", schema=None) as batch_op:
        batch_op.drop_constraint(
            op.f("fk_credit_ledger_entry_grant_id_credit_grant"), type_="foreignkey"
        )
        batch_op.drop_column("grant_id")
    with op.batch_alter_table("credit_grant", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_grant_org_remaining")
    op.drop_table("credit_grant")
