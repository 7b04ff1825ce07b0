"""Credits: grants drawn down by consumption, written off at expiry, topped up monthly, by
admins and by purchases — and a ledger with one entry per movement whose sum is the balance.

Every write first takes the org's credit lock (its balance row), then records what has become
due (ledger.settle: expiries, monthly allowances), then does its own movement, and finally
moves the balance row by the net amount in one conditional statement. Reads compute the same
settlement without writing, so they show what the next write will record.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.audit import repository as audit
from orgbill.auth.principal import OrgAccess
from orgbill.credits import ledger, repository, schemas
from orgbill.credits.ledger import Allowance, GrantState, Settlement
from orgbill.entitlements.repository import BalanceState
from orgbill.entitlements.resolver import EffectivePlan
from orgbill.errors import Conflict, InsufficientCredits, LimitExceeded, ValidationFailed
from orgbill.kit.pagination import PageParams
from orgbill.kit.time import as_utc, isoformat_z
from orgbill.kit.types import system_key
from orgbill.models import CreditEntryKind, CreditGrantKind, CreditLedgerEntry, Organization
from orgbill.reservations import repository as reservations
from orgbill.reservations.repository import CREDITS_METRIC
from orgbill.webhooks_out import outbox

logger = logging.getLogger("orgbill.credits")


def max_credits(plan: EffectivePlan) -> int | None:
    return plan.limits.count("max_credits")


def extra_credit_price(plan: EffectivePlan) -> Decimal:
    return plan.limits.money("extra_credit_price")


def allowance(plan: EffectivePlan, now: datetime) -> Allowance:
    """The one place credits read the plan's period: its allowance months begun by `now` (the
    instant the ledger is settled at; the plan may have been resolved a moment earlier)."""
    cap = max_credits(plan)
    return Allowance(
        monthly=Decimal(plan.limits.count("monthly_credits") or 0),
        cap=Decimal(cap) if cap is not None else None,
        rollover=plan.plan.credits_rollover,
        months=ledger.allowance_months(plan.period_at(now), now),
    )


def ensure_covers(total: Decimal, held: Decimal, requested: Decimal) -> None:
    """The consume check, in one place: the settled total less what reservations hold must
    cover the request."""
    available = max(Decimal(0), total - held)
    if requested > available:
        raise InsufficientCredits(
            f"Not enough credits: {available} available"
            + (f" ({held} held by reservations)" if held else "")
            + f", {requested} requested",
            details={
                "available": str(available),
                "reserved": str(held),
                "requested": str(requested),
            },
        )


# Reads (never write)


async def total_credits(
    session: AsyncSession, access: OrgAccess, plan: EffectivePlan, now: datetime
) -> Decimal:
    """`total_credits` as every read shows it, from the balance row prefetched with the
    caller's identity when there is one (no extra round trip)."""
    org_id = access.organization.id
    state = (
        access.plan_inputs.credit_balance
        if access.plan_inputs is not None
        else await repository.get_balance(session, org_id)
    )
    return await total_from_balance(session, org_id, plan, now, state)


async def total_from_balance(
    session: AsyncSession,
    org_id: uuid.UUID,
    plan: EffectivePlan,
    now: datetime,
    state: BalanceState | None,
) -> Decimal:
    """The grants are read only when one may have expired since the last write."""
    grants = (
        await repository.live_grants(session, org_id)
        if ledger.may_have_expired(state, now)
        else None
    )
    return ledger.settle(org_id, state, grants, allowance(plan, now), now).total


def _grant_schema(grant: GrantState) -> schemas.CreditGrantOut:
    return schemas.CreditGrantOut(
        id=grant.id,
        kind=grant.kind,
        amount=grant.amount,
        remaining=grant.remaining,
        expires_at=grant.expires_at,
        created_at=grant.created_at,
    )


def _pending_entries(org_id: uuid.UUID, settlement: Settlement) -> list[schemas.CreditEntry]:
    """What the next write will enter, with the ids and times it will use."""
    entries = [
        schemas.CreditEntry(
            id=due.entry_id,
            kind=CreditEntryKind.EXPIRY,
            amount=-due.grant.remaining,
            idempotency_key=due.idempotency_key,
            reason=_expiry_reason(due.at),
            actor_user_id=None,
            grant_id=due.grant.id,
            created_at=due.at,
            pending=True,
        )
        for due in settlement.expiries
    ] + [
        schemas.CreditEntry(
            id=due.entry_id,
            kind=CreditEntryKind.MONTHLY,
            amount=due.grant.amount,
            idempotency_key=due.idempotency_key,
            reason=_monthly_reason(due),
            actor_user_id=None,
            grant_id=due.grant.id,
            created_at=due.grant.created_at,
            pending=True,
        )
        for due in settlement.monthly
    ]
    return sorted(entries, key=lambda e: (e.created_at, str(e.id)), reverse=True)


