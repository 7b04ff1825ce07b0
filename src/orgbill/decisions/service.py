"""Decisions: check, reserve, commit, release.

A check compares `used + reserved + quantity` with the limit. Without `reserve` it is one
read (the total and the live holds in one statement). With `reserve` it first takes the
row lock every writer of that (org, metric) takes — the usage total row of the current
period (a gauge's level row), or the credit balance row — then reads the holds, decides and
inserts the hold before the lock is released at commit. Usage events and credit consumes
take the same lock and count the same holds, so no two callers are promised the last unit.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.auth.principal import ApiKeyPrincipal, CallerRider, OrgAccess, Principal
from orgbill.credits import service as credits
from orgbill.decisions import schemas
from orgbill.entitlements.periods import Period
from orgbill.entitlements.resolver import EffectivePlan
from orgbill.errors import Conflict, NotFound, ValidationFailed
from orgbill.kit.types import system_key
from orgbill.models import OrganizationStatus, Reservation, ReservationState
from orgbill.plans.catalog import Catalog, Meter
from orgbill.reservations import repository as reservations
from orgbill.reservations.repository import CREDITS_METRIC, HeldState
from orgbill.usage import repository as usage_totals
from orgbill.usage import service as usage
from orgbill.usage.repository import StandingAt
from orgbill.usage.schemas import MAX_EVENT_QUANTITY


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a metric stands for a decision."""

    limit: Decimal | None  # None: unlimited
    used: Decimal
    reserved: Decimal
    enforced: bool  # whether passing the limit is refused (hard meters, credits)
    source: str | None
    reset_at: datetime | None

    def allows(self, quantity: Decimal) -> bool:
        if not self.enforced or self.limit is None:
            return True
        return self.used + self.reserved + quantity <= self.limit

    @property
    def remaining(self) -> Decimal | None:
        if self.limit is None:
            return None
        return max(Decimal(0), self.limit - self.used - self.reserved)


# The plan's reading, kept to these few lines so a change of EffectivePlan's shape stays local.


def _period(plan: EffectivePlan, now: datetime) -> Period:
    return plan.period if now == plan.evaluated_at else plan.period_at(now)


def _is_suspended(access: OrgAccess) -> bool:
    return access.organization.status == OrganizationStatus.SUSPENDED


def _meter_terms(plan: EffectivePlan, meter: Meter, now: datetime) -> tuple[Any, ...]:
    """(limit, source, enforced, reset_at, total's period start) of a meter."""
    limit = usage.meter_limit(plan, meter)
    source = plan.limit_sources.get(meter.limit)
    period = _period(plan, now)
    reset_at = period.end if meter.kind == "counter" else None
    enforced = meter.enforcement == "hard"
    return limit, source, enforced, reset_at, usage.total_period_start(meter, period)


def _feature_terms(plan: EffectivePlan, feature: str) -> tuple[bool, str | None]:
    """(allowed, source): in the plan's features, one of the org's entitlements, or a
    boolean limit that is true."""
    if feature in plan.plan.features:
        return True, f"plan:{plan.plan.code}"
    if feature in plan.features:  # the org's entitlements, merged in by the resolver
        return True, "override"
    limit = plan.limits.get_limit(feature)
    if limit.kind == "flag":
        return limit.as_flag(), plan.limit_sources.get(feature)
    return False, None


# Checks


