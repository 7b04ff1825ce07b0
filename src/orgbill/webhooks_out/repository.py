"""SQL for outbound webhooks: endpoints, the event outbox, deliveries and plan announcements."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Uuid,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.entitlements.repository import PlanInputs, plan_inputs_from_row, with_plan_inputs
from orgbill.kit.pagination import Keyset, PageParams, paginate_statement
from orgbill.kit.sql import CompiledOnce, bound_columns, insert_ignoring_conflict, upsert_insert
from orgbill.models import (
    EnterpriseContract,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
    WebhookPlanAnnouncement,
)

ENDPOINT_KEYSET = Keyset(WebhookEndpoint.created_at, WebhookEndpoint.id)
DELIVERY_KEYSET = Keyset(WebhookDelivery.created_at, WebhookDelivery.id)
_PENDING = WebhookDeliveryStatus.PENDING.value


# Endpoints


async def get_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    return await session.get(WebhookEndpoint, endpoint_id)


async def list_endpoints(session: AsyncSession, params: PageParams) -> list[WebhookEndpoint]:
    stmt = paginate_statement(select(WebhookEndpoint), params, ENDPOINT_KEYSET)
    return list((await session.scalars(stmt)).all())


async def delete_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> int:
    result = await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class EndpointTarget:
    id: uuid.UUID
    events: list[str]


def _takes_events_of(organization_id: Any) -> Any:
    """An enabled endpoint that takes this organization's events (of some type)."""
    return and_(
        WebhookEndpoint.enabled.is_(True),
        or_(
            WebhookEndpoint.organization_id.is_(None),
            WebhookEndpoint.organization_id == organization_id,
        ),
    )


_ORG_ID = bindparam("org_id", type_=Uuid())
_ENDPOINTS_FOR = select(WebhookEndpoint.id, WebhookEndpoint.events).where(_takes_events_of(_ORG_ID))


async def endpoints_for(session: AsyncSession, organization_id: uuid.UUID) -> list[EndpointTarget]:
    """Enabled endpoints that take this organization's events (type matched by the caller)."""
    rows = await session.execute(_ENDPOINTS_FOR, {"org_id": organization_id})
    return [EndpointTarget(row.id, list(row.events or [])) for row in rows]


# The outbox


# Compiled once (the dialect's on-conflict insert recompiles on every call, and every applied
# Stripe event writes one). A null dedupe key never conflicts.
_INSERT_EVENT = insert_ignoring_conflict(WebhookEvent.__table__, "dedupe_key", "id")


async def insert_event(session: AsyncSession, values: dict[str, Any]) -> bool:
    """False when an event with the same dedupe key exists (the unique constraint decides).
    `values`: every column of the event."""
    return (await session.execute(_INSERT_EVENT(session), values)).first() is not None


async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(upsert_insert(session, WebhookDelivery), rows)


# Plan announcements


async def get_announcement(
    session: AsyncSession, organization_id: uuid.UUID
) -> tuple[str, str] | None:
    """(plan code, plan source) last announced for the org, read fresh (not from the
    identity map: move_announcement updates it with a plain UPDATE)."""
    stmt = select(WebhookPlanAnnouncement.plan_code, WebhookPlanAnnouncement.plan_source).where(
        WebhookPlanAnnouncement.organization_id == organization_id
    )
    row = (await session.execute(stmt)).first()
    return (row.plan_code, row.plan_source) if row is not None else None


@dataclass(frozen=True, slots=True)
class PlanWatch:
    """What announcing an org's plan after a change needs, read in one round trip."""

    inputs: PlanInputs
    announced: tuple[str, str] | None
    # Whether any enabled endpoint takes the org's events (if none, its events write nothing).
    has_endpoints: bool


_ANNOUNCED = WebhookPlanAnnouncement.__table__.alias("announced")
# Built once: constructing statements costs more than running them.
_PLAN_WATCH = CompiledOnce.of(
    with_plan_inputs(
        select(
            _ANNOUNCED.c.plan_code.label("announced_code"),
            _ANNOUNCED.c.plan_source.label("announced_source"),
            exists().where(_takes_events_of(_ORG_ID)).label("has_endpoints"),
        )
        .select_from(select(literal_column("1")).subquery())
        .outerjoin(_ANNOUNCED, _ANNOUNCED.c.organization_id == _ORG_ID),
        _ORG_ID,
    )
)


