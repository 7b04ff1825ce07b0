"""The transactional outbox: the service that makes a change calls `emit` in the same session,
so the event (and one delivery row per matching endpoint) commits or rolls back with it.
The dispatcher sends what committed; a change that rolled back sends nothing.

This module sits below every domain that emits (organizations, admin, stripe_sync, credits,
usage): it knows event shapes only as the dicts those domains hand it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from orgbill.entitlements.periods import Period
from orgbill.entitlements.resolver import PlanIdentity
from orgbill.kit.schemas import decimal_number
from orgbill.kit.time import isoformat_z, utcnow
from orgbill.models import WebhookDeliveryStatus
from orgbill.plans.limits import USAGE_THRESHOLDS, reaches_share
from orgbill.webhooks_out import repository
from orgbill.webhooks_out.events import ALL_EVENTS, EventType

CREDITS_LOW_SHARE = Decimal("0.1")
_EMITTED = "orgbill_webhooks_emitted"
# Per transaction: organization id → the enabled endpoints that take its events.
_TARGETS = "orgbill_webhook_targets"

# Event order: strictly increasing within a process (wall-clock nanoseconds, bumped on a tie),
# so two events of one transaction keep the order they were emitted in.
_sequence_lock = threading.Lock()
_last_sequence = 0


def _next_sequence() -> int:
    global _last_sequence
    with _sequence_lock:
        _last_sequence = max(time.time_ns(), _last_sequence + 1)
        return _last_sequence


# Waking the dispatcher right after a commit that wrote deliveries (instead of at its next
# poll). Each dispatcher registers a thread-safe callable; commits anywhere call them all.
_wakers: list[Callable[[], None]] = []


def register_waker(waker: Callable[[], None]) -> None:
    _wakers.append(waker)


def unregister_waker(waker: Callable[[], None]) -> None:
    if waker in _wakers:
        _wakers.remove(waker)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    session.info.pop(_TARGETS, None)
    if session.info.pop(_EMITTED, False):
        for waker in list(_wakers):
            waker()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_EMITTED, None)
    session.info.pop(_TARGETS, None)


async def _targets(
    session: AsyncSession, organization_id: uuid.UUID
) -> list[repository.EndpointTarget]:
    """The endpoints that take the org's events, read once per transaction (an endpoint
    created meanwhile by another transaction is concurrent with this change either way)."""
    known: dict[uuid.UUID, list[repository.EndpointTarget]] = session.info.setdefault(_TARGETS, {})
    if organization_id not in known:
        known[organization_id] = await repository.endpoints_for(session, organization_id)
    return known[organization_id]


async def emit(
    session: AsyncSession,
    event_type: EventType,
    organization_id: uuid.UUID,
    data: dict[str, Any],
    *,
    dedupe_key: str | None = None,
) -> bool:
    """Writes the event and its deliveries (flush-level: the caller's transaction decides).
    An event no endpoint takes writes nothing (nothing would ever read it), unless it has a
    `dedupe_key`: that one is written once ever, and False when it already was."""
    targets = [
        target
        for target in await _targets(session, organization_id)
        if ALL_EVENTS in target.events or event_type.value in target.events
    ]
    if not targets and dedupe_key is None:
        return True
    now = utcnow()
    event_id = uuid.uuid4()
    sequence = _next_sequence()
    written = await repository.insert_event(
        session,
        {
            "id": event_id,
            "type": event_type.value,
            "organization_id": organization_id,
            "data": data,
            "dedupe_key": dedupe_key,
            "sequence": sequence,
            "created_at": now,
        },
    )
    if not written:
        return False
    rows = [
        {
            "id": uuid.uuid4(),
            "event_id": event_id,
            "endpoint_id": target.id,
            "organization_id": organization_id,
            "sequence": sequence,
            "event_type": event_type.value,
            "status": WebhookDeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "queued_at": now,
            "created_at": now,
        }
        for target in targets
    ]
    await repository.insert_deliveries(session, rows)
    if rows:
        wake_after_commit(session)
    return True


def wake_after_commit(session: AsyncSession) -> None:
    """Wake the dispatchers once this session's transaction commits (not if it rolls back)."""
    session.info[_EMITTED] = True


# Events several domains derive the same way


async def watch_plan(session: AsyncSession, organization_id: uuid.UUID) -> repository.PlanWatch:
    """One round trip for what `announce_plan` after a change needs: the org's plan inputs,
    its last announcement and whether any endpoint takes its events (remembered for this
    transaction's emits, which then skip that read)."""
    watch = await repository.plan_watch(session, organization_id)
    if not watch.has_endpoints:
        session.info.setdefault(_TARGETS, {})[organization_id] = []
    return watch


async def announce_plan(
    session: AsyncSession,
    organization_id: uuid.UUID,
    plan: PlanIdentity,
    before: PlanIdentity | None = None,
    *,
    watch: repository.PlanWatch | None = None,
) -> bool:
    """Emits organization.plan_changed when the org's effective plan (code or source) differs
    from the one last announced for it (or, never announced, from `before`). Conditional on
    the stored announcement, so one change is announced once, by a request or a sweep.
    `watch`: the announcement as this transaction already read it. True when it emitted."""
    new: tuple[str, str] = plan
    now = utcnow()
    stored = watch.announced if watch is not None else None
    if watch is None:
        stored = await repository.get_announcement(session, organization_id)
    if stored is None:
        if await repository.insert_announcement(session, organization_id, *new, now):
            if before is None or before == new:
                return False  # the first announcement is the baseline: nothing changed
            await _emit_plan_changed(session, organization_id, before, new)
            return True
        stored = await repository.get_announcement(session, organization_id)
        if stored is None:  # deleted in between (the org went away): nothing to announce
            return False
    if stored == new:
        return False
    if not await repository.move_announcement(session, organization_id, stored, new, now):
        return False  # someone else announced it first
    await _emit_plan_changed(session, organization_id, stored, new)
    return True


async def _emit_plan_changed(
    session: AsyncSession,
    organization_id: uuid.UUID,
    old: tuple[str, str],
    new: tuple[str, str],
) -> None:
    await emit(
        session,
        EventType.ORGANIZATION_PLAN_CHANGED,
        organization_id,
        {
            "organization_id": str(organization_id),
            "from": old[0],
            "to": new[0],
            "plan_source": new[1],
            "previous_plan_source": old[1],
        },
    )


async def usage_thresholds(
    session: AsyncSession,
    organization_id: uuid.UUID,
    metric: str,
    before: int,
    after: int,
    limit: int | None,
    period: Period,
) -> None:
    """usage.threshold_crossed for each of 80% and 100% this change reached, once per metric,
    threshold and period (the event's unique dedupe key decides)."""
    if limit is None or limit <= 0:
        return
    for percentage in USAGE_THRESHOLDS:
        if not reaches_share(before, limit, percentage) and reaches_share(after, limit, percentage):
            await emit(
                session,
                EventType.USAGE_THRESHOLD_CROSSED,
                organization_id,
                {
                    "organization_id": str(organization_id),
                    "metric": metric,
                    "percentage": percentage,
                    "used": after,
                    "limit": limit,
                    "period_start": isoformat_z(period.start),
                    "period_end": isoformat_z(period.end),
                },
                dedupe_key=(
                    f"usage.threshold_crossed:{organization_id}:{metric}:"
                    f"{isoformat_z(period.start)}:{percentage}"
                ),
            )


async def credits_low(
    session: AsyncSession,
    organization_id: uuid.UUID,
    before: Decimal,
    after: Decimal,
    max_credits: int | None,
) -> None:
    """credits.low when this movement took the balance below 10% of max_credits (once per
    fall: it fires again only after the balance rose above the mark and fell again)."""
    if not max_credits or max_credits <= 0:
        return
    mark = Decimal(max_credits) * CREDITS_LOW_SHARE
    if before >= mark > after:
        await emit(
            session,
            EventType.CREDITS_LOW,
            organization_id,
            {
                "organization_id": str(organization_id),
                "total_credits": decimal_number(after),  # a JSON number, as GET /credits
                "max_credits": max_credits,
            },
        )
