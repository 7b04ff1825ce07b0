"""subscription stripe price: store the price, map it to a plan at read time; inbox customer

The subscription mirror kept the plan a price meant when the webhook arrived (`plan_code`); a
catalog change never re-mapped it. It now keeps the price as Stripe names it (price id, lookup
key, legacy plan id) and the plan is decided against the live catalog on every read.

Backfill, from what exists: the newest applied event of each subscription (the inbox keeps its
object) gives the item's price id, lookup key and plan id; a row without one keeps its stored
price id and, when its old plan is in the synced catalog, that plan's lookup key, so a row
matched by lookup key still maps to the same plan. Downgrade fills `plan_code` back from the
synced catalog by the same precedence.

The inbox also records each event's Stripe customer, so the events kept `unmatched` for a
customer nobody had linked are found and applied when it gets linked (backfilled for the kept
ones).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:45:00.000000+00:00
"""

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_subscription = sa.table(
    "subscription",
    sa.column("id", sa.Uuid()),
    sa.column("stripe_subscription_id", sa.String()),
    sa.column("plan_code", sa.String()),
    sa.column("stripe_price_id", sa.String()),
    sa.column("stripe_lookup_key", sa.String()),
    sa.column("stripe_legacy_plan_id", sa.String()),
)
_event = sa.table(
    "stripe_event",
    sa.column("object_id", sa.String()),
    sa.column("type", sa.String()),
    sa.column("status", sa.String()),
    sa.column("event_created_at", sa.DateTime(timezone=True)),
    sa.column("payload", sa.JSON()),
)
_inbox = sa.table(
    "stripe_event",
    sa.column("id", sa.Uuid()),
    sa.column("status", sa.String()),
    sa.column("payload", sa.JSON()),
    sa.column("stripe_customer_id", sa.String()),
)
_catalog = sa.table("plan_catalog", sa.column("id", sa.Integer()), sa.column("document", sa.JSON()))


def _id(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def _event_customer(payload: Any) -> str | None:
    data = payload.get("data") if isinstance(payload, Mapping) else None
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        return None
    return _id(obj.get("id")) if obj.get("object") == "customer" else _id(obj.get("customer"))


def _catalog_plans(bind: sa.Connection) -> dict[str, Any]:
    document = bind.execute(sa.select(_catalog.c.document).where(_catalog.c.id == 1)).scalar()
    plans = document.get("plans") if isinstance(document, Mapping) else None
    return dict(plans) if isinstance(plans, Mapping) else {}


def _price_from_event(payload: Any, stored_price: str | None) -> dict[str, str | None] | None:
    """The item the old handler stored (its price or plan id), else the first one."""
    data = payload.get("data") if isinstance(payload, Mapping) else None
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        return None
    items = obj["items"].get("data") if isinstance(obj.get("items"), Mapping) else None
    candidates = []
    for item in items or ():
        if not isinstance(item, Mapping):
            continue
        price = item.get("price")
        lookup_key = price.get("lookup_key") if isinstance(price, Mapping) else None
        candidates.append(
            {
                "stripe_price_id": _id(price),
                "stripe_lookup_key": lookup_key if isinstance(lookup_key, str) else None,
                "stripe_legacy_plan_id": _id(item.get("plan")),
            }
        )
    if not candidates and obj.get("plan") is not None:
        candidates.append(
            {
                "stripe_price_id": None,
                "stripe_lookup_key": None,
                "stripe_legacy_plan_id": _id(obj.get("plan")),
            }
        )
    for candidate in candidates:
        if stored_price in (candidate["stripe_price_id"], candidate["stripe_legacy_plan_id"]):
            return candidate
    return candidates[0] if candidates else None


def upgrade() -> None:
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_lookup_key", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("stripe_legacy_plan_id", sa.String(length=255), nullable=True)
        )
    bind = op.get_bind()
    plans = _catalog_plans(bind)
    rows = bind.execute(
        sa.select(
            _subscription.c.id,
            _subscription.c.stripe_subscription_id,
            _subscription.c.plan_code,
            _subscription.c.stripe_price_id,
        )
    ).all()
    for row in rows:
        payload = bind.execute(
            sa.select(_event.c.payload)
            .where(
                _event.c.object_id == row.stripe_subscription_id,
                _event.c.type.like("customer.subscription.%"),
                _event.c.status == "processed",
            )
            .order_by(_event.c.event_created_at.desc())
            .limit(1)
        ).scalar()
        values = _price_from_event(payload, row.stripe_price_id) if payload else None
        if values is None:
            plan = plans.get(row.plan_code) if row.plan_code else None
            lookup_key = plan.get("stripe_lookup_key") if isinstance(plan, Mapping) else None
            values = {
                "stripe_price_id": row.stripe_price_id,
                "stripe_lookup_key": lookup_key if isinstance(lookup_key, str) else None,
                "stripe_legacy_plan_id": None,
            }
        bind.execute(sa.update(_subscription).where(_subscription.c.id == row.id).values(**values))
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.drop_column("plan_code")

    with op.batch_alter_table("stripe_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_customer_id", sa.String(length=255), nullable=True))
        batch_op.create_index(
            "ix_stripe_event_customer_status", ["stripe_customer_id", "status"], unique=False
        )
    kept = bind.execute(
        sa.select(_inbox.c.id, _inbox.c.payload).where(_inbox.c.status == "unmatched")
    ).all()
    for event in kept:
        customer = _event_customer(event.payload)
        if customer is not None:
            bind.execute(
                sa.update(_inbox).where(_inbox.c.id == event.id).values(stripe_customer_id=customer)
            )


def downgrade() -> None:
    with op.batch_alter_table("stripe_event", schema=None) as batch_op:
        batch_op.drop_index("ix_stripe_event_customer_status")
        batch_op.drop_column("stripe_customer_id")
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_code", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    by_ref: dict[str, str] = {}
    for code, plan in _catalog_plans(bind).items():
        for key in ("stripe_price_id", "stripe_lookup_key"):
            ref = plan.get(key) if isinstance(plan, Mapping) else None
            if isinstance(ref, str):
                by_ref[ref] = code
    rows = bind.execute(
        sa.select(
            _subscription.c.id,
            _subscription.c.stripe_price_id,
            _subscription.c.stripe_lookup_key,
            _subscription.c.stripe_legacy_plan_id,
        )
    ).all()
    for row in rows:
        refs = (row.stripe_price_id, row.stripe_lookup_key, row.stripe_legacy_plan_id)
        code = next((by_ref[ref] for ref in refs if ref and ref in by_ref), None)
        if code is not None:
            bind.execute(
                sa.update(_subscription).where(_subscription.c.id == row.id).values(plan_code=code)
            )
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.drop_column("stripe_legacy_plan_id")
        batch_op.drop_column("stripe_lookup_key")