async def overview(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    params: PageParams,
    now: datetime,
) -> schemas.Credits:
    org_id = access.organization.id
    state = await repository.get_balance(session, org_id)
    grants = await repository.live_grants(session, org_id)
    settlement = ledger.settle(org_id, state, grants, allowance(plan, now), now)
    rows = await repository.list_entries(session, org_id, params)
    # Entries not yet written are listed where their (created_at, id) puts them, as if they
    # were: so a page holds at most `limit`, and the cursor after it pages through both.
    pending = [
        entry
        for entry in _pending_entries(org_id, settlement)
        if params.cursor is None or _ledger_key(entry) < params.cursor
    ]
    merged = sorted([*pending, *map(_entry_schema, rows)], key=_ledger_key, reverse=True)
    page = merged[: params.limit]
    cursor = params.codec.encode(*_ledger_key(page[-1])) if len(merged) > params.limit else None
    assert settlement.live is not None
    return schemas.Credits(
        total_credits=settlement.total,
        max_credits=max_credits(plan),
        extra_credit_price=extra_credit_price(plan),
        pending_monthly_grant=settlement.pending_monthly,
        grants=[_grant_schema(grant) for grant in settlement.live],
        ledger=page,
        next_cursor=cursor,
    )


def _ledger_key(entry: schemas.CreditEntry) -> tuple[datetime, uuid.UUID]:
    """The ledger's keyset order (repository.LEDGER_KEYSET), newest first when reversed."""
    return as_utc(entry.created_at), entry.id


def _entry_schema(row: CreditLedgerEntry) -> schemas.CreditEntry:
    return schemas.CreditEntry.model_validate(row)


# Writes


@dataclass(slots=True)
class _Unit:
    """A credit write in progress: the org's credit lock is held, what was due is recorded."""

    org_id: uuid.UUID
    now: datetime
    settlement: Settlement
    max_credits: int | None  # the plan's, for credits.low
    live: list[GrantState] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return self.settlement.total

    @property
    def peak_total(self) -> Decimal:
        """The highest the balance stood in this unit before its own movement: as last
        recorded, or once what became due was written (expiries first, then a month's
        credits). credits.low compares the final balance with it."""
        recorded = self.settlement.total - self.settlement.delta
        return max(recorded, self.settlement.total)


def _changed() -> Conflict:
    # Only reachable if something wrote credits without the lock: refuse rather than guess.
    return Conflict("The organization's credits changed concurrently; retry")


def _expiry_reason(at: datetime) -> str:
    return f"Remainder expired at {isoformat_z(at)}"


def _monthly_reason(due: ledger.DueMonthly) -> str:
    return f"Monthly credits for {isoformat_z(due.month.start)} to {isoformat_z(due.month.end)}"


async def _insert_system_entry(
    session: AsyncSession,
    org_id: uuid.UUID,
    kind: CreditEntryKind,
    amount: Decimal,
    at: datetime,
    *,
    idempotency_key: str,
    **fields: Any,
) -> None:
    """An entry orgbill writes itself: exactly once already (the grant write before it
    decided that), so its key cannot have been used by orgbill. A client's key of that form
    stored before such keys were refused (kit/types.py) would make the keyed insert a no-op
    and the ledger stop summing to the balance: then it is written without its key."""
    keyed = await repository.insert_entry(
        session, org_id, kind, amount, at, idempotency_key=idempotency_key, **fields
    )
    if keyed is None:
        logger.error(
            "a client key took a system ledger key; entry written without it",
            extra={"organizationId": str(org_id), "idempotencyKey": idempotency_key},
        )
        await repository.insert_entry(session, org_id, kind, amount, at, **fields)


