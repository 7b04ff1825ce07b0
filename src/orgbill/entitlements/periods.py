"""Billing periods, derived rather than stored: counters key their totals by the start of
the period an event falls in, so a new period simply starts at zero (no reset job).

The one computation of "the current period": the resolver puts its answer on the
`EffectivePlan`, and every route (profile, composite, plans, usage, quota headers, credits)
reads it from there. Pure: no I/O, no clock.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from orgbill.kit.time import as_utc

# Gauges are levels, not per-period sums: they keep one total under this fixed "period".
GAUGE_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CALENDAR_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Period:
    """Half-open [start, end): an event exactly at `end` belongs to the next period."""

    start: datetime
    end: datetime

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def add_months(anchor: datetime, months: int) -> datetime:
    """Stripe's rule: same day of month as the anchor, clamped to the month's last day
    (an anchor on Jan 31 gives Feb 28/29, then Mar 31)."""
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def months_between(start: datetime, end: datetime) -> int:
    months = (end.year - start.year) * 12 + end.month - start.month
    return max(1, months)


def period_from_anchor(anchor: datetime, months: int, at: datetime) -> Period:
    """The period of `months` months, counted from `anchor`, that contains `at`."""
    anchor, at = as_utc(anchor), as_utc(at)
    # Estimate the index from the calendar distance, then correct for day/time of month.
    index = ((at.year - anchor.year) * 12 + at.month - anchor.month) // months
    start = add_months(anchor, index * months)
    while start > at:
        index -= 1
        start = add_months(anchor, index * months)
    while (end := add_months(anchor, (index + 1) * months)) <= at:
        index += 1
        start = end
    return Period(start, end)


@dataclass(frozen=True, slots=True)
class PeriodBasis:
    """What an organization's periods are counted from: the applying Stripe subscription's
    stored period, else the applying enterprise contract's start, else the calendar month."""

    stripe_period: Period | None = None
    contract_starts_at: datetime | None = None


def billing_period(basis: PeriodBasis, at: datetime) -> Period:
    """The period containing `at`: the Stripe subscription's own period when one applies
    (stepped by its length when `at` lies outside it, e.g. before the renewal webhook
    arrived), the enterprise contract's monthly anniversary, else the UTC calendar month."""
    at = as_utc(at)
    if basis.stripe_period is not None:
        stripe_period = basis.stripe_period
        if stripe_period.contains(at):
            return stripe_period
        start, end = stripe_period.start, stripe_period.end
        months = months_between(start, end)
        # The next period starts exactly where this one ends. A period of whole months is
        # stepped from its start, so an anchor on the 29th-31st keeps its day past a short
        # month (Jan 31 -> Feb 28 -> Mar 31, not Mar 28); a shorter one (a trial) from its
        # end, where the billing anchor then is.
        whole_months = add_months(start, months) == end
        anchor = end if at >= end and not whole_months else start
        return period_from_anchor(anchor, months, at)
    if basis.contract_starts_at is not None:
        return period_from_anchor(basis.contract_starts_at, 1, at)
    return period_from_anchor(_CALENDAR_ANCHOR, 1, at)
