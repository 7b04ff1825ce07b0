"""The credit ledger: grants, consumption, purchases and expiry as append-only entries whose
sum is the balance. The balance row moves in the same transaction as each entry, only
through conditional atomic statements, so the two cannot diverge and it never goes below
zero. The plan's monthly credits are granted lazily, once per billing period, by the first
credit movement of that period (no job)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from orgbill.audit import repository as audit
from orgbill.auth.principal import OrgAccess
from orgbill.credits import repository, schemas
from orgbill.entitlements.periods import Period
from orgbill.entitlements.repository import BalanceState
from orgbill.entitlements.resolver import EffectivePlan
from orgbill.errors import Conflict, InsufficientCredits, LimitExceeded
from orgbill.kit.pagination import PageParams, build_page
from orgbill.kit.time import isoformat_z
from orgbill.models import CreditBalance, CreditEntryKind, Organization
from orgbill.reservations import repository as reservations
from orgbill.reservations.repository import CREDITS_METRIC


def monthly_grant_amount(plan: EffectivePlan, balance: Decimal) -> Decimal:
    """The plan's monthly credits, capped so the balance never passes max_credits."""
    monthly = Decimal(plan.limits.count("monthly_credits") or 0)
    cap = plan.limits.count("max_credits")
    if cap is None:
        return monthly
    return max(Decimal(0), min(monthly, Decimal(cap) - balance))


def _grant_is_due(state: BalanceState | None, period: Period) -> bool:
    return state is None or state.monthly_granted_for != period.start


def displayed_balance(
    state: CreditBalance | BalanceState | None, plan: EffectivePlan
) -> tuple[Decimal, Decimal]:
    """(total_credits, the part of it that is this period's not-yet-written monthly grant).
    Pure, so the profile read can show it without writing."""
    balance = state.balance if state is not None else Decimal(0)
    snapshot = BalanceState(balance, state.monthly_granted_for) if state is not None else None
    pending = (
        monthly_grant_amount(plan, balance) if _grant_is_due(snapshot, plan.period) else Decimal(0)
    )
    return balance + pending, pending


async def total_credits(
    session: AsyncSession, access: OrgAccess, plan: EffectivePlan, now: datetime
) -> Decimal:
    """`total_credits` as every read shows it, from the balance prefetched with the caller's
    identity when there is one (no extra round trip)."""
    inputs = access.plan_inputs
    state = (
        inputs.credit_balance
        if inputs is not None
        else await repository.get_balance(session, access.organization.id)
    )
    return displayed_balance(state, plan)[0]


async def ensure_monthly_grant(
    session: AsyncSession, org_id: uuid.UUID, plan: EffectivePlan, now: datetime
) -> None:
    period = plan.period
    if not _grant_is_due(await repository.get_balance(session, org_id), period):
        return
    locked = await repository.lock_balance(session, org_id, now)
    if not _grant_is_due(locked, period):  # a concurrent request granted it while we waited
        return
    amount = monthly_grant_amount(plan, locked.balance)
    # The key makes "once per org and period" a database guarantee, not just this check's.
    inserted = await repository.insert_entry(
        session,
        org_id,
        CreditEntryKind.GRANT,
        amount,
        now,
        idempotency_key=f"monthly-credits:{isoformat_z(period.start)}",
        reason=f"Monthly credits of the {plan.plan.name} plan for the period from "
        f"{isoformat_z(period.start)}",
    )
    if inserted is not None and amount > 0:
        await repository.credit_balance(session, org_id, amount, now, ceiling=None)
    await repository.mark_monthly_granted(session, org_id, period.start, now)


async def consume(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    body: schemas.CreditConsume,
    now: datetime,
) -> Decimal:
    org_id = access.organization.id
    await ensure_monthly_grant(session, org_id, plan, now)
    entry_id = await repository.insert_entry(
        session,
        org_id,
        CreditEntryKind.CONSUME,
        -body.amount,
        now,
        idempotency_key=body.idempotency_key,
        reason=body.reason,
        actor_user_id=access.actor_user_id,
    )
    if entry_id is None:
        return await _replayed_consume(session, org_id, body)
    new_balance = await repository.debit_balance(session, org_id, body.amount, now)
    # Read after the debit locked the balance row (reservations take it too): credits held
    # by reservations are spoken for, so what stays must still cover them.
    held = await reservations.held_quantity(session, org_id, CREDITS_METRIC, now)
    if new_balance is None or new_balance < held:
        state = await repository.get_balance(session, org_id)
        balance = state.balance if state else Decimal(0)
        if new_balance is not None:
            balance += body.amount  # this consume's debit is about to roll back
        available = max(Decimal(0), balance - held)
        # Raising rolls back the entry above: a refused consume leaves no trace and its key
        # stays free for a retry.
        raise InsufficientCredits(
            f"Not enough credits: {available} available"
            + (f" ({held} held by reservations)" if held else "")
            + f", {body.amount} requested",
            details={
                "available": str(available),
                "reserved": str(held),
                "requested": str(body.amount),
            },
        )
    return new_balance


