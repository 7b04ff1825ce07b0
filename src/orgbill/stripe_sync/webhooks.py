"""The webhook inbox: verify → apply → store in the inbox already stamped (unique on the event
id), in the request's one transaction (TransactionalRoute commits it before the response is
sent). The inbox write decides exactly-once: an event id already stored (and not failed) is a
duplicate, whose apply is rolled back and which answers 200 having changed nothing.

If applying raises, the whole unit is rolled back (nothing of the event survives), the inbox
row is recorded `failed` with the error in a fresh transaction, and the caller answers 5xx:
Stripe redelivers, and a redelivery of a failed event is applied again (as are admin replays,
under a savepoint). This path never calls Stripe.
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
# Redos of one delivery when `plans sync` changes the catalog while it is applied.
_CATALOG_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery came to: the event's inbox status (for a duplicate, as stored)."""

    stripe_event_id: str
    type: str
    status: str
    duplicate: bool

    @classmethod
    def of(cls, row: StripeEvent, *, duplicate: bool) -> Delivery:
        return cls(row.stripe_event_id, row.type, row.status, duplicate)

    @property
    def failed(self) -> bool:
        return self.status == StripeEventStatus.FAILED


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
    *,
    signature_verified: bool = False,
) -> Delivery:
    """One delivery. `signature_verified`: the caller middleware already verified these very
    bytes against the same secret (so it is not done twice)."""
    secret = settings.stripe_webhook_secret
    if not secret:
        # Not the sender's fault: a 503 makes Stripe retry until we are configured.
        raise Unavailable("Stripe webhooks are not configured")
    if not signature_verified:
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
        "created_at": utcnow(),
    }
    # Applied first, then stored already stamped: the inbox write is also the exactly-once
    # check (a row already there and not failed makes this a duplicate, and the apply is
    # rolled back), so the usual event costs BEGIN, its update, the inbox insert and COMMIT.
    # The catalog applied is the one this instance last read; the inbox insert reads its
    # current revision, and if a `plans sync` moved it, the unit is redone on the new one.
    catalog, revision = store.catalog, store.revision
    for _ in range(_CATALOG_ATTEMPTS):
        try:
            outcome = await handlers.apply_event(session, event, catalog)
            if outcome.linked_customer:
                await apply_kept_events(session, outcome.linked_customer, catalog)
            stamped = {
                "status": outcome.event_status,
                "outcome": outcome.message[:500],
                "organization_id": outcome.organization_id,
                "error": None,
                "processed_at": utcnow(),
            }
            stored = await repository.store_applied_event(
                session, {"id": uuid.uuid4(), **values, **stamped, "attempts": 1}
            )
        except Exception as exc:
            # No savepoint (two round trips fewer per event): roll the whole unit back, then
            # record the failure in a fresh transaction the route commits.
            logger.exception(
                "stripe event failed", extra={"stripeEventId": event.id, "type": event.type}
            )
            await session.rollback()
            failed = await repository.record_failed_event(session, values, _error_text(exc))
            if failed is None:
                return await _duplicate(session, event.id)
            return Delivery.of(failed, duplicate=False)
        if stored is None:
            await session.rollback()
            return await _duplicate(session, event.id)
        if stored.catalog_revision == revision:
            return Delivery(event.id, event.type, outcome.event_status, duplicate=False)
        await session.rollback()
        catalog = await store.current(session, stored.catalog_revision)
        revision = store.revision
    raise Unavailable("The plan catalog kept changing while the event was applied; retry")


async def _duplicate(session: AsyncSession, stripe_event_id: str) -> Delivery:
    """A replay of an event already in the inbox (and not failed): answered, nothing done."""
    row = await repository.find_event(session, stripe_event_id)
    if row is None:  # deleted in between; treat as new next time
        raise Unavailable("Event inbox changed concurrently; retry")
    return Delivery.of(row, duplicate=True)


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
