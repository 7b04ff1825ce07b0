"""SQL for the Stripe mirror: the inbox, subscriptions, invoices and customer links.

Rows keyed by a Stripe id are created with INSERT … ON CONFLICT DO NOTHING and then locked
(SELECT … FOR UPDATE): Stripe delivers concurrently, and two first events for one object must
meet at the unique constraint, not race a "check then insert".
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, case, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.kit.pagination import Keyset, PageParams, paginate_statement
from orgbill.kit.sql import CompiledOnce, bound_columns, insert_ignoring_conflict, upsert_insert
from orgbill.kit.time import utcnow
from orgbill.models import (
    Invoice,
    Organization,
    OrganizationStatus,
    PlanCatalog,
    StripeEvent,
    StripeEventStatus,
    Subscription,
)
from orgbill.plans.store import CATALOG_ROW_ID

STRIPE_EVENT_KEYSET = Keyset(StripeEvent.created_at, StripeEvent.id)
INVOICE_KEYSET = Keyset(Invoice.created_at, Invoice.id)


# Inbox


_EVENT_COLUMNS = (
    "id",
    "stripe_event_id",
    "type",
    "api_version",
    "object_id",
    "stripe_customer_id",
    "event_created_at",
    "payload",
    "status",
    "attempts",
    "created_at",
    "outcome",
    "organization_id",
    "error",
    "processed_at",
)
# What a redelivery of a failed event overwrites (its payload stays the first one received).
_RESTAMPED_COLUMNS = ("status", "outcome", "organization_id", "error", "processed_at")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: uuid.UUID
    # The plan catalog's revision, read in the same statement.
    catalog_revision: str | None


def _store_applied(insert: Callable[[Any], Any]) -> Any:
    """The inbox write of an event just applied, already stamped: a new row, or over a row a
    failed attempt left (`attempts` + 1); any other existing row is a duplicate and returns
    nothing. Also reads the plan catalog's revision in the same round trip."""
    table = StripeEvent.__table__
    stmt = insert(table).values(**bound_columns(table, _EVENT_COLUMNS))
    restamped: dict[str, Any] = {name: stmt.excluded[name] for name in _RESTAMPED_COLUMNS}
    catalog_revision = (
        select(PlanCatalog.content_hash)
        .where(PlanCatalog.id == CATALOG_ROW_ID)
        .scalar_subquery()
        .label("catalog_revision")
    )
    return stmt.on_conflict_do_update(
        index_elements=["stripe_event_id"],
        set_={**restamped, "attempts": table.c.attempts + 1},
        where=table.c.status == StripeEventStatus.FAILED.value,
    ).returning(table.c.id, catalog_revision)


# Every webhook writes it: compiled once.
_STORE_APPLIED_EVENT = CompiledOnce(_store_applied)


async def store_applied_event(session: AsyncSession, values: dict[str, Any]) -> StoredEvent | None:
    """Stores an applied event (see _store_applied); None when it is a duplicate."""
    row = (await session.execute(_STORE_APPLIED_EVENT(session), values)).first()
    return StoredEvent(row[0], row[1]) if row else None


async def record_failed_event(
    session: AsyncSession, values: dict[str, Any], error: str
) -> StripeEvent | None:
    """After a rollback: the inbox row (new, or the one an earlier failed attempt left, with
    one more attempt) stamped failed, for Stripe's retry and the admins' list. None when the
    event is already there and not failed: a concurrent delivery applied it."""
    failed = StripeEventStatus.FAILED.value
    stmt = (
        upsert_insert(session, StripeEvent)
        .values(id=uuid.uuid4(), **{**values, "status": failed, "error": error, "attempts": 1})
        .on_conflict_do_update(
            index_elements=[StripeEvent.stripe_event_id],
            set_={
                "status": failed,
                "error": error,
                "processed_at": None,
                "attempts": StripeEvent.attempts + 1,
            },
            where=StripeEvent.status == failed,
        )
        .returning(StripeEvent)
        .execution_options(populate_existing=True)
    )
    return await session.scalar(stmt)


async def find_event(session: AsyncSession, stripe_event_id: str) -> StripeEvent | None:
    stmt = select(StripeEvent).where(StripeEvent.stripe_event_id == stripe_event_id)
    return await session.scalar(stmt)


async def lock_event(
    session: AsyncSession, *, event_id: uuid.UUID | None = None, stripe_event_id: str | None = None
) -> StripeEvent | None:
    stmt = select(StripeEvent).with_for_update()
    if event_id is not None:
        stmt = stmt.where(StripeEvent.id == event_id)
    else:
        stmt = stmt.where(StripeEvent.stripe_event_id == stripe_event_id)
    # populate_existing: the row may sit in the identity map from before another writer's commit.
    return await session.scalar(stmt.execution_options(populate_existing=True))


