"""Meters, quotas and usage reads.

Counters sum per billing period (their totals are keyed by the period's start, so a new
period starts from zero by itself); gauges hold a level that events move up and down.
A batch is all-or-nothing: any refusal raises, and the request's transaction rolls back
the events and totals it had already written.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth.principal import OrgAccess
from orgbill.entitlements.periods import GAUGE_EPOCH, Period
from orgbill.entitlements.resolver import EffectivePlan
from orgbill.errors import BadRequest, Conflict, QuotaExceeded, ValidationFailed
from orgbill.kit.time import as_utc, isoformat_z
from orgbill.plans.catalog import Catalog, Meter
from orgbill.plans.limits import CRITICAL_PERCENT, WARNING_PERCENT, reaches_share
from orgbill.plans.store import CatalogStore
from orgbill.reservations import repository as reservations
from orgbill.usage import repository, schemas
from orgbill.webhooks_out import outbox

# Clients' clocks drift; more than this ahead of ours is a bug, not drift.
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Usage of every meter in the current period; feeds `GET /usage`, the usage part of
    `GET /plans/current` and the quota headers."""

    plan: str
    period: Period
    metrics: dict[str, schemas.MetricUsage]
    warnings: list[schemas.UsageWarning]

    def as_schema(self) -> schemas.Usage:
        return schemas.Usage(
            plan=self.plan,
            period_start=self.period.start,
            period_end=self.period.end,
            warnings=self.warnings,
            **self.metrics,
        )


def total_period_start(meter: Meter, period: Period) -> datetime:
    """Which total a meter's usage lands in: the period's for a counter, the fixed epoch for
    a gauge's level."""
    return period.start if meter.kind == "counter" else GAUGE_EPOCH


def meter_limit(plan: EffectivePlan, meter: Meter) -> int | None:
    return plan.limits.count(meter.limit)


def percentage(current: int, limit: int | None) -> float | None:
    """For display only (rounded): which warning applies is decided exactly (`_warning`)."""
    if limit is None:
        return None
    if limit == 0:
        return 0.0 if current == 0 else float(CRITICAL_PERCENT)
    return round(current * 100 / limit, 1)


def _warning(
    meter: Meter, current: int | None, limit: int | None, period: Period
) -> schemas.UsageWarning | None:
    if current is None or limit is None or not reaches_share(current, limit, WARNING_PERCENT):
        return None
    used = f"{current}/{limit} {meter.name}"
    this_period = " this period" if meter.kind == "counter" else ""
    if not reaches_share(current, limit, CRITICAL_PERCENT):
        message = f"Warning: You're using {used}{this_period}. Consider upgrading soon."
        return schemas.UsageWarning(type=meter.name, message=message, severity="warning")
    if meter.enforcement == "soft":
        message = (
            f"Critical: You're at {used}{this_period}, at or over your plan's limit. "
            "Upgrade to stay within your plan."
        )
    elif meter.kind == "counter":
        message = (
            f"Critical: You've used {used} this period. New {meter.name} are refused until "
            f"the period resets at {isoformat_z(period.end)}, or until you upgrade."
        )
    else:
        message = (
            f"Critical: You're using {used}. New {meter.name} are refused until you remove "
            "some or upgrade."
        )
    return schemas.UsageWarning(type=meter.name, message=message, severity="critical")


def build_report(
    plan: EffectivePlan,
    catalog: Catalog,
    period: Period,
    totals: dict[tuple[str, datetime], int],
) -> UsageReport:
    metrics: dict[str, schemas.MetricUsage] = {}
    warnings: list[schemas.UsageWarning] = []
    for meter in catalog.meters.values():
        key_period = period.start if meter.kind == "counter" else GAUGE_EPOCH
        current = totals.get((meter.name, key_period), 0)
        limit = meter_limit(plan, meter)
        metrics[meter.name] = schemas.MetricUsage(
            current=current, limit=limit, percentage=percentage(current, limit)
        )
        if (warning := _warning(meter, current, limit, period)) is not None:
            warnings.append(warning)
    return UsageReport(plan=plan.plan.code, period=period, metrics=metrics, warnings=warnings)


async def usage_report(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    store: CatalogStore,
) -> UsageReport:
    """One indexed read of the org's totals for the current period and its gauges."""
    period = plan.period
    totals = await repository.totals(session, access.organization.id, [period.start, GAUGE_EPOCH])
    return build_report(plan, store.catalog, period, totals)


def _header_name(metric: str) -> str:
    return "-".join(part.capitalize() for part in metric.split("_"))


