"""Applying normalised Stripe objects to our mirror: the code path webhooks and reconciliation
share. Each `apply_*` takes a snapshot (mappers.py) and the time it describes (`observed_at`: an
event's `created`, or when reconciliation read the object) and returns what it did.

Ordering: per Stripe object we keep the `observed_at` of the newest state applied; anything
older changes nothing. Stripe's clock has one-second resolution, so two events of one object in
the same second are ordered by their status instead: a later lifecycle stage wins (a canceled
subscription never comes back; a paid invoice never returns to open).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.credits import service as credits_service
from orgbill.entitlements.repository import PlanInputs, load_plan_inputs
from orgbill.entitlements.resolver import EffectivePlan, PlanIdentity, plan_identity
from orgbill.entitlements.service import resolve_with
from orgbill.kit.time import isoformat_z, utcnow
from orgbill.models import Organization, StripeEventStatus
from orgbill.plans.catalog import Catalog, PlanDef
from orgbill.stripe_sync import mappers, repository
from orgbill.stripe_sync.mappers import (
    CheckoutSnapshot,
    CustomerSnapshot,
    EventEnvelope,
    InvoiceSnapshot,
    PriceRef,
    SubscriptionSnapshot,
)
from orgbill.webhooks_out import outbox
from orgbill.webhooks_out.events import EventType

Change = Literal[
    "created", "updated", "unchanged", "linked", "unlinked", "stale", "unmatched", "ignored"
]

# Later lifecycle stages rank higher; only used to order two states stamped the same second.
# A subscription starts `incomplete` (awaiting its first payment) and leaves it once, either
# for a live status (active, trialing, past_due, unpaid, paused: these move among each other,
# so between two of them the later arrival wins) or, unpaid after 23 h, for
# `incomplete_expired`, which is terminal like `canceled`: neither is ever left. Stripe often
# stamps `created` (incomplete) and the first `updated` (active) in the same second; ranking
# incomplete lowest keeps a paying org from falling back to free when they arrive reversed.
_SUBSCRIPTION_INCOMPLETE, _SUBSCRIPTION_LIVE, _SUBSCRIPTION_ENDED = 0, 1, 2
_SUBSCRIPTION_STAGE = {
    "incomplete": _SUBSCRIPTION_INCOMPLETE,
    "canceled": _SUBSCRIPTION_ENDED,
    "incomplete_expired": _SUBSCRIPTION_ENDED,
}


# The same ranking for the database's side of the one-statement ordered update.
_SUBSCRIPTION_STAGES = tuple(_SUBSCRIPTION_STAGE.items())


def _subscription_stage(status: str) -> int:
    # Any other status (including one Stripe adds later) is a live one.
    return _SUBSCRIPTION_STAGE.get(status, _SUBSCRIPTION_LIVE)


_INVOICE_STAGE = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}


@dataclass(frozen=True, slots=True)
class Outcome:
    change: Change
    message: str
    organization_id: uuid.UUID | None = None
    # A customer this change linked to the organization: its kept (unmatched) events are due.
    linked_customer: str | None = None

    @property
    def event_status(self) -> StripeEventStatus:
        if self.change == "unmatched":
            return StripeEventStatus.UNMATCHED
        if self.change in ("stale", "ignored"):
            return StripeEventStatus.IGNORED
        return StripeEventStatus.PROCESSED


def supersedes(
    observed_at: datetime,
    stored_at: datetime | None,
    incoming_stage: int,
    stored_stage: int,
) -> bool:
    if stored_at is None or observed_at > stored_at:
        return True
    if observed_at < stored_at:
        return False
    return incoming_stage >= stored_stage


async def _organization_for(
    session: AsyncSession,
    metadata_org: uuid.UUID | None,
    customer_id: str | None,
    subscription_id: str | None = None,
) -> uuid.UUID | None:
    """metadata.organization_id, else the org of the subscription (an invoice belongs where
    its subscription does, even when its customer is linked to another org), else the org
    linked to the customer."""
    if metadata_org is not None:
        found = await repository.live_organization_id(session, metadata_org)
        if found is not None:
            return found
    if subscription_id:
        found = await repository.subscription_organization(session, subscription_id)
        if found is not None:
            return found
    if customer_id:
        return await repository.organization_for_customer(session, customer_id)
    return None


def _no_org(kind: str, stripe_id: str, metadata_org: uuid.UUID | None, customer: str | None) -> str:
    named = f"metadata organization {metadata_org}" if metadata_org else "no metadata organization"
    return f"{kind} {stripe_id}: no organization ({named}; customer {customer or '-'} not linked)"


def _price_for(snapshot: SubscriptionSnapshot, catalog: Catalog) -> PriceRef | None:
    """The item whose price we keep: the one the catalog maps to its highest-ranked plan, else
    the first. Only the price is stored; which plan it means is decided when read."""
    best: tuple[PriceRef, int] | None = None
    for item in snapshot.items:
        plan = catalog.plan_for_price(item.price_id, item.lookup_key, item.legacy_plan_id)
        if plan is not None and (best is None or plan.rank > best[1]):
            best = (item, plan.rank)
    if best is not None:
        return best[0]
    return snapshot.items[0] if snapshot.items else None


def _assign(row: Any, values: dict[str, Any]) -> bool:
    changed = False
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    return changed


async def apply_subscription(
    session: AsyncSession, snapshot: SubscriptionSnapshot, catalog: Catalog, observed_at: datetime
) -> Outcome:
    sub_id = snapshot.stripe_subscription_id
    price = _price_for(snapshot, catalog)
    values: dict[str, Any] = {
        "stripe_customer_id": snapshot.stripe_customer_id,
        "status": snapshot.status,
        "stripe_price_id": price.price_id if price else None,
        "stripe_lookup_key": price.lookup_key if price else None,
        "stripe_legacy_plan_id": price.legacy_plan_id if price else None,
        "current_period_start": snapshot.current_period_start,
        "current_period_end": snapshot.current_period_end,
        "cancel_at_period_end": snapshot.cancel_at_period_end,
        "canceled_at": snapshot.canceled_at,
        "ended_at": snapshot.ended_at,
    }
    plan = catalog.plan_for_price(*price.refs) if price else None
    described = f"subscription {sub_id} ({snapshot.status}, plan {plan.code if plan else '-'})"
    stage = _subscription_stage(snapshot.status)
    # The usual case, an object we mirror moving on: ordering check and write in one statement.
    updated = await repository.update_subscription_if_newer(
        session, sub_id, values, observed_at, stage, _SUBSCRIPTION_STAGES, _SUBSCRIPTION_LIVE
    )
    if updated is not None:
        change: Change = "updated" if updated.changed else "unchanged"
        if updated.changed:
            # The plan before is the one last announced (the first event of this subscription
            # announced it), so only the plan after is resolved here.
            await _subscription_changed(
                session,
                updated.organization_id,
                updated.id,
                {**values, "stripe_subscription_id": sub_id},
                plan,
                catalog,
                None,
            )
        return Outcome(change, f"{described} {change}", updated.organization_id)
    # Not mirrored yet (the insert below creates it), or holding a newer state (the insert
    # meets it at the unique constraint): then decide under the row lock.
    org_id = await _organization_for(session, snapshot.organization_id, snapshot.stripe_customer_id)
    if org_id is not None:
        now = utcnow()
        plan_before = await _plan_identity(session, org_id, catalog)
        created = await repository.insert_subscription(
            session,
            {
                **values,
                "organization_id": org_id,
                "stripe_subscription_id": sub_id,
                "stripe_event_created": observed_at,
                "created_at": now,
                "updated_at": now,
            },
        )
        if created:
            linked = None
            if snapshot.stripe_customer_id and await repository.link_customer(
                session, org_id, snapshot.stripe_customer_id
            ):
                linked = snapshot.stripe_customer_id
            await _subscription_changed(
                session,
                org_id,
                created,
                {**values, "stripe_subscription_id": sub_id},
                plan,
                catalog,
                plan_before,
            )
            return Outcome("created", f"{described} created", org_id, linked)
    row = await repository.lock_subscription(session, sub_id)
    if row is None:
        message = _no_org(
            "subscription", sub_id, snapshot.organization_id, snapshot.stripe_customer_id
        )
        return Outcome("unmatched", message)
    org_id = row.organization_id
    if not supersedes(
        observed_at, row.stripe_event_created, stage, _subscription_stage(row.status)
    ):
        return Outcome("stale", f"{described}: a newer state is already applied", org_id)
    plan_before = await _plan_identity(session, org_id, catalog)
    changed = _assign(row, values)
    row.stripe_event_created = observed_at
    if changed:
        row.updated_at = utcnow()
    await session.flush()
    if changed:
        await _subscription_changed(
            session,
            org_id,
            row.id,
            {**values, "stripe_subscription_id": sub_id},
            plan,
            catalog,
            plan_before,
        )
        return Outcome("updated", f"{described} updated", org_id)
    return Outcome("unchanged", f"{described} unchanged", org_id)


def _timestamp(value: datetime | None) -> str | None:
    return isoformat_z(value) if value is not None else None


async def _subscription_changed(
    session: AsyncSession,
    org_id: uuid.UUID,
    subscription_id: uuid.UUID,
    values: dict[str, Any],
    plan: PlanDef | None,
    catalog: Catalog,
    plan_before: PlanIdentity | None,
) -> None:
    """subscription.updated (the subscription as GET /billing/subscription shows it), and
    organization.plan_changed if the effective plan moved."""
    watch = await outbox.watch_plan(session, org_id)
    await outbox.emit(
        session,
        EventType.SUBSCRIPTION_UPDATED,
        org_id,
        {
            "organization_id": str(org_id),
            "id": str(subscription_id),
            "stripe_subscription_id": values["stripe_subscription_id"],
            "plan": plan.code if plan else None,
            "status": values["status"],
            "current_period_start": _timestamp(values["current_period_start"]),
            "current_period_end": _timestamp(values["current_period_end"]),
            "cancel_at_period_end": values["cancel_at_period_end"],
        },
    )
    plan_after = _identity_of(watch.inputs, catalog)
    await outbox.announce_plan(session, org_id, plan_after, plan_before, watch=watch)


async def apply_invoice(
    session: AsyncSession,
    snapshot: InvoiceSnapshot,
    observed_at: datetime,
    *,
    payment_failed: bool = False,
) -> Outcome:
    """`payment_failed`: the snapshot comes from an invoice.payment_failed event (the invoice
    stays open, so only the event says so): emits invoice.payment_failed unless stale."""
    invoice_id = snapshot.stripe_invoice_id
    values: dict[str, Any] = {
        "stripe_customer_id": snapshot.stripe_customer_id,
        "stripe_subscription_id": snapshot.stripe_subscription_id,
        "status": snapshot.status,
        "currency": snapshot.currency,
        "total": snapshot.total,
        "amount_due": snapshot.amount_due,
        "amount_paid": snapshot.amount_paid,
        "invoice_pdf": snapshot.invoice_pdf,
        "hosted_invoice_url": snapshot.hosted_invoice_url,
        "period_start": snapshot.period_start,
        "period_end": snapshot.period_end,
    }
    described = (
        f"invoice {invoice_id} ({snapshot.status or '-'}, {snapshot.total} {snapshot.currency})"
    )
    row = await repository.lock_invoice(session, invoice_id)
    if row is None:
        org_id = await _organization_for(
            session,
            snapshot.organization_id,
            snapshot.stripe_customer_id,
            snapshot.stripe_subscription_id,
        )
        if org_id is None:
            message = _no_org(
                "invoice", invoice_id, snapshot.organization_id, snapshot.stripe_customer_id
            )
            return Outcome("unmatched", message)
        created = await repository.insert_invoice(
            session,
            {
                **values,
                "organization_id": org_id,
                "stripe_invoice_id": invoice_id,
                "created_at": snapshot.created,
                "updated_at": utcnow(),
                "stripe_event_created": observed_at,
            },
        )
        if created:
            data = _invoice_data(org_id, created, invoice_id, values, snapshot.created)
            await _invoice_events(session, org_id, data, None, payment_failed)
            return Outcome("created", f"{described} created", org_id)
        row = await repository.lock_invoice(session, invoice_id)
        assert row is not None
    org_id = row.organization_id
    stage = _INVOICE_STAGE.get(snapshot.status or "", 0)
    if not supersedes(
        observed_at, row.stripe_event_created, stage, _INVOICE_STAGE.get(row.status or "", 0)
    ):
        return Outcome("stale", f"{described}: a newer state is already applied", org_id)
    status_before = row.status
    # A failure is announced by the event that first brings it: the same event again (an
    # admin replay, a redelivery of its second) ties with what it stamped and says nothing new.
    failure_is_new = payment_failed and (
        row.stripe_event_created is None or observed_at > row.stripe_event_created
    )
    changed = _assign(row, values)
    row.stripe_event_created = observed_at
    await session.flush()
    data = _invoice_data(org_id, row.id, invoice_id, values, row.created_at)
    await _invoice_events(session, org_id, data, status_before, failure_is_new)
    if changed:
        return Outcome("updated", f"{described} updated", org_id)
    return Outcome("unchanged", f"{described} unchanged", org_id)


def _invoice_data(
    org_id: uuid.UUID,
    invoice_row_id: uuid.UUID,
    stripe_invoice_id: str,
    values: dict[str, Any],
    created_at: datetime,
) -> dict[str, Any]:
    """An invoice as GET /billing/invoices shows it, with its organization."""
    return {
        "organization_id": str(org_id),
        "id": str(invoice_row_id),
        "stripe_invoice_id": stripe_invoice_id,
        "stripe_subscription_id": values["stripe_subscription_id"],
        "amount": values["total"],
        "amount_due": values["amount_due"],
        "amount_paid": values["amount_paid"],
        "currency": values["currency"],
        "status": values["status"],
        "invoice_pdf": values["invoice_pdf"],
        "hosted_invoice_url": values["hosted_invoice_url"],
        "period_start": _timestamp(values["period_start"]),
        "period_end": _timestamp(values["period_end"]),
        "created_at": _timestamp(created_at),
    }


async def _invoice_events(
    session: AsyncSession,
    org_id: uuid.UUID,
    data: dict[str, Any],
    status_before: str | None,
    payment_failed: bool,
) -> None:
    # invoice.paid once, when the mirrored invoice first becomes paid (whichever event or
    # reconciliation brings it there).
    if data["status"] == "paid" and status_before != "paid":
        await outbox.emit(session, EventType.INVOICE_PAID, org_id, data)
    if payment_failed:
        await outbox.emit(session, EventType.INVOICE_PAYMENT_FAILED, org_id, data)


async def apply_customer(session: AsyncSession, snapshot: CustomerSnapshot) -> Outcome:
    customer_id = snapshot.stripe_customer_id
    if snapshot.deleted:
        org_id = await repository.unlink_customer(session, customer_id)
        if org_id is None:
            return Outcome("unchanged", f"customer {customer_id} deleted; it was not linked")
        return Outcome("unlinked", f"customer {customer_id} deleted and unlinked", org_id)
    # A customer has no state of ours to stamp; its deletion is the one thing to not undo.
    if await repository.customer_deleted(session, customer_id):
        return Outcome("stale", f"customer {customer_id}: deleted by Stripe")
    linked = await repository.organization_for_customer(session, customer_id)
    if linked is not None:
        return Outcome("unchanged", f"customer {customer_id} already linked", linked)
    org_id = await _organization_for(session, snapshot.organization_id, None)
    if org_id is None:
        return Outcome(
            "unmatched", _no_org("customer", customer_id, snapshot.organization_id, None)
        )
    if await repository.link_customer(session, org_id, customer_id):
        return Outcome("linked", f"customer {customer_id} linked", org_id, customer_id)
    existing = await repository.customer_of(session, org_id)
    return Outcome("unchanged", f"customer {customer_id}: org keeps customer {existing}", org_id)


async def apply_checkout(session: AsyncSession, snapshot: CheckoutSnapshot) -> Outcome:
    session_id, customer_id = snapshot.stripe_session_id, snapshot.stripe_customer_id
    org_id = await _organization_for(session, snapshot.organization_id, customer_id)
    if org_id is None:
        return Outcome(
            "unmatched", _no_org("checkout", session_id, snapshot.organization_id, customer_id)
        )
    if customer_id and await repository.link_customer(session, org_id, customer_id):
        message = f"checkout {session_id}: customer {customer_id} linked"
        return Outcome("linked", message, org_id, customer_id)
    # The subscription it started arrives in its own customer.subscription.* events.
    return Outcome("unchanged", f"checkout {session_id} completed", org_id)


def _identity_of(inputs: PlanInputs, catalog: Catalog) -> PlanIdentity:
    return plan_identity(
        contract=inputs.contract, subscription=inputs.subscription, catalog=catalog, now=utcnow()
    )


async def _plan_identity(
    session: AsyncSession, org_id: uuid.UUID, catalog: Catalog
) -> PlanIdentity:
    """The org's plan as a plan_changed announcement compares it (its read also tells this
    transaction's emits whether any endpoint takes the org's events)."""
    return _identity_of((await outbox.watch_plan(session, org_id)).inputs, catalog)


async def _plan_of(
    session: AsyncSession, org_id: uuid.UUID, catalog: Catalog, now: datetime
) -> EffectivePlan:
    org = await session.get(Organization, org_id)
    assert org is not None  # found by _organization_for in this transaction
    return resolve_with(org, await load_plan_inputs(session, org_id), catalog, now)


async def apply_credit_purchase(
    session: AsyncSession, snapshot: CheckoutSnapshot, catalog: Catalog, now: datetime
) -> Outcome:
    """A credit purchase's Checkout session: once paid, its credits become a `purchase` grant,
    exactly once per session (completed and async_payment_succeeded both report it)."""
    session_id, customer_id = snapshot.stripe_session_id, snapshot.stripe_customer_id
    org_id = await _organization_for(session, snapshot.organization_id, customer_id)
    if org_id is None:
        return Outcome(
            "unmatched", _no_org("checkout", session_id, snapshot.organization_id, customer_id)
        )
    quantity = snapshot.credits_quantity
    if quantity is None:
        return Outcome(
            "unmatched", f"checkout {session_id}: its credits quantity is not a number", org_id
        )
    if not snapshot.paid:
        return Outcome(
            "unchanged",
            f"checkout {session_id}: payment {snapshot.payment_status or 'unknown'}; "
            "credits are added once it is paid",
            org_id,
        )
    linked = customer_id if customer_id else None
    if linked and not await repository.link_customer(session, org_id, linked):
        linked = None  # already linked (the usual case: checkout created the customer)
    plan = await _plan_of(session, org_id, catalog, now)
    if await credits_service.record_purchase(session, org_id, plan, session_id, quantity, now):
        message = f"checkout {session_id}: {quantity} credits added"
        return Outcome("created", message, org_id, linked)
    message = f"checkout {session_id}: credits already added"
    return Outcome("unchanged", message, org_id, linked)


EventHandler = Callable[[AsyncSession, EventEnvelope, Catalog], Awaitable[Outcome]]


async def _on_subscription(
    session: AsyncSession, event: EventEnvelope, catalog: Catalog
) -> Outcome:
    snapshot = mappers.subscription_snapshot(event.object)
    return await apply_subscription(session, snapshot, catalog, event.created)


async def _on_invoice(session: AsyncSession, event: EventEnvelope, _: Catalog) -> Outcome:
    return await apply_invoice(
        session,
        mappers.invoice_snapshot(event.object),
        event.created,
        payment_failed=event.type == "invoice.payment_failed",
    )


async def _on_customer(session: AsyncSession, event: EventEnvelope, _: Catalog) -> Outcome:
    snapshot = mappers.customer_snapshot(event.object, deleted=event.type == "customer.deleted")
    return await apply_customer(session, snapshot)


async def _on_checkout(session: AsyncSession, event: EventEnvelope, catalog: Catalog) -> Outcome:
    snapshot = mappers.checkout_snapshot(event.object)
    if snapshot.buys_credits:
        return await apply_credit_purchase(session, snapshot, catalog, utcnow())
    return await apply_checkout(session, snapshot)


HANDLERS: dict[str, EventHandler] = {
    "checkout.session.completed": _on_checkout,
    # Delayed payment methods (bank debits) report the payment here, after `completed`.
    "checkout.session.async_payment_succeeded": _on_checkout,
    **{
        f"customer.subscription.{action}": _on_subscription
        for action in ("created", "updated", "deleted", "paused", "resumed", "trial_will_end")
    },
    **{
        f"invoice.{action}": _on_invoice
        for action in (
            "created",
            "finalized",
            "updated",
            "paid",
            "payment_succeeded",
            "payment_failed",
            "voided",
            "marked_uncollectible",
        )
    },
    **{f"customer.{action}": _on_customer for action in ("created", "updated", "deleted")},
}


async def apply_event(session: AsyncSession, event: EventEnvelope, catalog: Catalog) -> Outcome:
    handler = HANDLERS.get(event.type)
    if handler is None:
        return Outcome("ignored", f"event type {event.type} is not acted on")
    return await handler(session, event, catalog)