async def _record_settlement(
    session: AsyncSession, org_id: uuid.UUID, settlement: Settlement, now: datetime
) -> None:
    for expiry in settlement.expiries:
        if not await repository.expire_grant(
            session, org_id, expiry.grant.id, expiry.grant.remaining, now
        ):
            raise _changed()
        await _insert_system_entry(
            session,
            org_id,
            CreditEntryKind.EXPIRY,
            -expiry.grant.remaining,
            expiry.at,
            entry_id=expiry.entry_id,
            idempotency_key=expiry.idempotency_key,
            reason=_expiry_reason(expiry.at),
            grant_id=expiry.grant.id,
        )
    for monthly in settlement.monthly:
        if not await repository.insert_grant(
            session, org_id, monthly.grant, allowance_month=monthly.month.start
        ):
            raise _changed()
        await _insert_system_entry(
            session,
            org_id,
            CreditEntryKind.MONTHLY,
            monthly.grant.amount,
            monthly.grant.created_at,
            entry_id=monthly.entry_id,
            idempotency_key=monthly.idempotency_key,
            reason=_monthly_reason(monthly),
            grant_id=monthly.grant.id,
        )


async def _open(
    session: AsyncSession, org_id: uuid.UUID, plan: EffectivePlan, now: datetime
) -> _Unit:
    state = await repository.lock_balance(session, org_id, now)
    grants = await repository.live_grants(session, org_id)
    settlement = ledger.settle(org_id, state, grants, allowance(plan, now), now)
    await _record_settlement(session, org_id, settlement, now)
    assert settlement.live is not None
    return _Unit(
        org_id=org_id,
        now=now,
        settlement=settlement,
        max_credits=max_credits(plan),
        live=list(settlement.live),
    )


async def _close(
    session: AsyncSession, unit: _Unit, movement: Decimal, *, ceiling: Decimal | None = None
) -> Decimal | None:
    """Moves the balance row by what became due plus this write's own `movement`; emits
    credits.low when the two together took the recorded balance below the mark (an expiry
    written here is a fall like a consume)."""
    new_balance = await repository.apply_balance(
        session,
        unit.org_id,
        unit.settlement.delta + movement,
        unit.now,
        monthly_granted_for=unit.settlement.granted_for,
        next_expiry_at=ledger.next_expiry(unit.live),
        ceiling=ceiling,
    )
    if new_balance is not None:
        await outbox.credits_low(
            session, unit.org_id, unit.peak_total, new_balance, unit.max_credits
        )
    return new_balance


async def consume(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor_user_id: uuid.UUID | None,
    plan: EffectivePlan,
    body: schemas.CreditConsume,
    now: datetime,
) -> Decimal:
    unit = await _open(session, org_id, plan, now)
    entry_id = await repository.insert_entry(
        session,
        org_id,
        CreditEntryKind.CONSUME,
        -body.amount,
        now,
        idempotency_key=body.idempotency_key,
        reason=body.reason,
        actor_user_id=actor_user_id,
    )
    if entry_id is None:
        await _check_replay(session, org_id, body)
        await _close(session, unit, Decimal(0))
        return unit.total
    # Read under the credit lock (reservations take it too): credits held by reservations
    # are spoken for. Raising rolls back everything above: a refused consume leaves no trace
    # and its key stays free for a retry.
    held = await reservations.held_quantity(session, org_id, CREDITS_METRIC, now)
    ensure_covers(unit.total, held, body.amount)
    return await _spend(session, unit, body.amount)


async def _spend(session: AsyncSession, unit: _Unit, amount: Decimal) -> Decimal:
    """Draws `amount` (already checked) from the grants in draw order and closes the unit."""
    draws, unit.live = ledger.draws_for(unit.live, amount)
    for draw in draws:
        if not await repository.draw_from_grant(session, unit.org_id, draw.grant_id, draw.amount):
            raise _changed()
    new_balance = await _close(session, unit, -amount)
    if new_balance is None:  # the balance row disagrees with the grants
        raise _changed()
    return new_balance


async def lock_for_hold(
    session: AsyncSession, org_id: uuid.UUID, plan: EffectivePlan, now: datetime
) -> Decimal:
    """The settled total (what was due written), under the credit lock every credit movement
    takes: holds read after this are complete."""
    unit = await _open(session, org_id, plan, now)
    if await _close(session, unit, Decimal(0)) is None:
        raise _changed()
    return unit.total


async def consume_reserved(
    session: AsyncSession,
    org_id: uuid.UUID,
    plan: EffectivePlan,
    amount: Decimal,
    idempotency_key: str,
    reason: str,
    now: datetime,
) -> Decimal:
    """Spends credits a reservation held: one ledger entry, keyed so it is written once. The
    hold kept them apart, so only the total itself can refuse, e.g. after credits expired."""
    unit = await _open(session, org_id, plan, now)
    entry_id = await repository.insert_entry(
        session,
        org_id,
        CreditEntryKind.CONSUME,
        -amount,
        now,
        idempotency_key=idempotency_key,
        reason=reason,
    )
    if entry_id is None:
        raise Conflict(f"Credits keyed {idempotency_key!r} were already consumed")
    if amount > unit.total:
        raise InsufficientCredits(f"Not enough credits to commit {amount} held credits")
    return await _spend(session, unit, amount)