async def lock_for_hold(
    session: AsyncSession, org_id: uuid.UUID, plan: EffectivePlan, now: datetime
) -> Decimal:
    """The balance with this period's monthly credits written, under the balance row's lock
    that every credit movement takes: holds read after this are complete."""
    await ensure_monthly_grant(session, org_id, plan, now)
    return (await repository.lock_balance(session, org_id, now)).balance


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
    hold kept them apart, so only the balance itself (never below zero) can refuse, e.g.
    after credits were taken away by an admin."""
    await ensure_monthly_grant(session, org_id, plan, now)
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
    new_balance = await repository.debit_balance(session, org_id, amount, now)
    if new_balance is None:
        raise InsufficientCredits(f"Not enough credits to commit {amount} held credits")
    return new_balance


async def _replayed_consume(
    session: AsyncSession, org_id: uuid.UUID, body: schemas.CreditConsume
) -> Decimal:
    """A repeated key answers with the current balance and changes nothing, unless it is
    being reused for a different consumption (Stripe's rule: that is an error)."""
    original = await repository.get_entry_by_key(session, org_id, body.idempotency_key)
    if (
        original is None
        or original.kind != CreditEntryKind.CONSUME
        or (-original.amount != body.amount)
    ):
        raise Conflict("This idempotency key was already used for a different operation")
    state = await repository.get_balance(session, org_id)
    return state.balance if state else Decimal(0)


async def grant(
    session: AsyncSession,
    org: Organization,
    plan: EffectivePlan,
    body: schemas.CreditGrant,
    actor_user_id: uuid.UUID,
    now: datetime,
) -> schemas.CreditGranted:
    """An admin grant, capped by the plan's max_credits; audited in the same transaction."""
    await ensure_monthly_grant(session, org.id, plan, now)
    cap = plan.limits.count("max_credits")
    new_balance = await repository.credit_balance(
        session, org.id, body.amount, now, ceiling=Decimal(cap) if cap is not None else None
    )
    if new_balance is None:
        state = await repository.get_balance(session, org.id)
        balance = state.balance if state else Decimal(0)
        raise LimitExceeded(
            f"The {plan.plan.name} plan caps credits at {cap}; the balance is {balance}",
            details={"limit": "max_credits", "value": cap, "balance": str(balance)},
        )
    entry_id = await repository.insert_entry(
        session,
        org.id,
        CreditEntryKind.GRANT,
        body.amount,
        now,
        reason=body.reason,
        actor_user_id=actor_user_id,
    )
    assert entry_id is not None  # no idempotency key, so nothing can conflict
    await audit.record(
        session,
        actor_user_id=actor_user_id,
        action="credits.grant",
        organization_id=org.id,
        details={"amount": str(body.amount), "reason": body.reason, "entry_id": str(entry_id)},
    )
    entry = schemas.CreditEntry(
        id=entry_id,
        kind=CreditEntryKind.GRANT,
        amount=body.amount,
        idempotency_key=None,
        reason=body.reason,
        actor_user_id=actor_user_id,
        created_at=now,
    )
    return schemas.CreditGranted(entry=entry, total_credits=new_balance)


async def overview(
    session: AsyncSession,
    access: OrgAccess,
    plan: EffectivePlan,
    params: PageParams,
    now: datetime,
) -> schemas.Credits:
    org_id = access.organization.id
    total, pending = displayed_balance(await repository.get_balance(session, org_id), plan)
    rows = await repository.list_entries(session, org_id, params)
    page, cursor = build_page(rows, params, repository.LEDGER_KEYSET)
    return schemas.Credits(
        total_credits=total,
        max_credits=plan.limits.count("max_credits"),
        extra_credit_price=plan.limits.money("extra_credit_price"),
        pending_monthly_grant=pending,
        ledger=[schemas.CreditEntry.model_validate(row) for row in page],
        next_cursor=cursor,
    )
