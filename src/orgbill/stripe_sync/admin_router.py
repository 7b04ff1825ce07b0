"""Superadmin views of the Stripe inbox: list (e.g. failed) events and replay one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from orgbill.auth.dependencies import SessionDep, SuperadminDep
from orgbill.kit.pagination import Page, PageParams, build_page, page_params
from orgbill.kit.routing import TransactionalRoute
from orgbill.kit.types import text
from orgbill.models import StripeEventStatus
from orgbill.plans.dependencies import CatalogStoreDep
from orgbill.stripe_sync import repository as stripe_repository
from orgbill.stripe_sync import schemas, webhooks

# A path segment reaches SQL too: the same text rule as bodies (no NUL on PostgreSQL).
EventRef = text(min_length=1, max_length=255)

router = APIRouter(prefix="/admin/stripe", route_class=TransactionalRoute, tags=["admin"])


@router.get("/events")
async def list_stripe_events(
    _: SuperadminDep,
    session: SessionDep,
    paging: Annotated[PageParams, Depends(page_params)],
    status: Annotated[StripeEventStatus | None, Query()] = None,
) -> Page[schemas.StripeEventSummary]:
    rows = await webhooks.list_events(session, paging, status)
    page, cursor = build_page(rows, paging, stripe_repository.STRIPE_EVENT_KEYSET)
    return Page(
        data=[schemas.StripeEventSummary.model_validate(r) for r in page], next_cursor=cursor
    )


@router.post("/events/{event_ref}/replay")
async def replay_stripe_event(
    event_ref: EventRef, admin: SuperadminDep, session: SessionDep, store: CatalogStoreDep
) -> schemas.StripeEventSummary:
    """`event_ref`: our inbox id, or Stripe's `evt_…` id."""
    row = await webhooks.replay(session, admin, event_ref, store)
    return schemas.StripeEventSummary.model_validate(row)
