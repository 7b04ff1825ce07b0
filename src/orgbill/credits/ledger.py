"""The rules of credit grants, pure (no I/O, no clock), so a read can show exactly what the
next write will record ("derive, don't schedule"):

- what has become due at `now`: expired remainders to write off, monthly allowances to grant;
- the order consumption draws from grants, and how much from each.

Reads call `settle` to display; writes call the same `settle` under the org's credit lock and
record its result, so what a read shows and what the write records cannot differ.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from orgbill.entitlements.periods import Period, add_months, months_between
from orgbill.entitlements.repository import BalanceState
from orgbill.kit.time import isoformat_z
from orgbill.kit.types import system_key
from orgbill.models import CreditGrantKind

ZERO = Decimal(0)
_NEVER = datetime.max.replace(tzinfo=UTC)
# Ids of records that are derived before they are written: a read shows the id the write uses.
_DERIVED_IDS = uuid.UUID("6f1c0f57-2b41-4d8e-9a51-6c1e2f0b7d14")
# Ties on expiry: spend what was given away before what was paid for.
_KIND_ORDER = {
    CreditGrantKind.PROMOTIONAL: 0,
    CreditGrantKind.MONTHLY: 1,
    CreditGrantKind.GRANT: 2,
    CreditGrantKind.PURCHASE: 3,
}


@dataclass(frozen=True, slots=True)
class GrantState:
    id: uuid.UUID
    kind: str
    amount: Decimal
    remaining: Decimal
    expires_at: datetime | None
    created_at: datetime

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def may_have_expired(state: BalanceState | None, now: datetime) -> bool:
    """Whether a grant may have expired since the last write (else the grants need no read)."""
    return state is not None and state.next_expiry_at is not None and state.next_expiry_at <= now


@dataclass(frozen=True, slots=True)
class Allowance:
    """The plan's monthly credits: `monthly` per allowance month (capped by `cap`), for the
    months of the current billing period that have begun."""

    monthly: Decimal
    cap: Decimal | None
    rollover: bool
    months: tuple[Period, ...]


@dataclass(frozen=True, slots=True)
class DueMonthly:
    grant: GrantState
    month: Period
    entry_id: uuid.UUID

    @property
    def idempotency_key(self) -> str:
        return system_key("monthly-credits", isoformat_z(self.month.start))


@dataclass(frozen=True, slots=True)
class DueExpiry:
    grant: GrantState
    entry_id: uuid.UUID

    @property
    def at(self) -> datetime:
        assert self.grant.expires_at is not None
        return self.grant.expires_at

    @property
    def idempotency_key(self) -> str:
        return system_key("expiry", self.grant.id)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What is due at `now`, and the org's credits once it is recorded."""

    expiries: tuple[DueExpiry, ...]
    monthly: tuple[DueMonthly, ...]
    # Unexpired grants with credits left, due monthly ones included; None when the grants
    # were not read (nothing can have expired, see BalanceState.may_have_expired).
    live: tuple[GrantState, ...] | None
    total: Decimal
    granted_for: datetime | None

    @property
    def delta(self) -> Decimal:
        """How recording this moves the balance row."""
        added = sum((due.grant.amount for due in self.monthly), ZERO)
        return added - sum((due.grant.remaining for due in self.expiries), ZERO)

    @property
    def pending_monthly(self) -> Decimal:
        return sum((due.grant.amount for due in self.monthly), ZERO)


def allowance_months(billing: Period, now: datetime) -> tuple[Period, ...]:
    """The months of the billing period that have begun by `now`: the period itself when it is
    a month (Stripe's own clamping of month ends stays Stripe's), else calendar months of its
    anchor — a yearly plan gets twelve."""
    count = months_between(billing.start, billing.end)
    if count <= 1:
        return (billing,) if billing.start <= now else ()
    months = []
    for index in range(count):
        start = add_months(billing.start, index)
        if start > now:
            break
        end = billing.end if index == count - 1 else add_months(billing.start, index + 1)
        months.append(Period(start, end))
    return tuple(months)


