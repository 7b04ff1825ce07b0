"""SQL for the Stripe mirror: the inbox, subscriptions, invoices and customer links.

Rows keyed by a Stripe id are created with INSERT … ON CONFLICT DO NOTHING and then locked
(SELECT … FOR UPDATE): Stripe delivers concurrently, and two first events for one object must
meet at the unique constraint, not race a "check then insert".
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, column, exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from orgbill.kit.pagination import Keyset, PageParams, paginate_statement
from orgbill.kit.sql import upsert_insert
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
)


def _receive_statement() -> Any:
    """The inbox insert, as SQL text both dialects speak. SQLAlchemy 2.0 does not cache the
    dialect-specific INSERT … ON CONFLICT constructs (each call recompiles), and this runs for
    every webhook; a text() statement is compiled once. It also reads the plan catalog's
    revision in the same round trip."""
    table = StripeEvent.__table__
    catalog = PlanCatalog.__table__
    columns = ", ".join(_EVENT_COLUMNS)
    values = ", ".join(f":{name}" for name in _EVENT_COLUMNS)
    sql = (
        f"INSERT INTO {table.name} ({columns}) VALUES ({values}) "  # noqa: S608 (constants only)
        f"ON CONFLICT ({table.c.stripe_event_id.name}) DO NOTHING "
        f"RETURNING {table.c.id.name}, "
        f"(SELECT {catalog.c.content_hash.name} FROM {catalog.name} WHERE id = {CATALOG_ROW_ID})"
    )
    return (
        text(sql)
        .bindparams(*(bindparam(name, type_=table.c[name].type) for name in _EVENT_COLUMNS))
        .columns(table.c.id, column("catalog_revision", String()))
    )


_RECEIVE_EVENT = _receive_statement()


async def receive_event(
    session: AsyncSession, values: dict[str, Any]
) -> tuple[uuid.UUID, str | None] | None:
    """Inserts a new inbox row and returns (its id, the plan catalog's revision) in the same
    round trip; None when the event id is already there."""
    row = (await session.execute(_RECEIVE_EVENT, {"id": uuid.uuid4(), **values})).first()
    return (row[0], row[1]) if row else None


async def stamp_event(session: AsyncSession, row_id: uuid.UUID, values: dict[str, Any]) -> None:
    await session.execute(
        update(StripeEvent.__table__).where(StripeEvent.__table__.c.id == row_id).values(**values)
    )


async def record_failed_event(
    session: AsyncSession, values: dict[str, Any], error: str
) -> StripeEvent:
    """After a rollback: the inbox row (new or existing) stamped failed, for Stripe's retry and
    the admins' list."""
    stmt = (
        upsert_insert(session, StripeEvent)
        .values(id=uuid.uuid4(), **{**values, "status": "failed", "error": error, "attempts": 1})
        .on_conflict_do_update(
            index_elements=[StripeEvent.stripe_event_id],
            set_={"status": "failed", "error": error, "processed_at": None},
        )
        .returning(StripeEvent)
    )
    row = await session.scalar(stmt)
    assert row is not None
    return row


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


async def lock_kept_events(session: AsyncSession, customer_id: str) -> list[StripeEvent]:
    """The customer's events kept `unmatched`, oldest first (Stripe's order, then arrival)."""
    stmt = (
        select(StripeEvent)
        .where(
            StripeEvent.stripe_customer_id == customer_id,
            StripeEvent.status == StripeEventStatus.UNMATCHED,
        )
        .order_by(StripeEvent.event_created_at, StripeEvent.created_at, StripeEvent.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(stmt)).all())


async def list_events(
    session: AsyncSession, params: PageParams, status: str | None
) -> list[StripeEvent]:
    stmt = select(StripeEvent)
    if status is not None:
        stmt = stmt.where(StripeEvent.status == status)
    stmt = paginate_statement(stmt, params, STRIPE_EVENT_KEYSET)
    return list((await session.scalars(stmt)).all())


async def newer_event_applied(
    session: AsyncSession, object_id: str, types: tuple[str, ...], created: datetime
) -> bool:
    stmt = select(
        exists().where(
            StripeEvent.object_id == object_id,
            StripeEvent.type.in_(types),
            StripeEvent.event_created_at > created,
            StripeEvent.status == "processed",
        )
    )
    return bool(await session.scalar(stmt))


# Organizations and customer links


async def live_organization_id(session: AsyncSession, org_id: uuid.UUID) -> uuid.UUID | None:
    stmt = select(Organization.id).where(
        Organization.id == org_id, Organization.status != OrganizationStatus.DELETED
    )
    return await session.scalar(stmt)


async def organization_for_customer(session: AsyncSession, customer_id: str) -> uuid.UUID | None:
    stmt = select(Organization.id).where(Organization.stripe_customer_id == customer_id)
    return await session.scalar(stmt)


async def customer_of(session: AsyncSession, org_id: uuid.UUID) -> str | None:
    stmt = select(Organization.stripe_customer_id).where(Organization.id == org_id)
    return await session.scalar(stmt)


async def link_customer(session: AsyncSession, org_id: uuid.UUID, customer_id: str) -> bool:
    """Link an unlinked org to a customer no other org holds. A link, once made, is kept:
    metadata on a later object never moves a paying customer to another org."""
    other = aliased(Organization)
    stmt = (
        update(Organization)
        .where(
            Organization.id == org_id,
            Organization.stripe_customer_id.is_(None),
            ~exists().where(other.stripe_customer_id == customer_id),
        )
        .values(stripe_customer_id=customer_id)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(stmt)
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


async def lock_subscription(session: AsyncSession, stripe_id: str) -> Subscription | None:
    stmt = (
        select(Subscription)
        .where(Subscription.stripe_subscription_id == stripe_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return await session.scalar(stmt)


async def insert_subscription(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """The new row's id; None when it already existed."""
    stmt = (
        upsert_insert(session, Subscription)
        .values(id=uuid.uuid4(), **values)
        .on_conflict_do_nothing(index_elements=[Subscription.stripe_subscription_id])
        .returning(Subscription.id)
    )
    return await session.scalar(stmt)


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
