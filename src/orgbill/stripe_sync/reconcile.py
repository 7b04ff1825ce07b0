"""`orgbill stripe sync`: re-read customers, subscriptions, invoices and paid credit purchases
from Stripe and feed each through the handlers webhooks use. Safe any time and twice: an object
already mirrored comes back `unchanged`; one a newer webhook already moved past comes back
`stale`.

Each object is applied in its own short transaction, so a long sync holds no lock while it
waits on Stripe, and an interrupted one keeps what it did.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.db import Database
from orgbill.kit.time import utcnow
from orgbill.plans.store import CatalogStore
from orgbill.stripe_sync import handlers, mappers, repository, webhooks
from orgbill.stripe_sync.client import StripeGateway
from orgbill.stripe_sync.handlers import Outcome

_QUIET_CHANGES = frozenset({"unchanged", "stale"})


def _observed_now() -> datetime:
    """When a read of Stripe's state is stamped, on Stripe's clock: whole seconds. An event
    in the same second as the read then ties with it (and the same-second lifecycle rule
    decides) instead of counting as older than a microsecond stamp and being dropped."""
    return utcnow().replace(microsecond=0)


@dataclass
class ReconcileReport:
    counts: Counter[str] = field(default_factory=Counter)
    changes: list[str] = field(default_factory=list)

    def record(self, kind: str, outcome: Outcome) -> None:
        self.counts[f"{kind}.{outcome.change}"] += 1
        if outcome.change not in _QUIET_CHANGES:
            self.changes.append(outcome.message)

    @property
    def changed(self) -> int:
        return len(self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "counts": dict(sorted(self.counts.items())),
            "changes": self.changes,
        }


class Reconciler:
    def __init__(self, database: Database, gateway: StripeGateway, store: CatalogStore) -> None:
        self._database = database
        self._gateway = gateway
        self._store = store

    async def _apply(
        self,
        kind: str,
        report: ReconcileReport,
        apply: Callable[[AsyncSession], Awaitable[Outcome]],
    ) -> None:
        async with self._database.session(writes=True) as session:
            outcome = await apply(session)
            if outcome.linked_customer:
                catalog = await self._store.live(session)
                await webhooks.apply_kept_events(session, outcome.linked_customer, catalog)
            await session.commit()
        report.record(kind, outcome)

    async def _customers_in_scope(self, organization_id: uuid.UUID | None) -> list[dict[str, Any]]:
        if organization_id is None:
            return await self._gateway.list_customers()
        async with self._database.session(writes=False) as session:
            linked = await repository.customer_of(session, organization_id)
        if linked is not None:
            return [await self._gateway.retrieve_customer(linked)]
        # Not linked yet: find the customers whose metadata names the org.
        customers = await self._gateway.list_customers()
        return [
            c for c in customers if mappers.customer_snapshot(c).organization_id == organization_id
        ]

    async def run(self, organization_id: uuid.UUID | None = None) -> ReconcileReport:
        report = ReconcileReport()
        customers = await self._customers_in_scope(organization_id)
        for customer in customers:
            await self._reconcile_customer(report, customer)
        if organization_id is None:
            await self._reconcile_objects(report, None)
        else:
            for customer in customers:
                await self._reconcile_objects(report, customer["id"])
        return report

    async def _reconcile_customer(self, report: ReconcileReport, customer: dict[str, Any]) -> None:
        snapshot = mappers.customer_snapshot(customer)
        await self._apply("customer", report, lambda s: handlers.apply_customer(s, snapshot))

    async def _reconcile_objects(self, report: ReconcileReport, customer_id: str | None) -> None:
        # The state read is at least as new as the instant before the read: older events
        # delivered later then change nothing.
        observed_at: datetime = _observed_now()
        subscriptions = await self._gateway.list_subscriptions(customer_id)
        for subscription in subscriptions:
            snapshot = mappers.subscription_snapshot(subscription)

            async def apply_subscription(
                session: AsyncSession, snapshot: mappers.SubscriptionSnapshot = snapshot
            ) -> Outcome:
                catalog = await self._store.live(session)
                return await handlers.apply_subscription(session, snapshot, catalog, observed_at)

            await self._apply("subscription", report, apply_subscription)
        observed_at = _observed_now()
        invoices = await self._gateway.list_invoices(customer_id)
        for invoice in invoices:
            invoice_snapshot = mappers.invoice_snapshot(invoice)
            await self._apply(
                "invoice",
                report,
                lambda s, snap=invoice_snapshot: handlers.apply_invoice(s, snap, observed_at),
            )
        await self._reconcile_credit_purchases(report, customer_id)

    async def _reconcile_credit_purchases(
        self, report: ReconcileReport, customer_id: str | None
    ) -> None:
        """A paid credit purchase whose webhook never arrived gets its grant here (the
        handler adds it once per session, so a purchase already added is `unchanged`)."""
        for checkout in await self._gateway.list_paid_credit_checkouts(customer_id):
            snapshot = mappers.checkout_snapshot(checkout)

            async def apply_purchase(
                session: AsyncSession, snapshot: mappers.CheckoutSnapshot = snapshot
            ) -> Outcome:
                catalog = await self._store.live(session)
                return await handlers.apply_credit_purchase(session, snapshot, catalog, utcnow())

            await self._apply("credit_purchase", report, apply_purchase)