def quota_headers(report: UsageReport) -> dict[str, str]:
    """Seed 004: X-Quota-<Metric>-Used / -Limit per metered limit, and X-Quota-Reset."""
    headers: dict[str, str] = {}
    for name, usage in report.metrics.items():
        headers[f"X-Quota-{_header_name(name)}-Used"] = str(usage.current)
        headers[f"X-Quota-{_header_name(name)}-Limit"] = (
            "unlimited" if usage.limit is None else str(usage.limit)
        )
    headers["X-Quota-Reset"] = isoformat_z(report.period.end)
    return headers


# Recording


def _event_error(index: int, field: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", "events", index, field], "msg": message, "type": kind}


def _validated_rows(
    org_id: uuid.UUID,
    events: list[schemas.UsageEventIn],
    plan: EffectivePlan,
    catalog: Catalog,
    current: Period,
    now: datetime,
) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        meter = catalog.meters.get(event.metric)
        if meter is None:
            known = ", ".join(sorted(catalog.meters))
            errors.append(
                _event_error(index, "metric", f"Unknown metric; known: {known}", "unknown_metric")
            )
            continue
        if event.quantity == 0:
            errors.append(_event_error(index, "quantity", "Must not be zero", "zero_quantity"))
        elif event.quantity < 0 and meter.kind == "counter":
            errors.append(
                _event_error(
                    index, "quantity", f"{meter.name} is a counter; it only goes up", "negative"
                )
            )
        occurred_at = as_utc(event.timestamp) if event.timestamp else now
        if occurred_at > now + MAX_CLOCK_SKEW:
            errors.append(
                _event_error(
                    index, "timestamp", "More than 5 minutes in the future", "future_timestamp"
                )
            )
            continue
        if occurred_at < current.start:
            # That period is closed (and may be invoiced): late usage cannot reopen it (nor
            # move a gauge's level from a time already reported on).
            errors.append(
                _event_error(
                    index,
                    "timestamp",
                    f"Falls in a closed billing period (the current one began "
                    f"{isoformat_z(current.start)})",
                    "closed_period",
                )
            )
            continue
        if meter.kind == "gauge":
            period_start = GAUGE_EPOCH
        elif current.contains(occurred_at):
            period_start = current.start
        else:  # within the clock skew, past the current period's end: the next period's
            period_start = plan.period_at(occurred_at).start
        rows.append(
            {
                "id": uuid.uuid4(),
                "organization_id": org_id,
                "metric": meter.name,
                "quantity": event.quantity,
                "idempotency_key": event.idempotency_key,
                "occurred_at": occurred_at,
                "period_start": period_start,
                "recorded_at": now,
            }
        )
    if errors:
        raise ValidationFailed(
            "Some usage events are invalid; nothing was recorded", details=errors
        )
    # One lock order for every batch, so two batches sharing keys cannot deadlock.
    rows.sort(key=lambda row: (row["idempotency_key"] is None, row["idempotency_key"] or ""))
    return rows


def _net_changes(accepted: Iterable[tuple[str, datetime, int]]) -> dict[tuple[str, datetime], int]:
    changes: dict[tuple[str, datetime], int] = defaultdict(int)
    for metric, period_start, quantity in accepted:
        changes[(metric, as_utc(period_start))] += quantity
    # Sorted: totals rows are locked in one order by every batch (no deadlocks).
    return {key: changes[key] for key in sorted(changes) if changes[key] != 0}


async def record_events(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    catalog: Catalog,
    batch: schemas.UsageEventBatch,
    now: datetime,
) -> schemas.UsageEventsRecorded:
    if len(batch.events) > schemas.MAX_EVENTS_PER_BATCH:
        raise BadRequest(
            f"A batch holds at most {schemas.MAX_EVENTS_PER_BATCH} events; "
            f"got {len(batch.events)}. Nothing was recorded."
        )
    org_id = access.organization.id
    current = plan.period
    rows = _validated_rows(org_id, batch.events, plan, catalog, current, now)
    accepted = await repository.insert_events(session, rows)
    applied: dict[tuple[str, datetime], int] = {}
    warnings: list[schemas.UsageWarning] = []
    # Hard-limited totals raised in this period: reservations' holds count against them too.
    raised: dict[str, tuple[Meter, int, int]] = {}
    for (metric, period_start), delta in _net_changes(accepted).items():
        meter = catalog.meters[metric]
        limit = meter_limit(plan, meter)
        ceiling = limit if meter.enforcement == "hard" else None
        if delta < 0:
            ceiling = None  # lowering a level never passes a limit
            total = await repository.subtract_from_total(
                session, org_id, metric, period_start, -delta, now
            )
            if total is None:
                raise ValidationFailed(
                    f"{metric} cannot go below zero; nothing was recorded",
                    details=[
                        {
                            "loc": ["body", "events"],
                            "msg": f"{metric} below zero",
                            "type": "below_zero",
                        }
                    ],
                )
        else:
            total = await repository.add_to_total(
                session, org_id, metric, period_start, delta, now, ceiling=ceiling
            )
            if total is None:
                await _refuse_over_quota(session, access, plan, catalog, meter, delta, applied, now)
        applied[(metric, period_start)] = delta
        in_current_period = period_start in (current.start, GAUGE_EPOCH)
        if in_current_period and delta > 0:
            # Rolled back with the batch if a later check refuses it.
            await outbox.usage_thresholds(
                session, org_id, metric, total - delta, total, limit, current
            )
        if in_current_period and limit is not None and ceiling is not None:
            raised[metric] = (meter, total, limit)
        if in_current_period and (warning := _warning(meter, total, limit, current)):
            warnings.append(warning)
    if raised:
        await _refuse_past_holds(session, access, plan, catalog, raised, applied, now)
    return schemas.UsageEventsRecorded(
        accepted=len(accepted), duplicates=len(rows) - len(accepted), warnings=warnings
    )


async def _refuse_past_holds(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    catalog: Catalog,
    raised: dict[str, tuple[Meter, int, int]],
    applied: dict[tuple[str, datetime], int],
    now: datetime,
) -> None:
    """A hold counts as used: the batch is refused when its new totals plus the active holds
    pass a hard limit. Read after every total row of the batch is locked (the upserts above),
    so no reservation can slip in between this read and the commit."""
    held = await reservations.held_by_metric(session, access.organization.id, sorted(raised), now)
    for metric, (meter, total, limit) in raised.items():
        reserved = held.get(metric, Decimal(0))
        if total + reserved > limit:
            key_period = total_period_start(meter, plan.period)
            await _refuse_over_quota(
                session,
                access,
                plan,
                catalog,
                meter,
                applied[(metric, key_period)],
                applied,
                now,
                reserved=reserved,
            )


async def _refuse_over_quota(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    catalog: Catalog,
    meter: Meter,
    requested: int,
    applied_in_batch: dict[tuple[str, datetime], int],
    now: datetime,
    *,
    reserved: Decimal | None = None,
) -> NoReturn:
    period = plan.period
    totals = await repository.totals(session, access.organization.id, [period.start, GAUGE_EPOCH])
    # The headers describe usage as it stays after this refused batch rolls back.
    for key, delta in applied_in_batch.items():
        if key in totals:
            totals[key] -= delta
    report = build_report(plan, catalog, period, totals)
    used = report.metrics[meter.name].current
    limit = meter_limit(plan, meter)
    retry_after = max(1, math.ceil((period.end - now).total_seconds()))
    resets = f"; the period resets at {isoformat_z(period.end)}" if meter.kind == "counter" else ""
    if reserved is None:
        reserved = await reservations.held_quantity(
            session, access.organization.id, meter.name, now
        )
    held = f" ({reserved} more held by reservations)" if reserved else ""
    raise QuotaExceeded(
        f"Quota exceeded for {meter.name}: {used}/{limit} used{held} and this batch adds "
        f"{requested}{resets}. Nothing was recorded.",
        details={
            "metric": meter.name,
            "used": used,
            "reserved": int(reserved),
            "limit": limit,
            "requested": requested,
            "resets_at": isoformat_z(period.end),
        },
        headers={**quota_headers(report), "Retry-After": str(retry_after)},
    )


async def record_reserved(
    session: AsyncSession,
    org_id: uuid.UUID,
    plan: EffectivePlan,
    meter: Meter,
    quantity: int,
    period: Period,
    idempotency_key: str,
    now: datetime,
) -> None:
    """Records usage a reservation held: one event (keyed, so never twice) and the total
    moved without a ceiling, because the hold already kept room for it. For a gauge the
    event is a change of level. Thresholds it crosses are announced as a usage event's are."""
    period_start = total_period_start(meter, period)
    row = {
        "id": uuid.uuid4(),
        "organization_id": org_id,
        "metric": meter.name,
        "quantity": quantity,
        "idempotency_key": idempotency_key,
        "occurred_at": now,
        "period_start": period_start,
        "recorded_at": now,
    }
    if not await repository.insert_events(session, [row]):
        raise Conflict(f"Usage keyed {idempotency_key!r} was already recorded")
    total = await repository.add_to_total(
        session, org_id, meter.name, period_start, quantity, now, ceiling=None
    )
    if total is not None and quantity > 0:
        await outbox.usage_thresholds(
            session, org_id, meter.name, total - quantity, total, meter_limit(plan, meter), period
        )