async def plan_watch(session: AsyncSession, organization_id: uuid.UUID) -> PlanWatch:
    row = (await session.execute(_PLAN_WATCH(session), {"org_id": organization_id})).one()
    announced = None
    if row.announced_code is not None:
        announced = (row.announced_code, row.announced_source)
    return PlanWatch(plan_inputs_from_row(row), announced, bool(row.has_endpoints))


_ANNOUNCEMENTS = WebhookPlanAnnouncement.__table__
_INSERT_ANNOUNCEMENT = CompiledOnce(
    lambda insert: (
        insert(_ANNOUNCEMENTS)
        .values(**bound_columns(_ANNOUNCEMENTS))
        .on_conflict_do_nothing(index_elements=["organization_id"])
        .returning(_ANNOUNCEMENTS.c.organization_id)
    )
)


async def insert_announcement(
    session: AsyncSession, organization_id: uuid.UUID, code: str, source: str, now: datetime
) -> bool:
    """False when the org already has one (the unique key decides)."""
    values = {
        "organization_id": organization_id,
        "plan_code": code,
        "plan_source": source,
        "updated_at": now,
    }
    return (await session.execute(_INSERT_ANNOUNCEMENT(session), values)).first() is not None


_MOVE_ANNOUNCEMENT = CompiledOnce.of(
    update(_ANNOUNCEMENTS)
    .where(
        _ANNOUNCEMENTS.c.organization_id == _ORG_ID,
        _ANNOUNCEMENTS.c.plan_code == bindparam("old_code", type_=_ANNOUNCEMENTS.c.plan_code.type),
        _ANNOUNCEMENTS.c.plan_source
        == bindparam("old_source", type_=_ANNOUNCEMENTS.c.plan_source.type),
    )
    .values(**bound_columns(_ANNOUNCEMENTS, ("plan_code", "plan_source", "updated_at")))
)


async def move_announcement(
    session: AsyncSession,
    organization_id: uuid.UUID,
    old: tuple[str, str],
    new: tuple[str, str],
    now: datetime,
) -> bool:
    """Conditional on the announcement still being `old`: of two writers noticing one change
    (a request and a sweep, or two instances' sweeps) exactly one announces it."""
    params = {
        "org_id": organization_id,
        "old_code": old[0],
        "old_source": old[1],
        "plan_code": new[0],
        "plan_source": new[1],
        "updated_at": now,
    }
    result = await session.execute(_MOVE_ANNOUNCEMENT(session), params)
    return result.rowcount == 1  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ContractWatch:
    organization_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime | None
    announced_source: str | None


async def contract_watches(session: AsyncSession) -> list[ContractWatch]:
    """Every org with an enterprise contract, with the plan source last announced for it."""
    stmt = select(
        EnterpriseContract.organization_id,
        EnterpriseContract.starts_at,
        EnterpriseContract.ends_at,
        WebhookPlanAnnouncement.plan_source,
    ).outerjoin(
        WebhookPlanAnnouncement,
        WebhookPlanAnnouncement.organization_id == EnterpriseContract.organization_id,
    )
    return [ContractWatch(*row) for row in await session.execute(stmt)]


# Deliveries


async def list_deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, params: PageParams, status: str | None
) -> list[WebhookDelivery]:
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    stmt = paginate_statement(stmt, params, DELIVERY_KEYSET)
    return list((await session.scalars(stmt)).all())