async def _check_replay(
    session: AsyncSession, org_id: uuid.UUID, body: schemas.CreditConsume
) -> None:
    """A repeated key changes nothing, unless it is being reused for a different consumption
    (Stripe's rule: that is an error)."""
    original = await repository.get_entry_by_key(session, org_id, body.idempotency_key)
    if (
        original is None
        or original.kind != CreditEntryKind.CONSUME
        or (-original.amount != body.amount)
    ):
        raise Conflict("This idempotency key was already used for a different operation")


async def grant(
    session: AsyncSession,
    org: Organization,
    plan: EffectivePlan,
    body: schemas.CreditGrant,
    actor_user_id: uuid.UUID,
    now: datetime,
) -> schemas.CreditGranted:
    """An admin grant, capped by the plan's max_credits; audited in the same transaction."""
    if body.expires_at is not None and body.expires_at <= now:
        raise ValidationFailed(
            "expires_at must be in the future",
            details=[{"loc": ["body", "expires_at"], "msg": "must be in the future"}],
        )
    unit = await _open(session, org.id, plan, now)
    cap = max_credits(plan)
    if cap is not None and unit.total + body.amount > cap:
        raise LimitExceeded(
            f"The {plan.plan.name} plan caps credits at {cap}; the balance is {unit.total}",
            details={"limit": "max_credits", "value": cap, "balance": str(unit.total)},
        )
    new_grant = GrantState(
        id=uuid.uuid4(),
        kind=body.kind,
        amount=body.amount,
        remaining=body.amount,
        expires_at=body.expires_at,
        created_at=now,
    )
    await repository.insert_grant(session, org.id, new_grant)
    entry_id = await repository.insert_entry(
        session,
        org.id,
        body.kind,
        body.amount,
        now,
        reason=body.reason,
        actor_user_id=actor_user_id,
        grant_id=new_grant.id,
    )
    assert entry_id is not None  # no idempotency key, so nothing can conflict
    unit.live.append(new_grant)
    new_balance = await _close(
        session, unit, body.amount, ceiling=Decimal(cap) if cap is not None else None
    )
    if new_balance is None:
        raise _changed()
    await audit.record(
        session,
        actor_user_id=actor_user_id,
        action="credits.grant",
        organization_id=org.id,
        details={
            "amount": str(body.amount),
            "kind": body.kind,
            "expires_at": isoformat_z(body.expires_at) if body.expires_at else None,
            "reason": body.reason,
            "grant_id": str(new_grant.id),
            "entry_id": str(entry_id),
        },
    )
    entry = schemas.CreditEntry(
        id=entry_id,
        kind=body.kind,
        amount=body.amount,
        idempotency_key=None,
        reason=body.reason,
        actor_user_id=actor_user_id,
        grant_id=new_grant.id,
        created_at=now,
    )
    return schemas.CreditGranted(
        entry=entry, grant=_grant_schema(new_grant), total_credits=new_balance
    )


async def record_purchase(
    session: AsyncSession,
    org_id: uuid.UUID,
    plan: EffectivePlan,
    checkout_session_id: str,
    quantity: Decimal,
    now: datetime,
) -> bool:
    """Adds the `purchase` grant of a paid Checkout session, once per session however often
    it is reported; paid for, so not capped by max_credits. False when already added."""
    if (
        await repository.grant_for_checkout_session(session, org_id, checkout_session_id)
        is not None
    ):
        return False  # the common duplicate: no lock taken
    unit = await _open(session, org_id, plan, now)
    purchase = GrantState(
        id=uuid.uuid4(),
        kind=CreditGrantKind.PURCHASE,
        amount=quantity,
        remaining=quantity,
        expires_at=None,
        created_at=now,
    )
    added = await repository.insert_grant(
        session, org_id, purchase, stripe_checkout_session_id=checkout_session_id
    )
    if added:
        await _insert_system_entry(
            session,
            org_id,
            CreditEntryKind.PURCHASE,
            quantity,
            now,
            idempotency_key=system_key("checkout", checkout_session_id),
            reason=f"Bought through Stripe Checkout session {checkout_session_id}",
            grant_id=purchase.id,
        )
        unit.live.append(purchase)
    if await _close(session, unit, quantity if added else Decimal(0)) is None:
        raise _changed()
    return added
