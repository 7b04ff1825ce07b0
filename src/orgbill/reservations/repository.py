"""SQL for reservations. Every statement is scoped to one org and compiled once.

A hold counts while `state = 'held' AND expires_at > now`: expiry is derived at read time.
Callers that compare holds against a limit read them *after* taking the (org, metric) lock
row (the usage total or the credit balance), in a statement of their own, so on PostgreSQL
(READ COMMITTED) the read sees every hold committed by whoever held the lock before them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Uuid, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.kit.sql import CompiledOnce, upsert_insert
from orgbill.models import Reservation, ReservationState

# The metric name under which credit holds are kept (no meter may be called this).
CREDITS_METRIC = "credits"

_table = Reservation.__table__
_HELD = ReservationState.HELD.value


def active_holds(org_id: Any, metric: Any, now: Any) -> ColumnElement[Decimal]:
    """Scalar subquery: the quantity held right now on one metric of one org."""
    return (
        select(func.coalesce(func.sum(Reservation.quantity), 0))
        .where(
            Reservation.organization_id == org_id,
            Reservation.metric == metric,
            Reservation.state == _HELD,
            Reservation.expires_at > now,
        )
        .scalar_subquery()
    )


@dataclass(frozen=True, slots=True)
class HeldState:
    held: Decimal
    # Rows still marked held whose expiry has passed: the lazy sweep's cue.
    expired: int


@dataclass(frozen=True, slots=True)
class Settled:
    """A reservation as its settlement left it."""

    id: uuid.UUID
    metric: str
    quantity: Decimal
    state: str
    committed_quantity: Decimal | None
    expires_at: datetime
    created_at: datetime
    settled_at: datetime | None


_ORG = bindparam("org_id", type_=Uuid())
_ID = bindparam("reservation_id", type_=Uuid())

_HELD_STATE = select(
    func.coalesce(
        func.sum(case((Reservation.expires_at > bindparam("now"), Reservation.quantity))), 0
    ),
    func.count(case((Reservation.expires_at <= bindparam("now"), 1))),
).where(
    Reservation.organization_id == _ORG,
    Reservation.metric == bindparam("metric"),
    Reservation.state == _HELD,
)
_HELD_BY_METRIC = (
    select(Reservation.metric, func.sum(Reservation.quantity))
    .where(
        Reservation.organization_id == _ORG,
        Reservation.metric.in_(bindparam("metrics", expanding=True)),
        Reservation.state == _HELD,
        Reservation.expires_at > bindparam("now"),
    )
    .group_by(Reservation.metric)
)
# SKIP LOCKED: a hold some commit or release is settling right now is left alone, so the
# sweep (which runs under the metric's lock row) never waits on a settlement that is itself
# waiting for that lock row. (SQLite serialises writers and renders no FOR UPDATE.)
_EXPIRED_IDS = (
    select(Reservation.id)
    .where(
        Reservation.organization_id == _ORG,
        Reservation.metric == bindparam("metric_name"),
        Reservation.state == _HELD,
        Reservation.expires_at <= bindparam("now"),
    )
    .with_for_update(skip_locked=True)
)
_SWEEP = (
    update(_table)
    .where(_table.c.id.in_(_EXPIRED_IDS.scalar_subquery()))
    .values(state=ReservationState.EXPIRED.value)
)
_GET = select(Reservation).where(Reservation.id == _ID, Reservation.organization_id == _ORG)
_GET_BY_KEY = select(Reservation).where(
    Reservation.organization_id == _ORG, Reservation.idempotency_key == bindparam("key")
)
# Commit and release are one conditional UPDATE each: the row count decides the outcome, so
# of two racing settlements exactly one wins, and an expired hold cannot be settled.
_SETTLEABLE = (
    _table.c.id == _ID,
    _table.c.organization_id == _ORG,
    _table.c.state == _HELD,
    _table.c.expires_at > bindparam("now"),
)
_RETURNING = tuple(_table.c[name] for name in Settled.__slots__)  # type: ignore[attr-defined]
_COMMIT = CompiledOnce.of(
    update(_table)
    .where(*_SETTLEABLE, _table.c.quantity >= bindparam("at_least", type_=_table.c.quantity.type))
    .values(
        state=ReservationState.COMMITTED.value,
        committed_quantity=func.coalesce(
            bindparam("committed", type_=_table.c.quantity.type), _table.c.quantity
        ),
        settled_at=bindparam("now"),
    )
    .returning(*_RETURNING)
)
_RELEASE = CompiledOnce.of(
    update(_table)
    .where(*_SETTLEABLE)
    .values(state=ReservationState.RELEASED.value, settled_at=bindparam("now"))
    .returning(*_RETURNING)
)


_INSERTS: dict[str, Any] = {}


def _insert_statement(session: AsyncSession) -> Any:
    """The hold INSERT, built once per dialect (the two spell ON CONFLICT alike, but are
    different statement classes)."""
    dialect = session.get_bind().dialect.name
    stmt = _INSERTS.get(dialect)
    if stmt is None:
        stmt = _INSERTS[dialect] = (
            upsert_insert(session, _table)
            .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
            .returning(_table.c.id)
        )
    return stmt


async def held_state(
    session: AsyncSession, org_id: uuid.UUID, metric: str, now: datetime
) -> HeldState:
    row = (
        await session.execute(_HELD_STATE, {"org_id": org_id, "metric": metric, "now": now})
    ).one()
    return HeldState(held=row[0], expired=row[1])


async def held_by_metric(
    session: AsyncSession, org_id: uuid.UUID, metrics: Sequence[str], now: datetime
) -> dict[str, Decimal]:
    params = {"org_id": org_id, "metrics": list(metrics), "now": now}
    return {row[0]: row[1] for row in (await session.execute(_HELD_BY_METRIC, params)).all()}


async def held_quantity(
    session: AsyncSession, org_id: uuid.UUID, metric: str, now: datetime
) -> Decimal:
    return (await held_state(session, org_id, metric, now)).held


async def sweep_expired(
    session: AsyncSession, org_id: uuid.UUID, metric: str, now: datetime
) -> None:
    """Marks holds past their expiry as expired (they had already stopped counting)."""
    await session.execute(_SWEEP, {"org_id": org_id, "metric_name": metric, "now": now})


async def insert(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """None when the org already used this idempotency key (the unique constraint decides)."""
    return await session.scalar(_insert_statement(session), values)


@dataclass(frozen=True, slots=True)
class Granted:
    id: uuid.UUID
    reserved_before: Decimal


_QUANTITY_TYPE = _table.c.quantity.type
_HOLD_VALUES = {
    "id": bindparam("id", type_=Uuid()),
    "organization_id": _ORG,
    "metric": bindparam("metric", type_=_table.c.metric.type),
    "quantity": bindparam("quantity", type_=_QUANTITY_TYPE),
    "state": bindparam("state", type_=_table.c.state.type),
    "expires_at": bindparam("expires_at", type_=_table.c.expires_at.type),
    "created_at": bindparam("now", type_=_table.c.created_at.type),
}
_HELD_NOW = (
    select(func.coalesce(func.sum(Reservation.quantity), 0).label("held"))
    .where(
        Reservation.organization_id == _ORG,
        Reservation.metric == _HOLD_VALUES["metric"],
        Reservation.state == _HELD,
        Reservation.expires_at > _HOLD_VALUES["created_at"],
    )
    .subquery("live_holds")
)
# Reads the holds and inserts the new one in one statement, only if there is room:
# used (read under the lock just before) + held + quantity <= limit. Its snapshot is taken
# after that lock was granted, so it sees every hold committed before.
_INSERT_IF_ROOM = CompiledOnce.of(
    _table.insert()
    .from_select(
        [*_HOLD_VALUES, "reserved_before"],
        select(*_HOLD_VALUES.values(), _HELD_NOW.c.held).where(
            bindparam("limit", type_=_QUANTITY_TYPE).is_(None)
            | (
                bindparam("used", type_=_QUANTITY_TYPE)
                + _HELD_NOW.c.held
                + _HOLD_VALUES["quantity"]
                <= bindparam("limit", type_=_QUANTITY_TYPE)
            )
        ),
    )
    .returning(_table.c.id, _table.c.reserved_before)
)


async def insert_if_room(
    session: AsyncSession,
    org_id: uuid.UUID,
    reservation_id: uuid.UUID,
    metric: str,
    quantity: Decimal,
    expires_at: datetime,
    now: datetime,
    *,
    used: Decimal,
    limit: Decimal | None,
) -> Granted | None:
    """A live hold of `quantity` when `used` plus the live holds leave room under `limit`
    (None: no limit); None when they do not. The caller holds the metric's lock row."""
    params = {
        "id": reservation_id,
        "org_id": org_id,
        "metric": metric,
        "quantity": quantity,
        "state": _HELD,
        "expires_at": expires_at,
        "now": now,
        "used": used,
        "limit": limit,
    }
    row = (await session.execute(_INSERT_IF_ROOM(session), params)).first()
    return Granted(row[0], row[1]) if row else None


