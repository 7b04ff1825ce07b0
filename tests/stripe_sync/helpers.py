from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from orgbill.models import Invoice, Organization, StripeEvent, Subscription


async def subscription_row(app: FastAPI, stripe_id: str) -> Subscription | None:
    async with app.state.database.session(writes=False) as session:
        return await session.scalar(
            select(Subscription).where(Subscription.stripe_subscription_id == stripe_id)
        )


async def invoice_row(app: FastAPI, stripe_id: str) -> Invoice | None:
    async with app.state.database.session(writes=False) as session:
        return await session.scalar(select(Invoice).where(Invoice.stripe_invoice_id == stripe_id))


async def inbox_row(app: FastAPI, stripe_event_id: str) -> StripeEvent | None:
    async with app.state.database.session(writes=False) as session:
        return await session.scalar(
            select(StripeEvent).where(StripeEvent.stripe_event_id == stripe_event_id)
        )


async def customer_of(app: FastAPI, org_id: str) -> str | None:
    async with app.state.database.session(writes=False) as session:
        org = await session.get(Organization, uuid.UUID(org_id))
        assert org is not None
        return org.stripe_customer_id


def state(row: Subscription | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"status": row.status, "cancel_at_period_end": row.cancel_at_period_end}
