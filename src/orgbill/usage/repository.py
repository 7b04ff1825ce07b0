"""SQL for usage events and their running totals. Every statement is scoped to one org."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Uuid, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.kit.sql import CompiledOnce, bound_columns, dialect_insert
from orgbill.models import UsageEvent, UsageTotal
from orgbill.reservations.repository import active_holds

_EVENTS = UsageEvent.__table__
_TOTALS = UsageTotal.__table__
_TOTAL_KEY = ["organization_id", "metric", "period_start"]


def _events_insert(insert: Callable[[Any], Any]) -> Any:
    return (
        insert(_EVENTS)
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
        .returning(_EVENTS.c.metric, _EVENTS.c.period_start, _EVENTS.c.quantity)
    )


# One row (a reservation's commit) on a statement compiled once; see insert_events.
_INSERT_ONE_EVENT = CompiledOnce(
    lambda insert: _events_insert(lambda table: insert(table).values(**bound_columns(table)))
)


async def insert_events(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> list[tuple[str, datetime, int]]:
    """Inserts the batch in one statement; events whose (org, idempotency key) already exists
    are skipped by the unique constraint. Returns (metric, period_start, quantity) of the
    rows actually inserted. `rows`: every column of each event."""
    if len(rows) == 1:
        result = await session.execute(_INSERT_ONE_EVENT(session), rows[0])
        return [(row[0], row[1], row[2]) for row in result.all()]
    # Core executemany: SQLAlchemy batches the rows into multi-row INSERTs itself
    # ("insertmanyvalues"), compiling the statement once per batch.
    connection = await session.connection()
    result = await connection.execute(_events_insert(dialect_insert(session)), list(rows))
    return [(row[0], row[1], row[2]) for row in result.all()]


def _add_to_total(insert: Callable[[Any], Any], *, ceiling: bool) -> Any:
    stmt = insert(_TOTALS).values(**bound_columns(_TOTALS, [*_TOTAL_KEY, "used", "updated_at"]))
    new_total = _TOTALS.c.used + stmt.excluded.used
    return stmt.on_conflict_do_update(
        index_elements=_TOTAL_KEY,
        set_={"used": new_total, "updated_at": stmt.excluded.updated_at},
        where=(new_total <= bindparam("ceiling", type_=_TOTALS.c.used.type)) if ceiling else None,
    ).returning(_TOTALS.c.used)


_ADD_TO_TOTAL = CompiledOnce(lambda insert: _add_to_total(insert, ceiling=False))
_ADD_WITHIN_CEILING = CompiledOnce(lambda insert: _add_to_total(insert, ceiling=True))


async def add_to_total(
    session: AsyncSession,
    org_id: uuid.UUID,
    metric: str,
    period_start: datetime,
    delta: int,
    now: datetime,
    *,
    ceiling: int | None,
) -> int | None:
    """Adds a non-negative `delta` in one atomic upsert; with a `ceiling`, only if the new
    total stays within it. The row lock the upsert takes makes the check exact under any
    concurrency. Returns the new total, or None when the ceiling refused it."""
    if ceiling is not None and delta > ceiling:
        return None
    params: dict[str, Any] = {
        "organization_id": org_id,
        "metric": metric,
        "period_start": period_start,
        "used": delta,
        "updated_at": now,
    }
    if ceiling is None:
        return await session.scalar(_ADD_TO_TOTAL(session), params)
    return await session.scalar(_ADD_WITHIN_CEILING(session), {**params, "ceiling": ceiling})


async def subtract_from_total(
    session: AsyncSession,
    org_id: uuid.UUID,
    metric: str,
    period_start: datetime,
    amount: int,
    now: datetime,
) -> int | None:
    """Lowers a gauge by `amount` only if it stays at or above zero (a missing row is a
    level of zero, so it refuses). Returns the new level, or None when refused."""
    stmt = (
        update(UsageTotal)
        .where(
            UsageTotal.organization_id == org_id,
            UsageTotal.metric == metric,
            UsageTotal.period_start == period_start,
            UsageTotal.used >= amount,
        )
        .values(used=UsageTotal.used - amount, updated_at=now)
        .returning(UsageTotal.used)
    )
    return await session.scalar(stmt)


async def totals(
    session: AsyncSession, org_id: uuid.UUID, period_starts: Sequence[datetime]
) -> dict[tuple[str, datetime], int]:
    """(metric, period_start) → total, for the given periods only (one indexed range)."""
    stmt = select(UsageTotal.metric, UsageTotal.period_start, UsageTotal.used).where(
        UsageTotal.organization_id == org_id, UsageTotal.period_start.in_(list(period_starts))
    )
    return {(row[0], row[1]): row[2] for row in (await session.execute(stmt)).all()}


@dataclass(frozen=True, slots=True)
class Standing:
    """A metric's total in one period and what reservations hold on it now."""

    used: int
    held: Decimal