def _derived_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(_DERIVED_IDS, ":".join(str(part) for part in parts))


def monthly_grant_id(org_id: uuid.UUID, month: Period) -> uuid.UUID:
    return _derived_id(org_id, "monthly", isoformat_z(month.start))


def expiry_entry_id(grant_id: uuid.UUID) -> uuid.UUID:
    return _derived_id(grant_id, "expiry")


def _due_months(allowance: Allowance, granted_for: datetime | None, now: datetime) -> list[Period]:
    due = [m for m in allowance.months if granted_for is None or m.start > granted_for]
    if not allowance.rollover:
        # A past month's allowance without rollover has already expired: nothing to grant.
        due = [m for m in due if m.end > now]
    return due


def settle(
    org_id: uuid.UUID,
    state: BalanceState | None,
    grants: Sequence[GrantState] | None,
    allowance: Allowance,
    now: datetime,
) -> Settlement:
    """`grants`: the org's grants with credits left (may be None when `state` says none can
    have expired). Expiries are taken first, then each due month's allowance, trimmed so the
    total stays within `cap`."""
    balance = state.balance if state is not None else ZERO
    granted_for = state.monthly_granted_for if state is not None else None
    expiries: list[DueExpiry] = []
    live: list[GrantState] | None = None
    total = balance
    if grants is not None:
        live = []
        for grant in grants:
            if grant.expired(now):
                expiries.append(DueExpiry(grant, expiry_entry_id(grant.id)))
                total -= grant.remaining
            elif grant.remaining > 0:
                live.append(grant)
    monthly: list[DueMonthly] = []
    for month in _due_months(allowance, granted_for, now):
        granted_for = month.start
        amount = allowance.monthly
        if allowance.cap is not None:
            amount = max(ZERO, min(amount, allowance.cap - total))
        if amount <= 0:
            continue  # trimmed away by the cap: the month counts as granted
        grant = GrantState(
            id=monthly_grant_id(org_id, month),
            kind=CreditGrantKind.MONTHLY,
            amount=amount,
            remaining=amount,
            expires_at=None if allowance.rollover else month.end,
            created_at=month.start,
        )
        monthly.append(DueMonthly(grant, month, _derived_id(grant.id, "entry")))
        total += amount
        if live is not None:
            live.append(grant)
    return Settlement(
        expiries=tuple(expiries),
        monthly=tuple(monthly),
        live=tuple(draw_order(live)) if live is not None else None,
        total=total,
        granted_for=granted_for,
    )


def draw_order(grants: Sequence[GrantState]) -> list[GrantState]:
    """Soonest expiry first, never-expiring last; ties: promotional before purchase, then
    oldest."""

    def key(grant: GrantState) -> tuple[bool, datetime, int, datetime, str]:
        return (
            grant.expires_at is None,
            grant.expires_at or _NEVER,
            _KIND_ORDER.get(grant.kind, len(_KIND_ORDER)),
            grant.created_at,
            str(grant.id),
        )

    return sorted(grants, key=key)


@dataclass(frozen=True, slots=True)
class Draw:
    grant_id: uuid.UUID
    amount: Decimal


def draws_for(live: Sequence[GrantState], amount: Decimal) -> tuple[list[Draw], list[GrantState]]:
    """How `amount` is taken from grants already in draw order, and the grants after it.
    The caller has checked the grants cover it."""
    draws: list[Draw] = []
    after: list[GrantState] = []
    left = amount
    for grant in live:
        take = min(grant.remaining, left)
        if take > 0:
            draws.append(Draw(grant.id, take))
            left -= take
        if grant.remaining > take:
            after.append(replace(grant, remaining=grant.remaining - take))
    assert left == 0, "draws_for needs grants that cover the amount"
    return draws, after


def next_expiry(live: Sequence[GrantState]) -> datetime | None:
    return min((g.expires_at for g in live if g.expires_at and g.remaining > 0), default=None)