# Statements on the webhook path are built once (bound parameters), so each execution skips
# building the expression and its cache key.
_LOCK_KEPT_EVENTS = (
    select(StripeEvent)
    .where(
        StripeEvent.stripe_customer_id == bindparam("customer_id"),
        StripeEvent.status == StripeEventStatus.UNMATCHED,
    )
    .order_by(StripeEvent.event_created_at, StripeEvent.created_at, StripeEvent.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def lock_kept_events(session: AsyncSession, customer_id: str) -> list[StripeEvent]:
    """The customer's events kept `unmatched`, oldest first (Stripe's order, then arrival)."""
    return list((await session.scalars(_LOCK_KEPT_EVENTS, {"customer_id": customer_id})).all())


async def list_events(
    session: AsyncSession, params: PageParams, status: str | None
) -> list[StripeEvent]:
    stmt = select(StripeEvent)
    if status is not None:
        stmt = stmt.where(StripeEvent.status == status)
    stmt = paginate_statement(stmt, params, STRIPE_EVENT_KEYSET)
    return list((await session.scalars(stmt)).all())


def _customer_deleted(customer_id: Any) -> Any:
    """Stripe deleted this customer (a processed `customer.deleted`): a deletion is final,
    so whatever order events arrive in, that customer is never linked to an org again."""
    return exists().where(
        StripeEvent.object_id == customer_id,
        StripeEvent.type == "customer.deleted",
        StripeEvent.status == StripeEventStatus.PROCESSED,
    )


async def customer_deleted(session: AsyncSession, customer_id: str) -> bool:
    return bool(await session.scalar(select(_customer_deleted(customer_id))))


async def last_deleted_customer(session: AsyncSession, org_id: uuid.UUID) -> str | None:
    """The customer of this org Stripe deleted last, if any."""
    stmt = (
        select(StripeEvent.object_id)
        .where(
            StripeEvent.organization_id == org_id,
            StripeEvent.type == "customer.deleted",
            StripeEvent.status == StripeEventStatus.PROCESSED,
        )
        .order_by(StripeEvent.event_created_at.desc(), StripeEvent.id.desc())
        .limit(1)
    )
    return await session.scalar(stmt)


# Organizations and customer links


_LIVE_ORGANIZATION_ID = select(Organization.id).where(
    Organization.id == bindparam("org_id"), Organization.status != OrganizationStatus.DELETED
)
_ORGANIZATION_FOR_CUSTOMER = select(Organization.id).where(
    Organization.stripe_customer_id == bindparam("customer_id")
)


async def live_organization_id(session: AsyncSession, org_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(_LIVE_ORGANIZATION_ID, {"org_id": org_id})


async def organization_for_customer(session: AsyncSession, customer_id: str) -> uuid.UUID | None:
    return await session.scalar(_ORGANIZATION_FOR_CUSTOMER, {"customer_id": customer_id})


async def customer_of(session: AsyncSession, org_id: uuid.UUID) -> str | None:
    stmt = select(Organization.stripe_customer_id).where(Organization.id == org_id)
    return await session.scalar(stmt)


def _link_customer_statement() -> Any:
    organization = Organization.__table__
    other = organization.alias("other")
    customer_id = bindparam("customer_id", type_=organization.c.stripe_customer_id.type)
    return (
        update(organization)
        .where(
            organization.c.id == bindparam("org_id"),
            organization.c.stripe_customer_id.is_(None),
            ~exists().where(other.c.stripe_customer_id == customer_id),
            ~_customer_deleted(customer_id),
        )
        .values(stripe_customer_id=customer_id)
    )


_LINK_CUSTOMER = _link_customer_statement()


async def link_customer(session: AsyncSession, org_id: uuid.UUID, customer_id: str) -> bool:
    """Link an unlinked org to a customer no other org holds and Stripe has not deleted. A
    link, once made, is kept: metadata on a later object never moves a paying customer to
    another org."""
    result = await session.execute(_LINK_CUSTOMER, {"org_id": org_id, "customer_id": customer_id})
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def unlink_customer(session: AsyncSession, customer_id: str) -> uuid.UUID | None:
    stmt = (
        update(Organization)
        .where(Organization.stripe_customer_id == customer_id)
        .values(stripe_customer_id=None)
        .returning(Organization.id)
        .execution_options(synchronize_session=False)
    )
    return await session.scalar(stmt)


# Subscriptions


_LOCK_SUBSCRIPTION = (
    select(Subscription)
    .where(Subscription.stripe_subscription_id == bindparam("stripe_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def lock_subscription(session: AsyncSession, stripe_id: str) -> Subscription | None:
    return await session.scalar(_LOCK_SUBSCRIPTION, {"stripe_id": stripe_id})


# The columns a subscription's state sets (an event or a reconciliation read).
SUBSCRIPTION_STATE_COLUMNS = (
    "stripe_customer_id",
    "status",
    "stripe_price_id",
    "stripe_lookup_key",
    "stripe_legacy_plan_id",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "canceled_at",
    "ended_at",
)


@dataclass(frozen=True, slots=True)
class UpdatedSubscription:
    id: uuid.UUID
    organization_id: uuid.UUID
    changed: bool  # some column took a new value (else only the ordering stamp moved)


@functools.cache
def _update_if_newer_statement(
    stages: tuple[tuple[str, int], ...], other_stage: int
) -> CompiledOnce:
    """UPDATE … WHERE the stored state is older (or, stamped the same second, of no later
    lifecycle stage): the ordering check and the write in one statement, under the row lock
    the UPDATE itself takes. Built once per stage table; bound parameters `new_<column>`,
    `stripe_id`, `observed_at`, `stage`, `now`."""
    table = Subscription.__table__
    c = table.c
    stored_stage = case(dict(stages), value=c.status, else_=other_stage)
    observed_at = bindparam("observed_at", type_=c.stripe_event_created.type)
    new = {
        name: bindparam(f"new_{name}", type_=c[name].type) for name in SUBSCRIPTION_STATE_COLUMNS
    }
    now = bindparam("now", type_=c.updated_at.type)
    changed = or_(*(c[name].is_distinct_from(value) for name, value in new.items()))
    return CompiledOnce.of(
        update(table)
        .where(
            c.stripe_subscription_id == bindparam("stripe_id"),
            or_(
                c.stripe_event_created.is_(None),
                c.stripe_event_created < observed_at,
                (c.stripe_event_created == observed_at)
                & (stored_stage <= bindparam("stage", type_=Integer())),
            ),
        )
        # updated_at moves only when a column does (SET reads the row's old values).
        .values(
            **new,
            stripe_event_created=observed_at,
            updated_at=case((changed, now), else_=c.updated_at),
        )
        .returning(c.id, c.organization_id, c.updated_at)
    )


async def update_subscription_if_newer(
    session: AsyncSession,
    stripe_id: str,
    values: Mapping[str, Any],
    observed_at: datetime,
    stage: int,
    stages: tuple[tuple[str, int], ...],
    other_stage: int,
) -> UpdatedSubscription | None:
    """Applies `values` (SUBSCRIPTION_STATE_COLUMNS) to the mirrored subscription if the state
    it holds is older (see _update_if_newer_statement; `stages` ranks statuses, `stage` is
    the incoming one's); None when no row was written: none exists yet, or it is newer."""
    now = utcnow()
    params = {f"new_{name}": values[name] for name in SUBSCRIPTION_STATE_COLUMNS}
    params.update(stripe_id=stripe_id, observed_at=observed_at, stage=stage, now=now)
    stmt = _update_if_newer_statement(stages, other_stage)(session)
    row = (await session.execute(stmt, params)).first()
    if row is None:
        return None
    # updated_at is `now` exactly when the CASE saw a change (a fresh microsecond timestamp).
    return UpdatedSubscription(
        id=row.id, organization_id=row.organization_id, changed=row.updated_at == now
    )


_INSERT_SUBSCRIPTION = insert_ignoring_conflict(
    Subscription.__table__, "stripe_subscription_id", "id"
)


async def insert_subscription(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Inserts a subscription (`values`: every column but `id`); its id, or None when it exists."""
    new_id = uuid.uuid4()
    row = (await session.execute(_INSERT_SUBSCRIPTION(session), {"id": new_id, **values})).first()
    return new_id if row is not None else None


async def subscription_organization(session: AsyncSession, stripe_id: str) -> uuid.UUID | None:
    stmt = select(Subscription.organization_id).where(
        Subscription.stripe_subscription_id == stripe_id
    )
    return await session.scalar(stmt)


# Invoices


async def lock_invoice(session: AsyncSession, stripe_id: str) -> Invoice | None:
    stmt = (
        select(Invoice)
        .where(Invoice.stripe_invoice_id == stripe_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(stmt)


async def insert_invoice(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """The new row's id; None when it already existed."""
    stmt = (
        upsert_insert(session, Invoice)
        .values(id=uuid.uuid4(), **values)
        .on_conflict_do_nothing(index_elements=[Invoice.stripe_invoice_id])
        .returning(Invoice.id)
    )
    return await session.scalar(stmt)


async def list_invoices(
    session: AsyncSession, org_id: uuid.UUID, params: PageParams
) -> list[Invoice]:
    stmt = select(Invoice).where(Invoice.organization_id == org_id)
    stmt = paginate_statement(stmt, params, INVOICE_KEYSET)
    return list((await session.scalars(stmt)).all())