async def get(
    session: AsyncSession, org_id: uuid.UUID, reservation_id: uuid.UUID
) -> Reservation | None:
    return await session.scalar(_GET, {"org_id": org_id, "reservation_id": reservation_id})


async def get_by_key(session: AsyncSession, org_id: uuid.UUID, key: str) -> Reservation | None:
    return await session.scalar(_GET_BY_KEY, {"org_id": org_id, "key": key})


async def commit(
    session: AsyncSession,
    org_id: uuid.UUID,
    reservation_id: uuid.UUID,
    quantity: Decimal | None,
    now: datetime,
) -> Settled | None:
    """Commits `quantity` (None: all of it) of a live hold; None when it is not a live hold
    of this org or holds less than `quantity`."""
    params = {
        "org_id": org_id,
        "reservation_id": reservation_id,
        "now": now,
        "at_least": quantity if quantity is not None else Decimal(0),
        "committed": quantity,
    }
    row = (await session.execute(_COMMIT(session), params)).first()
    return Settled(**row._mapping) if row else None


async def release(
    session: AsyncSession, org_id: uuid.UUID, reservation_id: uuid.UUID, now: datetime
) -> Settled | None:
    params = {"org_id": org_id, "reservation_id": reservation_id, "now": now}
    row = (await session.execute(_RELEASE(session), params)).first()
    return Settled(**row._mapping) if row else None