def _error(field: str, message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(
        message, details=[{"loc": ["body", field], "msg": message, "type": kind}]
    )


def _meter_for(catalog: Catalog, body: schemas.MetricCheck) -> Meter | None:
    """The meter checked (None for credits); unknown metrics and fractional units are 422."""
    if body.metric == CREDITS_METRIC:
        return None
    meter = catalog.meters.get(body.metric)
    if meter is None:
        known = ", ".join([*sorted(catalog.meters), CREDITS_METRIC])
        raise _error("metric", f"Unknown metric; known: {known}", "unknown_metric")
    if body.quantity != body.quantity.to_integral_value():
        raise _error("quantity", f"{meter.name} is counted in whole units", "whole_units")
    if body.quantity > MAX_EVENT_QUANTITY:
        raise _error("quantity", f"At most {MAX_EVENT_QUANTITY} {meter.name} at once", "too_large")
    return meter


async def _read_standing(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    meter: Meter | None,
    now: datetime,
) -> Standing:
    """The lock-free read of a plain check: one statement on top of the caller's identity."""
    org_id = access.organization.id
    if meter is None:
        balance = await credits.total_credits(session, access, plan, now)
        held = await reservations.held_quantity(session, org_id, CREDITS_METRIC, now)
        return Standing(balance, Decimal(0), held, True, None, None)
    limit, source, enforced, reset_at, period_start = _meter_terms(plan, meter, now)
    ridden = _ridden_standing(access, meter.name, now)
    used = ridden.used_in(period_start) if ridden is not None else None
    if ridden is not None and used is not None:
        held = ridden.held
    else:
        found = await usage_totals.standing(session, org_id, meter.name, period_start, now)
        used, held = found.used, found.held
    return Standing(
        Decimal(limit) if limit is not None else None,
        Decimal(used),
        held,
        enforced,
        source,
        reset_at,
    )


# A plain metric check's standing rides with the caller's API-key lookup: one round trip.
_STANDING_RIDER = "decision_standing"
# The rider runs before the body is validated: it rides only a metric the check would accept
# (a NUL or a lone surrogate in a query is the driver's error, not a 422).
_METRIC_NAME: TypeAdapter[str] = TypeAdapter(schemas.Name)


def standing_rider(body: bytes, now: datetime) -> CallerRider | None:
    """What the caller's lookup carries for this raw `POST /check` body: the metric's
    standing at `now`, when it is a plain (non-reserving) check of a meter."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # malformed: FastAPI answers it
        return None
    if not isinstance(parsed, dict) or parsed.get("reserve") is True or "feature" in parsed:
        return None
    metric = parsed.get("metric")
    if not isinstance(metric, str) or metric == CREDITS_METRIC:
        return None
    try:
        _METRIC_NAME.validate_python(metric)
    except ValidationError:
        return None  # the route refuses it (422)
    return CallerRider(
        name=_STANDING_RIDER,
        columns=usage_totals.standing_columns,
        params=usage_totals.standing_params(metric, now),
    )


def ridden_instant(principal: Principal | None) -> datetime | None:
    """The instant the caller's lookup read a standing at, if it carried one: the decision
    is taken at that instant, so what it read is what the decision counts."""
    rider = principal.rider if isinstance(principal, ApiKeyPrincipal) else None
    if rider is None or rider.name != _STANDING_RIDER:
        return None
    instant: datetime = rider.params["standing_now"]
    return instant


def _ridden_standing(access: OrgAccess, metric: str, now: datetime) -> StandingAt | None:
    principal = access.principal
    if not isinstance(principal, ApiKeyPrincipal) or principal.rider_values is None:
        return None
    rider = principal.rider
    if rider is None or rider.name != _STANDING_RIDER:
        return None
    if rider.params != usage_totals.standing_params(metric, now):
        return None  # another metric or instant than this decision's
    return StandingAt.from_values(principal.rider_values)


async def _lock(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    meter: Meter | None,
    now: datetime,
) -> Standing:
    """Takes the (org, metric) lock row every writer of the metric takes: nothing can be
    held or used on it by anyone else until this transaction ends. Holds are read next, in
    statements of their own (`reserved` is 0 here)."""
    org_id = access.organization.id
    if meter is None:
        balance = await credits.lock_for_hold(session, org_id, plan, now)
        return Standing(balance, Decimal(0), Decimal(0), True, None, None)
    limit, source, enforced, reset_at, period_start = _meter_terms(plan, meter, now)
    used = await usage_totals.lock_total(session, org_id, meter.name, period_start, now)
    return Standing(
        Decimal(limit) if limit is not None else None,
        Decimal(used),
        Decimal(0),
        enforced,
        source,
        reset_at,
    )


async def _held_sweeping(
    session: AsyncSession, org_id: uuid.UUID, metric: str, now: datetime
) -> Decimal:
    state: HeldState = await reservations.held_state(session, org_id, metric, now)
    if state.expired:  # lazily: they already stopped counting; this keeps the index lean
        await reservations.sweep_expired(session, org_id, metric, now)
    return state.held


def _metric_decision(
    access: OrgAccess,
    plan: EffectivePlan,
    body: schemas.MetricCheck,
    standing: Standing,
    reservation: schemas.ReservationHold | None,
) -> schemas.MetricDecision:
    allowed = not _is_suspended(access) and standing.allows(body.quantity)
    code: schemas.DecisionCode | None = None
    if _is_suspended(access):
        code = "org_suspended"
    elif not allowed:
        code = "insufficient_credits" if body.metric == CREDITS_METRIC else "quota_exceeded"
    return schemas.MetricDecision(
        allowed=allowed,
        code=code,
        metric=body.metric,
        quantity=body.quantity,
        limit=standing.limit,
        used=standing.used,
        reserved=standing.reserved,
        remaining=standing.remaining,
        reset_at=standing.reset_at,
        plan=plan.plan.code,
        plan_source=plan.source,
        source=standing.source,
        reservation=reservation if allowed else None,
    )


def _feature_decision(
    access: OrgAccess, plan: EffectivePlan, body: schemas.FeatureCheck
) -> schemas.FeatureDecision:
    allowed, source = _feature_terms(plan, body.feature)
    code: schemas.DecisionCode | None = None
    if _is_suspended(access):
        allowed, code = False, "org_suspended"
    elif not allowed:
        code = "feature_not_in_plan"
    return schemas.FeatureDecision(
        allowed=allowed,
        code=code,
        feature=body.feature,
        quantity=body.quantity,
        plan=plan.plan.code,
        plan_source=plan.source,
        source=source,
        reservation=None,
    )


async def check(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    catalog: Catalog,
    body: schemas.MetricCheck | schemas.FeatureCheck,
    now: datetime,
) -> schemas.MetricDecision | schemas.FeatureDecision:
    if isinstance(body, schemas.FeatureCheck):
        return _feature_decision(access, plan, body)
    meter = _meter_for(catalog, body)
    if not body.reserve:
        # A plain check changes nothing, so repeating it is safe: its key is not recorded.
        standing = await _read_standing(session, access, plan, meter, now)
        return _metric_decision(access, plan, body, standing, None)
    org_id = access.organization.id
    if body.idempotency_key is not None:
        stored = await reservations.get_by_key(session, org_id, body.idempotency_key)
        if stored is not None:
            return _replay(stored, body)
    if _is_suspended(access):
        standing = await _read_standing(session, access, plan, meter, now)
        return _metric_decision(access, plan, body, standing, None)
    return await _reserve(session, access, plan, meter, body, now)


async def _reserve(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    meter: Meter | None,
    body: schemas.MetricCheck,
    now: datetime,
) -> schemas.MetricDecision:
    org_id = access.organization.id
    locked = await _lock(session, access, plan, meter, now)
    hold = schemas.ReservationHold(
        id=uuid.uuid4(),
        quantity=body.quantity,
        expires_at=now + timedelta(seconds=body.ttl_seconds),
    )
    if body.idempotency_key is None:
        # The common case in one statement: read the holds and hold, if there is room.
        granted = await reservations.insert_if_room(
            session,
            org_id,
            hold.id,
            body.metric,
            body.quantity,
            hold.expires_at,
            now,
            used=locked.used,
            limit=locked.limit if locked.enforced else None,
        )
        if granted is not None:
            standing = replace(locked, reserved=granted.reserved_before)
            return _metric_decision(access, plan, body, standing, hold)
        standing = replace(locked, reserved=await _held_sweeping(session, org_id, body.metric, now))
        if standing.allows(body.quantity):  # cannot happen under the lock; never promise blind
            raise Conflict("The holds on this metric changed during the check; retry")
        return _metric_decision(access, plan, body, standing, None)
    # With a key the decision is stored with the hold, so it is made before the insert.
    standing = replace(locked, reserved=await _held_sweeping(session, org_id, body.metric, now))
    decision = _metric_decision(access, plan, body, standing, hold)
    inserted = await reservations.insert(
        session,
        {
            "id": hold.id,
            "organization_id": org_id,
            "metric": body.metric,
            "quantity": body.quantity,
            # A refusal is kept only to answer its key again; it never counts.
            "state": ReservationState.HELD if decision.allowed else ReservationState.DENIED,
            "expires_at": hold.expires_at if decision.allowed else now,
            "reserved_before": standing.reserved,
            "committed_quantity": None,
            "idempotency_key": body.idempotency_key,
            "decision": decision.model_dump(mode="json"),
            "created_at": now,
            "settled_at": None,
        },
    )
    if inserted is None:  # the same key won a race on another metric's lock
        stored = await reservations.get_by_key(session, org_id, body.idempotency_key)
        assert stored is not None
        return _replay(stored, body)
    return decision


def _replay(stored: Reservation, body: schemas.MetricCheck) -> schemas.MetricDecision:
    """The first decision for this key, unchanged; the key reused for another check is 409."""
    if stored.metric != body.metric or stored.quantity != body.quantity or stored.decision is None:
        raise Conflict("This idempotency key was already used for a different check")
    return schemas.MetricDecision.model_validate(stored.decision)


# Settling


def reservation_out(row: Any, now: datetime) -> schemas.ReservationOut:
    state = row.state
    if state == ReservationState.HELD and row.expires_at <= now:
        state = ReservationState.EXPIRED
    return schemas.ReservationOut(
        id=row.id,
        metric=row.metric,
        quantity=row.quantity,
        state=state,
        committed_quantity=row.committed_quantity,
        expires_at=row.expires_at,
        created_at=row.created_at,
        settled_at=row.settled_at,
    )


async def get_reservation(
    session: AsyncSession, access: OrgAccess, reservation_id: uuid.UUID, now: datetime
) -> schemas.ReservationOut:
    row = await reservations.get(session, access.organization.id, reservation_id)
    if row is None or row.state == ReservationState.DENIED:
        raise NotFound("Reservation not found")
    return reservation_out(row, now)


async def commit(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    catalog: Catalog,
    reservation_id: uuid.UUID,
    body: schemas.ReservationCommit,
    now: datetime,
) -> schemas.ReservationOut:
    """Records the held usage (or spends the held credits) exactly once: the conditional
    update decides which of any racing settlements wins, and only the winner records."""
    org_id = access.organization.id
    settled = await reservations.commit(session, org_id, reservation_id, body.quantity, now)
    if settled is None:
        return await _settled_before(session, access, reservation_id, "commit", body.quantity, now)
    quantity = settled.committed_quantity
    assert quantity is not None
    key = system_key("reservation", reservation_id)
    if settled.metric == CREDITS_METRIC:
        await credits.consume_reserved(
            session, org_id, plan, quantity, key, f"Reservation {reservation_id}", now
        )
        return reservation_out(settled, now)
    meter = catalog.meters.get(settled.metric)
    if meter is None:
        raise Conflict(f"Metric {settled.metric} is no longer in the plan catalog")
    if quantity != quantity.to_integral_value():
        # Raising rolls the commit back: the hold stays as it was.
        raise _error("quantity", f"{meter.name} is counted in whole units", "whole_units")
    await usage.record_reserved(
        session, org_id, plan, meter, int(quantity), _period(plan, now), key, now
    )
    return reservation_out(settled, now)


async def release(
    session: AsyncSession, access: OrgAccess, reservation_id: uuid.UUID, now: datetime
) -> schemas.ReservationOut:
    settled = await reservations.release(session, access.organization.id, reservation_id, now)
    if settled is None:
        return await _settled_before(session, access, reservation_id, "release", None, now)
    return reservation_out(settled, now)


async def _settled_before(
    session: AsyncSession,
    access: OrgAccess,
    reservation_id: uuid.UUID,
    action: Literal["commit", "release"],
    quantity: Decimal | None,
    now: datetime,
) -> schemas.ReservationOut:
    """Why the conditional update matched nothing: another org's or no reservation (404),
    the same settlement again (its stored outcome), the other settlement or expiry (409),
    or more than was held (422)."""
    row = await reservations.get(session, access.organization.id, reservation_id)
    if row is None or row.state == ReservationState.DENIED:
        raise NotFound("Reservation not found")
    done = ReservationState.COMMITTED if action == "commit" else ReservationState.RELEASED
    if row.state == done:
        if quantity is not None and row.committed_quantity != quantity:
            raise Conflict(
                f"Reservation was already committed with quantity {row.committed_quantity}"
            )
        return reservation_out(row, now)
    if row.state in (ReservationState.COMMITTED, ReservationState.RELEASED):
        raise Conflict(f"Reservation was already {row.state}")
    if row.expires_at <= now or row.state == ReservationState.EXPIRED:
        raise Conflict("Reservation expired; it no longer holds anything")
    if quantity is not None and quantity > row.quantity:
        raise _error("quantity", f"At most the reserved quantity ({row.quantity})", "over_reserved")
    raise Conflict("Reservation changed while being settled; retry")