async def get_delivery(session: AsyncSession, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    return await session.get(WebhookDelivery, delivery_id)


async def requeue_delivery(session: AsyncSession, delivery_id: uuid.UUID, now: datetime) -> int:
    """Back to pending, due now, with a fresh retry window (from its next attempt); not while
    a dispatcher holds it."""
    stmt = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now),
        )
        .values(
            status=_PENDING,
            next_attempt_at=now,
            queued_at=now,
            retry_window_started_at=None,
            locked_until=None,
        )
    )
    return int((await session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery a dispatcher holds until `locked_until`, with what it needs to send it."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    url: str
    secret_nonce: str
    event_type: str
    data: dict[str, Any]
    event_created_at: datetime
    attempts: int
    # None until its first attempt (since it was queued) is recorded.
    retry_window_started_at: datetime | None
    locked_until: datetime


async def any_due(session: AsyncSession, now: datetime) -> bool:
    """Whether any pending delivery is due and not leased (an indexed read, no lock)."""
    stmt = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == _PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now),
        )
        .limit(1)
    )
    return (await session.scalar(stmt)) is not None


async def due_heads(
    session: AsyncSession,
    now: datetime,
    lease_until: datetime,
    limit: int,
    skip_endpoints: list[uuid.UUID],
) -> list[ClaimedDelivery]:
    """Up to `limit` due deliveries, each the head of its (endpoint, organization) queue (no
    earlier pending one), row-locked with what sending them needs; the caller leases those it
    takes (`lease`, same transaction) until `lease_until`. PostgreSQL: rows another instance
    is claiming are skipped (FOR UPDATE SKIP LOCKED); one it leased is not due."""
    # Each (endpoint, organization) queue's head: its earliest pending delivery.
    heads = (
        select(
            WebhookDelivery.endpoint_id,
            WebhookDelivery.organization_id,
            func.min(WebhookDelivery.sequence).label("sequence"),
        )
        .where(WebhookDelivery.status == _PENDING)
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.organization_id)
        .subquery("queue_head")
    )
    stmt = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.endpoint_id,
            WebhookDelivery.event_id,
            WebhookEndpoint.url,
            WebhookEndpoint.secret_nonce,
            WebhookEvent.type,
            WebhookEvent.data,
            WebhookEvent.created_at,
            WebhookDelivery.attempts,
            WebhookDelivery.retry_window_started_at,
        )
        .join(
            heads,
            and_(
                heads.c.endpoint_id == WebhookDelivery.endpoint_id,
                heads.c.organization_id == WebhookDelivery.organization_id,
                heads.c.sequence == WebhookDelivery.sequence,
            ),
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookDelivery.status == _PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until <= now),
            WebhookEndpoint.enabled.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.sequence)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    if skip_endpoints:
        stmt = stmt.where(WebhookDelivery.endpoint_id.not_in(skip_endpoints))
    return [ClaimedDelivery(*row, locked_until=lease_until) for row in await session.execute(stmt)]


async def lease(session: AsyncSession, delivery_ids: list[uuid.UUID], until: datetime) -> None:
    """Holds these deliveries (row-locked by `due_heads` in this transaction) until `until`."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(delivery_ids))
        .values(locked_until=until)
    )


async def record_attempt(
    session: AsyncSession, delivery: ClaimedDelivery, values: dict[str, Any]
) -> bool:
    """Conditional on our lease: False if it ran out and another dispatcher took over."""
    stmt = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.locked_until == delivery.locked_until,
        )
        .values(attempts=WebhookDelivery.attempts + 1, locked_until=None, **values)
    )
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]


async def endpoints_succeeded(session: AsyncSession, endpoint_ids: list[uuid.UUID]) -> None:
    """Ends these endpoints' failing runs (a no-op for healthy ones)."""
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id.in_(endpoint_ids), WebhookEndpoint.failing_since.is_not(None))
        .values(failing_since=None)
    )


async def endpoint_failed(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    now: datetime,
    disable_before: datetime,
    reason: str,
) -> bool:
    """Starts (or continues) the endpoint's failing run; disables it once the run started
    before `disable_before`. True when this call disabled it."""
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_(None))
        .values(failing_since=now)
    )
    disabled = await session.execute(
        update(WebhookEndpoint)
        .where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.failing_since <= disable_before,
        )
        .values(
            enabled=False,
            disabled_reason=reason,
            updated_at=now,
        )
    )
    return disabled.rowcount == 1  # type: ignore[attr-defined]


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    stmt = select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    return {status: count for status, count in await session.execute(stmt)}
