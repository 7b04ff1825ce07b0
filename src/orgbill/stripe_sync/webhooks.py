"""The webhook inbox: verify → store (unique on the event id) → apply → stamp, in the request's
one transaction (TransactionalRoute commits it before the response is sent).

If applying raises, the whole unit is rolled back (nothing of the event survives), the inbox
row is recorded `failed` with the error in a fresh transaction, and the caller answers 5xx:
Stripe redelivers, and a redelivery of a failed event is applied again (under a savepoint,
as are admin replays). Any other redelivery is a 200 that changes nothing. This path never
calls Stripe.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.audit import repository as audit
from orgbill.auth.principal import UserPrincipal
from orgbill.config import Settings
from orgbill.errors import BadRequest, NotFound, Unavailable
from orgbill.kit.pagination import PageParams
from orgbill.kit.time import utcnow
from orgbill.models import StripeEvent, StripeEventStatus
from orgbill.plans.catalog import Catalog
from orgbill.plans.store import CatalogStore
from orgbill.stripe_sync import handlers, mappers, repository, signature
from orgbill.stripe_sync.mappers import EventEnvelope, MalformedStripeObject

logger = logging.getLogger("orgbill.stripe")
_ERROR_TEXT_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Delivery:
    event: StripeEvent
    duplicate: bool

    @property
    def failed(self) -> bool:
        return self.event.status == StripeEventStatus.FAILED


def _parse(raw: bytes) -> tuple[EventEnvelope, dict[str, Any]]:
    try:
        payload = json.loads(raw)
        return mappers.event_envelope(payload), payload
    except (ValueError, MalformedStripeObject) as exc:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors too.
        raise BadRequest(f"Not a Stripe event: {exc}") from exc


def _error_text(exc: BaseException) -> str:
    # First line only: the admin needs the kind of failure, not a statement dump.
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}"[:_ERROR_TEXT_LIMIT]


async def apply_kept_events(session: AsyncSession, customer_id: str, catalog: Catalog) -> None:
    """Apply, in order, the events kept `unmatched` because `customer_id` was not linked yet:
    called in the transaction that links it. Each goes through the handlers' usual ordering
    (an older state of an object changes nothing), under its own savepoint so one that fails
    is stamped failed without undoing the link."""
    for row in await repository.lock_kept_events(session, customer_id):
        await apply_stored(session, row, mappers.event_envelope(row.payload), catalog)


async def apply_stored(
    session: AsyncSession, row: StripeEvent, event: EventEnvelope, catalog: Catalog
) -> None:
    """Apply one inbox row and stamp it; on failure, stamp it failed with nothing applied."""
    row.attempts += 1
    try:
        async with session.begin_nested():
            outcome = await handlers.apply_event(session, event, catalog)
            if outcome.linked_customer:
                await apply_kept_events(session, outcome.linked_customer, catalog)
    except Exception as exc:
        logger.exception(
            "stripe event failed", extra={"stripeEventId": row.stripe_event_id, "type": row.type}
        )
        row.status, row.error, row.processed_at = StripeEventStatus.FAILED, _error_text(exc), None
        await session.flush()
        return
    row.status = outcome.event_status
    row.outcome = outcome.message[:500]
    row.organization_id = outcome.organization_id
    row.error = None
    row.processed_at = utcnow()
    await session.flush()


async def receive(
    session: AsyncSession,
    raw_body: bytes,
    signature_header: str | None,
    settings: Settings,
    store: CatalogStore,
) -> Delivery:
    secret = settings.stripe_webhook_secret
    if not secret:
        # Not the sender's fault: a 503 makes Stripe retry until we are configured.
        raise Unavailable("Stripe webhooks are not configured")
    try:
        signature.verify(raw_body, signature_header, secret)
    except signature.InvalidSignature as exc:
        raise BadRequest(str(exc)) from exc
    event, payload = _parse(raw_body)
    values: dict[str, Any] = {
        "stripe_event_id": event.id,
        "type": event.type,
        "api_version": event.api_version,
        "object_id": event.object_id,
        "stripe_customer_id": event.customer_id,
        "event_created_at": event.created,
        "payload": payload,
        "status": StripeEventStatus.FAILED,  # until stamped: a crash never reads as done
        "attempts": 1,
        "created_at": utcnow(),
    }
    received = await repository.receive_event(session, values)
    if received is None:
        row = await repository.lock_event(session, stripe_event_id=event.id)
        if row is None:  # deleted in between; treat as new next time
            raise Unavailable("Event inbox changed concurrently; retry")
        if row.status != StripeEventStatus.FAILED:
            return Delivery(event=row, duplicate=True)
        # A redelivery of a failed event: the rare path, applied under a savepoint.
        await apply_stored(session, row, event, await store.live(session))
        return Delivery(event=row, duplicate=False)
    row_id, catalog_revision = received
    try:
        catalog = await store.current(session, catalog_revision)
        outcome = await handlers.apply_event(session, event, catalog)
        if outcome.linked_customer:
            await apply_kept_events(session, outcome.linked_customer, catalog)
        await session.flush()
    except Exception as exc:
        # The common path has no savepoint (two round trips fewer per event): roll the whole
        # unit back, then record the failure in a fresh transaction the route commits.
        logger.exception(
            "stripe event failed", extra={"stripeEventId": event.id, "type": event.type}
        )
        await session.rollback()
        failed = await repository.record_failed_event(session, values, _error_text(exc))
        return Delivery(event=failed, duplicate=False)
    stamped = {
        "status": outcome.event_status,
        "outcome": outcome.message[:500],
        "organization_id": outcome.organization_id,
        "error": None,
        "processed_at": utcnow(),
    }
    await repository.stamp_event(session, row_id, stamped)
    return Delivery(event=StripeEvent(id=row_id, **{**values, **stamped}), duplicate=False)


# Admin


async def list_events(
    session: AsyncSession, params: PageParams, status: StripeEventStatus | None
) -> list[StripeEvent]:
    return await repository.list_events(session, params, status.value if status else None)


async def replay(
    session: AsyncSession, admin: UserPrincipal, event_ref: str, store: CatalogStore
) -> StripeEvent:
    """Apply a stored event again (after fixing what made it fail or go unmatched)."""
    if event_ref.startswith("evt_"):
        row = await repository.lock_event(session, stripe_event_id=event_ref)
    else:
        try:
            row_id = uuid.UUID(event_ref)
        except ValueError as exc:
            raise NotFound("Stripe event not found") from exc
        row = await repository.lock_event(session, event_id=row_id)
    if row is None:
        raise NotFound("Stripe event not found")
    previous = row.status
    event = mappers.event_envelope(row.payload)
    await apply_stored(session, row, event, await store.live(session))
    await audit.record(
        session,
        actor_user_id=admin.user.id,
        action="stripe_event.replay",
        organization_id=row.organization_id,
        details={
            "stripe_event_id": row.stripe_event_id,
            "type": row.type,
            "from": previous,
            "to": row.status,
        },
    )
    return row
