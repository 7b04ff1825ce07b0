"""The migration that stores the Stripe price on subscriptions backfills it from what existed:
a row keeps mapping to the plan it had, including one matched by lookup key."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from orgbill import migrate
from orgbill.config import Settings
from orgbill.db import create_engine
from orgbill.models import Organization
from orgbill.plans.catalog import load_catalog
from tests.fixtures.databases import migrated_settings, off_loop
from tests.fixtures.stripe import event, fixture

pytestmark = pytest.mark.parametrize("db", ["sqlite", "postgres"])
NOW = datetime(2026, 11, 30, tzinfo=UTC)
_ID, _TIME = sa.Uuid(), sa.DateTime(timezone=True)
OLD_SUBSCRIPTION = sa.table(
    "subscription",
    sa.column("id", _ID),
    sa.column("organization_id", _ID),
    *(sa.column(name) for name in ("stripe_subscription_id", "status", "plan_code")),
    sa.column("stripe_price_id"),
    sa.column("cancel_at_period_end", sa.Boolean()),
    sa.column("created_at", _TIME),
    sa.column("updated_at", _TIME),
)
OLD_EVENT = sa.table(
    "stripe_event",
    sa.column("id", _ID),
    *(sa.column(name) for name in ("stripe_event_id", "type", "object_id", "status")),
    sa.column("event_created_at", _TIME),
    sa.column("payload", sa.JSON()),
    sa.column("attempts", sa.Integer()),
    sa.column("created_at", _TIME),
)


def _subscription_object(sub_id: str, price: str, lookup_key: str | None) -> dict[str, Any]:
    obj = fixture("subscription")
    obj["id"] = sub_id
    item = obj["items"]["data"][0]
    item["price"]["id"], item["price"]["lookup_key"], item["plan"]["id"] = price, lookup_key, price
    return obj


def _run(settings: Settings, *statements: Any) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                return [await conn.execute(s) for s in statements]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_backfills_the_stripe_price_and_keeps_each_subscription_on_its_plan(
    db: str, tmp_path: Path
) -> None:
    with migrated_settings(db, tmp_path) as settings:
        off_loop(migrate.downgrade, settings, "0004")
        org_id = uuid.uuid4()
        org = sa.insert(Organization.__table__).values(
            id=org_id, name="Old", slug=f"old-{org_id.hex[:8]}", status="ACTIVE",
            region_id="us-east", org_type="normal", kyc_level=0, placement_group="shared",
            entitlements=[], limit_overrides={}, preferences={}, partner_configuration={},
            registerable=True, created_at=NOW, updated_at=NOW,
        )  # fmt: skip
        common = {"organization_id": org_id, "status": "active", "cancel_at_period_end": False}
        stamps = {"created_at": NOW, "updated_at": NOW}
        # Matched by lookup key when the webhook came (its price id is in no plans file).
        by_event = {"id": uuid.uuid4(), "stripe_subscription_id": "sub_by_event", **common}
        by_event |= {"plan_code": "business", "stripe_price_id": "price_2019_business", **stamps}
        # Written by reconciliation (no event kept), matched by lookup key too.
        no_event = {"id": uuid.uuid4(), "stripe_subscription_id": "sub_no_event", **common}
        no_event |= {"plan_code": "pro", "stripe_price_id": "price_2019_pro", **stamps}
        payload = event(
            "customer.subscription.updated",
            _subscription_object("sub_by_event", "price_2019_business", "orgbill_business_monthly"),
            int(NOW.timestamp()),
            "2025-03-31.basil",
        )
        kept = event("invoice.paid", {**fixture("invoice"), "customer": "cus_kept"}, 1, "x")
        inbox = [
            {"id": uuid.uuid4(), "stripe_event_id": e["id"], "type": e["type"], "status": status}
            | {"object_id": e["data"]["object"]["id"], "event_created_at": NOW, "payload": e}
            | {"attempts": 1, "created_at": NOW}
            for e, status in ((payload, "processed"), (kept, "unmatched"))
        ]
        off_loop(
            _run,
            settings,
            org,
            sa.insert(OLD_SUBSCRIPTION).values([by_event, no_event]),
            sa.insert(OLD_EVENT).values(inbox),
        )
        off_loop(migrate.upgrade, settings, "head")
        prices, kept_customer = off_loop(
            _run,
            settings,
            sa.text(
                "SELECT stripe_subscription_id, stripe_price_id, stripe_lookup_key, "
                "stripe_legacy_plan_id FROM subscription ORDER BY stripe_subscription_id"
            ),
            sa.text(
                "SELECT stripe_customer_id FROM stripe_event WHERE stripe_event_id = :id"
            ).bindparams(id=kept["id"]),
        )
    rows = {row[0]: row[1:] for row in prices.all()}
    assert rows == {
        "sub_by_event": ("price_2019_business", "orgbill_business_monthly", "price_2019_business"),
        "sub_no_event": ("price_2019_pro", "orgbill_pro_monthly", None),
    }
    catalog = load_catalog()
    assert catalog.plan_for_price(*rows["sub_by_event"]).code == "business"  # type: ignore[union-attr]
    assert catalog.plan_for_price(*rows["sub_no_event"]).code == "pro"  # type: ignore[union-attr]
    assert kept_customer.scalar() == "cus_kept"