_ORG = bindparam("org_id", type_=Uuid())
# The decision read: the total and the active holds in one round trip. Both subqueries see
# one snapshot, so a commit (total up, hold gone, one transaction) is never seen half-done.
_STANDING = select(
    select(UsageTotal.used)
    .where(
        UsageTotal.organization_id == _ORG,
        UsageTotal.metric == bindparam("metric"),
        UsageTotal.period_start == bindparam("period_start"),
    )
    .scalar_subquery(),
    active_holds(_ORG, bindparam("metric"), bindparam("now", type_=UsageTotal.updated_at.type)),
)


_RIDER_METRIC = bindparam("standing_metric", type_=UsageTotal.metric.type)
_RIDER_NOW = bindparam("standing_now", type_=UsageTotal.updated_at.type)


def _latest_total(org_id: Any, column: Any) -> Any:
    return (
        select(column)
        .where(
            UsageTotal.organization_id == org_id,
            UsageTotal.metric == _RIDER_METRIC,
            UsageTotal.period_start <= _RIDER_NOW,
        )
        .order_by(UsageTotal.period_start.desc())
        .limit(1)
        .correlate_except(UsageTotal)
        .scalar_subquery()
    )


def standing_columns(org_id: Any) -> tuple[Any, ...]:
    """The decision read as columns another statement (the caller's lookup) can carry,
    correlated to its `org_id`: the metric's total with the latest period start at or before
    `standing_now`, that start, and the holds live then. (The period a decision counts is
    known only once the plan is resolved from the same row; see `StandingAt.used_in`.)"""
    return (
        _latest_total(org_id, UsageTotal.period_start).label("standing_period_start"),
        _latest_total(org_id, UsageTotal.used).label("standing_used"),
        active_holds(org_id, _RIDER_METRIC, _RIDER_NOW).label("standing_held"),
    )


def standing_params(metric: str, now: datetime) -> dict[str, Any]:
    return {"standing_metric": metric, "standing_now": now}


@dataclass(frozen=True, slots=True)
class StandingAt:
    """`standing_columns` as read: the latest total at or before the instant, and the holds."""

    period_start: datetime | None
    used: int | None
    held: Decimal

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> StandingAt:
        return cls(
            values["standing_period_start"], values["standing_used"], values["standing_held"]
        )

    def used_in(self, period_start: datetime) -> int | None:
        """The total of the period starting at `period_start` (at or before the instant read);
        None when this read cannot tell (a later period's total was the latest)."""
        if self.period_start is None:
            return 0  # no total at all yet
        latest = self.period_start
        if latest == period_start:
            return self.used or 0
        if latest < period_start:
            return 0  # the latest total is older: nothing counted in this period yet
        return None


async def standing(
    session: AsyncSession, org_id: uuid.UUID, metric: str, period_start: datetime, now: datetime
) -> Standing:
    params = {"org_id": org_id, "metric": metric, "period_start": period_start, "now": now}
    row = (await session.execute(_STANDING, params)).one()
    return Standing(used=row[0] or 0, held=row[1])


# A no-op update: takes the row lock (creating the row if missing) and returns the total as
# it stands once the lock is ours.
_LOCK_TOTAL = CompiledOnce(
    lambda insert: (
        insert(_TOTALS)
        .values(**bound_columns(_TOTALS, [*_TOTAL_KEY, "used", "updated_at"]))
        .on_conflict_do_update(index_elements=_TOTAL_KEY, set_={"used": _TOTALS.c.used})
        .returning(_TOTALS.c.used)
    )
)


async def lock_total(
    session: AsyncSession, org_id: uuid.UUID, metric: str, period_start: datetime, now: datetime
) -> int:
    """Locks the (org, metric, period) total row that every writer of that metric takes, and
    returns its total. Reads of holds made after this see all holds taken before."""
    params = {
        "organization_id": org_id,
        "metric": metric,
        "period_start": period_start,
        "used": 0,
        "updated_at": now,
    }
    used = await session.scalar(_LOCK_TOTAL(session), params)
    assert used is not None
    return int(used)
